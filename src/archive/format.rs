//! Which archive format a file is in and how readers find a record's payload without being
//! told: ARC records start with their header line, WARC records with `WARC/`.

use super::record::{declared_length, sealed_name, Codec, MAX_HEADER_LINE};

/// The archive format files are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// ARC v1 (`.arc.gz`, or `.arc` plain): a filedesc record, then one record per exchange.
    #[default]
    Arc,
    /// WARC/1.1 (`.warc.gz`): a warcinfo record, then per exchange a response record and the
    /// request record that goes with it.
    Warc,
}

impl Format {
    /// The file name extension for records encoded with `codec`.
    pub fn extension(self, codec: Codec) -> &'static str {
        match self {
            Format::Arc => codec.extension(),
            Format::Warc => "warc.gz",
        }
    }

    /// The record that opens a file named `file_name`, encoded with `codec` (a WARC file's
    /// `warcinfo` has the record id `warcinfo_id`, which its records name).
    pub fn first_record(self, codec: Codec, file_name: &str, warcinfo_id: &str) -> Vec<u8> {
        let now = crate::clock::UtcTime::now();
        match self {
            Format::Arc => codec.filedesc(file_name, &now.arc14()),
            Format::Warc => {
                let (head, block) = super::warc::warcinfo(file_name, &now, warcinfo_id);
                codec.encode_parts(head.as_bytes(), &block, super::warc::RECORD_END)
            }
        }
    }

    /// Content-Type of a liveweb-mode reply carrying one record encoded with `codec`.
    pub fn content_type(self, codec: Codec) -> &'static str {
        match (self, codec) {
            (Format::Warc, _) => "application/warc-gz",
            (Format::Arc, Codec::Gzip(_)) => "application/arc-gz",
            (Format::Arc, Codec::Plain) => "application/arc",
        }
    }

    /// Content-Type of a liveweb-mode reply carrying one record of a file named `name`.
    pub fn content_type_of(name: &str) -> &'static str {
        let name = sealed_name(name);
        let format = if name.ends_with(".warc.gz") {
            Format::Warc
        } else {
            Format::Arc
        };
        let codec = if name.ends_with(".gz") {
            Codec::Gzip(1)
        } else {
            Codec::Plain
        };
        format.content_type(codec)
    }
}

/// Where a stored record's payload is, read from the record's start: after its ARC header
/// line, or after its WARC header block. Readers need not know which format a file is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadAt {
    /// More bytes are needed to tell.
    Incomplete,
    /// Not a record head liveweb reads.
    Invalid,
    /// The payload starts at `start` and is `len` bytes long.
    Found { start: usize, len: u64 },
}

pub fn payload_at(record: &[u8]) -> PayloadAt {
    const WARC: &[u8] = b"WARC/";
    if record.len() < WARC.len() && WARC.starts_with(record) {
        return PayloadAt::Incomplete;
    }
    if record.starts_with(WARC) {
        return match super::warc::parse_header(record) {
            Some((end, header)) => PayloadAt::Found {
                start: end,
                len: header.content_length,
            },
            None if record.len() >= super::warc::MAX_HEADER_BLOCK
                || record.windows(4).any(|w| w == b"\r\n\r\n") =>
            {
                PayloadAt::Invalid
            }
            None => PayloadAt::Incomplete,
        };
    }
    let window = &record[..record.len().min(MAX_HEADER_LINE)];
    match window.iter().position(|&b| b == b'\n') {
        Some(nl) => match declared_length(&record[..nl]) {
            Some(len) => PayloadAt::Found { start: nl + 1, len },
            None => PayloadAt::Invalid,
        },
        None if record.len() >= MAX_HEADER_LINE => PayloadAt::Invalid,
        None => PayloadAt::Incomplete,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_is_found_after_an_arc_line_or_a_warc_block_and_nothing_else() {
        let arc = b"http://a/ 1.2.3.4 20260101000000 text/html 5\nhello";
        let line_len = arc.iter().position(|&b| b == b'\n').unwrap();
        assert_eq!(
            payload_at(arc),
            PayloadAt::Found {
                start: line_len + 1,
                len: 5
            }
        );
        let warc = b"WARC/1.1\r\nWARC-Type: response\r\nContent-Length: 7\r\n\r\npayload";
        match payload_at(warc) {
            PayloadAt::Found { start, len } => {
                assert_eq!((&warc[start..], len), (&b"payload"[..], 7));
            }
            other => panic!("{other:?}"),
        }
        // Cut short: more bytes are needed, whichever the format.
        for cut in [
            &b"WAR"[..],
            b"WARC/1.1\r\nContent-Len",
            b"http://a/ 1.2.3.4 2026",
        ] {
            assert_eq!(payload_at(cut), PayloadAt::Incomplete, "{cut:?}");
        }
        // Not a record head: an ARC line without a length, a WARC block without one, and a
        // header line longer than any reader accepts.
        assert_eq!(payload_at(b"http://a/ x y z\nbody"), PayloadAt::Invalid);
        assert_eq!(
            payload_at(b"WARC/1.1\r\nWARC-Type: response\r\n\r\n"),
            PayloadAt::Invalid
        );
        let endless = vec![b'a'; MAX_HEADER_LINE + 1];
        assert_eq!(payload_at(&endless), PayloadAt::Invalid);
    }

    #[test]
    fn names_and_reply_types_follow_the_format_and_the_codec() {
        assert_eq!(Format::Arc.extension(Codec::Gzip(1)), "arc.gz");
        assert_eq!(Format::Arc.extension(Codec::Plain), "arc");
        assert_eq!(Format::Warc.extension(Codec::Gzip(1)), "warc.gz");
        for (name, content_type) in [
            ("L-1-0-00001.arc.gz", "application/arc-gz"),
            ("L-1-0-00001.arc.gz.open", "application/arc-gz"),
            ("L-1-0-00001.arc", "application/arc"),
            ("L-1-0-00001.warc.gz", "application/warc-gz"),
            ("job-1-0-00001.warc.gz.open", "application/warc-gz"),
        ] {
            assert_eq!(Format::content_type_of(name), content_type, "{name}");
        }
        // A file opens with its filedesc or warcinfo record.
        let plain = Format::Arc.first_record(Codec::Plain, "L.arc", "-");
        assert!(plain.starts_with(b"filedesc://L.arc "), "{plain:?}");
        let warc = Format::Warc.first_record(Codec::Gzip(1), "L.warc.gz", "<urn:uuid:x>");
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&warc[..]), &mut text)
            .unwrap();
        assert!(
            text.starts_with("WARC/1.1\r\nWARC-Type: warcinfo\r\nWARC-Record-ID: <urn:uuid:x>\r\n"),
            "{text}"
        );
    }
}
