//! The upstream HTTP/1.1 client: resolve, check the address against the upstream rules,
//! connect, send the request, and read the response exactly to the end of its framing,
//! keeping the raw bytes as received for the archive.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

use super::dns::DnsCache;
use crate::error::Error;
use crate::http::chunked::ChunkedScanner;
use crate::http::is_end_to_end;
use crate::http::request::{tokens, Header};
use crate::http::response::{parse_response_head, Framing, ResponseHead};
use crate::http::url::TargetUrl;
use crate::policy::UpstreamRules;

/// Time and size bounds for one fetch.
#[derive(Debug, Clone, Copy)]
pub struct FetchLimits {
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub fetch_timeout: Duration,
    pub max_body: u64,
}

/// A complete origin response.
#[derive(Debug)]
pub struct Fetched {
    /// Status line, headers and body exactly as received (chunked framing kept).
    pub raw: Vec<u8>,
    pub head: ResponseHead,
    pub ip: IpAddr,
}

/// A failed fetch, with the origin address when it was known (for the failure record).
#[derive(Debug)]
pub struct FetchError {
    pub error: Error,
    pub ip: Option<IpAddr>,
}

/// Smallest free space kept in the read buffer before a read.
const READ_CHUNK: usize = 64 * 1024;

/// Fetches `url` and returns the whole response.
pub async fn fetch(
    dns: &DnsCache,
    rules: &UpstreamRules,
    limits: &FetchLimits,
    url: &TargetUrl,
    client_headers: &[Header],
    user_agent: &str,
) -> Result<Fetched, FetchError> {
    let deadline = Instant::now() + limits.fetch_timeout;
    let fail = |error: Error, ip: Option<IpAddr>| FetchError { error, ip };
    let (mut stream, ip) =
        connect_upstream(dns, rules, limits, url.host_for_dns(), url.port, deadline).await?;
    let request = build_request("GET", url, client_headers, user_agent, false);
    let write = monoio::time::timeout(limits.read_timeout, stream.write_all(request)).await;
    match write {
        Err(_) => return Err(fail(Error::ReadTimeout("sending request"), Some(ip))),
        Ok((Err(e), _)) => {
            return Err(fail(
                Error::Dropped(format!("sending request: {e}")),
                Some(ip),
            ))
        }
        Ok((Ok(_), _)) => {}
    }
    let (raw, head) = read_response(&mut stream, limits, deadline)
        .await
        .map_err(|e| fail(e, Some(ip)))?;
    Ok(Fetched { raw, head, ip })
}

/// Resolves `host` off the worker, keeps the addresses the upstream rules allow (checked
/// after resolution, so a name cannot smuggle a private address past them), and connects to
/// the first that answers.
pub async fn connect_upstream(
    dns: &DnsCache,
    rules: &UpstreamRules,
    limits: &FetchLimits,
    host: &str,
    port: u16,
    deadline: Instant,
) -> Result<(TcpStream, IpAddr), FetchError> {
    let fail = |error: Error, ip: Option<IpAddr>| FetchError { error, ip };
    let left = deadline.saturating_duration_since(Instant::now());
    let addrs = dns
        .resolve(host, limits.connect_timeout.min(left))
        .await
        .map_err(|e| fail(e, None))?;
    let allowed: Vec<IpAddr> = addrs
        .iter()
        .copied()
        .filter(|ip| rules.allows(*ip))
        .collect();
    if allowed.is_empty() {
        let shown = addrs.first().map(|ip| ip.to_string()).unwrap_or_default();
        return Err(fail(Error::AddressNotAllowed(shown), None));
    }
    connect_any(&allowed, port, limits, deadline)
        .await
        .map_err(|(e, ip)| fail(e, ip))
}

/// Tries each address in turn; the last failure is reported.
async fn connect_any(
    addrs: &[IpAddr],
    port: u16,
    limits: &FetchLimits,
    deadline: Instant,
) -> Result<(TcpStream, IpAddr), (Error, Option<IpAddr>)> {
    let mut last = (Error::ConnectTimeout, None);
    for &ip in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let wait = limits.connect_timeout.min(left);
        let addr = SocketAddr::new(ip, port);
        match monoio::time::timeout(wait, TcpStream::connect_addr(addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Ok((stream, ip));
            }
            Ok(Err(e)) => last = (Error::Refused(format!("{addr}: {e}")), Some(ip)),
            Err(_) => last = (Error::ConnectTimeout, Some(ip)),
        }
    }
    Err(last)
}

