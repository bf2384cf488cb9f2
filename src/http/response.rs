//! Origin response heads: parse with httparse under limits and decide how the body is framed
//! (RFC 9112 section 6). Pure: no I/O.

use super::chunked::ChunkedScanner;
use crate::error::Error;

/// Longest response head accepted from an origin.
pub const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Most header fields accepted from an origin.
pub const MAX_RESPONSE_HEADERS: usize = 128;

/// How the response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body at all (1xx, 204, 304).
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding; ends with the last chunk and trailers.
    Chunked,
    /// Until the origin closes the connection.
    UntilClose,
}

/// The parts of an origin response head liveweb uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    pub reason: String,
    /// The Content-Type value as sent, if any.
    pub content_type: Option<String>,
    pub framing: Framing,
    /// Bytes the head occupies, status line to blank line.
    pub head_len: usize,
    /// The origin will keep the connection open after this response (HTTP/1.1 without
    /// `Connection: close`, or HTTP/1.0 with `keep-alive`).
    pub keep_alive: bool,
    /// A `Via` names this node: the response came back through liveweb itself (a loop).
    pub looped: bool,
}

/// Parses a response head from the front of `buf`; `Ok(None)` means more bytes are needed.
pub fn parse_response_head(buf: &[u8]) -> Result<Option<ResponseHead>, Error> {
    let mut storage = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
    let mut resp = httparse::Response::new(&mut storage);
    let head_len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_RESPONSE_HEAD => {
            return Err(Error::InvalidResponse("response head too large".into()))
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(Error::InvalidResponse(format!("bad response head: {e}"))),
    };
    if head_len > MAX_RESPONSE_HEAD {
        return Err(Error::InvalidResponse("response head too large".into()));
    }
    let status = resp.code.unwrap_or(0);
    // httparse takes any three digits; `000`..`099` are not status codes (RFC 9110 15).
    if !(100..=999).contains(&status) {
        return Err(Error::InvalidResponse(format!(
            "status code {status:03} out of range"
        )));
    }
    let reason = resp.reason.unwrap_or("").to_string();

    let mut content_type = None;
    let mut looped = false;
    let mut content_lengths: Vec<&[u8]> = Vec::new();
    let mut transfer_codings: Vec<String> = Vec::new();
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-type") {
            content_type = Some(String::from_utf8_lossy(h.value).into_owned());
        } else if h.name.eq_ignore_ascii_case("content-length") {
            content_lengths.push(h.value);
        } else if h.name.eq_ignore_ascii_case("via") {
            looped |= super::via::names_this_node(h.value);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_codings.extend(
                String::from_utf8_lossy(h.value)
                    .split(',')
                    .map(|t| t.trim().to_ascii_lowercase())
                    .filter(|t| !t.is_empty()),
            );
        }
    }

    let mut conn_close = false;
    let mut conn_keep_alive = false;
    for h in resp
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
    {
        for t in super::request::tokens(h.value) {
            conn_close |= t.eq_ignore_ascii_case("close");
            conn_keep_alive |= t.eq_ignore_ascii_case("keep-alive");
        }
    }
    let keep_alive = match resp.version {
        Some(1) => !conn_close,
        _ => conn_keep_alive && !conn_close,
    };
    // Transfer-Encoding overrides Content-Length, whatever it says (RFC 9112 6.3; old servers
    // send `Content-Length: -1` beside chunked, and browsers render it): the length is not
    // read, the client gets the chunked framing, and the connection is not reused, since the
    // two headers disagreeing is how response splitting starts.
    let content_length = if transfer_codings.is_empty() {
        declared_length(&content_lengths)?
    } else {
        None
    };
    let keep_alive = keep_alive && (transfer_codings.is_empty() || content_lengths.is_empty());
    // Only chunked is decoded: a body under another transfer coding (gzip, compress, ...)
    // would reach a forward-mode client as different bytes with no label saying so, and
    // chunked applied twice is invalid (RFC 9112 7).
    if transfer_codings.iter().any(|c| c != "chunked") || transfer_codings.len() > 1 {
        return Err(Error::InvalidResponse(format!(
            "unsupported Transfer-Encoding {:?}",
            transfer_codings.join(", ")
        )));
    }
    let framing = if (100..200).contains(&status) || status == 204 || status == 304 {
        Framing::Empty
    } else if !transfer_codings.is_empty() {
        // Transfer-Encoding overrides Content-Length (RFC 9112 6.3).
        Framing::Chunked
    } else if let Some(n) = content_length {
        Framing::Length(n)
    } else {
        Framing::UntilClose
    };

    Ok(Some(ResponseHead {
        status,
        reason,
        content_type,
        framing,
        head_len,
        keep_alive,
        looped,
    }))
}

