//! The admin gate: which canonical paths are administrative, and which
//! clients may reach them.

use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net};

use crate::policy::prefixes::PathPrefixes;

/// Outcome of [`AdminGate::decide`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminDecision {
    /// The path is not under any admin prefix; the admin gate has no say.
    NotAdmin,
    /// Admin path, and the client is on the allow list.
    Allowed,
    /// Admin path, and the client is not allowed (or is unknown, or direct
    /// admin access is switched off).
    Denied,
}

/// Decides access to administrative paths.
#[derive(Debug, Clone)]
pub struct AdminGate {
    prefixes: PathPrefixes,
    allowed: Vec<IpNet>,
    direct_access: bool,
}

impl AdminGate {
    /// Builds the gate.
    ///
    /// `prefixes` are canonical-path prefixes such as `/arcgis/admin`. Each is
    /// passed through [`canonical_path`](crate::policy::path::canonical_path) (so `/arcgis//admin` or
    /// `/arcgis/%61dmin` in configuration still work), lower-cased and has
    /// trailing `/` trimmed; `/` therefore means every path. A prefix that is
    /// not a valid path is kept lower-cased as written: it can then only
    /// match nothing, so configuration loading should reject it with
    /// [`canonical_path`](crate::policy::path::canonical_path) beforehand.
    ///
    /// `allowed` is the client allow list (an empty list admits nobody);
    /// `direct_access = false` denies every admin path to everyone.
    pub fn new(prefixes: &[String], allowed: Vec<IpNet>, direct_access: bool) -> Self {
        let prefixes = PathPrefixes::new(prefixes);
        Self {
            prefixes,
            allowed,
            direct_access,
        }
    }

    /// Whether `canonical` (an output of [`canonical_path`](crate::policy::path::canonical_path)) lies under an
    /// admin prefix. ASCII case-insensitive, because the upstream (and the
    /// Windows file system under it) may treat `/arcgis/ADMIN` as
    /// `/arcgis/admin`.
    ///
    /// The prefix must end at a segment boundary: `/arcgis/admin` and
    /// `/arcgis/admin/x` match, `/arcgis/adminx` does not. To fail closed,
    /// the boundary is any byte other than a letter, digit, `-`, `_` or `~`:
    /// `/arcgis/admin.`, `/arcgis/admin%20`, `/arcgis/admin:x` or
    /// `/arcgis/admin%3B` also count as admin, because some upstream layer
    /// (Windows name trimming, `::$DATA` streams, a second decoding pass)
    /// might read them as the admin resource.
    pub fn is_admin_path(&self, canonical: &str) -> bool {
        self.prefixes.matches(canonical)
    }

    /// Whether `client` may reach admin paths. `None` (client address
    /// unknown) is refused. IPv4-mapped IPv6 addresses (`::ffff:10.1.2.3`)
    /// are judged as the IPv4 address they carry, so an IPv4 allow list
    /// works on dual-stack listeners.
    pub fn client_allowed(&self, client: Option<IpAddr>) -> bool {
        let Some(client) = client else {
            return false;
        };
        let client = client.to_canonical();
        self.allowed.iter().any(|net| net.contains(&client))
    }

    /// Full admin decision for one request.
    pub fn decide(&self, canonical: &str, client: Option<IpAddr>) -> AdminDecision {
        if !self.is_admin_path(canonical) {
            AdminDecision::NotAdmin
        } else if self.direct_access && self.client_allowed(client) {
            AdminDecision::Allowed
        } else {
            AdminDecision::Denied
        }
    }
}

/// An allow-list entry that is neither an address nor a CIDR block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetParseError {
    #[error("invalid CIDR block: {0:?}")]
    Cidr(String),
    #[error("invalid IP address: {0:?}")]
    Address(String),
}

