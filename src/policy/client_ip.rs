//! The client's address, from the TCP peer and `X-Forwarded-For`.
//!
//! `X-Forwarded-For` (the de-facto predecessor of RFC 7239 `Forwarded`) is a
//! comma-separated list to which each proxy appends the address it received
//! the request from. Only the entries appended by proxies we trust are
//! reliable; everything to their left was written by whoever sent the
//! request. So the list is believed only when the TCP peer is a trusted
//! proxy, and then read from the right: the first address that is not a
//! trusted proxy is the client.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use http::HeaderValue;
use ipnet::IpNet;

/// Returns the client address, or `None` when it cannot be determined safely.
///
/// * An untrusted `peer` is the client; `X-Forwarded-For` is ignored, so a
///   direct client cannot spoof its address.
/// * A trusted `peer` without any `X-Forwarded-For` header is the client.
/// * Otherwise all `xff` header lines form one list, in order. Walking from
///   the right, trusted addresses are skipped and the first untrusted one is
///   the client. If every entry is trusted, the leftmost entry is the client.
/// * A malformed entry (`unknown`, an obfuscated RFC 7239 identifier,
///   garbage, a non-ASCII header line) reached before the client gives
///   `None`: the address is unknown, and substituting a trusted proxy's
///   address would wrongly admit the request to anything that proxy may
///   reach. Headers that are present but contain no entry at all also give
///   `None`.
///
/// Empty list elements (`a, , b`) are skipped, as RFC 9110 §5.6.1 requires
/// of list-based fields. Entries may carry a port (`1.2.3.4:5678`,
/// `[::1]:80`), brackets (`[::1]`) and surrounding spaces or tabs.
/// IPv4-mapped IPv6 addresses are returned as IPv4, for the peer and for
/// entries alike.
pub fn client_ip<'a>(
    peer: IpAddr,
    xff: impl Iterator<Item = &'a HeaderValue>,
    trusted: &[IpNet],
) -> Option<IpAddr> {
    let peer = peer.to_canonical();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return Some(peer);
    }

    // One left-to-right pass, equivalent to the right-to-left walk: the
    // walk stops at the rightmost entry that is not a trusted address, so we
    // remember the rightmost such entry (`Err` when it is malformed).
    let mut saw_header = false;
    let mut leftmost: Option<IpAddr> = None;
    let mut rightmost_untrusted: Option<Result<IpAddr, ()>> = None;
    for line in xff {
        saw_header = true;
        let Ok(line) = line.to_str() else {
            // The whole line is unreadable: one malformed entry here.
            rightmost_untrusted = Some(Err(()));
            continue;
        };
        for entry in line.split(',') {
            let entry = entry.trim_matches([' ', '\t']);
            if entry.is_empty() {
                continue;
            }
            match parse_entry(entry) {
                Some(ip) => {
                    leftmost.get_or_insert(ip);
                    if !is_trusted(&ip) {
                        rightmost_untrusted = Some(Ok(ip));
                    }
                }
                None => rightmost_untrusted = Some(Err(())),
            }
        }
    }

    match rightmost_untrusted {
        Some(found) => found.ok(),
        // Every entry is well-formed and trusted (a malformed one would have
        // set `rightmost_untrusted`): the leftmost one originated the
        // request (for example a monitoring probe on a proxy host).
        None if leftmost.is_some() => leftmost,
        None if saw_header => None,
        None => Some(peer),
    }
}

/// Parses one list entry: `v4`, `v4:port`, `v6`, `[v6]` or `[v6]:port`.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let ip = if let Some(rest) = entry.strip_prefix('[') {
        let (inner, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        IpAddr::V6(inner.parse::<Ipv6Addr>().ok()?)
    } else if let Ok(ip) = entry.parse::<IpAddr>() {
        ip
    } else {
        // Only IPv4 may carry a port without brackets: a bare IPv6 address
        // with a port would be ambiguous.
        let (host, port) = entry.split_once(':')?;
        if !is_port(port) {
            return None;
        }
        IpAddr::V4(host.parse::<Ipv4Addr>().ok()?)
    };
    Some(ip.to_canonical())
}

