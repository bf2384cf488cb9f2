//! Client request heads: parse with httparse under hard limits, and derive what the proxy
//! needs (method, target, keep-alive, cache directives, body framing). Pure: no I/O.

use crate::error::Error;

/// Bounds on what a client may send in a request head.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Whole head, request line to blank line; more is 431 (or 414 if the line alone is).
    pub max_head: usize,
    /// Request target length; more is 414.
    pub max_uri: usize,
    /// Header fields; more is 431.
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head: 16 * 1024,
            max_uri: 8 * 1024,
            max_headers: 64,
        }
    }
}

/// Upper bound for `max_headers`: the parser's stack array.
pub const HEADER_ARRAY: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Other(String),
}

impl Method {
    pub fn as_str(&self) -> &str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Other(m) => m,
        }
    }
}

/// One header field as received (name case kept, value raw bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: Vec<u8>,
}

/// How the request body (if any) is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestBody {
    None,
    Length(u64),
    Chunked,
}

/// A parsed request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub method: Method,
    pub target: String,
    /// Minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    pub headers: Vec<Header>,
    /// Whether the connection stays open after this exchange.
    pub keep_alive: bool,
    /// `Cache-Control: no-cache` (or `Pragma: no-cache`): refetch even if stored.
    pub no_cache: bool,
    /// `Cache-Control: only-if-cached`: never fetch.
    pub only_if_cached: bool,
    pub body: RequestBody,
}

impl RequestHead {
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_slice())
    }

    /// Whether the client waits for `100 Continue` before sending its body (`Expect:
    /// 100-continue`; an HTTP/1.0 client is never sent a 1xx, RFC 9110 10.1.1).
    pub fn expects_continue(&self) -> bool {
        self.version >= 1
            && self
                .header("expect")
                .is_some_and(|v| v.trim_ascii().eq_ignore_ascii_case(b"100-continue"))
    }
}

