//! CDX index lines in the 11-field OpenWayback format (` CDX N b a m s k r M S V g`): the
//! SURT key, how a payload digest is computed, line formatting and parsing, sorted files.

use data_encoding::BASE32;
use sha1::{Digest, Sha1};

pub use super::surt::surt;

/// The header line of every CDX file liveweb writes.
pub const CDX_HEADER: &str = " CDX N b a m s k r M S V g";

/// The MIME type of an archived fetch failure, in its ARC header (and so in any index a tool
/// builds from the file): replay tools and scripts can tell it apart from a capture.
pub const FAILURE_MIME: &str = "application/x-liveweb-error";
/// The MIME type replay tools' indexers give a revisit record.
pub const REVISIT_MIME: &str = "warc/revisit";

/// One record's index line, minus the file name (which the file it lives in supplies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CdxEntry {
    /// Canonical SURT form of the URL (field N).
    pub urlkey: String,
    /// 14-digit capture date (field b).
    pub date14: String,
    /// Original URL (field a).
    pub url: String,
    /// MIME type as in the ARC header (field m).
    pub mime: String,
    /// HTTP status, or 0 when the payload has none (written `-`; field s).
    pub status: u16,
    /// base32 SHA-1 of the HTTP body (field k).
    pub digest: String,
    /// Compressed record (gzip member) length (field S).
    pub length: u64,
    /// Member offset in the ARC file (field V).
    pub offset: u64,
    /// Fetched for a request with credentials: never indexed for others, after a restart
    /// too. Not a CDX field: kept in the `.private` list beside the CDX and in the member.
    pub private: bool,
    /// An archived fetch failure (E20, E30, ...): kept in the ARC file, where liveweb answers
    /// repeats from it for `--error-ttl`, but left out of the CDX file, which replay tools
    /// read as the list of captures.
    pub failure: bool,
}

/// What a CDX line's length field says for a record liveweb stored as `stored` bytes: the
/// whole gzip member, or for a plain record its header line and content without the newline
/// that separates it from the next record (pywb's `cdx-indexer` counts so).
pub fn cdx_length(stored: u64, gzip: bool) -> u64 {
    if gzip {
        stored
    } else {
        stored.saturating_sub(1)
    }
}

/// The bytes liveweb serves for a record whose CDX line says `length` (the inverse of
/// `cdx_length`: a plain record is served with its newline).
pub fn stored_length(length: u64, gzip: bool) -> u64 {
    if gzip {
        length
    } else {
        length.saturating_add(1)
    }
}

/// The file listing the offsets of private records, beside an ARC file's CDX.
pub fn private_name(arc_name: &str) -> String {
    format!("{}.private", super::record::arc_stem(arc_name))
}

/// The `.private` list for `entries`: one member offset per line; `None` when none is private.
pub fn private_list(entries: &[CdxEntry]) -> Option<String> {
    let offsets: Vec<String> = entries
        .iter()
        .filter(|e| e.private)
        .map(|e| e.offset.to_string())
        .collect();
    (!offsets.is_empty()).then(|| offsets.join("\n") + "\n")
}

/// Offsets in a `.private` list (lines that are not numbers are skipped).
pub fn parse_private_list(text: &str) -> std::collections::HashSet<u64> {
    text.lines().filter_map(|l| l.trim().parse().ok()).collect()
}

impl CdxEntry {
    pub fn to_line(&self, file_name: &str) -> String {
        let status = if self.status == 0 {
            "-".to_string()
        } else {
            self.status.to_string()
        };
        format!(
            "{} {} {} {} {} {} - - {} {} {}",
            self.urlkey,
            self.date14,
            self.url,
            self.mime,
            status,
            self.digest,
            self.length,
            self.offset,
            file_name
        )
    }
}

/// The fields of a CDX line the index needs, borrowed from the line (start-up reads
/// millions of these, so nothing is allocated).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CdxRef<'a> {
    pub url: &'a str,
    /// `warc/revisit` for a revisit record (no body of its own).
    pub mime: &'a str,
    pub date14: &'a str,
    pub status: u16,
    pub length: u64,
    pub offset: u64,
    pub file: &'a str,
}

