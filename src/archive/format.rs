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