/// The interim response a client that expects it gets before sending its body.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Parses one request head from the front of `buf`. `Ok(None)`: not enough bytes yet;
/// `Ok(Some((head, consumed)))`: the head and how many bytes it took.
pub fn parse_request_head(
    buf: &[u8],
    limits: &Limits,
) -> Result<Option<(RequestHead, usize)>, Error> {
    let mut storage = [httparse::EMPTY_HEADER; HEADER_ARRAY];
    let slots = limits.max_headers.min(HEADER_ARRAY);
    let mut req = httparse::Request::new(&mut storage[..slots]);
    let consumed = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return check_partial(buf, limits).map(|()| None);
        }
        Err(httparse::Error::TooManyHeaders) => return Err(Error::HeadTooLarge),
        Err(httparse::Error::Version) => return Err(Error::BadRequest("unsupported HTTP version")),
        Err(_) => return Err(Error::BadRequest("malformed request head")),
    };
    if consumed > limits.max_head {
        return Err(Error::HeadTooLarge);
    }
    let target = req.path.unwrap_or_default();
    if target.len() > limits.max_uri {
        return Err(Error::UriTooLong);
    }
    let version = req.version.unwrap_or(1);
    let method = match req.method.unwrap_or_default() {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        other => Method::Other(other.to_string()),
    };

    let mut headers = Vec::with_capacity(req.headers.len());
    let mut conn_close = false;
    let mut conn_keep_alive = false;
    let mut no_cache = false;
    let mut only_if_cached = false;
    let mut content_length: Option<u64> = None;
    let mut transfer_codings = 0usize;
    let mut transfer_encoding_header = false;
    let mut last_coding_chunked = false;
    let mut other_coding = false;
    let mut framing_named_by_connection = false;
    let mut host_count = 0;
    for h in req.headers.iter() {
        let name = h.name;
        let value = h.value;
        if name.eq_ignore_ascii_case("connection") || name.eq_ignore_ascii_case("proxy-connection")
        {
            for token in tokens(value) {
                conn_close |= token.eq_ignore_ascii_case("close");
                conn_keep_alive |= token.eq_ignore_ascii_case("keep-alive");
                framing_named_by_connection |= token.eq_ignore_ascii_case("content-length")
                    || token.eq_ignore_ascii_case("transfer-encoding");
            }
        } else if name.eq_ignore_ascii_case("cache-control") {
            for token in tokens(value) {
                no_cache |= token.eq_ignore_ascii_case("no-cache");
                only_if_cached |= token.eq_ignore_ascii_case("only-if-cached");
            }
        } else if name.eq_ignore_ascii_case("pragma") {
            no_cache |= tokens(value).any(|t| t.eq_ignore_ascii_case("no-cache"));
        } else if name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(value)
                .ok()
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or(Error::BadRequest("invalid Content-Length"))?;
            if content_length.is_some_and(|prev| prev != n) {
                return Err(Error::BadRequest("conflicting Content-Length"));
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_encoding_header = true;
            for coding in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                if coding.is_empty() {
                    continue;
                }
                transfer_codings += 1;
                last_coding_chunked = coding.eq_ignore_ascii_case(b"chunked");
                other_coding |= !last_coding_chunked;
            }
        } else if name.eq_ignore_ascii_case("host") {
            host_count += 1;
        }
        headers.push(Header {
            name: name.to_string(),
            value: value.to_vec(),
        });
    }
    if host_count > 1 {
        return Err(Error::BadRequest("more than one Host header"));
    }
    // Removing a framing header because Connection names it would leave the body unframed
    // (a smuggled request for the next hop): refuse instead.
    if framing_named_by_connection {
        return Err(Error::BadRequest(
            "Connection names Content-Length or Transfer-Encoding",
        ));
    }
    // RFC 9112 6.1 and 6.3: only chunked, exactly once and last, frames a request body; an
    // HTTP/1.0 message with Transfer-Encoding has faulty framing.
    let chunked = transfer_encoding_header;
    if chunked && (version == 0 || !last_coding_chunked || transfer_codings != 1) {
        return Err(if other_coding && last_coding_chunked && version == 1 {
            Error::NotImplemented("transfer codings other than chunked")
        } else {
            Error::BadRequest("invalid Transfer-Encoding")
        });
    }
    // A request with both framings is a smuggling attempt (RFC 9112 6.1): refuse it.
    let body = match (chunked, content_length) {
        (true, Some(_)) => {
            return Err(Error::BadRequest(
                "both Transfer-Encoding and Content-Length",
            ))
        }
        (true, None) => RequestBody::Chunked,
        (false, Some(0)) | (false, None) => RequestBody::None,
        (false, Some(n)) => RequestBody::Length(n),
    };
    let keep_alive = if version == 0 {
        conn_keep_alive && !conn_close
    } else {
        !conn_close
    };
    Ok(Some((
        RequestHead {
            method,
            target: target.to_string(),
            version,
            headers,
            keep_alive,
            no_cache,
            only_if_cached,
            body,
        },
        consumed,
    )))
}

/// A partial head is fine until it outgrows the limits; then say which limit.
fn check_partial(buf: &[u8], limits: &Limits) -> Result<(), Error> {
    let line_end = buf.iter().position(|&b| b == b'\n');
    match line_end {
        None if buf.len() > limits.max_uri + 32 => Err(Error::UriTooLong),
        _ if buf.len() >= limits.max_head => Err(Error::HeadTooLarge),
        _ => Ok(()),
    }
}