/// The body length the Content-Length fields declare: one value (repeats of it allowed),
/// digits only.
fn declared_length(fields: &[&[u8]]) -> Result<Option<u64>, Error> {
    let mut length = None;
    for value in fields {
        let n = std::str::from_utf8(value)
            .ok()
            .map(str::trim)
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| Error::InvalidResponse("invalid Content-Length".into()))?;
        if length.is_some_and(|prev| prev != n) {
            return Err(Error::InvalidResponse("conflicting Content-Length".into()));
        }
        length = Some(n);
    }
    Ok(length)
}

/// Splits a stored or streamed HTTP response: finds the final head (skipping 1xx interim
/// responses) in `payload`; returns the head, its parse, and where the body starts.
pub fn split_head(payload: &[u8]) -> Result<Option<(ResponseHead, usize, usize)>, Error> {
    let mut at = 0;
    loop {
        let Some(head) = parse_response_head(&payload[at..])? else {
            return Ok(None);
        };
        if (100..200).contains(&head.status) && head.status != 101 {
            at += head.head_len;
            continue;
        }
        let body_start = at + head.head_len;
        return Ok(Some((head, at, body_start)));
    }
}

/// Follows a response body by its framing, fed only the bytes that just arrived.
#[derive(Debug)]
pub struct BodyTracker {
    framing: Framing,
    /// Body bytes seen (raw, chunk framing included).
    seen: u64,
    chunks: ChunkedScanner,
}

impl BodyTracker {
    pub fn new(framing: Framing) -> Self {
        BodyTracker {
            framing,
            seen: 0,
            chunks: ChunkedScanner::new(),
        }
    }

    /// `Some(n)`: the body ends after the first `n` bytes of `data`.
    pub fn feed(&mut self, data: &[u8]) -> Result<Option<usize>, Error> {
        let end = match self.framing {
            Framing::Empty => Some(0),
            Framing::Length(n) => {
                let left = n - self.seen;
                (data.len() as u64 >= left).then_some(left as usize)
            }
            Framing::Chunked => self.chunks.feed(data)?,
            Framing::UntilClose => None,
        };
        self.seen += end.unwrap_or(data.len()) as u64;
        Ok(end)
    }

    /// Body size for the `--max-body` check: the decoded payload for chunked bodies, the
    /// declared length for Content-Length (known before it arrives), else what was seen.
    pub fn body_len(&self) -> u64 {
        match self.framing {
            Framing::Chunked => self.chunks.payload_len,
            Framing::Length(n) => n,
            _ => self.seen,
        }
    }

    /// Whether the origin closing the connection completes the body.
    pub fn ends_at_close(&self) -> bool {
        self.framing == Framing::UntilClose
    }
}

/// Follows a whole response as it arrives: the head (skipping 1xx interim responses), then
/// the body by its framing.
#[derive(Debug, Default)]
pub struct ResponseTracker {
    /// Bytes up to the end of the final head, until it is complete.
    head_buf: Vec<u8>,
    head: Option<ResponseHead>,
    body: Option<BodyTracker>,
}

