//! The PROXY protocol header an L4 load balancer sends before anything
//! else on a connection (HAProxy's proxy-protocol.txt: v1 text, v2
//! binary), read before the TLS handshake or the first HTTP byte.
//!
//! The bytes are parsed by the `ppp` crate; what is read is decided here:
//! exactly the header's bytes (peeked, then taken), so the ClientHello or
//! request behind it stays in the socket; at most `V1_MAX` or `V2_MAX`
//! bytes, within the caller's deadline.

use std::net::{IpAddr, SocketAddr};

use ppp::{v1, v2};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::config::ProxyProtocolMode;

/// The v2 header's first twelve bytes.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// The v1 header's first six bytes.
const V1_SIGNATURE: &[u8; 6] = b"PROXY ";
/// The longest v1 header, CRLF included (proxy-protocol.txt §2.1).
pub(crate) const V1_MAX: usize = 107;
/// The fixed part of a v2 header, before its addresses and TLVs.
const V2_FIXED: usize = 16;
/// The longest v2 header accepted: the largest address block (AF_UNIX,
/// 216 bytes) and room for TLVs (AWS's VPC endpoint ID, Azure's link ID,
/// HAProxy's SSL ones). The format allows 64 KiB; nothing needs that.
pub(crate) const V2_MAX: usize = 4096;
/// How much is peeked at once: a whole v1 header, or a v2 header's
/// fixed part and addresses.
const PEEK: usize = 512;

/// Why a connection was closed before its header was read; `reason` is the
/// `gisgate_proxy_protocol_errors_total` label.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProxyHeaderError {
    #[error("a PROXY header from a peer not in server.proxy_protocol_from")]
    UntrustedPeer,
    #[error("no PROXY header where one is required")]
    Missing,
    #[error("a malformed or truncated PROXY header")]
    Malformed,
    #[error("no complete PROXY header within limits.header_read_timeout")]
    Timeout,
    #[error("a PROXY header of a version or kind not accepted")]
    Unsupported,
    #[error("the connection failed while its PROXY header was read")]
    Io,
}

impl ProxyHeaderError {
    pub fn reason(&self) -> &'static str {
        match self {
            ProxyHeaderError::UntrustedPeer => "untrusted_peer",
            ProxyHeaderError::Missing => "missing",
            ProxyHeaderError::Malformed => "malformed",
            ProxyHeaderError::Timeout => "timeout",
            ProxyHeaderError::Unsupported => "unsupported",
            ProxyHeaderError::Io => "io",
        }
    }
}

/// How far the bytes seen so far go.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Extent {
    /// The header is this many bytes.
    Complete(usize),
    /// Every byte seen belongs to the header, which is not complete yet.
    Incomplete,
}

/// Reads the header off `tcp` and returns the client's address it carries;
/// `None` when it carries none (v2 LOCAL, a balancer's own health check;
/// v1 UNKNOWN; v2 AF_UNSPEC): the TCP peer is then the client. The caller
/// bounds the time this takes.
pub(super) async fn read_header(
    tcp: &mut TcpStream,
    mode: ProxyProtocolMode,
) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let mut header = Vec::new();
    let mut window = [0u8; PEEK];
    loop {
        let peeked = tcp
            .peek(&mut window)
            .await
            .map_err(|_| ProxyHeaderError::Io)?;
        if peeked == 0 {
            // The peer closed (or half-closed) before a whole header.
            return Err(match header.is_empty() {
                true => ProxyHeaderError::Missing,
                false => ProxyHeaderError::Malformed,
            });
        }
        let seen = header.len();
        header.extend_from_slice(&window[..peeked]);
        // Only the header's own bytes are taken from the socket; each
        // round takes at least one, so a peer cannot make this spin.
        let complete = match extent(&header, mode)? {
            Extent::Complete(len) => {
                header.truncate(len);
                true
            }
            Extent::Incomplete => false,
        };
        tcp.read_exact(&mut header[seen..])
            .await
            .map_err(|_| ProxyHeaderError::Io)?;
        if complete {
            return parse(&header);
        }
    }
}

