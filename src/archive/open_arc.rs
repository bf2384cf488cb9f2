//! The file a worker's writer appends to: named and created under its `.open` name (with
//! O_DIRECT where the file system allows it), registered in the file table for readers,
//! made durable with fdatasync, and sealed on the blocking pool when the writer rolls it.

use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use super::cdx_spool::CdxSpool;
use super::files::FileTable;
use super::format::Format;
use super::record::Codec;
use super::seal::seal;
use super::writer::WriterConfig;
use crate::clock::UtcTime;

/// The file currently appended to.
pub(super) struct OpenArc {
    pub(super) file: monoio::fs::File,
    pub(super) id: u32,
    pub(super) path: PathBuf,
    /// File name, for the filedesc (or warcinfo) record.
    pub(super) name: String,
    /// Bytes of valid records in the file.
    pub(super) logical: u64,
    /// Block-aligned offset where the in-memory tail block begins.
    pub(super) tail_start: u64,
    /// Bytes from `tail_start` to `logical` (less than one block).
    pub(super) tail: Vec<u8>,
    /// Index lines of the records in the file, for its CDX (on disk until the seal).
    pub(super) entries: CdxSpool,
    pub(super) last_append: Instant,
    /// Written since the last fdatasync.
    pub(super) dirty: bool,
    pub(super) last_sync: Instant,
}

impl OpenArc {
    /// fdatasync through the runtime; a failure is logged and returned.
    pub(super) async fn sync(&mut self, worker: usize) -> io::Result<()> {
        let result = match super::fault::fdatasync() {
            Some(injected) => Err(injected),
            None => self.file.sync_data().await,
        };
        match &result {
            Ok(()) => {
                self.dirty = false;
                self.last_sync = Instant::now();
            }
            Err(e) => log::error!("worker {worker}: fdatasync failed: {e}"),
        }
        result
    }
}

/// Names and creates a worker's files, one serial after another.
pub(super) struct FileMaker {
    dir: PathBuf,
    prefix: String,
    worker: usize,
    format: Format,
    codec: Codec,
    serial: u64,
    /// Cleared for good once the file system refuses O_DIRECT.
    direct_io: bool,
}

impl FileMaker {
    pub(super) fn new(config: &WriterConfig) -> Self {
        FileMaker {
            dir: config.dir.clone(),
            prefix: config.prefix.clone(),
            worker: config.worker,
            format: config.format,
            codec: config.codec,
            serial: config.first_serial,
            direct_io: true,
        }
    }

    /// Creates the next file (O_DIRECT when the filesystem allows it) and registers a
    /// read descriptor for it in the file table.
    pub(super) async fn open_next(&mut self, files: &FileTable) -> io::Result<OpenArc> {
        loop {
            let name = format!(
                "{}-{}-{}-{:05}.{}",
                self.prefix,
                UtcTime::now().stamp17(),
                self.worker,
                self.serial,
                self.format.extension(self.codec)
            );
            self.serial += 1;
            let path = self
                .dir
                .join(format!("{name}{}", super::record::OPEN_SUFFIX));
            let file = match self.create(&path).await {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            };
            let entries = CdxSpool::new(&self.dir, self.worker, &path_name(&path));
            let reader = open_reader(&path)?;
            let id = files.insert(path.clone(), reader);
            let now = Instant::now();
            return Ok(OpenArc {
                file,
                id,
                path,
                name,
                logical: 0,
                tail_start: 0,
                tail: Vec::new(),
                entries,
                last_append: now,
                dirty: false,
                last_sync: now,
            });
        }
    }

    async fn create(&mut self, path: &Path) -> io::Result<monoio::fs::File> {
        use std::os::unix::fs::OpenOptionsExt;
        if self.direct_io {
            let direct = monoio::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .custom_flags(libc::O_DIRECT)
                .open(path)
                .await;
            match direct {
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    // tmpfs and some others refuse O_DIRECT; the aligned write path still works.
                    log::warn!(
                        "worker {}: O_DIRECT not supported under {}, using buffered writes",
                        self.worker,
                        self.dir.display()
                    );
                    self.direct_io = false;
                }
                other => return other,
            }
        }
        monoio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .await
    }
}