fn is_port(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 5
        && s.bytes().all(|b| b.is_ascii_digit())
        && s.parse::<u16>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn trusted() -> Vec<IpNet> {
        vec![
            "10.0.0.0/8".parse().expect("net"),
            "fd00::/8".parse().expect("net"),
        ]
    }

    fn run(peer: &str, lines: &[&str]) -> Option<IpAddr> {
        let values: Vec<HeaderValue> = lines
            .iter()
            .map(|l| HeaderValue::from_str(l).expect("header"))
            .collect();
        client_ip(ip(peer), values.iter(), &trusted())
    }

    #[test]
    fn untrusted_peer_is_the_client_and_its_forwarded_for_is_ignored() {
        assert_eq!(run("203.0.113.9", &["10.0.0.1"]), Some(ip("203.0.113.9")));
        assert_eq!(run("203.0.113.9", &["garbage"]), Some(ip("203.0.113.9")));
    }

    #[test]
    fn trusted_peer_without_forwarded_for_is_the_client() {
        assert_eq!(run("10.0.0.5", &[]), Some(ip("10.0.0.5")));
    }

    #[test]
    fn rightmost_untrusted_address_is_the_client() {
        assert_eq!(
            run("10.0.0.5", &["198.51.100.1, 203.0.113.7, 10.0.0.3"]),
            Some(ip("203.0.113.7"))
        );
    }

    #[test]
    fn several_header_lines_are_read_as_one_list_in_order() {
        assert_eq!(
            run(
                "10.0.0.5",
                &["198.51.100.1, 203.0.113.7", "10.0.0.3, 10.0.0.4"]
            ),
            Some(ip("203.0.113.7"))
        );
        assert_eq!(
            run("10.0.0.5", &["10.9.9.9", "203.0.113.8", "10.0.0.3"]),
            Some(ip("203.0.113.8"))
        );
    }

    #[test]
    fn spoofed_entries_left_of_the_client_are_ignored() {
        // The attacker sent "X-Forwarded-For: 10.0.0.1"; our proxy appended
        // the attacker's real address.
        assert_eq!(
            run("10.0.0.5", &["10.0.0.1, 203.0.113.66"]),
            Some(ip("203.0.113.66"))
        );
    }

    #[test]
    fn malformed_entry_before_the_client_gives_an_unknown_client() {
        assert_eq!(run("10.0.0.5", &["203.0.113.7, unknown"]), None);
        assert_eq!(run("10.0.0.5", &["garbage, 10.0.0.3"]), None);
        assert_eq!(run("10.0.0.5", &["_hidden"]), None);
        assert_eq!(run("10.0.0.5", &["1.2.3.4:"]), None);
        assert_eq!(run("10.0.0.5", &["1.2.3.4:99999"]), None);
        assert_eq!(run("10.0.0.5", &["[::1"]), None);
    }

    #[test]
    fn malformed_entry_left_of_the_client_does_not_matter() {
        assert_eq!(
            run("10.0.0.5", &["unknown, 203.0.113.7, 10.0.0.3"]),
            Some(ip("203.0.113.7"))
        );
    }

    #[test]
    fn non_ascii_header_line_gives_an_unknown_client() {
        let bad = HeaderValue::from_bytes(b"203.0.113.7\xff").expect("obs-text");
        let good = HeaderValue::from_static("10.0.0.3");
        let lines = [bad, good];
        assert_eq!(client_ip(ip("10.0.0.5"), lines.iter(), &trusted()), None);
    }

    #[test]
    fn all_trusted_entries_make_the_leftmost_the_client() {
        assert_eq!(
            run("10.0.0.5", &["10.1.1.1, 10.2.2.2", "10.3.3.3"]),
            Some(ip("10.1.1.1"))
        );
    }

    #[test]
    fn present_but_empty_forwarded_for_gives_an_unknown_client() {
        assert_eq!(run("10.0.0.5", &[""]), None);
        assert_eq!(run("10.0.0.5", &[" , "]), None);
    }

    #[test]
    fn empty_list_elements_are_skipped() {
        assert_eq!(
            run("10.0.0.5", &["203.0.113.7, , 10.0.0.3,"]),
            Some(ip("203.0.113.7"))
        );
    }

    #[test]
    fn ports_brackets_and_whitespace_are_parsed() {
        assert_eq!(
            run("10.0.0.5", &[" 203.0.113.7:5678 "]),
            Some(ip("203.0.113.7"))
        );
        assert_eq!(
            run("10.0.0.5", &["\t[2001:db8::1]\t"]),
            Some(ip("2001:db8::1"))
        );
        assert_eq!(
            run("10.0.0.5", &["[2001:db8::1]:80"]),
            Some(ip("2001:db8::1"))
        );
        assert_eq!(run("10.0.0.5", &["2001:db8::2"]), Some(ip("2001:db8::2")));
        // Without brackets there is no port on IPv6: this is the address
        // ::1:80, not ::1 port 80.
        assert_eq!(run("10.0.0.5", &["::1:80"]), Some(ip("::1:80")));
        assert_eq!(run("10.0.0.5", &["[2001:db8::1]x"]), None);
        assert_eq!(run("10.0.0.5", &["[203.0.113.7]"]), None);
    }

    #[test]
    fn ipv4_mapped_addresses_are_judged_as_ipv4() {
        // A mapped trusted peer is still trusted...
        assert_eq!(
            run("::ffff:10.0.0.5", &["203.0.113.7"]),
            Some(ip("203.0.113.7"))
        );
        // ...a mapped trusted entry is skipped...
        assert_eq!(
            run("10.0.0.5", &["203.0.113.7, [::ffff:10.0.0.3]"]),
            Some(ip("203.0.113.7"))
        );
        // ...and a mapped untrusted peer is reported as IPv4.
        assert_eq!(run("::ffff:203.0.113.9", &[]), Some(ip("203.0.113.9")));
    }
}
