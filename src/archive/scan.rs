//! Reads an ARC file back member by member, checking each one: the first must be the
//! filedesc record, every member must inflate, and its content must match the length its
//! header declares. Used to cut torn tails after a crash and to rebuild CDX files.

use std::io::Read;

use flate2::bufread::GzDecoder;

use super::cdx::{
    body_start, cdx_length, payload_content_type, payload_digest, payload_status, surt, warc_mime,
    CdxEntry, FAILURE_MIME, REVISIT_MIME,
};
use super::record::{declared_length, extra_marks_private, MAX_HEADER_LINE};
use super::warc::{date14, parse_header, RECORD_END};

/// Largest record content accepted while scanning (a corrupt length cannot make the scanner
/// allocate without bound).
const MAX_SCAN_RECORD: u64 = 4 << 30;

/// What a scan found.
#[derive(Debug, Default)]
pub struct ScanResult {
    /// Index lines for every valid URL record (the filedesc record excluded).
    pub entries: Vec<CdxEntry>,
    /// Bytes from the start of the file that hold whole valid members.
    pub valid_len: u64,
    /// Whether the first member is a filedesc record.
    pub has_filedesc: bool,
}

/// Scans `data` (a whole ARC file, `.arc.gz` or plain `.arc`, told apart by the gzip magic;
/// or a `.warc.gz` file, told by its records) and stops at the first record that is not
/// whole and valid.
pub fn scan(data: &[u8]) -> ScanResult {
    let gzip = data.starts_with(&[0x1f, 0x8b]);
    let mut result = ScanResult::default();
    let mut offset = 0usize;
    let mut warc = None;
    while offset < data.len() {
        if !gzip && offset > 0 && data[offset] == b'\n' {
            // Blank lines between plain records: ARC readers skip them (the writer leaves
            // some under `--fsync always`, to end a write on a block boundary).
            offset += data[offset..].iter().take_while(|&&b| b == b'\n').count();
            continue;
        }
        let record = if gzip {
            inflate_member(&data[offset..])
        } else {
            plain_record(&data[offset..])
        };
        let Some((consumed, plain, private)) = record else {
            break;
        };
        let first = offset == 0;
        let length = cdx_length(consumed as u64, gzip);
        // A file holds one format: the first record's.
        let is_warc = plain.starts_with(b"WARC/");
        if *warc.get_or_insert(is_warc) != is_warc {
            break;
        }
        let read = if is_warc {
            warc_record(&plain, first, offset as u64, length)
        } else {
            arc_record(&plain, first, offset as u64, length)
        };
        match read {
            Found::Opening => result.has_filedesc = true,
            Found::Entry(mut entry) => {
                entry.private = private;
                result.entries.push(entry);
            }
            Found::NotIndexed => {}
            Found::Invalid => break,
        }
        offset += consumed;
        result.valid_len = offset as u64;
    }
    result
}

/// Inflates one gzip member; returns its compressed size, its content, and whether its
/// header marks it private.
fn inflate_member(data: &[u8]) -> Option<(usize, Vec<u8>, bool)> {
    let mut rest = data;
    let mut decoder = GzDecoder::new(&mut rest);
    let mut plain = Vec::new();
    decoder.read_to_end(&mut plain).ok()?;
    let private = decoder
        .header()
        .and_then(|h| h.extra())
        .is_some_and(extra_marks_private);
    drop(decoder);
    Some((data.len() - rest.len(), plain, private))
}

/// The plain record at the front of `data`: its size and bytes, if whole (plain records
/// carry no private mark).
fn plain_record(data: &[u8]) -> Option<(usize, Vec<u8>, bool)> {
    let nl = data
        .iter()
        .take(MAX_HEADER_LINE)
        .position(|&b| b == b'\n')?;
    let len = usize::try_from(declared_length(&data[..nl])?).ok()?;
    let size = nl.checked_add(1)?.checked_add(len)?.checked_add(1)?;
    (size <= data.len()).then(|| (size, data[..size].to_vec(), false))
}