/// Closes `open` and seals it on the blocking pool, returning the seal's handle; a file that
/// never got a record is removed instead.
pub(super) async fn seal_in_background(
    open: OpenArc,
    files: &Arc<FileTable>,
    config: &WriterConfig,
) -> Option<monoio::task::JoinHandle<Result<(), monoio::blocking::JoinError>>> {
    let OpenArc {
        file,
        id,
        path,
        logical,
        entries,
        ..
    } = open;
    let _ = file.close().await;
    let files = files.clone();
    let view = entries.view();
    if entries.is_empty() {
        // Registered at open like any file's: left in the stats it would hold its spool's
        // descriptor for the life of the process.
        if let Some(view) = &view {
            config.stats.remove_open_cdx(view);
        }
        files.remove(id);
        let _ = monoio::spawn_blocking(move || std::fs::remove_file(path)).await;
        return None;
    }
    let sealed_dir = config.sealed_dir.clone();
    let handoff = config.handoff.clone();
    let worker = config.worker;
    let stats = config.stats.clone();
    Some(monoio::spawn_blocking(move || {
        let counted = |c: &std::sync::atomic::AtomicU64| {
            c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        };
        let sealed = entries
            .into_entries()
            .and_then(|entries| seal(&path, logical, &entries, &sealed_dir));
        // Its lines are in the sealed CDX now (or, if the seal failed, in the one the next
        // start rebuilds): queries stop reading the spool.
        if let Some(view) = &view {
            stats.remove_open_cdx(view);
        }
        // Sorting a file's CDX lines takes memory in proportion to its records, freed now:
        // handed back to the system, not kept by this pool thread's heap.
        // SAFETY: mi_collect only walks and frees the calling thread's own allocator state.
        unsafe { libmimalloc_sys::mi_collect(true) };
        match sealed {
            Ok(sealed) => {
                counted(&stats.files_sealed);
                files.set_path(id, sealed.clone());
                if let Some(h) = handoff {
                    h.submit(Some(id), sealed);
                }
            }
            Err(e) => {
                counted(&stats.seal_failures);
                log::error!(
                    "worker {worker}: sealing {} failed: {e}; it is sealed at next start",
                    path.display()
                )
            }
        }
    }))
}

fn path_name(path: &Path) -> String {
    path.file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}

/// Opens the shared read descriptor. A plain open(2) of a file this thread just created is
/// served from the dentry cache and does not wait on the disk.
fn open_reader(path: &Path) -> io::Result<OwnedFd> {
    Ok(OwnedFd::from(std::fs::File::open(path)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::stats::ArchiveStats;

    #[test]
    fn an_empty_file_s_spool_leaves_the_stats_when_it_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let stats = Arc::new(ArchiveStats::default());
        let config = WriterConfig {
            dir: dir.path().to_path_buf(),
            sealed_dir: dir.path().join("sealed"),
            prefix: "T".into(),
            worker: 0,
            codec: Codec::Plain,
            format: Format::Arc,
            first_serial: 0,
            max_size: 1 << 20,
            max_idle: std::time::Duration::from_secs(60),
            fsync: super::super::writer::FsyncPolicy::Never,
            min_free: 0,
            handoff: None,
            stats: stats.clone(),
        };
        let files = Arc::new(FileTable::new());
        let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .with_blocking_strategy(monoio::blocking::BlockingStrategy::ExecuteLocal)
            .build()
            .unwrap();
        rt.block_on(async {
            let open = FileMaker::new(&config).open_next(&files).await.unwrap();
            let view = open.entries.view().expect("a spool file in a temp dir");
            stats.add_open_cdx(view);
            let path = open.path.clone();
            assert!(seal_in_background(open, &files, &config).await.is_none());
            assert!(!path.exists());
        });
        assert!(stats.open_cdx().is_empty());
    }
}
