//! ARC v1 records: the header line, the filedesc version block, and gzip members (one member
//! per record, so a reader can seek to any record's offset and inflate it alone).

use std::io::Write;
use std::net::IpAddr;

use flate2::write::GzEncoder;
use flate2::Compression;

use super::compressibility::worth_deflating;

/// The filedesc record's content: the version block (version 1, reserved 0, origin code, then
/// the URL record definition) and a blank line. Its declared length counts the blank line too,
/// as Heritrix's ARC writer does (the ARC spec's examples are inconsistent; Heritrix's files
/// are the ones every ARC reader is tested on).
pub const FILEDESC_BLOCK: &[u8] =
    b"1 0 liveweb\nURL IP-address Archive-date Content-type Archive-length\n\n";

/// How records are stored: one gzip member per record (`.arc.gz`), or plain (`.arc`, so a
/// stored body can go from disk to a socket unchanged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Gzip(u32),
    Plain,
}

impl Codec {
    /// One record: header line + content + `\n`, gzip-compressed as one member or plain.
    /// Content that deflate cannot shrink goes into a member of stored blocks
    /// (`compressibility`).
    pub fn encode(self, header: &str, content: &[u8]) -> Vec<u8> {
        self.encode_parts(header.as_bytes(), content, b"\n")
    }

    /// Any record: `head`, `content`, then `tail` (an ARC record's newline, a WARC record's
    /// `\r\n\r\n`), as one gzip member or as they are.
    pub fn encode_parts(self, head: &[u8], content: &[u8], tail: &[u8]) -> Vec<u8> {
        match self {
            Codec::Gzip(level) => {
                let level = if level > 0 && !worth_deflating(content) {
                    0
                } else {
                    level
                };
                Self::gzip_parts(level, head, content, tail)
            }
            Codec::Plain => [head, content, tail].concat(),
        }
    }

    /// One gzip member at exactly `level` (0 = stored blocks).
    pub fn gzip(level: u32, header: &str, content: &[u8]) -> Vec<u8> {
        Self::gzip_parts(level, header.as_bytes(), content, b"\n")
    }

    fn gzip_parts(level: u32, head: &[u8], content: &[u8], tail: &[u8]) -> Vec<u8> {
        if content.len() <= ONE_SHOT_LIMIT {
            REUSED.with(|cell| cell.borrow_mut().encode(level, head, content, tail))
        } else {
            encode_member_parts(head, content, tail, level)
        }
    }

    /// The first record of every ARC file.
    pub fn filedesc(self, file_name: &str, date14: &str) -> Vec<u8> {
        self.encode(&filedesc_header(file_name, date14), FILEDESC_BLOCK)
    }

    pub fn extension(self) -> &'static str {
        match self {
            Codec::Gzip(_) => "arc.gz",
            Codec::Plain => "arc",
        }
    }
}

/// Records up to this size are compressed in one call by libdeflate; bigger ones stream
/// through zlib-rs (libdeflate needs the whole record contiguous: a second copy of it).
const ONE_SHOT_LIMIT: usize = 8 << 20;

/// Contiguous-input scratch kept per thread up to this capacity.
const SCRATCH_KEEP: usize = 1 << 20;

thread_local! {
    /// One compressor and input buffer per thread, reused between records: a fresh
    /// compressor state per record cost ~15% of a miss in allocation and page zeroing (perf,
    /// 4 KiB misses).
    static REUSED: std::cell::RefCell<OneShot> = const { std::cell::RefCell::new(OneShot { compressors: Vec::new(), input: Vec::new() }) };
}

/// libdeflate at the record's level, and the scratch that makes a record contiguous.
/// libdeflate rather than zlib-rs: at level 1 the same speed on markup with ~30% smaller
/// members, 2.5x faster on incompressible bodies (images, archives), 2x faster at level 6
/// (`cargo bench --bench arc_encode` runs both).
struct OneShot {
    /// One per level used: the configured one and 0 (stored) for incompressible content.
    compressors: Vec<(u32, libdeflater::Compressor)>,
    input: Vec<u8>,
}

