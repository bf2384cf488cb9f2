//! ARC v1 records: the header line, the filedesc version block, and gzip members (one member
//! per record, so a reader can seek to any record's offset and inflate it alone).

use std::io::Write;
use std::net::IpAddr;

use flate2::write::GzEncoder;
use flate2::Compression;

/// The filedesc record's version block: version 1, reserved 0, origin code, then the URL
/// record definition. The record's length counts exactly these bytes.
pub const FILEDESC_BLOCK: &[u8] =
    b"1 0 liveweb\nURL IP-address Archive-date Content-type Archive-length\n";

/// How records are stored: one gzip member per record (`.arc.gz`), or plain (`.arc`, so a
/// stored body can go from disk to a socket unchanged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Gzip(u32),
    Plain,
}

impl Codec {
    /// One record: header line + content + `\n`, gzip-compressed as one member or plain.
    pub fn encode(self, header: &str, content: &[u8]) -> Vec<u8> {
        match self {
            Codec::Gzip(level) => REUSED.with(|cell| {
                let mut slot = cell.borrow_mut();
                let encoder = match slot.as_mut() {
                    Some(e) if e.level == level => e,
                    _ => slot.insert(GzipEncoder::new(level)),
                };
                encoder
                    .encode(header, content)
                    .unwrap_or_else(|| encode_member(header, content, level))
            }),
            Codec::Plain => {
                let mut out = Vec::with_capacity(header.len() + content.len() + 1);
                out.extend_from_slice(header.as_bytes());
                out.extend_from_slice(content);
                out.push(b'\n');
                out
            }
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

    /// Content-Type of a liveweb-mode reply carrying one such record.
    pub fn content_type(gzip: bool) -> &'static str {
        if gzip {
            "application/arc-gz"
        } else {
            "application/arc"
        }
    }
}

thread_local! {
    /// One compressor per thread, reset between records: a fresh zlib state per record cost
    /// ~15% of a miss in allocation and page zeroing (perf, 4 KiB misses).
    static REUSED: std::cell::RefCell<Option<GzipEncoder>> = const { std::cell::RefCell::new(None) };
}

/// A reusable gzip compressor producing one member per record.
struct GzipEncoder {
    level: u32,
    compress: flate2::Compress,
}

impl GzipEncoder {
    fn new(level: u32) -> Self {
        GzipEncoder {
            level,
            compress: flate2::Compress::new_gzip(Compression::new(level), 15),
        }
    }

    /// `None` only if the compressor reports an error (then the caller starts afresh).
    fn encode(&mut self, header: &str, content: &[u8]) -> Option<Vec<u8>> {
        self.compress.reset();
        let mut out = Vec::with_capacity(content.len() / 2 + header.len() + 64);
        self.feed(header.as_bytes(), &mut out, flate2::FlushCompress::None)?;
        self.feed(content, &mut out, flate2::FlushCompress::None)?;
        self.feed(b"\n", &mut out, flate2::FlushCompress::Finish)?;
        // The member lives on in the hot shard, which counts its length: do not let it carry
        // up to twice that in spare capacity from the doubling above.
        if out.capacity() - out.len() > out.len() / 8 {
            out.shrink_to_fit();
        }
        Some(out)
    }

    fn feed(
        &mut self,
        mut input: &[u8],
        out: &mut Vec<u8>,
        flush: flate2::FlushCompress,
    ) -> Option<()> {
        let finish = matches!(flush, flate2::FlushCompress::Finish);
        loop {
            if out.capacity() - out.len() < 1024 {
                out.reserve(out.capacity().max(4096));
            }
            let before = self.compress.total_in();
            let status = self.compress.compress_vec(input, out, flush).ok()?;
            input = &input[(self.compress.total_in() - before) as usize..];
            let done = if finish {
                status == flate2::Status::StreamEnd
            } else {
                input.is_empty()
            };
            if done {
                return Some(());
            }
        }
    }
}

/// Whether a file name is an ARC file (`.arc.gz` or `.arc`).
pub fn is_arc_name(name: &str) -> bool {
    name.ends_with(".arc.gz") || name.ends_with(".arc")
}

/// The name without its `.arc.gz` / `.arc` extension.
pub fn arc_stem(name: &str) -> &str {
    name.strip_suffix(".arc.gz")
        .or_else(|| name.strip_suffix(".arc"))
        .unwrap_or(name)
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
    let out = Vec::with_capacity(content.len() / 2 + header.len() + 64);
    let mut gz = GzEncoder::new(out, Compression::new(level));
    // Writing into a Vec cannot fail.
    let _ = gz.write_all(header.as_bytes());
    let _ = gz.write_all(content);
    let _ = gz.write_all(b"\n");
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
            for level in [1, 6] {
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
