//! The table of ARC files any worker may read from: file id -> path and a read-only
//! descriptor, shared by all workers (each file is written by one worker only).

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use super::reader::RegionReader;

/// An ARC file that hits can be served from.
#[derive(Debug)]
pub struct ArcFile {
    pub id: u32,
    pub path: PathBuf,
    /// Buffered (not O_DIRECT) read-only descriptor, used by sendfile and cold reads.
    pub fd: OwnedFd,
    /// Records are gzip members (`.arc.gz`, `.warc.gz`), not plain (`.arc`).
    pub gzip: bool,
    /// What a liveweb-mode reply carrying one of its records says it is.
    pub content_type: &'static str,
}

/// Whether the file behind `fd` has no name left. A descriptor that cannot be checked
/// counts as linked: forgetting a file is only for files known to be gone.
fn is_unlinked(fd: &OwnedFd) -> bool {
    use std::os::unix::fs::MetadataExt;
    fd.try_clone()
        .map(std::fs::File::from)
        .and_then(|f| f.metadata())
        .is_ok_and(|m| m.nlink() == 0)
}

fn is_gzip(path: &std::path::Path) -> bool {
    super::record::sealed_name(&path.to_string_lossy()).ends_with(".gz")
}

impl ArcFile {
    /// An io_uring handle on the file for reading records (a duplicate descriptor, closed
    /// when the handle is dropped).
    pub fn reader(&self) -> std::io::Result<RegionReader> {
        RegionReader::open(&self.fd)
    }
}

/// All readable ARC files, by id. Read-mostly: one insert per file opened.
#[derive(Debug, Default)]
pub struct FileTable {
    next_id: AtomicU32,
    files: papaya::HashMap<u32, Arc<ArcFile>>,
}

impl FileTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a file and returns its id.
    pub fn insert(&self, path: PathBuf, fd: OwnedFd) -> u32 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.files.pin().insert(
            id,
            Arc::new(ArcFile {
                id,
                gzip: is_gzip(&path),
                content_type: super::format::Format::content_type_of(&path.to_string_lossy()),
                path,
                fd,
            }),
        );
        id
    }

    /// Forgets a file (it was handed off and deleted); its records stop being hits.
    pub fn remove(&self, id: u32) {
        self.files.pin().remove(&id);
    }

    /// Records that a file was moved (sealed); its descriptor is unaffected.
    pub fn set_path(&self, id: u32, path: PathBuf) {
        let map = self.files.pin();
        if let Some(old) = map.get(&id) {
            if let Ok(fd) = old.fd.try_clone() {
                map.insert(
                    id,
                    Arc::new(ArcFile {
                        id,
                        gzip: old.gzip,
                        content_type: old.content_type,
                        path,
                        fd,
                    }),
                );
            }
        }
    }

    /// Forgets the files whose every name is gone (deleted by something other than the
    /// `--on-seal` hook, e.g. an operator's upload-and-delete job) and returns how many: the
    /// table's descriptor would otherwise keep each one's disk space for the life of the
    /// process, and a deleted file's records cannot be hits after a restart either.
    pub fn forget_unlinked(&self) -> usize {
        let map = self.files.pin();
        let gone: Vec<u32> = map
            .iter()
            .filter(|(_, file)| is_unlinked(&file.fd))
            .map(|(id, _)| *id)
            .collect();
        for id in &gone {
            map.remove(id);
        }
        gone.len()
    }

    pub fn get(&self, id: u32) -> Option<Arc<ArcFile>> {
        self.files.pin().get(&id).cloned()
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_deleted_behind_its_back_are_forgotten_and_others_kept() {
        let dir = std::env::temp_dir().join(format!("lw-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let table = FileTable::new();
        let mut ids = Vec::new();
        for name in ["a.arc.gz", "b.arc.gz"] {
            let path = dir.join(name);
            std::fs::write(&path, b"x").expect("write");
            let fd = OwnedFd::from(std::fs::File::open(&path).expect("open"));
            ids.push(table.insert(path, fd));
        }
        assert_eq!(table.forget_unlinked(), 0);
        std::fs::remove_file(dir.join("a.arc.gz")).expect("remove");
        assert_eq!(table.forget_unlinked(), 1);
        assert!(table.get(ids[0]).is_none());
        assert!(table.get(ids[1]).is_some());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_codec_is_read_from_the_name_with_or_without_the_open_suffix() {
        assert!(is_gzip(std::path::Path::new("d/0/L-1-0-00001.arc.gz.open")));
        assert!(is_gzip(std::path::Path::new("d/sealed/L-1-0-00001.arc.gz")));
        assert!(!is_gzip(std::path::Path::new("d/0/L-1-0-00001.arc.open")));
        assert!(!is_gzip(std::path::Path::new("d/sealed/L-1-0-00001.arc")));
    }
}
