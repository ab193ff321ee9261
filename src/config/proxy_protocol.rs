//! `server.proxy_protocol` and `server.proxy_protocol_from`: whether the
//! public listeners expect a PROXY protocol header (HAProxy's
//! proxy-protocol.txt) before anything else, and from which peers.

use std::net::IpAddr;

use ipnet::IpNet;

use super::keys;
use crate::policy::admin::parse_ip_or_cidr;

/// Which PROXY protocol versions a listener expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyProtocolMode {
    /// Nothing is parsed: a PROXY header is then a malformed request.
    Off,
    V1,
    V2,
    /// Either version, told apart by the header's first bytes.
    Any,
}

impl ProxyProtocolMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ProxyProtocolMode::Off => "off",
            ProxyProtocolMode::V1 => "v1",
            ProxyProtocolMode::V2 => "v2",
            ProxyProtocolMode::Any => "any",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "off" => ProxyProtocolMode::Off,
            "v1" => ProxyProtocolMode::V1,
            "v2" => ProxyProtocolMode::V2,
            "any" => ProxyProtocolMode::Any,
            _ => return None,
        })
    }

    pub fn accepts_v1(self) -> bool {
        matches!(self, ProxyProtocolMode::V1 | ProxyProtocolMode::Any)
    }

    pub fn accepts_v2(self) -> bool {
        matches!(self, ProxyProtocolMode::V2 | ProxyProtocolMode::Any)
    }
}

/// The PROXY protocol policy of the HTTPS and HTTP listeners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyProtocol {
    pub mode: ProxyProtocolMode,
    /// The load balancers allowed to send the header; required when on.
    pub from: Vec<IpNet>,
}

impl Default for ProxyProtocol {
    fn default() -> Self {
        ProxyProtocol {
            mode: ProxyProtocolMode::Off,
            from: Vec::new(),
        }
    }
}

impl ProxyProtocol {
    pub fn is_on(&self) -> bool {
        self.mode != ProxyProtocolMode::Off
    }

    /// Whether `peer` (the TCP peer, before any header) may send a header.
    /// An IPv4 peer on a dual-stack socket arrives as `::ffff:a.b.c.d`.
    pub fn trusts(&self, peer: IpAddr) -> bool {
        let peer = peer.to_canonical();
        self.from.iter().any(|net| net.contains(&peer))
    }
}

/// The typed policy from the two raw keys, with every problem as
/// (key, message) and what an operator should know as warnings.
pub(super) struct Checked {
    pub policy: ProxyProtocol,
    pub errors: Vec<(&'static str, String)>,
    pub warnings: Vec<String>,
}

pub(super) fn check(mode: Option<&str>, from: Option<Vec<String>>) -> Checked {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let mode = match mode.map(str::trim) {
        None => ProxyProtocolMode::Off,
        Some(text) => ProxyProtocolMode::parse(text).unwrap_or_else(|| {
            errors.push((
                keys::SERVER_PROXY_PROTOCOL,
                format!("{text:?} is not one of \"off\", \"v1\", \"v2\", \"any\""),
            ));
            ProxyProtocolMode::Off
        }),
    };
    let written = from.is_some();
    let mut nets = Vec::new();
    for item in from.unwrap_or_default() {
        match parse_ip_or_cidr(&item) {
            Ok(net) => nets.push(net),
            Err(e) => errors.push((keys::SERVER_PROXY_PROTOCOL_FROM, e.to_string())),
        }
    }
    if mode != ProxyProtocolMode::Off && nets.is_empty() && errors.is_empty() {
        // Fail closed: a header from anyone would let anyone name their
        // own address to the admin gate.
        errors.push((
            keys::SERVER_PROXY_PROTOCOL,
            format!(
                "server.proxy_protocol = {:?} needs {}: the addresses or CIDRs of the load balancers allowed to send the header",
                mode.as_str(),
                keys::SERVER_PROXY_PROTOCOL_FROM
            ),
        ));
    }
    if mode == ProxyProtocolMode::Off && written {
        warnings.push(format!(
            "{} is set but server.proxy_protocol is \"off\": no PROXY header is read",
            keys::SERVER_PROXY_PROTOCOL_FROM
        ));
    }
    if nets.iter().any(|n| n.prefix_len() == 0) {
        warnings.push(format!(
            "{} admits every address: any peer can name the client address the admin gate sees",
            keys::SERVER_PROXY_PROTOCOL_FROM
        ));
    }
    Checked {
        policy: ProxyProtocol { mode, from: nets },
        errors,
        warnings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&str]) -> Option<Vec<String>> {
        Some(items.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn off_by_default_and_nothing_is_required() {
        let c = check(None, None);
        assert_eq!(c.policy, ProxyProtocol::default());
        assert!(c.errors.is_empty() && c.warnings.is_empty());
    }

    #[test]
    fn on_without_peers_is_refused_naming_both_keys() {
        for mode in ["v1", "v2", "any"] {
            let c = check(Some(mode), None);
            assert_eq!(c.errors.len(), 1, "{mode}");
            assert_eq!(c.errors[0].0, keys::SERVER_PROXY_PROTOCOL);
            assert!(c.errors[0].1.contains(keys::SERVER_PROXY_PROTOCOL_FROM));
            assert!(!check(Some(mode), list(&[])).errors.is_empty());
        }
    }

    #[test]
    fn an_unknown_mode_or_a_bad_cidr_is_refused() {
        let c = check(Some("v3"), list(&["10.0.0.0/8"]));
        assert_eq!(c.errors[0].0, keys::SERVER_PROXY_PROTOCOL);
        assert!(c.errors[0].1.contains("\"v3\""));
        let c = check(Some("v2"), list(&["10.0.0.0/33"]));
        assert_eq!(c.errors.len(), 1, "{:?}", c.errors);
        assert_eq!(c.errors[0].0, keys::SERVER_PROXY_PROTOCOL_FROM);
    }

    #[test]
    fn peers_are_matched_by_cidr_also_as_ipv4_mapped_ipv6() {
        let c = check(Some("any"), list(&["10.1.0.0/16", "2001:db8::1"]));
        assert!(c.errors.is_empty());
        let p = c.policy;
        assert!(p.trusts("10.1.2.3".parse().unwrap()));
        assert!(p.trusts("::ffff:10.1.2.3".parse().unwrap()));
        assert!(p.trusts("2001:db8::1".parse().unwrap()));
        assert!(!p.trusts("10.2.0.1".parse().unwrap()));
        assert!(p.mode.accepts_v1() && p.mode.accepts_v2());
    }

    #[test]
    fn peers_without_the_protocol_on_are_a_warning() {
        let c = check(Some("off"), list(&["10.0.0.1"]));
        assert!(c.errors.is_empty());
        assert_eq!(c.warnings.len(), 1);
    }
}
