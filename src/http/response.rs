//! Origin response heads: parse with httparse under limits and decide how the body is framed
//! (RFC 9112 section 6). Pure: no I/O.

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
    let reason = resp.reason.unwrap_or("").to_string();

    let mut content_type = None;
    let mut content_length: Option<u64> = None;
    let mut transfer_codings: Vec<String> = Vec::new();
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-type") {
            content_type = Some(String::from_utf8_lossy(h.value).into_owned());
        } else if h.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .map(str::trim)
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| Error::InvalidResponse("invalid Content-Length".into()))?;
            if content_length.is_some_and(|prev| prev != n) {
                return Err(Error::InvalidResponse("conflicting Content-Length".into()));
            }
            content_length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_codings.extend(
                String::from_utf8_lossy(h.value)
                    .split(',')
                    .map(|t| t.trim().to_ascii_lowercase())
                    .filter(|t| !t.is_empty()),
            );
        }
    }

    let framing = if (100..200).contains(&status) || status == 204 || status == 304 {
        Framing::Empty
    } else if !transfer_codings.is_empty() {
        // Transfer-Encoding overrides Content-Length; if chunked is not last, the body runs
        // until close (RFC 9112 6.3).
        if transfer_codings.last().map(String::as_str) == Some("chunked") {
            Framing::Chunked
        } else {
            Framing::UntilClose
        }
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
    }))
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
        assert_eq!(
            head("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n").framing,
            Framing::UntilClose
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
