//! `Range: bytes=...` requests (RFC 9110 14.2) answered from a stored full response: one
//! range becomes a `206 Partial Content`; several ranges, other units and malformed values
//! are ignored (the client gets the whole `200`, which RFC 9110 allows); a range that starts
//! past the end is `416`.

/// One requested byte range, before the representation's length is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `first-` or `first-last` (inclusive).
    From { first: u64, last: Option<u64> },
    /// `-n`: the last `n` bytes.
    Suffix(u64),
}

/// What a range comes to for a body of a known length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolved {
    /// Send `len` bytes from `first`.
    Part { first: u64, len: u64 },
    /// Nothing of it exists: `416` with `Content-Range: bytes */total`.
    Unsatisfiable,
}

/// The single byte range a `Range` value asks for; `None` for anything else (so the whole
/// response is sent).
pub fn parse_range(value: &[u8]) -> Option<ByteRange> {
    let text = std::str::from_utf8(value).ok()?.trim();
    let (unit, set) = text.split_once('=')?;
    if !unit.trim().eq_ignore_ascii_case("bytes") || set.contains(',') {
        return None;
    }
    let (first, last) = set.trim().split_once('-')?;
    let number = |s: &str| {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u64>().ok())
            .flatten()
    };
    match (first.trim().is_empty(), last.trim().is_empty()) {
        (true, false) => number(last).filter(|n| *n > 0).map(ByteRange::Suffix),
        (false, true) => Some(ByteRange::From {
            first: number(first)?,
            last: None,
        }),
        (false, false) => {
            let (first, last) = (number(first)?, number(last)?);
            (first <= last).then_some(ByteRange::From {
                first,
                last: Some(last),
            })
        }
        (true, true) => None,
    }
}

/// The range a `Range` value asks of a stored response whose validators are `etag` and
/// `last_modified`, if it is to be honoured: one range, and an `If-Range` (when sent) that
/// names the response's strong ETag or exact Last-Modified (RFC 9110 13.1.5).
pub fn honoured(
    range: &[u8],
    if_range: Option<&[u8]>,
    etag: Option<&str>,
    last_modified: Option<&str>,
) -> Option<ByteRange> {
    let range = parse_range(range)?;
    if let Some(if_range) = if_range {
        let if_range = std::str::from_utf8(if_range).ok()?.trim();
        let strong_etag = etag.filter(|e| !e.starts_with("W/"));
        if Some(if_range) != strong_etag && Some(if_range) != last_modified {
            return None;
        }
    }
    Some(range)
}

impl ByteRange {
    /// The part of a body of `total` bytes this range selects.
    pub fn resolve(self, total: u64) -> Resolved {
        match self {
            ByteRange::From { first, .. } if first >= total => Resolved::Unsatisfiable,
            ByteRange::From { first, last } => {
                let last = last.map_or(total - 1, |l| l.min(total - 1));
                Resolved::Part {
                    first,
                    len: last - first + 1,
                }
            }
            ByteRange::Suffix(_) if total == 0 => Resolved::Unsatisfiable,
            ByteRange::Suffix(n) => {
                let len = n.min(total);
                Resolved::Part {
                    first: total - len,
                    len,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_range_honours_only_the_strong_etag_or_the_exact_date() {
        let date = "Thu, 01 Jan 2026 00:00:00 GMT";
        let r = |if_range: Option<&str>, etag| {
            honoured(b"bytes=1-2", if_range.map(str::as_bytes), etag, Some(date))
        };
        assert!(r(None, None).is_some());
        assert!(r(Some("\"e\""), Some("\"e\"")).is_some());
        assert!(r(Some(date), None).is_some());
        assert!(r(Some("\"old\""), Some("\"e\"")).is_none());
        assert!(
            r(Some("W/\"e\""), Some("W/\"e\"")).is_none(),
            "a weak ETag never"
        );
        assert!(honoured(b"bytes=1-2,4-5", None, None, None).is_none());
    }

    #[test]
    fn single_byte_ranges_parse_and_resolve() {
        let from = |first, last| ByteRange::From { first, last };
        assert_eq!(parse_range(b"bytes=0-99"), Some(from(0, Some(99))));
        assert_eq!(parse_range(b"Bytes = 5-"), Some(from(5, None)));
        assert_eq!(parse_range(b"bytes=-20"), Some(ByteRange::Suffix(20)));
        for ignored in [
            &b"bytes=0-1,5-6"[..],
            b"items=0-1",
            b"bytes=5-1",
            b"bytes=-",
            b"bytes=-0",
            b"bytes=a-b",
            b"bytes=1-2-3",
            b"bytes=99999999999999999999999-",
            b"",
        ] {
            assert_eq!(
                parse_range(ignored),
                None,
                "{:?}",
                String::from_utf8_lossy(ignored)
            );
        }
        let part = |first, len| Resolved::Part { first, len };
        assert_eq!(from(0, Some(99)).resolve(10), part(0, 10));
        assert_eq!(from(2, Some(4)).resolve(10), part(2, 3));
        assert_eq!(from(9, None).resolve(10), part(9, 1));
        assert_eq!(from(10, None).resolve(10), Resolved::Unsatisfiable);
        assert_eq!(ByteRange::Suffix(3).resolve(10), part(7, 3));
        assert_eq!(ByteRange::Suffix(30).resolve(10), part(0, 10));
        assert_eq!(ByteRange::Suffix(3).resolve(0), Resolved::Unsatisfiable);
    }
}