/// Parses an allow-list entry: an address (`10.1.2.3` -> `/32`, `::1` ->
/// `/128`) or a CIDR block (`10.0.0.0/8`, `fe80::/10`). Surrounding
/// whitespace is ignored.
///
/// Host bits are accepted and cleared (`10.1.2.3/8` -> `10.0.0.0/8`) with
/// [`IpNet::trunc`]: the block meant is unambiguous, and containment checks
/// behave the same either way. IPv4-mapped IPv6 entries (`::ffff:10.0.0.1`,
/// `::ffff:10.0.0.0/104`) are converted to IPv4, because clients are judged
/// as IPv4 (see [`AdminGate::client_allowed`]) and such an entry would
/// otherwise never match.
pub fn parse_ip_or_cidr(s: &str) -> Result<IpNet, NetParseError> {
    let s = s.trim();
    let net = if s.contains('/') {
        s.parse::<IpNet>()
            .map_err(|_| NetParseError::Cidr(s.to_string()))?
    } else {
        s.parse::<IpAddr>()
            .map(IpNet::from)
            .map_err(|_| NetParseError::Address(s.to_string()))?
    };
    let net = net.trunc();
    if let IpNet::V6(v6) = net {
        if let (Some(v4), Some(len)) = (v6.addr().to_ipv4_mapped(), v6.prefix_len().checked_sub(96))
        {
            if let Ok(v4net) = Ipv4Net::new(v4, len) {
                return Ok(IpNet::V4(v4net));
            }
        }
    }
    Ok(net)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::path::canonical_path;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter()
            .map(|s| parse_ip_or_cidr(s).expect("valid"))
            .collect()
    }

    fn gate(prefixes: &[&str], allowed: &[&str], direct_access: bool) -> AdminGate {
        let prefixes: Vec<String> = prefixes.iter().map(|s| s.to_string()).collect();
        AdminGate::new(&prefixes, nets(allowed), direct_access)
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().expect("ip"))
    }

    #[test]
    fn exact_prefix_is_an_admin_path() {
        let g = gate(&["/arcgis/admin"], &[], true);
        assert!(g.is_admin_path("/arcgis/admin"));
        assert!(g.is_admin_path("/arcgis/admin/"));
        assert!(g.is_admin_path("/arcgis/admin/services"));
    }

    #[test]
    fn prefix_match_ignores_ascii_case() {
        let g = gate(&["/ArcGIS/Admin/"], &[], true);
        assert!(g.is_admin_path("/ARCGIS/ADMIN/x"));
        assert!(g.is_admin_path("/arcgis/admin"));
    }

    #[test]
    fn longer_name_sharing_the_prefix_is_not_an_admin_path() {
        let g = gate(&["/arcgis/admin"], &[], true);
        assert!(!g.is_admin_path("/arcgis/adminx"));
        assert!(!g.is_admin_path("/arcgis/admin-tools"));
        assert!(!g.is_admin_path("/arcgis/admin_2"));
        assert!(!g.is_admin_path("/arcgis/rest/services"));
        assert!(!g.is_admin_path("/arcgis"));
    }

    #[test]
    fn prefix_followed_by_a_punctuation_byte_counts_as_admin() {
        let g = gate(&["/arcgis/admin"], &[], true);
        assert!(g.is_admin_path("/arcgis/admin."));
        assert!(g.is_admin_path("/arcgis/admin%20"));
        assert!(g.is_admin_path("/arcgis/admin%3B"));
        assert!(g.is_admin_path("/arcgis/admin::$DATA"));
    }

    #[test]
    fn root_prefix_covers_every_path() {
        let g = gate(&["/"], &[], true);
        assert!(g.is_admin_path("/"));
        assert!(g.is_admin_path("/anything/at/all"));
    }

    #[test]
    fn non_canonical_prefix_in_configuration_is_canonicalised() {
        let g = gate(&["/arcgis//%61dmin"], &[], true);
        assert!(g.is_admin_path("/arcgis/admin/x"));
    }

    #[test]
    fn canonicalised_bypass_attempts_are_admin_paths() {
        let g = gate(&["/arcgis/admin"], &[], true);
        for raw in [
            "/arcgis/x/..;/admin",
            "/arcgis/%61dmin",
            "/arcgis;a=b/ADMIN",
            "//arcgis/./admin/",
        ] {
            let canonical = canonical_path(raw).expect("valid");
            assert!(g.is_admin_path(&canonical), "{raw}");
        }
    }

    #[test]
    fn unknown_client_is_not_allowed() {
        let g = gate(&["/arcgis/admin"], &["0.0.0.0/0", "::/0"], true);
        assert!(!g.client_allowed(None));
    }

    #[test]
    fn empty_allow_list_admits_nobody() {
        let g = gate(&["/arcgis/admin"], &[], true);
        assert!(!g.client_allowed(ip("127.0.0.1")));
        assert!(!g.client_allowed(ip("::1")));
    }

    #[test]
    fn client_inside_an_allowed_block_is_allowed() {
        let g = gate(&["/arcgis/admin"], &["10.0.0.0/8", "::1"], true);
        assert!(g.client_allowed(ip("10.200.3.4")));
        assert!(g.client_allowed(ip("::1")));
        assert!(!g.client_allowed(ip("11.0.0.1")));
        assert!(!g.client_allowed(ip("::2")));
    }

    #[test]
    fn ipv4_mapped_ipv6_client_is_judged_as_ipv4() {
        let g = gate(&["/arcgis/admin"], &["10.0.0.0/8"], true);
        assert!(g.client_allowed(ip("::ffff:10.1.2.3")));
        assert!(!g.client_allowed(ip("::ffff:192.168.1.1")));
    }

    #[test]
    fn decision_for_a_non_admin_path_is_not_admin() {
        let g = gate(&["/arcgis/admin"], &[], false);
        assert_eq!(
            g.decide("/arcgis/rest/services", None),
            AdminDecision::NotAdmin
        );
    }

    #[test]
    fn decision_for_an_allowed_client_is_allowed() {
        let g = gate(&["/arcgis/admin"], &["10.0.0.0/8"], true);
        assert_eq!(
            g.decide("/arcgis/admin/x", ip("10.0.0.1")),
            AdminDecision::Allowed
        );
        assert_eq!(
            g.decide("/arcgis/admin/x", ip("8.8.8.8")),
            AdminDecision::Denied
        );
        assert_eq!(g.decide("/arcgis/admin/x", None), AdminDecision::Denied);
    }

    #[test]
    fn disabled_direct_access_denies_even_allowed_clients() {
        let g = gate(&["/arcgis/admin"], &["0.0.0.0/0"], false);
        assert_eq!(
            g.decide("/arcgis/admin", ip("10.0.0.1")),
            AdminDecision::Denied
        );
    }

    #[test]
    fn cidr_block_is_parsed() {
        assert_eq!(
            parse_ip_or_cidr("10.0.0.0/8"),
            Ok("10.0.0.0/8".parse().expect("net"))
        );
        assert_eq!(
            parse_ip_or_cidr("fe80::/10"),
            Ok("fe80::/10".parse().expect("net"))
        );
    }

    #[test]
    fn bare_ipv4_address_becomes_a_slash_32() {
        assert_eq!(
            parse_ip_or_cidr("10.1.2.3"),
            Ok("10.1.2.3/32".parse().expect("net"))
        );
    }

    #[test]
    fn bare_ipv6_address_becomes_a_slash_128() {
        assert_eq!(
            parse_ip_or_cidr(" ::1 "),
            Ok("::1/128".parse().expect("net"))
        );
    }

    #[test]
    fn host_bits_are_accepted_and_cleared() {
        assert_eq!(
            parse_ip_or_cidr("10.1.2.3/8"),
            Ok("10.0.0.0/8".parse().expect("net"))
        );
    }

    #[test]
    fn ipv4_mapped_entries_are_converted_to_ipv4() {
        assert_eq!(
            parse_ip_or_cidr("::ffff:10.0.0.1"),
            Ok("10.0.0.1/32".parse().expect("net"))
        );
        assert_eq!(
            parse_ip_or_cidr("::ffff:10.0.0.0/104"),
            Ok("10.0.0.0/8".parse().expect("net"))
        );
    }

    #[test]
    fn garbage_allow_list_entries_are_rejected() {
        for s in [
            "",
            "garbage",
            "10.0.0.0/33",
            "::/129",
            "10.0.0",
            "10.0.0.256",
            "10.0.0.0/",
            "/8",
            "10.0.0.0/8/8",
            "fe80::1%eth0",
        ] {
            assert!(parse_ip_or_cidr(s).is_err(), "{s:?}");
        }
    }
}
