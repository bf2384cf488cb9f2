//! What the archive did, for the operator's pages: record bytes appended, files sealed, seal
//! and on-seal failures, and the free space last seen. Shared by every worker; written only
//! on appends (one relaxed add per batch) and on seals.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct ArchiveStats {
    pub bytes_appended: AtomicU64,
    pub records_appended: AtomicU64,
    pub files_sealed: AtomicU64,
    pub seal_failures: AtomicU64,
    pub on_seal_failures: AtomicU64,
    /// Bytes free on the data filesystem at the last check (0: not checked yet).
    pub free_bytes: AtomicU64,
}

/// A copy of the numbers at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ArchiveNumbers {
    pub bytes_appended: u64,
    pub records_appended: u64,
    pub files_sealed: u64,
    pub seal_failures: u64,
    pub on_seal_failures: u64,
    pub free_bytes: u64,
}

impl ArchiveStats {
    pub fn appended(&self, records: u64, bytes: u64) {
        self.records_appended.fetch_add(records, Ordering::Relaxed);
        self.bytes_appended.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn now(&self) -> ArchiveNumbers {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ArchiveNumbers {
            bytes_appended: load(&self.bytes_appended),
            records_appended: load(&self.records_appended),
            files_sealed: load(&self.files_sealed),
            seal_failures: load(&self.seal_failures),
            on_seal_failures: load(&self.on_seal_failures),
            free_bytes: load(&self.free_bytes),
        }
    }
}
