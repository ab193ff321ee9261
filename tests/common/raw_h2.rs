//! One HTTP/2 request whose `:path` is any bytes at all. HTTP/2 carries
//! header values as length-prefixed bytes (HPACK), so a client can send a
//! `:path` no HTTP/1.1 request line could hold and no `http::Uri` accepts:
//! raw `#`, spaces, non-ASCII, controls, no leading `/`. Frames are written
//! by hand (RFC 9113 §3.4, §6; HPACK literals without Huffman, RFC 7541
//! §6.2.2) and the answer is read only as far as a test needs: the bytes of
//! stream 1's DATA frames, or how the stream or connection ended.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const ACK: u8 = 0x1;

/// How stream 1 ended.
#[derive(Debug)]
pub enum H2Reply {
    /// Its response ended: the status (when the server sent it in one of
    /// the simple forms `status` reads) and the DATA payloads.
    Response(Option<u16>, Vec<u8>),
    /// RST_STREAM with this error code.
    Reset(u32),
    /// GOAWAY with this error code, before the response ended.
    GoAway(u32),
}

/// GET `path` on a new connection (ALPN h2 in `config`) as `localhost`.
pub async fn raw_h2_get(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    path: &[u8],
) -> io::Result<H2Reply> {
    let exchange = async {
        let tcp = TcpStream::connect(addr).await?;
        let mut tls = TlsConnector::from(config)
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await?;
        let mut out = PREFACE.to_vec();
        frame(&mut out, SETTINGS, 0, 0, &[]);
        frame(
            &mut out,
            HEADERS,
            END_STREAM | END_HEADERS,
            1,
            &request_block(path),
        );
        tls.write_all(&out).await?;
        read_reply(&mut tls).await
    };
    tokio::time::timeout(Duration::from_secs(20), exchange)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no answer within 20 s"))?
}

/// Reads frames until stream 1 ends; acknowledges the server's SETTINGS so
/// it does not wait for us.
async fn read_reply<S>(tls: &mut S) -> io::Result<H2Reply>
where
    S: AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut body = Vec::new();
    let mut status = None;
    loop {
        let mut head = [0u8; 9];
        tls.read_exact(&mut head).await?;
        let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
        let (kind, flags) = (head[3], head[4]);
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7FFF_FFFF;
        let mut payload = vec![0u8; len];
        tls.read_exact(&mut payload).await?;
        match kind {
            SETTINGS if flags & ACK == 0 => {
                let mut ack = Vec::new();
                frame(&mut ack, SETTINGS, ACK, 0, &[]);
                tls.write_all(&ack).await?;
            }
            DATA if stream == 1 => {
                body.extend_from_slice(&payload);
                if flags & END_STREAM != 0 {
                    return Ok(H2Reply::Response(status, body));
                }
            }
            HEADERS if stream == 1 => {
                status = status.or_else(|| self::status(&payload, flags));
                if flags & END_STREAM != 0 {
                    return Ok(H2Reply::Response(status, body));
                }
            }
            RST_STREAM if stream == 1 => return Ok(H2Reply::Reset(code(&payload, 0))),
            GOAWAY => return Ok(H2Reply::GoAway(code(&payload, 4))),
            _ => {}
        }
    }
}

fn code(payload: &[u8], at: usize) -> u32 {
    payload
        .get(at..at + 4)
        .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = payload.len() as u32;
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

/// The request's header block: each field a literal without indexing, with
/// a literal name, neither Huffman-coded (RFC 7541 §6.2.2).
fn request_block(path: &[u8]) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in [
        (&b":method"[..], &b"GET"[..]),
        (b":scheme", b"https"),
        (b":authority", b"localhost"),
        (b":path", path),
    ] {
        block.push(0x00);
        string(&mut block, name);
        string(&mut block, value);
    }
    block
}

/// An HPACK string literal: 7-bit prefix length (RFC 7541 §5.1), H = 0.
fn string(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut len = bytes.len();
    if len < 127 {
        out.push(len as u8);
    } else {
        out.push(127);
        len -= 127;
        while len >= 128 {
            out.push((len % 128) as u8 | 0x80);
            len /= 128;
        }
        out.push(len as u8);
    }
    out.extend_from_slice(bytes);
}

/// The `:status` a server encodes first in a response's header block: a
/// static-table entry (RFC 7541 Appendix A, 8-14), or a literal with
/// `:status`'s name index and three digits, plain or Huffman-coded.
/// `None` for anything else (padding, priority, a dynamic-table entry).
fn status(block: &[u8], flags: u8) -> Option<u16> {
    const PADDED: u8 = 0x8;
    const PRIORITY: u8 = 0x20;
    let mut at = 0;
    if flags & PADDED != 0 || flags & PRIORITY != 0 {
        return None;
    }
    let first = *block.get(at)?;
    at += 1;
    const STATIC: [u16; 7] = [200, 204, 206, 304, 400, 404, 500];
    if first & 0x80 != 0 {
        return STATIC
            .get(usize::from(first & 0x7F).checked_sub(8)?)
            .copied();
    }
    let name = if first & 0xC0 == 0x40 {
        first & 0x3F
    } else {
        first & 0x0F
    };
    if !(8..=14).contains(&name) {
        return None;
    }
    let len_byte = *block.get(at)?;
    at += 1;
    let value = block.get(at..at + usize::from(len_byte & 0x7F))?;
    let digits = if len_byte & 0x80 != 0 {
        huffman_digits(value)
    } else {
        String::from_utf8(value.to_vec()).ok()?
    };
    digits.parse().ok()
}

/// Decodes a Huffman-coded string of digits (RFC 7541 Appendix B: `0`-`2`
/// are 5-bit codes 0-2, `3`-`9` 6-bit codes 0x19-0x1F), stopping at the
/// padding.
fn huffman_digits(bytes: &[u8]) -> String {
    let bits: Vec<u8> = bytes
        .iter()
        .flat_map(|b| (0..8).rev().map(move |i| (b >> i) & 1))
        .collect();
    let take = |from: usize, n: usize| {
        bits.get(from..from + n)
            .map(|b| b.iter().fold(0u8, |v, bit| v << 1 | bit))
    };
    let mut out = String::new();
    let mut at = 0;
    loop {
        if let Some(v @ 0..=2) = take(at, 5) {
            out.push(char::from(b'0' + v));
            at += 5;
        } else if let Some(v @ 0x19..=0x1F) = take(at, 6) {
            out.push(char::from(b'0' + v - 0x19 + 3));
            at += 6;
        } else {
            return out;
        }
    }
}

#[test]
fn huffman_digits_reads_rfc_7541_codes() {
    // "302" from RFC 7541 C.6.1: 6402.
    assert_eq!(huffman_digits(&[0x64, 0x02]), "302");
    // "307" from C.6.2: 640e ff.
    assert_eq!(huffman_digits(&[0x64, 0x0e, 0xff]), "307");
}
