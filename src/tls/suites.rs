//! The names of TLS parameters as operators write them: versions and cipher
//! suites in the `httpsProtocols` / `cipherSuites` vocabulary of ArcGIS
//! Server, which is IANA's, and key exchange groups as IANA names them. The
//! TLS library (rustls with aws-lc-rs) implements only AEAD suites with
//! forward secrecy; every other IANA name is known but skipped.

use rustls::crypto::aws_lc_rs;
use rustls::{
    CipherSuite, NamedGroup, ProtocolVersion, SignatureAlgorithm, SupportedCipherSuite,
    SupportedProtocolVersion,
};

/// A TLS version name gisgate will not enable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    #[error("{0:?} is insecure and unsupported (deprecated by RFC 8996; SSLv3 is broken by POODLE); use \"TLSv1.2\" and/or \"TLSv1.3\"")]
    Insecure(String),
    #[error("{0:?} is not a TLS version; use \"TLSv1.2\" and/or \"TLSv1.3\"")]
    Unknown(String),
}

pub fn parse_version(name: &str) -> Result<&'static SupportedProtocolVersion, VersionError> {
    match name.trim() {
        "TLSv1.2" => Ok(&rustls::version::TLS12),
        "TLSv1.3" => Ok(&rustls::version::TLS13),
        old @ ("TLSv1" | "TLSv1.0" | "TLSv1.1" | "SSLv3" | "SSLv2") => {
            Err(VersionError::Insecure(old.to_string()))
        }
        other => Err(VersionError::Unknown(other.to_string())),
    }
}

pub fn version_name(v: ProtocolVersion) -> &'static str {
    match v {
        ProtocolVersion::TLSv1_3 => "TLSv1.3",
        ProtocolVersion::TLSv1_2 => "TLSv1.2",
        _ => "other",
    }
}

/// The IANA name of a suite rustls implements.
pub fn suite_name(s: &SupportedCipherSuite) -> &'static str {
    iana_name(s.suite()).unwrap_or("unknown")
}

/// The key exchange group of a handshake, as a metric label from a fixed
/// set: the groups the library offers by default, `other` for any further
/// one, `none` when there was no key exchange (a resumed TLS 1.2 session
/// reuses its master secret). Among them is X25519MLKEM768, the
/// post-quantum hybrid of draft-ietf-tls-ecdhe-mlkem; rustls takes the
/// client's first choice of the groups both offer, so browsers, which list
/// the hybrid first, get it.
pub fn group_name(group: Option<NamedGroup>) -> &'static str {
    match group {
        Some(NamedGroup::X25519MLKEM768) => "X25519MLKEM768",
        Some(NamedGroup::X25519) => "X25519",
        Some(NamedGroup::secp256r1) => "secp256r1",
        Some(NamedGroup::secp384r1) => "secp384r1",
        Some(_) => "other",
        None => "none",
    }
}

/// rustls spells the TLS 1.3 suites `TLS13_AES_128_GCM_SHA256`; IANA (and
/// ArcGIS, and every audit tool) writes `TLS_AES_128_GCM_SHA256`.
fn iana_name(suite: CipherSuite) -> Option<&'static str> {
    let name = suite.as_str()?;
    Some(match name {
        "TLS13_AES_128_GCM_SHA256" => "TLS_AES_128_GCM_SHA256",
        "TLS13_AES_256_GCM_SHA384" => "TLS_AES_256_GCM_SHA384",
        "TLS13_CHACHA20_POLY1305_SHA256" => "TLS_CHACHA20_POLY1305_SHA256",
        "TLS13_AES_128_CCM_SHA256" => "TLS_AES_128_CCM_SHA256",
        "TLS13_AES_128_CCM_8_SHA256" => "TLS_AES_128_CCM_8_SHA256",
        other => other,
    })
}

/// Secure defaults: every suite the library implements (all AEAD, all
/// forward-secret), in its preference order.
pub fn default_suites() -> Vec<SupportedCipherSuite> {
    aws_lc_rs::default_provider().cipher_suites
}

/// Resolves configured names. Returns (offered, skipped, errors): known
/// IANA names the library lacks are skipped (ArcGIS's own default list
/// names CBC and static-RSA suites and must load as pasted); names that are
/// not IANA suite names at all are errors, since a typo must not pass.
pub fn resolve(names: &[String]) -> (Vec<SupportedCipherSuite>, Vec<String>, Vec<String>) {
    let implemented = aws_lc_rs::ALL_CIPHER_SUITES;
    let mut chosen: Vec<SupportedCipherSuite> = Vec::new();
    let mut skipped = Vec::new();
    let mut errors = Vec::new();
    for name in names {
        let name = name.trim();
        if let Some(s) = implemented.iter().find(|s| suite_name(s) == name) {
            if !chosen.iter().any(|c| c.suite() == s.suite()) {
                chosen.push(*s);
            }
        } else if is_iana_name(name) {
            if !skipped.iter().any(|s: &String| s == name) {
                skipped.push(name.to_string());
            }
        } else {
            errors.push(format!(
                "{name:?} is not an IANA cipher suite name (e.g. \"TLS_AES_128_GCM_SHA256\", \"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\")"
            ));
        }
    }
    (chosen, skipped, errors)
}

