//! `tls.strict_sni_host`: a request on a TLS connection must ask for a
//! host that the certificate chosen for the connection's SNI covers, or it
//! is answered 421 Misdirected Request (RFC 9110 §15.5.20). A client that
//! reuses ("coalesces") one connection for every name its certificate
//! covers (RFC 9113 §9.1.1) is served; a request for another name, which
//! the client could not have verified, is not, as in rpxy and sozu.

use crate::host::HostPort;
use crate::tls::certs::CertFacts;

/// Whether the request's host (parsed once per request; its port plays no
/// part) is one of `cert`'s names: its DNS names, a wildcard for exactly
/// one left-most label (RFC 6125 §6.4.3), or its IP addresses.
pub fn host_covered(cert: &CertFacts, authority: &HostPort) -> bool {
    cert.covers_name(authority.host())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::certs::cert_facts;

    /// A malformed authority never gets this far (400 before it); here it
    /// counts as not covered.
    fn host_covered(cert: &CertFacts, authority: &str) -> bool {
        HostPort::parse(authority).is_ok_and(|a| super::host_covered(cert, &a))
    }

    fn cert(names: &[&str]) -> CertFacts {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(names)
            .unwrap()
            .self_signed(&key)
            .unwrap();
        cert_facts(cert.der()).unwrap()
    }

    #[test]
    fn a_host_with_or_without_a_port_is_covered_by_its_exact_name() {
        let c = cert(&["gis.example.com", "maps.example.org"]);
        assert!(host_covered(&c, "gis.example.com"));
        assert!(host_covered(&c, "GIS.Example.com:6443"));
        assert!(host_covered(&c, "maps.example.org:443"));
        assert!(!host_covered(&c, "other.example.com"));
        assert!(!host_covered(&c, "example.com"));
    }

    #[test]
    fn a_wildcard_covers_exactly_one_left_most_label() {
        let c = cert(&["*.example.com"]);
        assert!(host_covered(&c, "gis.example.com:6443"));
        assert!(!host_covered(&c, "a.gis.example.com"));
        assert!(!host_covered(&c, "example.com"));
        assert!(!host_covered(&c, "gis.example.org"));
    }

    #[test]
    fn an_ip_host_is_covered_only_by_an_ip_name() {
        let c = cert(&["localhost", "127.0.0.1", "::1"]);
        assert!(host_covered(&c, "127.0.0.1:6443"));
        assert!(host_covered(&c, "[::1]:6443"));
        assert!(!host_covered(&c, "127.0.0.2"));
        assert!(host_covered(&c, "localhost:6443"));
        assert!(!host_covered(&c, "[::1"));
    }
}
