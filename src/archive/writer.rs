//! The per-worker ARC writer: one task owning the worker's open ARC file, appending gzip
//! members with O_DIRECT. Records that arrive while a write is in flight are batched into the
//! next write (group commit). The partial last block stays in memory and is rewritten, zero
//! padded, by the next write; a record's location is published only after its write completed,
//! so readers never see padding or half a record.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures_channel::{mpsc, oneshot};
use futures_util::StreamExt;

use super::aligned::{AlignedBuf, BLOCK};
use super::files::FileTable;
use super::record::filedesc_member;
use crate::clock::UtcTime;
use crate::error::Error;

/// Where a record lives: file, byte offset of its gzip member, member length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordLoc {
    pub file_id: u32,
    pub offset: u64,
    pub len: u64,
}

/// Most bytes gathered into one group-commit write.
const MAX_BATCH_BYTES: usize = 32 << 20;

/// What the writer needs to know.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// This worker's directory, `DATA/<worker>/`.
    pub dir: PathBuf,
    pub prefix: String,
    pub worker: usize,
    pub gzip_level: u32,
}

enum Command {
    Append {
        member: Bytes,
        done: oneshot::Sender<Result<RecordLoc, Error>>,
    },
    Close(oneshot::Sender<()>),
}

/// Cheap handle to the worker's writer task.
#[derive(Clone)]
pub struct ArcWriter {
    tx: mpsc::UnboundedSender<Command>,
}

impl ArcWriter {
    /// Starts the writer task on the current monoio runtime.
    pub fn spawn(config: WriterConfig, files: Arc<FileTable>) -> Self {
        let (tx, rx) = mpsc::unbounded();
        monoio::spawn(run(config, files, rx));
        ArcWriter { tx }
    }

    /// Appends one gzip member; resolves once it is written (not necessarily durable).
    pub async fn append(&self, member: Bytes) -> Result<RecordLoc, Error> {
        let (done, wait) = oneshot::channel();
        self.tx
            .unbounded_send(Command::Append { member, done })
            .map_err(|_| Error::Storage("archive writer has stopped".into()))?;
        wait.await
            .unwrap_or_else(|_| Err(Error::Storage("archive writer has stopped".into())))
    }

    /// Cuts the open file to its exact length, syncs it, and stops the writer.
    pub async fn close(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.unbounded_send(Command::Close(done)).is_ok() {
            let _ = wait.await;
        }
    }
}

/// The file currently appended to.
struct OpenArc {
    file: monoio::fs::File,
    id: u32,
    /// Bytes of valid records in the file.
    logical: u64,
    /// Block-aligned offset where the in-memory tail block begins.
    tail_start: u64,
    /// Bytes from `tail_start` to `logical` (less than one block).
    tail: Vec<u8>,
}

struct Writer {
    config: WriterConfig,
    files: Arc<FileTable>,
    open: Option<OpenArc>,
    serial: u64,
    scratch: Option<AlignedBuf>,
    direct_io: bool,
}