/// What one record is.
enum Found {
    /// The record that opens every file (ARC filedesc, WARC warcinfo), where it belongs.
    Opening,
    /// A capture or a failure: its index line.
    Entry(CdxEntry),
    /// A valid record the CDX does not list (a WARC request record).
    NotIndexed,
    /// Not whole, not valid, or out of place: the scan stops here.
    Invalid,
}

fn arc_record(plain: &[u8], first: bool, offset: u64, length: u64) -> Found {
    let Some((header, content)) = split_record(plain) else {
        return Found::Invalid;
    };
    match (first, header.starts_with("filedesc://")) {
        (true, true) => Found::Opening,
        (false, false) => {
            entry_for(header, content, offset, length).map_or(Found::Invalid, Found::Entry)
        }
        _ => Found::Invalid,
    }
}

/// A WARC record: header block, `Content-Length` bytes, `\r\n\r\n`.
fn warc_record(plain: &[u8], first: bool, offset: u64, length: u64) -> Found {
    let Some((start, header)) = parse_header(plain) else {
        return Found::Invalid;
    };
    let Some(end) = usize::try_from(header.content_length)
        .ok()
        .and_then(|len| start.checked_add(len))
    else {
        return Found::Invalid;
    };
    if plain.len() != end + RECORD_END.len() || &plain[end..] != RECORD_END {
        return Found::Invalid;
    }
    let content = &plain[start..end];
    if first || header.kind == "warcinfo" {
        return if first && header.kind == "warcinfo" {
            Found::Opening
        } else {
            Found::Invalid
        };
    }
    let (Some(url), Some(date14)) = (header.target, header.date.and_then(date14)) else {
        return Found::Invalid;
    };
    let failure = header.kind == "metadata" && header.liveweb_error.is_some();
    let revisit = header.kind == "revisit";
    if header.kind != "response" && !failure && !revisit {
        return Found::NotIndexed;
    }
    let digest = match header.payload_digest.and_then(|d| d.strip_prefix("sha1:")) {
        Some(d) => d.to_string(),
        None => payload_digest(content),
    };
    let mime = if failure {
        FAILURE_MIME.to_string()
    } else if revisit {
        REVISIT_MIME.to_string()
    } else {
        warc_mime(payload_content_type(content).as_deref())
    };
    // A revisit of a 304 has an empty block; the live index lists it as the 304 it was.
    let status = match revisit && content.is_empty() {
        true => 304,
        false => payload_status(content),
    };
    Found::Entry(CdxEntry {
        urlkey: surt(url),
        date14,
        url: url.to_string(),
        mime,
        status,
        digest,
        length,
        offset,
        private: false,
        failure,
    })
}

/// Splits `header line \n content \n`, checking the declared length.
fn split_record(plain: &[u8]) -> Option<(&str, &[u8])> {
    let nl = plain.iter().position(|&b| b == b'\n')?;
    let header = std::str::from_utf8(&plain[..nl]).ok()?;
    let len = declared_length(header.as_bytes())?;
    if len > MAX_SCAN_RECORD {
        return None;
    }
    let content = &plain[nl + 1..];
    let len = len as usize;
    if content.len() != len + 1 || content[len] != b'\n' {
        return None;
    }
    Some((header, &content[..len]))
}

/// The CDX line for a URL record, from its ARC header fields and payload.
fn entry_for(header: &str, payload: &[u8], offset: u64, length: u64) -> Option<CdxEntry> {
    let f: Vec<&str> = header.split(' ').collect();
    if f.len() != 5 || f[2].len() != 14 {
        return None;
    }
    let status = payload_status(payload);
    Some(CdxEntry {
        urlkey: surt(f[0]),
        date14: f[2].to_string(),
        url: f[0].to_string(),
        mime: f[3].to_string(),
        status,
        digest: payload_digest(payload),
        length,
        offset,
        private: false,
        failure: f[3] == FAILURE_MIME || older_failure(f[3], status, payload),
    })
}