impl ResponseTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next bytes; `Some(n)`: the response ends after the first `n` of them.
    pub fn feed(&mut self, data: &[u8]) -> Result<Option<usize>, Error> {
        if let Some(body) = self.body.as_mut() {
            return body.feed(data);
        }
        let before = self.head_buf.len();
        self.head_buf.extend_from_slice(data);
        let Some((head, _, body_start)) = split_head(&self.head_buf)? else {
            if self.head_buf.len() > MAX_RESPONSE_HEAD {
                return Err(Error::InvalidResponse("response head too large".into()));
            }
            return Ok(None);
        };
        if head.status == 101 {
            return Err(Error::InvalidResponse("unrequested protocol switch".into()));
        }
        let head_part = body_start - before;
        self.head_buf.truncate(body_start);
        let mut body = BodyTracker::new(head.framing);
        let end = body.feed(&data[head_part..])?;
        self.head = Some(head);
        self.body = Some(body);
        Ok(end.map(|n| head_part + n))
    }

    /// The final response head, once complete.
    pub fn head(&self) -> Option<&ResponseHead> {
        self.head.as_ref()
    }

    pub fn take_head(&mut self) -> Option<ResponseHead> {
        self.head.take()
    }

    /// Bytes before the body (interim 1xx responses included), once the head is complete.
    pub fn head_len(&self) -> Option<usize> {
        self.body.is_some().then_some(self.head_buf.len())
    }

    pub fn body_len(&self) -> u64 {
        self.body.as_ref().map_or(0, BodyTracker::body_len)
    }

    /// Whether the origin closing now leaves a complete response.
    pub fn complete_at_close(&self) -> bool {
        self.body.as_ref().is_some_and(BodyTracker::ends_at_close)
    }

    /// Whether any byte has arrived.
    pub fn started(&self) -> bool {
        !self.head_buf.is_empty()
    }
}