async fn run(
    config: WriterConfig,
    files: Arc<FileTable>,
    mut rx: mpsc::UnboundedReceiver<Command>,
) {
    let mut w = Writer {
        config,
        files,
        open: None,
        serial: 0,
        scratch: Some(AlignedBuf::with_capacity(1 << 20)),
        direct_io: true,
    };
    let mut closing = None;
    while let Some(first) = rx.next().await {
        let mut batch = Vec::new();
        let mut bytes = 0;
        let mut next = Some(first);
        while let Some(cmd) = next.take() {
            match cmd {
                Command::Append { member, done } => {
                    bytes += member.len();
                    batch.push((member, done));
                }
                Command::Close(done) => {
                    closing = Some(done);
                    break;
                }
            }
            if bytes < MAX_BATCH_BYTES {
                next = rx.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            let members: Vec<&[u8]> = batch.iter().map(|(m, _)| m.as_ref()).collect();
            match w.write_batch(&members).await {
                Ok(locs) => {
                    for ((_, done), loc) in batch.into_iter().zip(locs) {
                        let _ = done.send(Ok(loc));
                    }
                }
                Err(e) => {
                    eprintln!(
                        "liveweb: worker {} archive write failed: {e}",
                        w.config.worker
                    );
                    let err = Error::Storage(e.to_string());
                    for (_, done) in batch {
                        let _ = done.send(Err(err.clone()));
                    }
                }
            }
        }
        if closing.is_some() {
            break;
        }
    }
    if let Some(open) = w.open.take() {
        if let Err(e) = finish_file(&open).await {
            eprintln!(
                "liveweb: worker {} closing ARC file failed: {e}",
                w.config.worker
            );
        }
    }
    if let Some(done) = closing {
        let _ = done.send(());
    }
}

impl Writer {
    /// Writes the members back to back after the current end; returns each one's location.
    async fn write_batch(&mut self, members: &[&[u8]]) -> io::Result<Vec<RecordLoc>> {
        let mut header = None;
        if self.open.is_none() {
            let (open, name) = self.open_new_file().await?;
            header = Some(filedesc_member(
                &name,
                &UtcTime::now().arc14(),
                self.config.gzip_level,
            ));
            self.open = Some(open);
        }
        let Some(open) = self.open.as_mut() else {
            return Err(io::Error::other("no open ARC file"));
        };
        let header_len = header.as_ref().map_or(0, Vec::len);
        let total = open.tail.len() + header_len + members.iter().map(|m| m.len()).sum::<usize>();
        let mut buf = self
            .scratch
            .take()
            .unwrap_or_else(|| AlignedBuf::with_capacity(total))
            .reserve_total(total + BLOCK);
        buf.clear();
        buf.extend_from_slice(&open.tail);
        if let Some(h) = &header {
            buf.extend_from_slice(h);
        }
        let mut locs = Vec::with_capacity(members.len());
        for m in members {
            locs.push(RecordLoc {
                file_id: open.id,
                offset: open.tail_start + buf.len() as u64,
                len: m.len() as u64,
            });
            buf.extend_from_slice(m);
        }
        let data_len = buf.len();
        buf.pad_to_block();
        let (res, buf) = open.file.write_all_at(buf, open.tail_start).await;
        let outcome = res.map(|()| {
            let logical = open.tail_start + data_len as u64;
            let keep_from = data_len / BLOCK * BLOCK;
            open.tail = buf.as_slice()[keep_from..data_len].to_vec();
            open.tail_start += keep_from as u64;
            open.logical = logical;
            locs
        });
        // Keep a moderately sized scratch buffer; let a huge one go.
        if buf.capacity() <= 8 << 20 {
            self.scratch = Some(buf);
        }
        outcome
    }

    /// Creates the next ARC file (O_DIRECT when the filesystem allows it) and registers a
    /// read descriptor for it in the file table.
    async fn open_new_file(&mut self) -> io::Result<(OpenArc, String)> {
        loop {
            let name = format!(
                "{}-{}-{}-{:05}.arc.gz",
                self.config.prefix,
                UtcTime::now().stamp17(),
                self.config.worker,
                self.serial
            );
            self.serial += 1;
            let path = self.config.dir.join(&name);
            let file = match self.create(&path).await {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            };
            let reader = open_reader(&path)?;
            let id = self.files.insert(path, reader);
            return Ok((
                OpenArc {
                    file,
                    id,
                    logical: 0,
                    tail_start: 0,
                    tail: Vec::new(),
                },
                name,
            ));
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
                    eprintln!(
                        "liveweb: worker {}: O_DIRECT not supported under {}, using buffered writes",
                        self.config.worker,
                        self.config.dir.display()
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

/// Opens the shared read descriptor. A plain open(2) of a file this thread just created is
/// served from the dentry cache and does not wait on the disk.
fn open_reader(path: &Path) -> io::Result<OwnedFd> {
    Ok(OwnedFd::from(std::fs::File::open(path)?))
}

/// Cuts the file to its logical length (dropping the zero padding) and makes it durable.
async fn finish_file(open: &OpenArc) -> io::Result<()> {
    let fd = open.file.as_raw_fd();
    let len = libc::off_t::try_from(open.logical).map_err(io::Error::other)?;
    // SAFETY: fd is the writer's own open descriptor.
    if unsafe { libc::ftruncate(fd, len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    open.file.sync_data().await
}
