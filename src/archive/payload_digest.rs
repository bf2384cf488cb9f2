//! The payload digest as WARC 1.1 (6.3.2) defines it: the SHA-1 of the HTTP body "with any
//! transfer-encoding removed", so a chunked response digests the same as the same content
//! sent with a length, and the same as warcprox and (once fixed) Heritrix digest it:
//! cross-tool dedup by digest works. Content codings (gzip) stay: they are the payload.
//! The CDX digest is the same value; a WARC record's block digest stays over the bytes as
//! stored.

use sha1::{Digest, Sha1};

use super::cdx::{base32, body_offset};
use crate::http::chunked::ChunkedScanner;

/// Digests a body as it is read, taking chunked framing off first when the head said so.
pub struct PayloadDigester {
    sha: Sha1,
    /// For a chunked body; `None` once the framing turned out malformed (the rest is then
    /// digested as it is, as before the fix: a digest, if not the spec's).
    dechunk: Option<ChunkedScanner>,
    chunked: bool,
}

impl PayloadDigester {
    pub fn new(chunked: bool) -> Self {
        PayloadDigester {
            sha: Sha1::new(),
            dechunk: chunked.then(ChunkedScanner::new),
            chunked,
        }
    }

    pub fn update(&mut self, body: &[u8]) {
        if !self.chunked {
            self.sha.update(body);
            return;
        }
        let Some(scanner) = self.dechunk.as_mut() else {
            self.sha.update(body);
            return;
        };
        let sha = &mut self.sha;
        // Bytes after the body's end (a trailer section is part of it; nothing follows in a
        // stored response) are not payload.
        if scanner.feed_with(body, |data| sha.update(data)).is_err() {
            self.dechunk = None;
        }
    }

    /// The digest in base32, as CDX files and (after `sha1:`) WARC headers write it.
    pub fn finish(self) -> String {
        base32(&self.sha.finalize())
    }
}

/// Whether an HTTP head says its body is chunked (`chunked` the last transfer coding).
pub fn is_chunked(head: &[u8]) -> bool {
    let mut chunked = false;
    for line in head.split(|&b| b == b'\n').skip(1) {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        if line[..colon]
            .trim_ascii()
            .eq_ignore_ascii_case(b"transfer-encoding")
        {
            let last = line[colon + 1..]
                .split(|&b| b == b',')
                .next_back()
                .map(<[u8]>::trim_ascii)
                .unwrap_or_default();
            chunked = last.eq_ignore_ascii_case(b"chunked");
        }
    }
    chunked
}

/// Where the body of `payload` starts and whether its head says chunked.
pub fn body_of(payload: &[u8]) -> (usize, bool) {
    let at = body_offset(payload);
    (at, at > 0 && is_chunked(&payload[..at]))
}

/// The payload digest of an HTTP message held whole (`payload`: head and body; a payload
/// without a head is digested whole).
pub fn payload_digest(payload: &[u8]) -> String {
    let (at, chunked) = body_of(payload);
    let mut d = PayloadDigester::new(chunked);
    d.update(&payload[at..]);
    d.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunked_body_digests_as_the_same_content_with_a_length() {
        let plain = b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world";
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n";
        assert_eq!(payload_digest(chunked), payload_digest(plain));
        assert_eq!(payload_digest(plain), base32(&Sha1::digest(b"hello world")));
        // Fed in pieces of any size, the same.
        let (at, is) = body_of(chunked);
        assert!(is);
        for step in [1, 2, 7] {
            let mut d = PayloadDigester::new(true);
            for piece in chunked[at..].chunks(step) {
                d.update(piece);
            }
            assert_eq!(d.finish(), payload_digest(plain), "{step}");
        }
        // chunked only when it is the last coding, in the head (not the body).
        assert!(!is_chunked(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"
        ));
        assert!(!is_chunked(b"HTTP/1.1 200 OK\r\n\r\n"));
        assert_eq!(
            payload_digest(b"HTTP/1.1 200 OK\r\n\r\nTransfer-Encoding: chunked"),
            base32(&Sha1::digest(b"Transfer-Encoding: chunked"))
        );
        // Malformed framing: the rest is digested as it is, never a panic.
        let bad = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nnot chunks";
        assert_eq!(payload_digest(bad).len(), 32);
    }
}
