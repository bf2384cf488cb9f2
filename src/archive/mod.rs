//! ARC storage: record encoding, the aligned O_DIRECT writer, sealing with CDX, hand-off to
//! the on-seal hook, recovery at start, and the shared file table.

pub mod aligned;
pub mod cdx;
mod cdx_check;
pub mod cdx_query;
mod cdx_spool;
mod compressibility;
mod fault;
pub mod files;
pub mod format;
pub mod from_file;
pub mod handoff;
mod layout;
mod open_arc;
pub mod payload_digest;
pub mod reader;
pub mod record;
pub mod recover;
pub mod reindex;
pub mod scan;
pub mod seal;
mod space;
pub mod stats;
pub mod stored;
pub mod surt;
pub mod warc;
pub mod writer;

pub use files::{ArcFile, FileTable};

/// Bytes no deflate implementation can shrink (xorshift64), for tests.
#[cfg(test)]
pub(crate) fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
pub use writer::{AppendRecord, ArcWriter, FsyncPolicy, RecordLoc, WriterConfig};
