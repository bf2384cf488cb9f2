//! ARC storage: record encoding, the aligned O_DIRECT writer, sealing with CDX, hand-off to
//! the on-seal hook, recovery at start, and the shared file table.

pub mod aligned;
pub mod cdx;
mod compressibility;
mod fault;
pub mod files;
pub mod handoff;
mod layout;
pub mod reader;
pub mod record;
pub mod recover;
pub mod scan;
pub mod seal;
mod space;
pub mod stored;
pub mod writer;

pub use files::{ArcFile, FileTable};
pub use writer::{AppendRecord, ArcWriter, FsyncPolicy, RecordLoc, WriterConfig};
