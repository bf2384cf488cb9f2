//! What the archive did, for the operator's pages: record bytes appended, files sealed, seal
//! and on-seal failures, and the free space last seen. Shared by every worker; written only
//! on appends (one relaxed add per batch) and on seals.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::lock;

#[derive(Debug, Default)]
pub struct ArchiveStats {
    pub bytes_appended: AtomicU64,
    pub records_appended: AtomicU64,
    pub files_sealed: AtomicU64,
    pub seal_failures: AtomicU64,
    pub on_seal_failures: AtomicU64,
    /// Identical-payload revisit records written (`--dedup`).
    pub revisits: AtomicU64,
    /// Bytes free on the data filesystem at the last check (0: not checked yet).
    pub free_bytes: AtomicU64,
    /// Each worker's open file: name and bytes written (set on open, append and seal).
    open_files: std::sync::Mutex<std::collections::BTreeMap<usize, (String, u64)>>,
    /// The CDX lines of files not yet sealed, for CDX queries: from a file's opening until
    /// its seal has written its CDX.
    open_cdx: std::sync::Mutex<Vec<std::sync::Arc<super::cdx_spool::SpoolView>>>,
}

/// A copy of the numbers at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ArchiveNumbers {
    pub bytes_appended: u64,
    pub records_appended: u64,
    pub files_sealed: u64,
    pub seal_failures: u64,
    pub on_seal_failures: u64,
    pub revisits: u64,
    pub free_bytes: u64,
}

impl ArchiveStats {
    pub fn appended(&self, records: u64, bytes: u64) {
        self.records_appended.fetch_add(records, Ordering::Relaxed);
        self.bytes_appended.fetch_add(bytes, Ordering::Relaxed);
    }

    /// A file was opened: queries read its lines from `view` until its seal.
    pub fn add_open_cdx(&self, view: std::sync::Arc<super::cdx_spool::SpoolView>) {
        lock(&self.open_cdx).push(view);
    }

    pub fn remove_open_cdx(&self, view: &std::sync::Arc<super::cdx_spool::SpoolView>) {
        lock(&self.open_cdx).retain(|v| !std::sync::Arc::ptr_eq(v, view));
    }

    /// The files not yet sealed, as CDX queries read them.
    pub fn open_cdx(&self) -> Vec<std::sync::Arc<super::cdx_spool::SpoolView>> {
        lock(&self.open_cdx).clone()
    }

    /// An identical-payload revisit was written in place of a whole response.
    pub fn revisit(&self) {
        self.revisits.fetch_add(1, Ordering::Relaxed);
    }

    /// Worker `worker` writes `name`, `len` bytes so far; `None` once it sealed it.
    pub fn set_open(&self, worker: usize, file: Option<(&str, u64)>) {
        let mut open = lock(&self.open_files);
        match file {
            Some((name, len)) => match open.get_mut(&worker) {
                Some(entry) if entry.0 == name => entry.1 = len,
                _ => {
                    open.insert(worker, (name.to_string(), len));
                }
            },
            None => {
                open.remove(&worker);
            }
        }
    }

    /// (worker, file name, bytes) of every open file, by worker.
    pub fn open_files(&self) -> Vec<(usize, String, u64)> {
        let open = lock(&self.open_files);
        open.iter()
            .map(|(w, (name, len))| (*w, name.clone(), *len))
            .collect()
    }

    pub fn now(&self) -> ArchiveNumbers {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ArchiveNumbers {
            bytes_appended: load(&self.bytes_appended),
            records_appended: load(&self.records_appended),
            files_sealed: load(&self.files_sealed),
            seal_failures: load(&self.seal_failures),
            on_seal_failures: load(&self.on_seal_failures),
            revisits: load(&self.revisits),
            free_bytes: load(&self.free_bytes),
        }
    }
}