/// A failure record from a version that labelled them `text/plain`: a 502 or 504 whose head
/// carries liveweb's error code.
fn older_failure(mime: &str, status: u16, payload: &[u8]) -> bool {
    if mime != "text/plain" || !matches!(status, 502 | 504) {
        return false;
    }
    let head_end = body_start(payload).unwrap_or(payload.len());
    payload[..head_end]
        .windows(18)
        .any(|w| w.eq_ignore_ascii_case(b"\r\nX-Liveweb-Error:"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::record::{encode_member, filedesc_member, header_line};

    fn file_with(records: &[(&str, &[u8])]) -> (Vec<u8>, Vec<usize>) {
        let mut data = filedesc_member("F.arc.gz", "20261122000000", 1);
        let mut starts = Vec::new();
        for (url, payload) in records {
            starts.push(data.len());
            let h = header_line(url, None, "20261122000000", "text/plain", payload.len());
            data.extend(encode_member(&h, payload, 1));
        }
        (data, starts)
    }

    #[test]
    fn scans_whole_file() {
        let (data, starts) = file_with(&[
            ("http://a/", b"HTTP/1.1 200 OK\r\n\r\na"),
            ("http://b/", b"HTTP/1.1 404 Not Found\r\n\r\nb"),
        ]);
        let r = scan(&data);
        assert!(r.has_filedesc);
        assert_eq!(r.valid_len, data.len() as u64);
        assert_eq!(r.entries.len(), 2);
        assert_eq!(r.entries[1].offset, starts[1] as u64);
        assert_eq!(r.entries[1].length, (data.len() - starts[1]) as u64);
        assert_eq!(r.entries[1].status, 404);
        assert_eq!(r.entries[0].urlkey, "a)/");
    }

    #[test]
    fn failure_records_are_told_apart_by_mime_or_by_their_error_header() {
        let failure = b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nX-Liveweb-Error: E30 refused\r\n\r\nrefused\n";
        let mut data = filedesc_member("F.arc.gz", "20261122000000", 1);
        let records: [(&str, &[u8], &str); 4] = [
            ("http://new/", failure, FAILURE_MIME),
            ("http://old/", failure, "text/plain"),
            // An origin's own 502 is a capture, and so is a body that merely mentions it.
            (
                "http://origin/",
                b"HTTP/1.1 502 Bad Gateway\r\n\r\n\r\nX-Liveweb-Error: no",
                "text/plain",
            ),
            ("http://ok/", b"HTTP/1.1 200 OK\r\n\r\nok", "text/html"),
        ];
        for (url, payload, mime) in records {
            let h = header_line(url, None, "20261122000000", mime, payload.len());
            data.extend(encode_member(&h, payload, 1));
        }
        let r = scan(&data);
        let failures: Vec<bool> = r.entries.iter().map(|e| e.failure).collect();
        assert_eq!(failures, [true, true, false, false]);
    }

    #[test]
    fn warc_files_index_responses_and_failures_and_stop_at_a_torn_record() {
        use crate::archive::format::Format;
        use crate::archive::record::Codec;
        use crate::archive::warc::{self, Target};
        use crate::clock::UtcTime;
        let codec = Codec::Gzip(1);
        let mut data = Format::Warc.first_record(codec, "F.warc.gz", "<urn:uuid:info>");
        let date = UtcTime::from_unix_millis(1_764_123_848_123);
        let target = Target {
            url: "http://a/",
            ip: None,
            date: &date,
            warcinfo: "<urn:uuid:info>",
        };
        let raw = b"HTTP/1.1 200 OK\r\nContent-Type: Text/HTML;charset=x\r\n\r\nhi";
        let resp = warc::response(&target, raw, &payload_digest(raw));
        let req = warc::request(&target, b"GET / HTTP/1.1\r\n\r\n", &resp.id);
        let start = data.len();
        data.extend(codec.encode_parts(resp.head.as_bytes(), raw, RECORD_END));
        let member_len = data.len() - start;
        data.extend(codec.encode_parts(req.head.as_bytes(), b"GET / HTTP/1.1\r\n\r\n", RECORD_END));
        let fields = warc::failure_fields("E30 x", 502, "Bad Gateway", "refused\r\nby peer");
        assert!(fields.ends_with(b"message: refused  by peer\r\n"));
        let meta = warc::failure(&target, &fields, "E30 x");
        data.extend(codec.encode_parts(meta.head.as_bytes(), &fields, RECORD_END));
        let whole = data.len();
        data.extend(&codec.encode_parts(resp.head.as_bytes(), raw, RECORD_END)[..20]);
        let r = scan(&data);
        assert!(r.has_filedesc);
        assert_eq!(r.valid_len, whole as u64);
        assert_eq!(r.entries.len(), 2);
        let e = &r.entries[0];
        assert_eq!((e.offset, e.length), (start as u64, member_len as u64));
        assert_eq!(
            (e.url.as_str(), e.date14.as_str()),
            ("http://a/", "20251126022408")
        );
        // pywb's rule: the Content-Type up to `;` or a space, as written.
        assert_eq!((e.mime.as_str(), e.status), ("Text/HTML", 200));
        assert!(!e.failure && r.entries[1].failure);
        // A file whose first record is not a warcinfo record is not one of liveweb's.
        let r = scan(&data[start..]);
        assert!(!r.has_filedesc && r.entries.is_empty());
    }

    #[test]
    fn scans_plain_files_too() {
        use crate::archive::record::Codec;
        let mut data = Codec::Plain.filedesc("F.arc", "20261122000000");
        let start = data.len();
        let payload = b"HTTP/1.1 200 OK\r\n\r\nplain";
        data.extend(Codec::Plain.encode(
            &header_line("http://p/", None, "20261122000000", "unk", payload.len()),
            payload,
        ));
        let whole = data.len();
        data.extend_from_slice(b"http://torn/ 0.0.0.0 20261122000000 unk 999\nabc");
        let r = scan(&data);
        assert!(r.has_filedesc);
        assert_eq!(r.valid_len, whole as u64);
        assert_eq!(r.entries.len(), 1);
        // The CDX length leaves out the newline after the record, as pywb counts.
        assert_eq!(
            (r.entries[0].offset, r.entries[0].length),
            (start as u64, (whole - start - 1) as u64)
        );
    }

    #[test]
    fn padded_members_and_blank_lines_between_plain_records_scan_as_written() {
        use crate::archive::record::{pad_member, Codec};
        let mut data = filedesc_member("F.arc.gz", "20261122000000", 1);
        let h = header_line("http://a/", None, "20261122000000", "text/plain", 1);
        let padded = pad_member(&encode_member(&h, b"a", 1), 4000).unwrap();
        let second = data.len() + padded.len();
        data.extend_from_slice(&padded);
        data.extend(encode_member(&h, b"a", 1));
        let r = scan(&data);
        assert_eq!(r.valid_len, data.len() as u64);
        assert_eq!(r.entries[0].length, padded.len() as u64);
        assert_eq!(r.entries[1].offset, second as u64);

        let mut plain = Codec::Plain.filedesc("F.arc", "20261122000000");
        plain.extend_from_slice(&[b'\n'; 3000]);
        let start = plain.len();
        plain.extend(Codec::Plain.encode(&h, b"a"));
        let whole = plain.len();
        plain.extend_from_slice(&[b'\n'; 100]);
        let r = scan(&plain);
        assert_eq!(r.entries.len(), 1);
        assert_eq!(r.entries[0].offset, start as u64);
        assert_eq!(
            r.valid_len, whole as u64,
            "trailing blank lines are not a record"
        );
    }

    #[test]
    fn stops_at_torn_member_and_trailing_zeros() {
        let (data, starts) = file_with(&[("http://a/", b"x"), ("http://b/", b"y")]);
        for cut in [starts[1] + 1, starts[1] + 10, data.len() - 1] {
            let r = scan(&data[..cut]);
            assert_eq!(r.valid_len, starts[1] as u64, "cut at {cut}");
            assert_eq!(r.entries.len(), 1);
        }
        let mut padded = data.clone();
        padded.extend_from_slice(&[0u8; 4000]);
        let r = scan(&padded);
        assert_eq!(r.valid_len, data.len() as u64);
        assert_eq!(r.entries.len(), 2);
        // A file that does not start with filedesc is invalid from byte 0.
        let r = scan(&data[starts[0]..]);
        assert_eq!(r.valid_len, 0);
        assert!(!r.has_filedesc);
    }
}
