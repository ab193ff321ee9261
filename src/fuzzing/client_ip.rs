//! The client address from the TCP peer and `X-Forwarded-For`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use http::HeaderValue;
use ipnet::IpNet;

use crate::policy::client_ip::client_ip;

use super::input;

/// Peers to choose from: trusted IPv4, untrusted IPv4, trusted IPv6,
/// and a trusted IPv4 seen on a dual-stack socket as IPv4-mapped IPv6.
const PEERS: [IpAddr; 4] = [
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
    IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)),
    IpAddr::V6(Ipv6Addr::LOCALHOST),
    IpAddr::V6(Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0x0a00, 0x0001)),
];

/// The first byte picks the TCP peer; every following line is one
/// `X-Forwarded-For` header line (lines no header can carry are left
/// out, as hyper would never deliver them). The answer must equal a
/// model's right-to-left walk (README "Client address"): an untrusted
/// peer is the client; otherwise the rightmost entry that is not a
/// trusted proxy, unknown (`None`) if that entry or one right of it is
/// malformed, the leftmost when all are trusted. An address is never
/// returned as IPv4-mapped IPv6.
pub fn forwarded_for(data: &[u8]) {
    let (flags, rest) = input::flags(data);
    let peer = PEERS[usize::from(flags) % PEERS.len()];
    let lines: Vec<HeaderValue> = if rest.is_empty() {
        Vec::new()
    } else {
        rest.split(|&b| b == b'\n')
            .filter_map(|line| HeaderValue::from_bytes(line).ok())
            .collect()
    };
    let trusted = trusted();
    let got = client_ip(peer, lines.iter(), &trusted);
    assert_eq!(
        got,
        model(peer, &lines, &trusted),
        "peer {peer}, X-Forwarded-For {lines:?}"
    );
    if let Some(IpAddr::V6(v6)) = got {
        assert!(
            v6.to_ipv4_mapped().is_none(),
            "{v6} should be judged as IPv4"
        );
    }
}

fn trusted() -> Vec<IpNet> {
    ["10.0.0.0/8", "::1/128", "192.168.0.0/16"]
        .iter()
        .map(|n| n.parse().expect("literal"))
        .collect()
}

fn model(peer: IpAddr, lines: &[HeaderValue], trusted: &[IpNet]) -> Option<IpAddr> {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let peer = peer.to_canonical();
    if !is_trusted(&peer) || lines.is_empty() {
        return Some(peer);
    }
    // Every entry left to right; `None` for a malformed one.
    let mut entries: Vec<Option<IpAddr>> = Vec::new();
    for line in lines {
        match line.to_str() {
            Err(_) => entries.push(None),
            Ok(line) => entries.extend(
                line.split(',')
                    .map(|e| e.trim_matches([' ', '\t']))
                    .filter(|e| !e.is_empty())
                    .map(entry),
            ),
        }
    }
    for e in entries.iter().rev() {
        match e {
            None => return None,
            Some(ip) if !is_trusted(ip) => return Some(*ip),
            Some(_) => {}
        }
    }
    entries.first().copied().flatten()
}

/// `v4`, `v4:port`, `v6`, `[v6]`, `[v6]:port`; a port is 1 to 5 digits.
fn entry(e: &str) -> Option<IpAddr> {
    let port_ok = |p: &str| {
        (1..=5).contains(&p.len())
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u16>().is_ok()
    };
    let ip = match e.strip_prefix('[') {
        Some(bracketed) => {
            let close = bracketed.find(']')?;
            let after = &bracketed[close + 1..];
            if !after.is_empty() && !after.strip_prefix(':').is_some_and(port_ok) {
                return None;
            }
            IpAddr::V6(bracketed[..close].parse().ok()?)
        }
        None => match e.parse::<IpAddr>() {
            Ok(ip) => ip,
            Err(_) => {
                let colon = e.find(':')?;
                if !port_ok(&e[colon + 1..]) {
                    return None;
                }
                IpAddr::V4(e[..colon].parse().ok()?)
            }
        },
    };
    Some(ip.to_canonical())
}