/// Where the header in `bytes` (its start, as read so far) ends, or why
/// it cannot be one. Decided on the first bytes: v2 starts with CR, v1
/// with `P`; an HTTP request or a TLS ClientHello starts with neither
/// signature.
pub(crate) fn extent(bytes: &[u8], mode: ProxyProtocolMode) -> Result<Extent, ProxyHeaderError> {
    let Some(&first) = bytes.first() else {
        return Ok(Extent::Incomplete);
    };
    if first == V2_SIGNATURE[0] {
        if !is_prefix(V2_SIGNATURE, bytes) {
            return Err(ProxyHeaderError::Missing);
        }
        // Whether it is a header at all is known only with the whole
        // signature: the verdict must not depend on how bytes arrive.
        if bytes.len() < V2_SIGNATURE.len() {
            return Ok(Extent::Incomplete);
        }
        if !mode.accepts_v2() {
            return Err(ProxyHeaderError::Unsupported);
        }
        if bytes.len() < V2_FIXED {
            return Ok(Extent::Incomplete);
        }
        let len = V2_FIXED + usize::from(u16::from_be_bytes([bytes[14], bytes[15]]));
        if len > V2_MAX {
            return Err(ProxyHeaderError::Malformed);
        }
        return Ok(match bytes.len() >= len {
            true => Extent::Complete(len),
            false => Extent::Incomplete,
        });
    }
    if !is_prefix(V1_SIGNATURE, bytes) {
        return Err(ProxyHeaderError::Missing);
    }
    if bytes.len() < V1_SIGNATURE.len() {
        return Ok(Extent::Incomplete);
    }
    if !mode.accepts_v1() {
        return Err(ProxyHeaderError::Unsupported);
    }
    let seen = &bytes[..bytes.len().min(V1_MAX)];
    match seen.windows(2).position(|w| w == b"\r\n") {
        Some(at) => Ok(Extent::Complete(at + 2)),
        None if bytes.len() >= V1_MAX => Err(ProxyHeaderError::Malformed),
        None => Ok(Extent::Incomplete),
    }
}

/// Whether `bytes` starts with `signature`, or with its beginning when
/// shorter.
fn is_prefix(signature: &[u8], bytes: &[u8]) -> bool {
    let n = signature.len().min(bytes.len());
    signature[..n] == bytes[..n]
}

/// The client's address in a complete header (see [`read_header`]).
pub(crate) fn parse(header: &[u8]) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    if header.starts_with(V2_SIGNATURE) {
        parse_v2(header)
    } else {
        parse_v1(header)
    }
}

fn parse_v1(header: &[u8]) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let text = std::str::from_utf8(header).map_err(|_| ProxyHeaderError::Malformed)?;
    let parsed = v1::Header::try_from(text).map_err(|_| ProxyHeaderError::Malformed)?;
    Ok(match parsed.addresses {
        v1::Addresses::Tcp4(a) => Some(client(a.source_address.into(), a.source_port)),
        v1::Addresses::Tcp6(a) => Some(client(a.source_address.into(), a.source_port)),
        // The balancer does not know (proxy-protocol.txt §2.1): the TCP
        // peer's address is used.
        v1::Addresses::Unknown => None,
    })
}

fn parse_v2(header: &[u8]) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let parsed = v2::Header::try_from(header).map_err(|e| match e {
        v2::ParseError::Version(_) | v2::ParseError::Command(_) => ProxyHeaderError::Unsupported,
        _ => ProxyHeaderError::Malformed,
    })?;
    // TLVs are not used, but must be well formed (§2.2.7).
    if parsed.tlvs().any(|tlv| tlv.is_err()) {
        return Err(ProxyHeaderError::Malformed);
    }
    if parsed.command == v2::Command::Local {
        // The balancer's own connection (a health check): §2.2 has the
        // receiver use the real connection endpoints.
        return Ok(None);
    }
    match parsed.addresses {
        v2::Addresses::IPv4(a) => Ok(Some(client(a.source_address.into(), a.source_port))),
        v2::Addresses::IPv6(a) => Ok(Some(client(a.source_address.into(), a.source_port))),
        v2::Addresses::Unspecified => Ok(None),
        // No IP address to decide on: fail closed rather than let the
        // balancer's own address stand for a client.
        v2::Addresses::Unix(_) => Err(ProxyHeaderError::Unsupported),
    }
}

