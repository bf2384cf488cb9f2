//! ARC storage: record encoding, the aligned O_DIRECT writer, the shared file table.

pub mod aligned;
pub mod files;
pub mod record;
pub mod writer;

pub use files::{ArcFile, FileTable};
pub use writer::{ArcWriter, RecordLoc, WriterConfig};