/// Comma-separated tokens of a header value, trimmed, empty ones skipped.
pub fn tokens(value: &[u8]) -> impl Iterator<Item = &str> {
    std::str::from_utf8(value)
        .unwrap_or("")
        .split(',')
        .map(|t| t.split(';').next().unwrap_or("").trim())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Option<(RequestHead, usize)>, Error> {
        parse_request_head(s.as_bytes(), &Limits::default())
    }

    fn head(s: &str) -> RequestHead {
        parse(s).expect("parses").expect("complete").0
    }

    #[test]
    fn absolute_get_with_keep_alive_defaults() {
        let raw = "GET http://example.com/a HTTP/1.1\r\nHost: example.com\r\n\r\nGET";
        let (h, n) = parse(raw).unwrap().unwrap();
        assert_eq!(
            n,
            raw.len() - 3,
            "pipelined bytes are left for the next parse"
        );
        assert_eq!(h.method, Method::Get);
        assert_eq!(h.target, "http://example.com/a");
        assert!(h.keep_alive);
        assert_eq!(h.body, RequestBody::None);
        assert_eq!(h.header("HOST"), Some(&b"example.com"[..]));

        assert!(!head("GET / HTTP/1.1\r\nConnection: close\r\n\r\n").keep_alive);
        assert!(!head("GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(head("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
        assert_eq!(head("HEAD / HTTP/1.1\r\n\r\n").method, Method::Head);
        assert_eq!(
            head("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n").body,
            RequestBody::Length(5)
        );
    }

    #[test]
    fn cache_directives() {
        let h = head("GET / HTTP/1.1\r\nCache-Control: max-age=0, no-cache\r\n\r\n");
        assert!(h.no_cache && !h.only_if_cached);
        let h = head("GET / HTTP/1.1\r\nCache-Control: only-if-cached\r\n\r\n");
        assert!(h.only_if_cached && !h.no_cache);
        assert!(head("GET / HTTP/1.1\r\nPragma: no-cache\r\n\r\n").no_cache);
    }

    #[test]
    fn partial_is_not_an_error() {
        assert_eq!(parse("GET http://x/ HTTP/1.1\r\nHost: x\r\n"), Ok(None));
        assert_eq!(parse(""), Ok(None));
    }

    #[test]
    fn limits() {
        let long_uri = format!("GET http://x/{} HTTP/1.1\r\n\r\n", "a".repeat(9000));
        assert_eq!(parse(&long_uri), Err(Error::UriTooLong));
        let partial_long_uri = format!("GET http://x/{}", "a".repeat(9000));
        assert_eq!(parse(&partial_long_uri), Err(Error::UriTooLong));
        let many: String = (0..70).map(|i| format!("X-{i}: v\r\n")).collect();
        assert_eq!(
            parse(&format!("GET / HTTP/1.1\r\n{many}\r\n")),
            Err(Error::HeadTooLarge)
        );
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n", "v".repeat(17000));
        assert_eq!(parse(&big), Err(Error::HeadTooLarge));
    }

    #[test]
    fn malformed_and_smuggling() {
        assert!(matches!(
            parse("GARBAGE\r\n\r\n"),
            Err(Error::BadRequest(_))
        ));
        assert!(matches!(
            parse("GET / HTTP/2.0\r\n\r\n"),
            Err(Error::BadRequest(_))
        ));
        assert!(matches!(
            parse("GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(Error::BadRequest(_))
        ));
        assert!(matches!(
            parse("GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            Err(Error::BadRequest(_))
        ));
        assert!(matches!(
            parse("GET / HTTP/1.1\r\nContent-Length: +1\r\n\r\n"),
            Err(Error::BadRequest(_))
        ));
        assert!(matches!(
            parse("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            Err(Error::BadRequest(_))
        ));
    }

    #[test]
    fn framing_headers_named_by_connection_are_refused() {
        for raw in [
            "POST / HTTP/1.1\r\nConnection: Content-Length\r\nContent-Length: 5\r\n\r\n",
            "POST / HTTP/1.1\r\nConnection: close, transfer-encoding\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET / HTTP/1.1\r\nProxy-Connection: content-length\r\n\r\n",
        ] {
            assert!(matches!(parse(raw), Err(Error::BadRequest(_))), "{raw:?}");
        }
    }

    #[test]
    fn only_a_single_final_chunked_coding_frames_a_body() {
        let chunked = "POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n";
        assert_eq!(head(chunked).body, RequestBody::Chunked);
        for raw in [
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: \r\nContent-Length: 3\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: ,\r\n\r\n",
        ] {
            assert!(matches!(parse(raw), Err(Error::BadRequest(_))), "{raw:?}");
        }
        assert!(matches!(
            parse("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            Err(Error::NotImplemented(_))
        ));
    }
}