/// An IPv4-mapped IPv6 source is the IPv4 client it maps.
fn client(ip: IpAddr, port: u16) -> SocketAddr {
    SocketAddr::new(ip.to_canonical(), port)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use ProxyProtocolMode::{Any, V1, V2};

    /// A v2 header: version 2, `command` (0 LOCAL, 1 PROXY), `family`
    /// (0x11 TCP over IPv4, 0x21 over IPv6, 0x00 AF_UNSPEC), then
    /// `body` (addresses and TLVs).
    pub(crate) fn v2_header(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x20 | command);
        h.push(family);
        h.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
        h.extend_from_slice(body);
        h
    }

    /// IPv4 addresses block: 192.0.2.7:40000 -> 198.51.100.1:443.
    pub(crate) fn v4_body() -> Vec<u8> {
        let mut b = vec![192, 0, 2, 7, 198, 51, 100, 1];
        b.extend_from_slice(&40000u16.to_be_bytes());
        b.extend_from_slice(&443u16.to_be_bytes());
        b
    }

    fn read(bytes: &[u8], mode: ProxyProtocolMode) -> Result<Option<SocketAddr>, ProxyHeaderError> {
        match extent(bytes, mode)? {
            Extent::Complete(n) => parse(&bytes[..n]),
            Extent::Incomplete => Err(ProxyHeaderError::Malformed),
        }
    }

    fn addr(s: &str) -> Option<SocketAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn a_v1_header_carries_the_client_address_and_ends_at_its_crlf() {
        let h = b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 443\r\nGET / HTTP/1.1\r\n";
        assert_eq!(extent(h, V1), Ok(Extent::Complete(45)));
        assert_eq!(read(h, V1), Ok(addr("192.0.2.7:40000")));
        assert_eq!(read(h, Any), Ok(addr("192.0.2.7:40000")));
        let h6 = b"PROXY TCP6 2001:db8::7 2001:db8::1 40000 443\r\n";
        assert_eq!(read(h6, V1), Ok(addr("[2001:db8::7]:40000")));
    }

    #[test]
    fn v1_unknown_means_the_tcp_peer() {
        assert_eq!(read(b"PROXY UNKNOWN\r\n", V1), Ok(None));
        assert_eq!(
            read(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", Any),
            Ok(None)
        );
    }

    #[test]
    fn a_v2_header_carries_ipv4_or_ipv6_and_its_tlvs_are_skipped() {
        let h = v2_header(1, 0x11, &v4_body());
        assert_eq!(extent(&h, V2), Ok(Extent::Complete(28)));
        assert_eq!(read(&h, V2), Ok(addr("192.0.2.7:40000")));
        let mut body = Vec::new();
        body.extend_from_slice(
            &"2001:db8::7"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        body.extend_from_slice(
            &"2001:db8::1"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets(),
        );
        body.extend_from_slice(&[0x9c, 0x40, 0x01, 0xbb]);
        // PP2_TYPE_AUTHORITY "gis.example" and a NOOP.
        body.extend_from_slice(&[0x02, 0x00, 0x0b]);
        body.extend_from_slice(b"gis.example");
        body.extend_from_slice(&[0x04, 0x00, 0x00]);
        assert_eq!(
            read(&v2_header(1, 0x21, &body), Any),
            Ok(addr("[2001:db8::7]:40000"))
        );
    }

    #[test]
    fn v2_local_and_af_unspec_mean_the_tcp_peer() {
        assert_eq!(read(&v2_header(0, 0x00, &[]), V2), Ok(None));
        // LOCAL may still carry addresses; they are not the client's.
        assert_eq!(read(&v2_header(0, 0x11, &v4_body()), V2), Ok(None));
        assert_eq!(read(&v2_header(1, 0x00, &[]), V2), Ok(None));
    }

    #[test]
    fn the_other_version_is_unsupported_when_only_one_is_accepted() {
        let v2 = v2_header(1, 0x11, &v4_body());
        assert_eq!(read(&v2, V1), Err(ProxyHeaderError::Unsupported));
        assert_eq!(
            read(b"PROXY TCP4 192.0.2.7 198.51.100.1 1 2\r\n", V2),
            Err(ProxyHeaderError::Unsupported)
        );
        // Version 3, command 2, AF_UNIX: all refused.
        let mut v3 = v2.clone();
        v3[12] = 0x31;
        assert_eq!(read(&v3, V2), Err(ProxyHeaderError::Unsupported));
        let mut cmd = v2;
        cmd[12] = 0x22;
        assert_eq!(read(&cmd, V2), Err(ProxyHeaderError::Unsupported));
        let unix = v2_header(1, 0x31, &[0; 216]);
        assert_eq!(read(&unix, V2), Err(ProxyHeaderError::Unsupported));
    }

    #[test]
    fn a_request_or_client_hello_without_a_header_is_missing_one() {
        assert_eq!(
            extent(b"GET / HTTP/1.1\r\n", Any),
            Err(ProxyHeaderError::Missing)
        );
        assert_eq!(
            extent(&[22, 3, 1, 0, 200], Any),
            Err(ProxyHeaderError::Missing)
        );
        assert_eq!(extent(b"\r\n\r\nX", Any), Err(ProxyHeaderError::Missing));
        // `P` of POST: decided at the first byte that differs.
        assert_eq!(extent(b"PRO", Any), Ok(Extent::Incomplete));
        assert_eq!(extent(b"POST", Any), Err(ProxyHeaderError::Missing));
        // Not "unsupported" before the whole signature is seen (a fuzzer
        // found `P` refused as v1 in v2 mode, and `PROXY\`` as missing).
        assert_eq!(extent(b"PROXY", V2), Ok(Extent::Incomplete));
        assert_eq!(extent(b"POST", V2), Err(ProxyHeaderError::Missing));
        assert_eq!(extent(b"\r\n\r\n", V1), Ok(Extent::Incomplete));
    }

    #[test]
    fn truncated_headers_are_incomplete_and_overlong_ones_malformed() {
        let v2 = v2_header(1, 0x11, &v4_body());
        for n in 1..v2.len() {
            assert_eq!(extent(&v2[..n], V2), Ok(Extent::Incomplete), "{n}");
        }
        let v1 = b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 443\r\n";
        for n in 1..v1.len() {
            assert_eq!(extent(&v1[..n], V1), Ok(Extent::Incomplete), "{n}");
        }
        let long = [b"PROXY ".as_slice(), &[b'1'; 120]].concat();
        assert_eq!(extent(&long, V1), Err(ProxyHeaderError::Malformed));
        let mut huge = v2.clone();
        huge[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
        assert_eq!(extent(&huge, V2), Err(ProxyHeaderError::Malformed));
    }

    #[test]
    fn malformed_headers_are_refused() {
        for bad in [
            &b"PROXY TCP4 192.0.2.7 198.51.100.1 40000\r\n"[..],
            b"PROXY TCP4 999.0.2.7 198.51.100.1 40000 443\r\n",
            b"PROXY TCP4 192.0.2.7 198.51.100.1 040000 443\r\n",
            b"PROXY TCP5 192.0.2.7 198.51.100.1 1 2\r\n",
            b"PROXY TCP4 2001:db8::7 198.51.100.1 1 2\r\n",
            b"PROXY \r\n",
        ] {
            assert_eq!(
                read(bad, V1),
                Err(ProxyHeaderError::Malformed),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        // An address block shorter than its family's, a TLV running past
        // the end.
        let short = v2_header(1, 0x11, &v4_body()[..8]);
        assert_eq!(read(&short, V2), Err(ProxyHeaderError::Malformed));
        let mut tlv = v4_body();
        tlv.extend_from_slice(&[0x02, 0x00, 0x09, b'x']);
        assert_eq!(
            read(&v2_header(1, 0x11, &tlv), V2),
            Err(ProxyHeaderError::Malformed)
        );
    }

    /// A socket pair on loopback: what `read_header` reads, and the
    /// sending end.
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        (listener.accept().await.unwrap().0, client)
    }

    #[tokio::test]
    async fn the_bytes_after_the_header_stay_in_the_socket_however_they_arrive() {
        use tokio::io::AsyncWriteExt;
        let header = v2_header(1, 0x11, &v4_body());
        let (mut server, mut client) = pair().await;
        let sender = tokio::spawn(async move {
            // In pieces: the signature split, then the rest with the
            // request behind it in one segment.
            client.write_all(&header[..5]).await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            client.write_all(&header[5..20]).await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            let rest = [&header[20..], b"GET / HTTP/1.1\r\n"].concat();
            client.write_all(&rest).await.unwrap();
            client
        });
        assert_eq!(
            read_header(&mut server, V2).await,
            Ok(addr("192.0.2.7:40000"))
        );
        let _client = sender.await.unwrap();
        let mut after = [0u8; 16];
        server.read_exact(&mut after).await.unwrap();
        assert_eq!(&after, b"GET / HTTP/1.1\r\n");
    }

    #[tokio::test]
    async fn a_v1_header_in_pieces_is_read_to_its_crlf() {
        use tokio::io::AsyncWriteExt;
        let (mut server, mut client) = pair().await;
        let sender = tokio::spawn(async move {
            client
                .write_all(b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 443\r")
                .await
                .unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            client.write_all(b"\n\x16\x03\x01").await.unwrap();
            client
        });
        assert_eq!(
            read_header(&mut server, V1).await,
            Ok(addr("192.0.2.7:40000"))
        );
        let _client = sender.await.unwrap();
        let mut after = [0u8; 3];
        server.read_exact(&mut after).await.unwrap();
        assert_eq!(&after, b"\x16\x03\x01");
    }

    #[tokio::test]
    async fn a_peer_closing_mid_header_is_malformed_and_before_it_missing() {
        use tokio::io::AsyncWriteExt;
        let (mut server, mut client) = pair().await;
        client.write_all(b"PROXY TCP4 192.0").await.unwrap();
        drop(client);
        assert_eq!(
            read_header(&mut server, Any).await,
            Err(ProxyHeaderError::Malformed)
        );
        let (mut server, client) = pair().await;
        drop(client);
        assert_eq!(
            read_header(&mut server, Any).await,
            Err(ProxyHeaderError::Missing)
        );
    }
}
