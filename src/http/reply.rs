//! Reply heads and canned replies toward the client. Pure: builds bytes, does no I/O.

use std::io::Write;

/// How the connection is managed after a reply; decides the `Connection` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnState {
    pub keep_alive: bool,
    /// Client's minor HTTP version: an HTTP/1.0 client needs `Connection: keep-alive`.
    pub version: u8,
}

impl ConnState {
    /// The `Connection` header line this reply needs (empty for HTTP/1.1 keep-alive).
    pub fn header(&self) -> &'static str {
        match (self.keep_alive, self.version) {
            (false, _) => "Connection: close\r\n",
            (true, 0) => "Connection: keep-alive\r\n",
            (true, _) => "",
        }
    }
}

/// What a record reply head is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordStatus {
    /// The origin's status (or ours, for an archived failure).
    pub code: u16,
    /// The origin's reason phrase, already sanitized for our status line (borrowed when it
    /// is the standard one, as nearly all are).
    pub reason: std::borrow::Cow<'static, str>,
    /// For archived failures, the liveweb code line sent as `X-Liveweb-Error`.
    pub error: Option<&'static str>,
    /// For archived failures, what went wrong in words (`E37 certificate invalid: certificate
    /// signed by an unknown issuer`), for the operator's recent errors; never sent. Only the
    /// fetch that failed and the requests that joined it have it: the index keeps the code
    /// alone, so that failures cost it no more memory than other records.
    pub detail: Option<std::sync::Arc<str>>,
}

impl RecordStatus {
    pub fn new(code: u16, reason: &str, error: Option<&'static str>) -> Self {
        let reason = sanitize_reason(reason);
        let standard = canonical_reason(code);
        RecordStatus {
            code,
            reason: if reason == standard {
                standard.into()
            } else {
                reason.into()
            },
            error,
            detail: None,
        }
    }
}

/// Whether a reply with this status may carry the record as its body: 1xx, 204, 205 and 304
/// cannot carry content (RFC 9110 15; a client reads none, and the record's bytes would be
/// taken for the next reply), a 407 from a proxy is a challenge to the client (an origin's
/// is not liveweb's), and codes outside 200-599 are not ones clients know.
pub fn status_carries_record(code: u16) -> bool {
    (200..=599).contains(&code) && !matches!(code, 204 | 205 | 304 | 407)
}

/// The head of a record reply: status mirroring the origin (or `200` with the origin's status
/// in `X-Archive-Status` when that status cannot carry the record), Content-Type,
/// Content-Length of the record, the error code if any, the cache state and connection
/// management.
pub fn record_head(
    status: &RecordStatus,
    content_type: &str,
    len: u64,
    cache: &str,
    conn: ConnState,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(160);
    if status_carries_record(status.code) {
        let _ = write!(out, "HTTP/1.1 {} {}\r\n", status.code, status.reason);
    } else {
        let _ = write!(
            out,
            "HTTP/1.1 200 OK\r\nX-Archive-Status: {} {}\r\n",
            status.code, status.reason
        );
    }
    let _ = write!(
        out,
        "Content-Type: {content_type}\r\nContent-Length: {len}\r\n"
    );
    if let Some(code) = status.error {
        let _ = write!(out, "X-Liveweb-Error: {code}\r\n");
    }
    let _ = write!(out, "X-Cache: {cache}\r\n{}\r\n", conn.header());
    out
}

/// A short text reply (errors, health); `extra` is preformatted header lines.
pub fn text_reply(
    status: u16,
    reason: &str,
    extra: &str,
    body: &str,
    conn: ConnState,
    head_only: bool,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(160 + body.len());
    let _ = write!(
        out,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n",
        body.len() + 1
    );
    out.extend_from_slice(extra.as_bytes());
    out.extend_from_slice(conn.header().as_bytes());
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(body.as_bytes());
        out.push(b'\n');
    }
    out
}

/// The standard reason phrase for a status (used when the origin's own is not at hand).
pub fn canonical_reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        206 => "Partial Content",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        410 => "Gone",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

/// An origin's reason phrase is echoed into our status line: keep only visible ASCII and
/// spaces so it cannot break the head.
/// A reason phrase fit for our status line: printable ASCII and spaces only.
pub fn sanitize_reason(reason: &str) -> String {
    reason
        .chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEEP: ConnState = ConnState {
        keep_alive: true,
        version: 1,
    };

    #[test]
    fn record_heads() {
        let head = record_head(
            &RecordStatus::new(404, "Not Found", None),
            "application/arc-gz",
            123,
            "HIT",
            KEEP,
        );
        assert_eq!(
            head,
            b"HTTP/1.1 404 Not Found\r\nContent-Type: application/arc-gz\r\nContent-Length: 123\r\nX-Cache: HIT\r\n\r\n"
        );
        let failed = RecordStatus::new(502, "Bad\r\nGateway", Some("E30 connection refused"));
        let head = record_head(
            &failed,
            "application/arc-gz",
            9,
            "MISS",
            ConnState {
                keep_alive: false,
                version: 1,
            },
        );
        let text = String::from_utf8(head).unwrap();
        assert!(text.starts_with("HTTP/1.1 502 BadGateway\r\n"));
        assert!(text.contains("X-Liveweb-Error: E30 connection refused\r\n"));
        assert!(text.ends_with("Connection: close\r\n\r\n"));
    }

    #[test]
    fn statuses_that_cannot_carry_the_record_become_200_with_the_origin_status_named() {
        for code in [100, 101, 199, 204, 205, 304, 407, 600, 999] {
            let head = record_head(
                &RecordStatus::new(code, "Whatever", None),
                "application/arc-gz",
                125,
                "MISS",
                KEEP,
            );
            let text = String::from_utf8(head).unwrap();
            assert!(
                text.starts_with(&format!(
                    "HTTP/1.1 200 OK\r\nX-Archive-Status: {code} Whatever\r\n"
                )),
                "{text}"
            );
            assert!(text.contains("Content-Length: 125\r\n"));
        }
        for code in [200, 201, 206, 301, 302, 404, 451, 500, 599] {
            assert!(status_carries_record(code), "{code}");
        }
    }

    #[test]
    fn text_replies() {
        let r = text_reply(400, "Bad Request", "", "absolute URL required", KEEP, false);
        assert_eq!(
            r,
            b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 22\r\n\r\nabsolute URL required\n"
        );
        let http10 = ConnState {
            keep_alive: true,
            version: 0,
        };
        let r = text_reply(200, "OK", "", "ok", http10, true);
        let text = String::from_utf8(r).unwrap();
        assert!(text.contains("Connection: keep-alive\r\n"));
        assert!(text.ends_with("\r\n\r\n"), "HEAD gets no body");
    }
}