impl OneShot {
    fn encode(&mut self, level: u32, head: &[u8], content: &[u8], tail: &[u8]) -> Vec<u8> {
        let at = match self.compressors.iter().position(|(l, _)| *l == level) {
            Some(at) => at,
            None => {
                let Ok(lvl) = libdeflater::CompressionLvl::new(level as i32) else {
                    return encode_member_parts(head, content, tail, level);
                };
                self.compressors
                    .push((level, libdeflater::Compressor::new(lvl)));
                self.compressors.len() - 1
            }
        };
        let compressor = &mut self.compressors[at].1;
        self.input.clear();
        self.input.reserve(head.len() + content.len() + tail.len());
        self.input.extend_from_slice(head);
        self.input.extend_from_slice(content);
        self.input.extend_from_slice(tail);
        let mut out = vec![0u8; compressor.gzip_compress_bound(self.input.len())];
        let result = compressor.gzip_compress(&self.input, &mut out);
        if self.input.capacity() > SCRATCH_KEEP {
            self.input = Vec::new();
        }
        match result {
            Ok(n) => {
                out.truncate(n);
                // The member may live on in the hot shard (a request that coalesced with
                // the fetch keeps it), which counts its length: do not let it carry the
                // compressible part of the bound as spare capacity.
                if out.capacity() - out.len() > out.len() / 8 {
                    out.shrink_to_fit();
                }
                out
            }
            // Only if the bound was wrong; the streaming encoder has no such limit.
            Err(_) => encode_member_parts(head, content, tail, level),
        }
    }
}

/// The gzip extra subfield (RFC 1952 2.3.1.1: id `L` `W`, no data) that marks a record
/// fetched for a request carrying credentials: it must never answer another request, after
/// a restart too. Readers skip extra fields, so the member stays an ordinary gzip member.
pub(crate) const PRIVATE_SUBFIELD: [u8; 4] = [b'L', b'W', 0, 0];
/// Bits of a gzip header's flags byte (RFC 1952 2.3.1).
const FTEXT: u8 = 0x01;
const FEXTRA: u8 = 0x04;
const FNAME: u8 = 0x08;
const FCOMMENT: u8 = 0x10;

/// A gzip member marked private (see `PRIVATE_SUBFIELD`); other bytes are returned as they
/// are. The extra field goes right after the fixed 10-byte header, where RFC 1952 puts it.
pub fn mark_private(member: Vec<u8>) -> Vec<u8> {
    let plain_gzip = member.len() >= 10 && member.starts_with(&[0x1f, 0x8b, 8]);
    if !plain_gzip || member[3] & FEXTRA != 0 {
        return member;
    }
    let mut out = Vec::with_capacity(member.len() + 2 + PRIVATE_SUBFIELD.len());
    out.extend_from_slice(&member[..10]);
    out[3] |= FEXTRA;
    out.extend_from_slice(&(PRIVATE_SUBFIELD.len() as u16).to_le_bytes());
    out.extend_from_slice(&PRIVATE_SUBFIELD);
    out.extend_from_slice(&member[10..]);
    out
}

/// The gzip extra subfield (id `L` `P`) whose data is filler: it grows a member to end on a
/// block boundary, so the next write starts in a fresh block (see `writer.rs`). Readers skip
/// extra fields; the member inflates to the same record.
const PAD_SUBFIELD_ID: [u8; 2] = [b'L', b'P'];

/// Fewest bytes `pad_member` can add to a member without an extra field: XLEN and one
/// subfield header (a member that has one needs only the subfield header).
pub const MIN_PAD: usize = 6;