/// The upstream request head: `<METHOD> <path> HTTP/1.1`, Host from the URL (RFC 9112
/// 3.2.2: a proxy replaces the Host of an absolute-form request with the URL's), the client's
/// end-to-end headers, a User-Agent if the client sent none, `Via`, and `Connection: close`
/// (one request per upstream connection for now). `Expect` is not forwarded (liveweb answers
/// `100 Continue` itself); a chunked request body is declared again (Transfer-Encoding is
/// hop-by-hop).
pub fn build_request(
    method: &str,
    url: &TargetUrl,
    client_headers: &[Header],
    user_agent: &str,
    chunked_body: bool,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(url.path_and_query.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(url.host_header().as_bytes());
    out.extend_from_slice(b"\r\n");
    let named_by_connection: Vec<&str> = client_headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .flat_map(|h| tokens(&h.value))
        .collect();
    let mut has_user_agent = false;
    for h in client_headers {
        let skip = h.name.eq_ignore_ascii_case("host")
            || h.name.eq_ignore_ascii_case("expect")
            || !is_end_to_end(&h.name, &named_by_connection);
        if skip {
            continue;
        }
        has_user_agent |= h.name.eq_ignore_ascii_case("user-agent");
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(&h.value);
        out.extend_from_slice(b"\r\n");
    }
    if !has_user_agent {
        out.extend_from_slice(b"User-Agent: ");
        out.extend_from_slice(user_agent.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if chunked_body {
        out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
    }
    out.extend_from_slice(b"Via: 1.1 liveweb\r\nConnection: close\r\n\r\n");
    out
}

/// Where the response currently stands while reading.
struct Progress {
    /// Offset of the head being parsed (past any 1xx interim responses).
    head_at: usize,
    head: Option<ResponseHead>,
    chunked: ChunkedScanner,
    /// Bytes already fed to the chunked scanner.
    scanned: usize,
}

/// Reads until the response is complete by its framing.
async fn read_response(
    stream: &mut TcpStream,
    limits: &FetchLimits,
    deadline: Instant,
) -> Result<(Vec<u8>, ResponseHead), Error> {
    let mut raw: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    let mut p = Progress {
        head_at: 0,
        head: None,
        chunked: ChunkedScanner::new(),
        scanned: 0,
    };
    loop {
        if let Some(end) = complete_at(&raw, &mut p, limits)? {
            raw.truncate(end);
            let head = p
                .head
                .take()
                .ok_or(Error::Internal("response without head"))?;
            return Ok((raw, head));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::ReadTimeout("total fetch time exceeded"));
        }
        if raw.capacity() - raw.len() < READ_CHUNK / 4 {
            raw.reserve(READ_CHUNK.max(raw.len() / 2));
        }
        let len = raw.len();
        let cap = raw.capacity();
        let read = stream.read(std::mem::take(&mut raw).slice_mut(len..cap));
        let (res, slice) = match monoio::time::timeout(limits.read_timeout.min(left), read).await {
            Ok(r) => r,
            Err(_) if len == 0 => return Err(Error::FirstByteTimeout),
            Err(_) if left <= limits.read_timeout => {
                return Err(Error::ReadTimeout("total fetch time exceeded"))
            }
            Err(_) => return Err(Error::ReadTimeout("origin went silent")),
        };
        raw = slice.into_inner();
        match res {
            Ok(0) => return finish_at_eof(raw, p),
            Ok(_) => {}
            Err(e) => return Err(Error::Dropped(e.to_string())),
        }
    }
}

/// The origin closed: complete only if the framing says the body runs until close.
fn finish_at_eof(raw: Vec<u8>, mut p: Progress) -> Result<(Vec<u8>, ResponseHead), Error> {
    match p.head.take() {
        Some(head) if head.framing == Framing::UntilClose => Ok((raw, head)),
        Some(_) => Err(Error::Dropped(
            "origin closed before the end of the body".into(),
        )),
        None if raw.is_empty() => Err(Error::Dropped("origin closed without responding".into())),
        None => Err(Error::InvalidResponse(
            "origin closed inside the response head".into(),
        )),
    }
}

/// Advances parsing over newly read bytes; `Some(end)` once the response ends at `end`.
fn complete_at(raw: &[u8], p: &mut Progress, limits: &FetchLimits) -> Result<Option<usize>, Error> {
    while p.head.is_none() {
        let Some(head) = parse_response_head(&raw[p.head_at..])? else {
            return Ok(None);
        };
        match head.status {
            101 => return Err(Error::InvalidResponse("unrequested protocol switch".into())),
            100..=199 => p.head_at += head.head_len,
            _ => {
                p.scanned = p.head_at + head.head_len;
                p.head = Some(head);
            }
        }
    }
    let Some(head) = &p.head else { return Ok(None) };
    let body_start = p.head_at + head.head_len;
    let body_len = (raw.len() - body_start) as u64;
    match head.framing {
        Framing::Empty => Ok(Some(body_start)),
        Framing::Length(n) if n > limits.max_body => Err(Error::TooBig(limits.max_body)),
        Framing::Length(n) if body_len >= n => Ok(Some(body_start + n as usize)),
        Framing::Length(_) => Ok(None),
        Framing::Chunked => {
            let fresh = &raw[p.scanned..];
            let end = p.chunked.feed(fresh)?;
            if p.chunked.payload_len > limits.max_body {
                return Err(Error::TooBig(limits.max_body));
            }
            let at = p.scanned;
            p.scanned = raw.len();
            Ok(end.map(|n| at + n))
        }
        Framing::UntilClose if body_len > limits.max_body => Err(Error::TooBig(limits.max_body)),
        Framing::UntilClose => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::url::parse_absolute;

    fn h(name: &str, value: &str) -> Header {
        Header {
            name: name.into(),
            value: value.as_bytes().to_vec(),
        }
    }

    #[test]
    fn request_strips_hop_by_hop_and_adds_user_agent() {
        let url = parse_absolute("http://Example.com:8080/a?b#c").unwrap();
        let headers = [
            h("Host", "ignored"),
            h("Accept", "*/*"),
            h("Connection", "keep-alive, X-Secret"),
            h("X-Secret", "1"),
            h("Proxy-Authorization", "Basic x"),
            h("X-Liveweb-Mode", "liveweb"),
            h("Cookie", "a=b"),
        ];
        let req =
            String::from_utf8(build_request("GET", &url, &headers, "liveweb/test", false)).unwrap();
        assert_eq!(
            req,
            "GET /a?b HTTP/1.1\r\nHost: example.com:8080\r\nAccept: */*\r\nCookie: a=b\r\nUser-Agent: liveweb/test\r\nVia: 1.1 liveweb\r\nConnection: close\r\n\r\n"
        );
        let with_ua = String::from_utf8(build_request(
            "GET",
            &url,
            &[h("User-Agent", "curl")],
            "x",
            false,
        ))
        .unwrap();
        assert!(with_ua.contains("User-Agent: curl\r\n") && !with_ua.contains("User-Agent: x"));
    }

    fn limits(max_body: u64) -> FetchLimits {
        FetchLimits {
            connect_timeout: Duration::from_secs(1),
            read_timeout: Duration::from_secs(1),
            fetch_timeout: Duration::from_secs(1),
            max_body,
        }
    }

    fn progress() -> Progress {
        Progress {
            head_at: 0,
            head: None,
            chunked: ChunkedScanner::new(),
            scanned: 0,
        }
    }

    #[test]
    fn completion_by_framing() {
        let l = limits(100);
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcEXTRA";
        assert_eq!(
            complete_at(raw, &mut progress(), &l),
            Ok(Some(raw.len() - 5))
        );
        let partial = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nab";
        assert_eq!(complete_at(partial, &mut progress(), &l), Ok(None));
        let interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n";
        assert_eq!(
            complete_at(interim, &mut progress(), &l),
            Ok(Some(interim.len()))
        );
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n";
        assert_eq!(
            complete_at(chunked, &mut progress(), &l),
            Ok(Some(chunked.len()))
        );
        let big = b"HTTP/1.1 200 OK\r\nContent-Length: 101\r\n\r\n";
        assert_eq!(
            complete_at(big, &mut progress(), &l),
            Err(Error::TooBig(100))
        );
        let close = b"HTTP/1.0 200 OK\r\n\r\nsome body";
        assert_eq!(complete_at(close, &mut progress(), &l), Ok(None));
    }
}