impl<'a> CdxRef<'a> {
    /// Parses an 11-field line; `None` for anything else.
    pub fn parse(line: &'a str) -> Option<CdxRef<'a>> {
        let mut f = line.split(' ');
        let _urlkey = f.next()?;
        let date14 = f.next()?;
        let url = f.next()?;
        let mime = f.next()?;
        let status = match f.next()? {
            "-" => 0,
            s => s.parse().ok()?,
        };
        let (_digest, _redirect, _meta) = (f.next()?, f.next()?, f.next()?);
        let length = f.next()?.parse().ok()?;
        let offset = f.next()?.parse().ok()?;
        let file = f.next()?;
        if f.next().is_some() || date14.len() != 14 {
            return None;
        }
        Some(CdxRef {
            url,
            mime,
            date14,
            status,
            length,
            offset,
            file,
        })
    }
}

/// A whole CDX file: header, then the lines of every capture (failures are left out) sorted
/// bytewise (as `LC_ALL=C sort` would).
pub fn cdx_file(entries: &[CdxEntry], file_name: &str) -> String {
    let mut lines: Vec<String> = entries
        .iter()
        .filter(|e| !e.failure)
        .map(|e| e.to_line(file_name))
        .collect();
    lines.sort_unstable();
    let mut out = String::with_capacity(lines.iter().map(|l| l.len() + 1).sum::<usize>() + 32);
    out.push_str(CDX_HEADER);
    out.push('\n');
    for l in lines {
        out.push_str(&l);
        out.push('\n');
    }
    out
}

pub use super::payload_digest::payload_digest;

/// A SHA-1 digest in base32, the form CDX files and WARC headers use.
pub fn base32(digest: &[u8]) -> String {
    BASE32.encode(digest)
}

/// Where `payload_digest` starts digesting `payload`: after its first head (0 without one).
pub fn body_offset(payload: &[u8]) -> usize {
    body_start(payload).unwrap_or(0)
}

/// base32 SHA-1, the digest form of CDX files and (after `sha1:`) of WARC headers.
pub fn base32_sha1(data: &[u8]) -> String {
    BASE32.encode(&Sha1::digest(data))
}

/// Where the body of an HTTP message starts: after the first empty line, a line ending in
/// `\r\n` or in `\n` alone, as archive readers (warcio) find it; `None` without one.
pub(super) fn body_start(payload: &[u8]) -> Option<usize> {
    let mut line_start = 0;
    for (i, &b) in payload.iter().enumerate() {
        if b == b'\n' {
            let line = &payload[line_start..i];
            if line_start > 0 && (line.is_empty() || line == b"\r") {
                return Some(i + 1);
            }
            line_start = i + 1;
        }
    }
    None
}

/// The value of the first `Content-Type` field in the head of an HTTP message payload, its
/// bytes read as Latin-1 (as warcio reads heads).
pub fn payload_content_type(payload: &[u8]) -> Option<String> {
    let head = &payload[..body_start(payload).unwrap_or(payload.len())];
    head.split(|&b| b == b'\n').skip(1).find_map(|line| {
        let colon = line.iter().position(|&b| b == b':')?;
        let name = line[..colon].trim_ascii();
        if !name.eq_ignore_ascii_case(b"content-type") {
            return None;
        }
        let value = line[colon + 1..].trim_ascii();
        Some(value.iter().map(|&b| char::from(b)).collect())
    })
}

/// A WARC response's CDX MIME field as pywb's indexer writes it: the HTTP `Content-Type` up
/// to the first `;` or space, as written; `unk` when there is none.
pub fn warc_mime(content_type: Option<&str>) -> String {
    match content_type.and_then(|v| v.trim().split([';', ' ']).next()) {
        Some(m) if !m.is_empty() => m.to_string(),
        _ => "unk".into(),
    }
}

/// The status code of an HTTP response payload, 0 if it is not one.
pub fn payload_status(payload: &[u8]) -> u16 {
    let line_end = payload
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(payload.len());
    // A status line may end right after the code (`HTTP/1.0 302\r\n`: no reason phrase).
    let line = std::str::from_utf8(&payload[..line_end]).unwrap_or("");
    let line = line.strip_suffix('\r').unwrap_or(line);
    let mut parts = line.split(' ');
    match (parts.next(), parts.next()) {
        (Some(v), Some(code)) if v.starts_with("HTTP/") && code.len() == 3 => {
            code.parse().unwrap_or(0)
        }
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_heads_end_at_an_empty_line_of_either_kind() {
        let http_body = |p: &'static [u8]| &p[body_offset(p)..];
        let crlf = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\nbody\r\n\r\nmore";
        assert_eq!(http_body(crlf), b"body\r\n\r\nmore");
        // LF-only heads: a `\r\n\r\n` inside the body is not the end of the head.
        let lf = b"HTTP/1.1 200 OK\nContent-Type: Text/HTML; charset=x\n\nbody\r\n\r\nmore";
        assert_eq!(http_body(lf), b"body\r\n\r\nmore");
        assert_eq!(
            payload_content_type(lf).as_deref(),
            Some("Text/HTML; charset=x")
        );
        // Latin-1 bytes elsewhere in the head do not hide the type.
        let latin1 = b"HTTP/1.1 200 OK\r\nX-Name: caf\xe9\r\ncontent-type:  image/png \r\n\r\n";
        assert_eq!(payload_content_type(latin1).as_deref(), Some("image/png"));
        assert_eq!(
            payload_content_type(b"HTTP/1.1 204 No Content\r\n\r\n"),
            None
        );
        assert_eq!(http_body(b"no head at all"), b"no head at all");
        assert_eq!(warc_mime(Some("text/html; charset=utf-8")), "text/html");
        assert_eq!(warc_mime(None), "unk");
    }

    #[test]
    fn line_roundtrip_and_sorting() {
        let e = CdxEntry {
            private: false,
            failure: false,
            urlkey: surt("http://b.com/"),
            date14: "20261122000000".into(),
            url: "http://b.com/".into(),
            mime: "text/html".into(),
            status: 200,
            digest: payload_digest(b"HTTP/1.1 200 OK\r\n\r\nhi"),
            length: 123,
            offset: 456,
        };
        let line = e.to_line("F.arc.gz");
        assert_eq!(
            line,
            format!(
                "com,b)/ 20261122000000 http://b.com/ text/html 200 {} - - 123 456 F.arc.gz",
                e.digest
            )
        );
        let mut a = e.clone();
        a.urlkey = surt("http://a.com/");
        a.status = 0;
        let mut failed = e.clone();
        failed.urlkey = surt("http://c.com/");
        failed.failure = true;
        let file = cdx_file(&[e, a, failed], "F.arc.gz");
        let lines: Vec<&str> = file.lines().collect();
        assert_eq!(lines.len(), 3, "a failure record is not a capture: {file}");
        assert_eq!(lines[0], CDX_HEADER);
        assert!(lines[1].starts_with("com,a)/ ") && lines[1].contains(" - "));
        assert!(lines[2].starts_with("com,b)/ "));
        let r = CdxRef::parse(lines[2]).unwrap();
        assert_eq!(
            (r.url, r.status, r.length, r.offset, r.file),
            ("http://b.com/", 200, 123, 456, "F.arc.gz")
        );
        assert!(CdxRef::parse(CDX_HEADER).is_none());
        assert!(CdxRef::parse(&format!("{} extra", lines[2])).is_none());
        assert!(CdxRef::parse("garbage").is_none());
    }

    #[test]
    fn digest_and_status() {
        // SHA-1 of "hi" in base32.
        assert_eq!(
            payload_digest(b"HTTP/1.1 200 OK\r\nA: b\r\n\r\nhi"),
            BASE32.encode(&Sha1::digest(b"hi"))
        );
        assert_eq!(
            payload_digest(b"no head"),
            BASE32.encode(&Sha1::digest(b"no head"))
        );
        assert_eq!(payload_status(b"HTTP/1.1 404 Not Found\r\n"), 404);
        // No reason phrase, with or without the space before it.
        assert_eq!(payload_status(b"HTTP/1.0 302\r\nLocation: /\r\n"), 302);
        assert_eq!(payload_status(b"HTTP/1.0 302 \r\n"), 302);
        assert_eq!(payload_status(b"HTTP/1.0 302\n"), 302);
        assert_eq!(payload_status(b"1 0 liveweb\n"), 0);
    }
}
