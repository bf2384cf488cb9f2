//! The PROXY protocol (v1 text, v2 binary; parsed by `ppp`): a load balancer in
//! `--proxy-protocol-from` opens each connection with a header naming the client it connects
//! for, and that client, not the balancer, is who the request is from.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use monoio::buf::IoBufMut;
use monoio::io::AsyncReadRent;
use ppp::{v1, v2, HeaderResult, PartialResult};

use crate::proxy::client_conn::ClientConn;

/// Longest header accepted: v1 is at most 107 bytes; v2 carries optional TLVs.
const MAX_HEADER: usize = 4096;

/// What the start of a connection holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// More bytes are needed.
    Incomplete,
    /// Not a PROXY header (or one too long).
    Invalid,
    /// A header of `len` bytes naming `client` (`None` for a LOCAL or UNKNOWN header: the
    /// balancer's own connection, a health check).
    Header { len: usize, client: Option<IpAddr> },
}

/// How each version's header begins.
const V1_PREFIX: &[u8] = b"PROXY ";
const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";
/// The longest v1 header, its CRLF included.
const V1_MAX: usize = 107;

pub fn parse(data: &[u8]) -> Parsed {
    // Bytes that cannot begin a header are refused at once (the parser would wait for more).
    let begins = |prefix: &[u8]| {
        let n = data.len().min(prefix.len());
        data[..n] == prefix[..n]
    };
    if !begins(V1_PREFIX) && !begins(V2_SIGNATURE) {
        return Parsed::Invalid;
    }
    let result = HeaderResult::parse(data);
    // A v1 header is one line of at most 107 bytes: past its end, nothing more can help.
    let v1_line_over = data.starts_with(V1_PREFIX)
        && (data.windows(2).any(|w| w == b"\r\n") || data.len() >= V1_MAX);
    if result.is_incomplete() {
        return if data.len() >= MAX_HEADER || v1_line_over {
            Parsed::Invalid
        } else {
            Parsed::Incomplete
        };
    }
    let (len, client) = match result {
        HeaderResult::V1(Ok(h)) => (
            h.header.len(),
            match h.addresses {
                v1::Addresses::Tcp4(a) => Some(IpAddr::V4(a.source_address)),
                v1::Addresses::Tcp6(a) => Some(IpAddr::V6(a.source_address)),
                v1::Addresses::Unknown => None,
            },
        ),
        HeaderResult::V2(Ok(h)) => (
            h.len(),
            match h.addresses {
                v2::Addresses::IPv4(a) => Some(IpAddr::V4(a.source_address)),
                v2::Addresses::IPv6(a) => Some(IpAddr::V6(a.source_address)),
                v2::Addresses::Unspecified | v2::Addresses::Unix(_) => None,
            },
        ),
        _ => return Parsed::Invalid,
    };
    if len > MAX_HEADER || len > data.len() {
        return Parsed::Invalid;
    }
    Parsed::Header { len, client }
}

/// Reads the header a balancer sends first, within `wait`: the client it names and what was
/// read after it (the start of the first request).
pub async fn read(
    stream: &mut ClientConn,
    wait: Duration,
) -> Result<(Option<IpAddr>, Vec<u8>), &'static str> {
    let deadline = Instant::now() + wait;
    let mut buf: Vec<u8> = Vec::with_capacity(512);
    loop {
        match parse(&buf) {
            Parsed::Header { len, client } => return Ok((client, buf.split_off(len))),
            Parsed::Invalid => return Err("not a PROXY protocol header"),
            Parsed::Incomplete => {}
        }
        if buf.capacity() - buf.len() < 256 {
            buf.reserve(512);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let owned = std::mem::take(&mut buf);
        let len = owned.len();
        let cap = owned.capacity().min(len + MAX_HEADER);
        match monoio::time::timeout(left, stream.read(owned.slice_mut(len..cap))).await {
            Ok((Ok(n), slice)) if n > 0 => buf = slice.into_inner(),
            Ok(_) => return Err("closed before a PROXY protocol header"),
            Err(_) => return Err("no PROXY protocol header in time"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_and_v2_headers_name_the_client_and_what_follows_is_the_request() {
        let v1 = b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 8080\r\nGET http://a/ HTTP/1.1\r\n";
        let Parsed::Header { len, client } = parse(v1) else {
            panic!("{:?}", parse(v1));
        };
        assert_eq!(client, Some("192.0.2.7".parse().unwrap()));
        assert!(v1[len..].starts_with(b"GET "));
        assert_eq!(parse(&v1[..20]), Parsed::Incomplete);
        assert_eq!(
            parse(b"PROXY UNKNOWN\r\n"),
            Parsed::Header {
                len: 15,
                client: None
            }
        );
        let mut v2 = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        v2.extend_from_slice(&[0x21, 0x11, 0, 12]);
        v2.extend_from_slice(&[203, 0, 113, 9, 127, 0, 0, 1, 0x9c, 0x40, 0x1f, 0x90]);
        let whole = v2.len();
        v2.extend_from_slice(b"GET");
        assert_eq!(
            parse(&v2),
            Parsed::Header {
                len: whole,
                client: Some("203.0.113.9".parse().unwrap())
            }
        );
        assert_eq!(parse(&v2[..10]), Parsed::Incomplete);
        assert_eq!(parse(b"GET http://a/ HTTP/1.1\r\n\r\n"), Parsed::Invalid);
        assert_eq!(parse(b"PROXY TCP4 nonsense\r\n"), Parsed::Invalid);
    }
}