/// `member` grown by exactly `grow` bytes of filler in its gzip extra field, or `None` when it
/// is not a gzip member this writer made or `grow` is too small (under `MIN_PAD` or, for a
/// member already carrying an extra field, under its 4-byte subfield header) or too big for
/// one subfield.
pub fn pad_member(member: &[u8], grow: usize) -> Option<Vec<u8>> {
    if member.len() < 18 || !member.starts_with(&[0x1f, 0x8b, 8]) {
        return None;
    }
    // A header CRC (FHCRC) would no longer match, and reserved bits are unknown: leave those.
    if member[3] & !(FTEXT | FEXTRA | FNAME | FCOMMENT) != 0 {
        return None;
    }
    let has_extra = member[3] & FEXTRA != 0;
    let (old_xlen, body_at) = if has_extra {
        let xlen = usize::from(u16::from_le_bytes([*member.get(10)?, *member.get(11)?]));
        (xlen, 12usize.checked_add(xlen)?)
    } else {
        (0, 10)
    };
    let overhead = if has_extra { 4 } else { 6 };
    let data = grow.checked_sub(overhead)?;
    let new_xlen = u16::try_from(old_xlen + 4 + data).ok()?;
    let mut out = Vec::with_capacity(member.len() + grow);
    out.extend_from_slice(&member[..10]);
    out[3] |= FEXTRA;
    out.extend_from_slice(&new_xlen.to_le_bytes());
    if has_extra {
        out.extend_from_slice(member.get(12..body_at)?);
    }
    out.extend_from_slice(&PAD_SUBFIELD_ID);
    out.extend_from_slice(&u16::try_from(data).ok()?.to_le_bytes());
    out.resize(out.len() + data, 0);
    out.extend_from_slice(member.get(body_at..)?);
    Some(out)
}

/// Whether a gzip header's extra field holds the private mark.
pub fn extra_marks_private(extra: &[u8]) -> bool {
    let mut rest = extra;
    while rest.len() >= 4 {
        let len = usize::from(u16::from_le_bytes([rest[2], rest[3]]));
        if rest[..2] == PRIVATE_SUBFIELD[..2] {
            return true;
        }
        rest = rest.get(4 + len..).unwrap_or(&[]);
    }
    false
}

/// Suffix of an ARC file still being written; sealing renames it away (Heritrix does the
/// same), so archive tools reading a directory never pick up a half-written file.
pub const OPEN_SUFFIX: &str = ".open";

/// Whether a file name is an archive file liveweb writes (`.arc.gz`, `.arc` or `.warc.gz`).
pub fn is_arc_name(name: &str) -> bool {
    name.ends_with(".arc.gz") || name.ends_with(".arc") || name.ends_with(".warc.gz")
}

/// Whether a file name is an ARC file being written: `NAME.arc.gz.open`, or a bare
/// `NAME.arc.gz` left in a worker directory by a version before the suffix.
pub fn is_open_arc_name(name: &str) -> bool {
    is_arc_name(name.strip_suffix(OPEN_SUFFIX).unwrap_or(name))
}

/// The name the file will have once sealed (`.open` removed).
pub fn sealed_name(name: &str) -> &str {
    name.strip_suffix(OPEN_SUFFIX).unwrap_or(name)
}

/// The name without its `.arc.gz` / `.arc` / `.warc.gz` extension.
pub fn arc_stem(name: &str) -> &str {
    name.strip_suffix(".warc.gz")
        .or_else(|| name.strip_suffix(".arc.gz"))
        .or_else(|| name.strip_suffix(".arc"))
        .unwrap_or(name)
}

/// Longest ARC header line accepted when reading records back.
pub const MAX_HEADER_LINE: usize = 16 * 1024;

/// The content length an ARC header line declares (its last field), without the newline.
pub fn declared_length(header_line: &[u8]) -> Option<u64> {
    let line = std::str::from_utf8(header_line).ok()?;
    line.rsplit(' ').next()?.parse().ok()
}

/// `<url> <ip> <YYYYMMDDhhmmss> <mime> <length>\n`, the ARC v1 URL record header line.
pub fn header_line(url: &str, ip: Option<IpAddr>, date14: &str, mime: &str, len: usize) -> String {
    let ip = match ip {
        Some(ip) => ip.to_string(),
        None => "0.0.0.0".to_string(),
    };
    format!("{url} {ip} {date14} {mime} {len}\n")
}