/// Whether `name` is in the IANA TLS cipher suite registry, as rustls
/// spells it (rustls' `CipherSuite` enum carries the registry's names).
fn is_iana_name(name: &str) -> bool {
    if !name.starts_with("TLS_") && !name.starts_with("SSL_") {
        return false;
    }
    (0..=u16::MAX).any(|code| iana_name(CipherSuite::from(code)) == Some(name))
}

/// Whether a suite can be used with a certificate whose key has the given
/// signature algorithm. TLS 1.3 suites are independent of the key; TLS 1.2
/// ECDHE_RSA suites need an RSA key and ECDHE_ECDSA ones an ECDSA (or
/// EdDSA) key.
pub fn fits_key(suite: &SupportedCipherSuite, key: SignatureAlgorithm) -> bool {
    suite.usable_for_signature_algorithm(key)
}

/// Every suite the library implements for `version` that a key of type
/// `key` can serve, in the library's preference order.
pub fn fitting(version: &SupportedProtocolVersion, key: SignatureAlgorithm) -> Vec<&'static str> {
    aws_lc_rs::ALL_CIPHER_SUITES
        .iter()
        .filter(|s| s.version() == version && fits_key(s, key))
        .map(suite_name)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arcgis_default_list_loads_with_cbc_and_rsa_suites_skipped() {
        let list = "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384, TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA, TLS_RSA_WITH_AES_256_GCM_SHA384, TLS_RSA_WITH_AES_256_CBC_SHA256, TLS_RSA_WITH_AES_256_CBC_SHA, TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256, TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA, TLS_RSA_WITH_AES_128_GCM_SHA256, TLS_RSA_WITH_AES_128_CBC_SHA256, TLS_RSA_WITH_AES_128_CBC_SHA, TLS_AES_256_GCM_SHA384, TLS_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384, TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA, TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256, TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA";
        let names: Vec<String> = list.split(',').map(|s| s.trim().to_string()).collect();
        let (chosen, skipped, errors) = resolve(&names);
        assert!(errors.is_empty(), "{errors:?}");
        let chosen: Vec<_> = chosen.iter().map(suite_name).collect();
        assert_eq!(
            chosen,
            [
                "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                "TLS_AES_256_GCM_SHA384",
                "TLS_AES_128_GCM_SHA256",
                "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
                "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            ]
        );
        assert_eq!(skipped.len(), 14);
        assert!(skipped.contains(&"TLS_RSA_WITH_AES_128_CBC_SHA".to_string()));
    }

    #[test]
    fn unknown_suite_name_is_an_error() {
        let (_, _, errors) = resolve(&["TLS_AES_128_GCM_SHA257".into()]);
        assert_eq!(errors.len(), 1);
        let (_, _, errors) = resolve(&["ECDHE-RSA-AES128-GCM-SHA256".into()]);
        assert_eq!(errors.len(), 1, "OpenSSL names are not IANA names");
    }

    #[test]
    fn old_protocol_versions_are_refused_as_insecure() {
        for v in ["TLSv1", "TLSv1.1", "SSLv3"] {
            let e = parse_version(v).unwrap_err();
            assert_eq!(e, VersionError::Insecure(v.to_string()));
            assert!(e.to_string().contains("insecure and unsupported"), "{e}");
        }
        assert_eq!(
            parse_version("TLSv1.4"),
            Err(VersionError::Unknown("TLSv1.4".to_string()))
        );
    }

    #[test]
    fn rsa_key_fits_only_rsa_and_tls13_suites() {
        let (chosen, _, _) = resolve(&[
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256".into(),
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".into(),
            "TLS_AES_128_GCM_SHA256".into(),
        ]);
        let fits: Vec<bool> = chosen
            .iter()
            .map(|s| fits_key(s, SignatureAlgorithm::RSA))
            .collect();
        assert_eq!(fits, [false, true, true]);
        let fits: Vec<bool> = chosen
            .iter()
            .map(|s| fits_key(s, SignatureAlgorithm::ECDSA))
            .collect();
        assert_eq!(fits, [true, false, true]);
    }
}