/// The ARC header's content-type field: `type/subtype` lowercased without parameters, or
/// `unk` when absent or not a plain token pair (the field must never contain a space).
pub fn arc_mime(content_type: Option<&str>) -> String {
    let Some(value) = content_type else {
        return "unk".into();
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    let is_token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-*'|~`".contains(&b))
    };
    match essence.split_once('/') {
        Some((t, s)) if is_token(t) && is_token(s) => essence.to_ascii_lowercase(),
        _ => "unk".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(s: &str) -> ResponseHead {
        parse_response_head(s.as_bytes())
            .expect("valid")
            .expect("complete")
    }

    #[test]
    fn framing_rules() {
        assert_eq!(
            head("HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n").framing,
            Framing::Length(12)
        );
        assert_eq!(
            head("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n")
                .framing,
            Framing::Chunked
        );
        assert_eq!(head("HTTP/1.0 200 OK\r\n\r\n").framing, Framing::UntilClose);
        assert_eq!(
            head("HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n").framing,
            Framing::Empty
        );
        assert_eq!(
            head("HTTP/1.1 204 No Content\r\n\r\n").framing,
            Framing::Empty
        );
    }

    #[test]
    fn chunked_wins_over_any_content_length_and_the_connection_is_not_reused() {
        for cl in ["-1", "3", "x", "1, 2"] {
            let raw = format!(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: {cl}\r\n\r\n"
            );
            let h = head(&raw);
            assert_eq!(h.framing, Framing::Chunked, "{cl}");
            assert!(!h.keep_alive, "{cl}");
        }
        let h = head("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert!(h.keep_alive);
        // Without Transfer-Encoding, a bad length is still refused.
        assert!(parse_response_head(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n").is_err());
    }

    #[test]
    fn keep_alive_by_version_and_connection() {
        assert!(head("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").keep_alive);
        assert!(!head("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n").keep_alive);
        assert!(!head("HTTP/1.0 200 OK\r\n\r\n").keep_alive);
        assert!(head("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
    }

    #[test]
    fn status_reason_and_length() {
        let raw = "HTTP/1.1 404 Not Found\r\nContent-Type: text/html; charset=utf-8\r\n\r\nbody";
        let h = head(raw);
        assert_eq!(h.status, 404);
        assert_eq!(h.reason, "Not Found");
        assert_eq!(h.head_len, raw.len() - 4);
        assert_eq!(h.content_type.as_deref(), Some("text/html; charset=utf-8"));
    }

    #[test]
    fn invalid_and_partial() {
        assert_eq!(parse_response_head(b"HTTP/1.1 200 OK\r\n"), Ok(None));
        assert!(parse_response_head(b"NOT HTTP\r\n\r\n").is_err());
        assert!(parse_response_head(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"
        )
        .is_err());
        assert!(parse_response_head(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n").is_err());
        let huge = format!("HTTP/1.1 200 OK\r\nX: {}", "a".repeat(MAX_RESPONSE_HEAD));
        assert!(parse_response_head(huge.as_bytes()).is_err());
    }

    #[test]
    fn status_codes_outside_100_to_999_are_invalid() {
        for raw in [
            "HTTP/1.1 000 Zero\r\n\r\n",
            "HTTP/1.1 012 X\r\n\r\n",
            "HTTP/1.1 099 X\r\n\r\n",
        ] {
            assert!(
                matches!(
                    parse_response_head(raw.as_bytes()),
                    Err(Error::InvalidResponse(_))
                ),
                "{raw:?}"
            );
        }
        assert_eq!(head("HTTP/1.1 100 Continue\r\n\r\n").status, 100);
        assert_eq!(
            head("HTTP/1.1 999 Odd\r\nContent-Length: 0\r\n\r\n").status,
            999
        );
    }

    #[test]
    fn transfer_codings_other_than_one_chunked_are_invalid() {
        for te in [
            "gzip, chunked",
            "gzip",
            "chunked, chunked",
            "identity",
            "chunked, gzip",
        ] {
            let raw = format!("HTTP/1.1 200 OK\r\nTransfer-Encoding: {te}\r\n\r\n");
            assert!(
                matches!(
                    parse_response_head(raw.as_bytes()),
                    Err(Error::InvalidResponse(_))
                ),
                "{te}"
            );
        }
        let split =
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(parse_response_head(split.as_bytes()).is_err());
        assert_eq!(
            head("HTTP/1.1 200 OK\r\nTransfer-Encoding: CHUNKED\r\n\r\n").framing,
            Framing::Chunked
        );
    }

    /// Feeds `raw` in `step`-byte pieces; returns where the response ended.
    fn end_of(raw: &[u8], step: usize) -> Option<usize> {
        let mut t = ResponseTracker::new();
        let mut at = 0;
        for piece in raw.chunks(step) {
            if let Some(n) = t.feed(piece).unwrap() {
                return Some(at + n);
            }
            at += piece.len();
        }
        None
    }

    #[test]
    fn tracker_finds_the_end_by_framing_in_any_pieces() {
        for step in [1, 3, 7, 1000] {
            let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcEXTRA";
            assert_eq!(end_of(raw, step), Some(raw.len() - 5), "step {step}");
            let interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\nX";
            assert_eq!(end_of(interim, step), Some(interim.len() - 1));
            let chunked =
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\nX";
            assert_eq!(end_of(chunked, step), Some(chunked.len() - 1));
            assert_eq!(
                end_of(b"HTTP/1.0 200 OK\r\n\r\nbody until close", step),
                None
            );
            assert_eq!(
                end_of(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nab", step),
                None
            );
        }
        let mut t = ResponseTracker::new();
        t.feed(b"HTTP/1.0 200 OK\r\n\r\nabc").unwrap();
        assert!(t.complete_at_close());
        assert_eq!(t.body_len(), 3);
        let mut t = ResponseTracker::new();
        assert!(t.feed(b"HTTP/1.1 101 Switching Protocols\r\n\r\n").is_err());
    }

    #[test]
    fn mime_for_arc() {
        assert_eq!(arc_mime(Some("Text/HTML; charset=utf-8")), "text/html");
        assert_eq!(arc_mime(Some("image/png")), "image/png");
        assert_eq!(arc_mime(None), "unk");
        assert_eq!(arc_mime(Some("")), "unk");
        assert_eq!(arc_mime(Some("text html")), "unk");
        assert_eq!(arc_mime(Some("text/ht ml")), "unk");
        assert_eq!(arc_mime(Some("nonsense")), "unk");
    }
}