/// Encodes one record, header line + content + `\n`, as a single gzip member.
pub fn encode_member(header: &str, content: &[u8], level: u32) -> Vec<u8> {
    encode_member_parts(header.as_bytes(), content, b"\n", level)
}

fn encode_member_parts(head: &[u8], content: &[u8], tail: &[u8], level: u32) -> Vec<u8> {
    let out = Vec::with_capacity(content.len() / 2 + head.len() + 64);
    let mut gz = GzEncoder::new(out, Compression::new(level));
    // Writing into a Vec cannot fail.
    let _ = gz.write_all(head);
    let _ = gz.write_all(content);
    let _ = gz.write_all(tail);
    gz.finish().unwrap_or_default()
}

/// The first member of every ARC file.
pub fn filedesc_member(file_name: &str, date14: &str, level: u32) -> Vec<u8> {
    Codec::Gzip(level).filedesc(file_name, date14)
}

fn filedesc_header(file_name: &str, date14: &str) -> String {
    format!(
        "filedesc://{file_name} 0.0.0.0 {date14} text/plain {}\n",
        FILEDESC_BLOCK.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_grows_a_member_exactly_and_keeps_what_it_inflates_to() {
        use std::io::Read;
        let header = header_line("http://p/", None, "20261122000000", "text/plain", 5);
        let plain = encode_member(&header, b"hello", 1);
        let private = mark_private(plain.clone());
        for member in [&plain, &private] {
            let min = if member == &plain { MIN_PAD } else { 4 };
            assert_eq!(pad_member(member, min - 1), None);
            for grow in [min, min + 1, 100, 4095 + MIN_PAD] {
                let padded = pad_member(member, grow).unwrap();
                assert_eq!(padded.len(), member.len() + grow);
                let mut d = flate2::read::GzDecoder::new(&padded[..]);
                let mut out = Vec::new();
                d.read_to_end(&mut out).unwrap();
                let mut expected = Vec::new();
                flate2::read::GzDecoder::new(&member[..])
                    .read_to_end(&mut expected)
                    .unwrap();
                assert_eq!(out, expected);
                let extra = d.header().unwrap().extra().unwrap();
                assert_eq!(extra_marks_private(extra), member == &private);
            }
        }
        assert_eq!(pad_member(b"plain arc record\n", 100), None);
        assert_eq!(pad_member(&plain, 70_000), None, "one subfield at most");
        let mut with_hcrc = plain.clone();
        with_hcrc[3] |= 0x02;
        assert_eq!(
            pad_member(&with_hcrc, 100),
            None,
            "a header CRC would go stale"
        );
    }

    #[test]
    fn a_private_mark_is_an_ordinary_gzip_extra_field() {
        use std::io::Read;
        let header = header_line("http://a/", None, "20261122000000", "text/plain", 5);
        for member in [
            encode_member(&header, b"hello", 1),
            Codec::Gzip(1).encode(&header, b"hello"),
        ] {
            let marked = mark_private(member.clone());
            assert_eq!(marked.len(), member.len() + 6);
            let mut decoder = flate2::read::GzDecoder::new(&marked[..]);
            let mut plain = Vec::new();
            decoder.read_to_end(&mut plain).unwrap();
            assert_eq!(plain, format!("{header}hello\n").as_bytes());
            assert!(extra_marks_private(
                decoder.header().unwrap().extra().unwrap()
            ));
            assert_eq!(mark_private(marked.clone()), marked, "marked once");
        }
        assert_eq!(mark_private(b"plain arc".to_vec()), b"plain arc");
        assert!(!extra_marks_private(&[b'A', b'p', 1, 0, 9]));
        assert!(extra_marks_private(&[
            b'A', b'p', 1, 0, 9, b'L', b'W', 0, 0
        ]));
        assert!(!extra_marks_private(&[b'L', b'W', 9]), "truncated");
    }
    use flate2::read::GzDecoder;
    use std::io::Read;

    fn inflate(member: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        GzDecoder::new(member)
            .read_to_end(&mut out)
            .expect("valid gzip");
        out
    }

    #[test]
    fn reused_encoder_makes_whole_independent_members() {
        let big: Vec<u8> = (0..300_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 19) as u8)
            .collect();
        for (header, content) in [
            ("h1\n", &b"first"[..]),
            ("h2\n", &big[..]),
            ("h3\n", &b""[..]),
        ] {
            for level in [0, 1, 6, 9] {
                let member = Codec::Gzip(level).encode(header, content);
                let mut expected = header.as_bytes().to_vec();
                expected.extend_from_slice(content);
                expected.push(b'\n');
                assert_eq!(inflate(&member), expected);
                // Exactly one member: a single-member decoder consumes it all.
                let mut rest: &[u8] = &member;
                let mut d = flate2::bufread::GzDecoder::new(&mut rest);
                std::io::copy(&mut d, &mut std::io::sink()).unwrap();
                drop(d);
                assert!(rest.is_empty());
                // Little spare capacity: the hot shard counts the length only.
                assert!(member.capacity() - member.len() <= member.len() / 8);
            }
        }
    }

    #[test]
    fn content_with_random_looking_bytes_is_stored_not_deflated() {
        let block = crate::archive::random_bytes(4096, 0x9e37_79b9_7f4a_7c15);
        // High entropy byte by byte, yet deflate finds the repeats: the one case the
        // heuristic gives up compression for, which makes the choice visible here.
        let repeated = block.repeat(4);
        let deflated = Codec::gzip(1, "h\n", &repeated);
        let record = Codec::Gzip(1).encode("h\n", &repeated);
        assert!(deflated.len() < 5000, "{}", deflated.len());
        assert!(record.len() > repeated.len(), "{}", record.len());
        let mut expected = b"h\n".to_vec();
        expected.extend_from_slice(&repeated);
        expected.push(b'\n');
        assert_eq!(inflate(&record), expected);
        // Stored members take the private mark and block padding like any other.
        assert!(pad_member(&record, 100).is_some_and(|p| inflate(&p) == expected));
        assert_eq!(inflate(&mark_private(record)), expected);
    }

    #[test]
    fn declared_length_is_the_last_field() {
        let line = header_line("http://a/", None, "20261122000000", "text/html", 1234);
        let line = line.trim_end_matches('\n');
        assert_eq!(declared_length(line.as_bytes()), Some(1234));
        assert_eq!(declared_length(b"http://a/ 0.0.0.0 x text/html"), None);
        assert_eq!(declared_length(b"\xff 12"), None);
    }

    #[test]
    fn header_line_format() {
        let ip: IpAddr = "93.184.216.34".parse().unwrap();
        assert_eq!(
            header_line(
                "http://example.com/",
                Some(ip),
                "20261122035800",
                "text/html",
                1234
            ),
            "http://example.com/ 93.184.216.34 20261122035800 text/html 1234\n"
        );
        assert_eq!(
            header_line("http://x/", None, "20261122035800", "unk", 0),
            "http://x/ 0.0.0.0 20261122035800 unk 0\n"
        );
    }

    #[test]
    fn member_roundtrip_and_filedesc_length() {
        let payload = b"HTTP/1.1 200 OK\r\n\r\nhi";
        let head = header_line("http://x/", None, "20261122035800", "unk", payload.len());
        let member = encode_member(&head, payload, 6);
        let plain = inflate(&member);
        assert_eq!(plain, [head.as_bytes(), payload, b"\n"].concat());

        let fd = inflate(&filedesc_member("A.arc.gz", "20261122035800", 1));
        let text = String::from_utf8(fd).unwrap();
        let (first, rest) = text.split_once('\n').unwrap();
        assert_eq!(
            first,
            format!(
                "filedesc://A.arc.gz 0.0.0.0 20261122035800 text/plain {}",
                FILEDESC_BLOCK.len()
            )
        );
        assert_eq!(rest.as_bytes(), [FILEDESC_BLOCK, b"\n"].concat());
    }
}
