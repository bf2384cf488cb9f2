//! The per-worker ARC writer: one task owning the worker's open ARC file, appending gzip
//! members with O_DIRECT. Records that arrive while a write is in flight are batched into the
//! next write (group commit). The partial last block stays in memory and is rewritten, zero
//! padded, by the next write; a record's location is published only after its write completed,
//! so readers never see padding or half a record. The writer also rolls files (by size and
//! idle time), hands them to the sealer, applies the fsync policy, and pauses archiving while
//! the disk is full.

use std::cell::Cell;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_channel::{mpsc, oneshot};
use futures_util::StreamExt;

use super::aligned::{AlignedBuf, BLOCK};
use super::cdx::CdxEntry;
use super::files::FileTable;
use super::handoff::Handoff;
use super::record::{pad_member, Codec, MIN_PAD};
use super::seal::seal;
use crate::clock::UtcTime;
use crate::config::FsyncPolicy;
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
/// How often free space is checked.
const SPACE_CHECK_EVERY: Duration = Duration::from_secs(1);

/// What the writer needs to know.
#[derive(Clone)]
pub struct WriterConfig {
    /// This worker's directory, `DATA/<worker>/`.
    pub dir: PathBuf,
    /// `DATA/sealed/`.
    pub sealed_dir: PathBuf,
    pub prefix: String,
    pub worker: usize,
    /// Gzip member per record, or plain.
    pub codec: Codec,
    /// First file serial to use (above every serial already on disk).
    pub first_serial: u64,
    pub max_size: u64,
    pub max_idle: Duration,
    pub fsync: FsyncPolicy,
    pub min_free: u64,
    /// Receives sealed files, when `--on-seal` is set.
    pub handoff: Option<Arc<Handoff>>,
}

/// A record to append: its gzip member and its index line (offset and length filled in here).
pub struct AppendRecord {
    pub member: Bytes,
    pub cdx: CdxEntry,
}

/// A record on disk.
#[derive(Debug)]
pub struct Appended {
    pub loc: RecordLoc,
    /// The member as written, when the writer grew it to end on a block boundary (see
    /// `write_group`); `None` when the bytes on disk are the ones appended.
    pub padded: Option<Bytes>,
}

enum Command {
    Append {
        record: AppendRecord,
        done: oneshot::Sender<Result<Appended, Error>>,
    },
    Close(oneshot::Sender<()>),
}

/// Cheap handle to the worker's writer task.
#[derive(Clone)]
pub struct ArcWriter {
    tx: mpsc::UnboundedSender<Command>,
    paused: Rc<Cell<bool>>,
}

impl ArcWriter {
    /// Starts the writer task on the current monoio runtime.
    pub fn spawn(config: WriterConfig, files: Arc<FileTable>) -> Self {
        let (tx, rx) = mpsc::unbounded();
        let paused = Rc::new(Cell::new(false));
        let writer = Writer {
            serial: config.first_serial,
            config,
            files,
            open: None,
            scratch: Some(AlignedBuf::with_capacity(1 << 20)),
            direct_io: true,
            paused: paused.clone(),
            resume_floor: 0,
            last_write: 0,
            seals: Vec::new(),
            last_space_check: Instant::now() - SPACE_CHECK_EVERY,
        };
        monoio::spawn(writer.run(rx));
        ArcWriter { tx, paused }
    }

    /// Whether archiving is paused (disk full); misses should not be fetched.
    pub fn is_paused(&self) -> bool {
        self.paused.get()
    }

    /// Appends one record; resolves once it is written (and durable under `--fsync always`).
    pub async fn append(&self, record: AppendRecord) -> Result<Appended, Error> {
        let (done, wait) = oneshot::channel();
        self.tx
            .unbounded_send(Command::Append { record, done })
            .map_err(|_| Error::Storage("archive writer has stopped".into()))?;
        wait.await
            .unwrap_or_else(|_| Err(Error::Storage("archive writer has stopped".into())))
    }

    /// Seals the open file (and waits for every seal in progress), then stops the writer.
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
    path: PathBuf,
    /// File name, for the filedesc record.
    name: String,
    /// Bytes of valid records in the file.
    logical: u64,
    /// Block-aligned offset where the in-memory tail block begins.
    tail_start: u64,
    /// Bytes from `tail_start` to `logical` (less than one block).
    tail: Vec<u8>,
    /// Index lines of the records in the file, for its CDX.
    entries: Vec<CdxEntry>,
    last_append: Instant,
    /// Written since the last fdatasync.
    dirty: bool,
    last_sync: Instant,
}

struct Writer {
    config: WriterConfig,
    files: Arc<FileTable>,
    open: Option<OpenArc>,
    serial: u64,
    scratch: Option<AlignedBuf>,
    direct_io: bool,
    paused: Rc<Cell<bool>>,
    /// While paused: free bytes needed to resume, `--min-free` plus one write (the one that
    /// failed, or the last one made), so one resumed write cannot fill the disk again.
    resume_floor: u64,
    /// Bytes the last group write put on disk (blocks included).
    last_write: u64,
    /// Seals running on the blocking pool; awaited at close.
    seals: Vec<monoio::task::JoinHandle<Result<(), monoio::blocking::JoinError>>>,
    last_space_check: Instant,
}

type Pending = (AppendRecord, oneshot::Sender<Result<Appended, Error>>);

impl Writer {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Command>) {
        let mut closing = None;
        while closing.is_none() {
            let wake = self.next_wake();
            let first = match monoio::time::timeout_at(wake.into(), rx.next()).await {
                Ok(Some(cmd)) => Some(cmd),
                Ok(None) => break,
                Err(_) => None,
            };
            let mut batch: Vec<Pending> = Vec::new();
            let mut bytes = 0;
            let mut next = first;
            while let Some(cmd) = next.take() {
                match cmd {
                    Command::Append { record, done } => {
                        bytes += record.member.len();
                        batch.push((record, done));
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
                self.append_batch(batch).await;
            }
            self.on_timers().await;
        }
        self.seal_open().await;
        for seal in std::mem::take(&mut self.seals) {
            let _ = seal.await;
        }
        if let Some(done) = closing {
            let _ = done.send(());
        }
    }

    /// The earliest moment a timer needs attention.
    fn next_wake(&self) -> Instant {
        let mut wake = self.last_space_check + SPACE_CHECK_EVERY;
        if let Some(open) = &self.open {
            if !open.entries.is_empty() {
                wake = wake.min(open.last_append + self.config.max_idle);
            }
            if let (true, FsyncPolicy::Interval(d)) = (open.dirty, self.config.fsync) {
                wake = wake.min(open.last_sync + d);
            }
        }
        wake
    }

    async fn on_timers(&mut self) {
        let now = Instant::now();
        if now >= self.last_space_check + SPACE_CHECK_EVERY {
            self.last_space_check = now;
            self.check_space().await;
        }
        let idle = self
            .open
            .as_ref()
            .is_some_and(|o| !o.entries.is_empty() && now >= o.last_append + self.config.max_idle);
        if idle {
            self.seal_open().await;
        }
        if let (Some(open), FsyncPolicy::Interval(d)) = (self.open.as_mut(), self.config.fsync) {
            if open.dirty && now >= open.last_sync + d {
                // Already acknowledged: the failure is logged, the next sync or the seal
                // tries again.
                let _ = sync(open, self.config.worker).await;
            }
        }
    }

    /// Pauses archiving under `--min-free`; resumes once there is room again.
    async fn check_space(&mut self) {
        let dir = self.config.dir.clone();
        let Ok(Ok(free)) = monoio::spawn_blocking(move || free_bytes(&dir)).await else {
            return;
        };
        let min = self.config.min_free;
        let w = self.config.worker;
        if !self.paused.get() && min > 0 && free < min {
            self.resume_floor = min.saturating_add(self.last_write);
            eprintln!(
                "liveweb: worker {w}: {free} bytes free (< --min-free {min}), archiving paused until {} are",
                self.resume_floor
            );
            self.paused.set(true);
        } else if self.paused.get() && free >= self.resume_floor {
            eprintln!("liveweb: worker {w}: {free} bytes free, archiving resumed");
            self.paused.set(false);
        }
    }

    /// Writes a batch, rolling to a new file whenever the next record would not fit.
    async fn append_batch(&mut self, batch: Vec<Pending>) {
        if self.paused.get() {
            for (_, done) in batch {
                let _ = done.send(Err(Error::Storage("disk full, archiving paused".into())));
            }
            return;
        }
        let mut rest = batch;
        while !rest.is_empty() {
            let fitting = self.fitting(&rest);
            if fitting == 0 {
                self.seal_open().await;
                continue;
            }
            let tail = rest.split_off(fitting);
            let group = std::mem::replace(&mut rest, tail);
            let before = self.open.as_ref().map_or(0, |o| o.logical);
            let result = match self.write_group(&group).await {
                Ok(written) if self.config.fsync == FsyncPolicy::Always => {
                    self.sync_group(before).await.map(|()| written)
                }
                other => other,
            };
            match result {
                Ok((locs, mut padded)) => {
                    if let Some(open) = self.open.as_mut() {
                        open.last_append = Instant::now();
                    }
                    let last = locs.len().saturating_sub(1);
                    for (i, ((record, done), loc)) in group.into_iter().zip(locs).enumerate() {
                        if let Some(open) = self.open.as_mut() {
                            let mut entry = record.cdx;
                            entry.offset = loc.offset;
                            entry.length = loc.len;
                            open.entries.push(entry);
                        }
                        let padded = if i == last { padded.take() } else { None };
                        let _ = done.send(Ok(Appended { loc, padded }));
                    }
                }
                Err(e) => {
                    let w = self.config.worker;
                    eprintln!("liveweb: worker {w} archive write failed: {e}");
                    if matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT)) {
                        let write: usize = group.iter().map(|(r, _)| r.member.len()).sum();
                        let write = (write + 2 * BLOCK) as u64;
                        self.resume_floor = self.config.min_free.saturating_add(write);
                        eprintln!(
                            "liveweb: worker {w}: disk full, archiving paused until {} bytes are free",
                            self.resume_floor
                        );
                        self.paused.set(true);
                    }
                    let err = Error::Storage(e.to_string());
                    for (_, done) in group.into_iter().chain(std::mem::take(&mut rest)) {
                        let _ = done.send(Err(err.clone()));
                    }
                }
            }
            let full = self
                .open
                .as_ref()
                .is_some_and(|o| o.logical >= self.config.max_size);
            if full {
                self.seal_open().await;
            }
        }
    }

    /// Under `--fsync always`, makes the group just written durable before anyone is told.
    /// If fdatasync fails, nothing in the group was acknowledged and its bytes may or may not
    /// be on disk: the file is cut back to `before` (its last acknowledged byte) and sealed,
    /// and the next group starts a new file.
    async fn sync_group(&mut self, before: u64) -> io::Result<()> {
        let Some(open) = self.open.as_mut() else {
            return Ok(());
        };
        let Err(e) = sync(open, self.config.worker).await else {
            return Ok(());
        };
        open.logical = before;
        eprintln!(
            "liveweb: worker {}: {} poisoned by the failed fdatasync: cut to {before} bytes and sealed",
            self.config.worker,
            open.path.display()
        );
        self.seal_open().await;
        Err(io::Error::new(e.kind(), format!("fdatasync failed: {e}")))
    }

    /// How many records from the front of `batch` go into the open file: all that fit under
    /// `--arc-max-size`, at least one if the file holds no record yet, none to force a roll.
    fn fitting(&self, batch: &[Pending]) -> usize {
        let (used, empty) = match &self.open {
            Some(o) => (o.logical, o.entries.is_empty()),
            None => (0, true),
        };
        let mut total = used;
        let mut n = 0;
        for (record, _) in batch {
            total += record.member.len() as u64;
            if total > self.config.max_size && !(empty && n == 0) {
                break;
            }
            n += 1;
        }
        n
    }

    /// Writes members back to back after the current end; returns each one's location, and
    /// the last member as written when it was padded.
    ///
    /// The partial last block of a write is rewritten by the next one, its acknowledged bytes
    /// unchanged. A device that garbles the sectors a power cut interrupts could damage those
    /// bytes, so under `--fsync always` (the policy that promises acknowledged records survive
    /// a power loss) acknowledged bytes are never rewritten: each write ends on a block
    /// boundary, its last gzip member grown by a filler extra field (plain records are
    /// followed by blank lines, which ARC readers skip).
    async fn write_group(
        &mut self,
        group: &[Pending],
    ) -> io::Result<(Vec<RecordLoc>, Option<Bytes>)> {
        if self.open.is_none() {
            self.open = Some(self.open_new_file().await?);
        }
        let Some(open) = self.open.as_mut() else {
            return Err(io::Error::other("no open ARC file"));
        };
        // Until a write has succeeded the file is empty, so the filedesc record goes first
        // (again, if the write that carried it failed).
        let header = (open.logical == 0).then(|| {
            self.config
                .codec
                .filedesc(&open.name, &UtcTime::now().arc14())
        });
        let header_len = header.as_ref().map_or(0, Vec::len);
        let total =
            open.tail.len() + header_len + group.iter().map(|(r, _)| r.member.len()).sum::<usize>();
        let mut buf = self
            .scratch
            .take()
            .unwrap_or_else(|| AlignedBuf::with_capacity(total))
            .reserve_total(total + 3 * BLOCK);
        buf.clear();
        buf.extend_from_slice(&open.tail);
        if let Some(h) = &header {
            buf.extend_from_slice(h);
        }
        let end_on_block = self.config.fsync == FsyncPolicy::Always;
        let mut locs = Vec::with_capacity(group.len());
        let mut padded = None;
        for (i, (record, _)) in group.iter().enumerate() {
            let mut member: &[u8] = &record.member;
            if end_on_block && i + 1 == group.len() && self.config.codec != Codec::Plain {
                let mut grow = (BLOCK - (buf.len() + member.len()) % BLOCK) % BLOCK;
                if grow > 0 && grow < MIN_PAD {
                    grow += BLOCK;
                }
                // Not padded (left to be rewritten) only if the member is not one of ours.
                padded = (grow > 0)
                    .then(|| pad_member(member, grow))
                    .flatten()
                    .map(Bytes::from);
                if let Some(p) = &padded {
                    member = p;
                }
            }
            locs.push(RecordLoc {
                file_id: open.id,
                offset: open.tail_start + buf.len() as u64,
                len: member.len() as u64,
            });
            buf.extend_from_slice(member);
        }
        if end_on_block && self.config.codec == Codec::Plain {
            let blank = (BLOCK - buf.len() % BLOCK) % BLOCK;
            buf.extend_from_slice(&[b'\n'; BLOCK][..blank]);
        }
        let data_len = buf.len();
        buf.pad_to_block();
        self.last_write = buf.len() as u64;
        if super::fault::garble_write() {
            super::fault::garble_and_die(&open.file, buf.len(), open.tail_start).await;
        }
        let (res, buf) = open.file.write_all_at(buf, open.tail_start).await;
        let outcome = res.map(|()| {
            let keep_from = data_len / BLOCK * BLOCK;
            open.tail = buf.as_slice()[keep_from..data_len].to_vec();
            open.logical = open.tail_start + data_len as u64;
            open.tail_start += keep_from as u64;
            open.dirty = true;
            (locs, padded)
        });
        // Keep a moderately sized scratch buffer; let a huge one go.
        if buf.capacity() <= 8 << 20 {
            self.scratch = Some(buf);
        }
        outcome
    }

    /// Hands the open file to the sealer on the blocking pool; a file that never got a
    /// record is removed instead.
    async fn seal_open(&mut self) {
        let Some(open) = self.open.take() else { return };
        let OpenArc {
            file,
            id,
            path,
            logical,
            entries,
            ..
        } = open;
        let _ = file.close().await;
        let files = self.files.clone();
        if entries.is_empty() {
            files.remove(id);
            let _ = monoio::spawn_blocking(move || std::fs::remove_file(path)).await;
            return;
        }
        let sealed_dir = self.config.sealed_dir.clone();
        let handoff = self.config.handoff.clone();
        let worker = self.config.worker;
        self.seals.push(monoio::spawn_blocking(move || {
            match seal(&path, logical, &entries, &sealed_dir) {
                Ok(sealed) => {
                    files.set_path(id, sealed.clone());
                    if let Some(h) = handoff {
                        h.submit(Some(id), sealed);
                    }
                }
                Err(e) => eprintln!(
                    "liveweb: worker {worker}: sealing {} failed: {e}; it is sealed at next start",
                    path.display()
                ),
            }
        }));
        // Forget finished seals so the list stays short.
        self.seals.retain(|s| !s.is_finished());
    }

    /// Creates the next ARC file (O_DIRECT when the filesystem allows it) and registers a
    /// read descriptor for it in the file table.
    async fn open_new_file(&mut self) -> io::Result<OpenArc> {
        loop {
            let name = format!(
                "{}-{}-{}-{:05}.{}",
                self.config.prefix,
                UtcTime::now().stamp17(),
                self.config.worker,
                self.serial,
                self.config.codec.extension()
            );
            self.serial += 1;
            let path = self.config.dir.join(&name);
            let file = match self.create(&path).await {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            };
            let reader = open_reader(&path)?;
            let id = self.files.insert(path.clone(), reader);
            let now = Instant::now();
            return Ok(OpenArc {
                file,
                id,
                path,
                name,
                logical: 0,
                tail_start: 0,
                tail: Vec::new(),
                entries: Vec::new(),
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

/// fdatasync through the runtime; a failure is logged and returned.
async fn sync(open: &mut OpenArc, worker: usize) -> io::Result<()> {
    let result = match super::fault::fdatasync() {
        Some(injected) => Err(injected),
        None => open.file.sync_data().await,
    };
    match &result {
        Ok(()) => {
            open.dirty = false;
            open.last_sync = Instant::now();
        }
        Err(e) => eprintln!("liveweb: worker {worker}: fdatasync failed: {e}"),
    }
    result
}

/// Opens the shared read descriptor. A plain open(2) of a file this thread just created is
/// served from the dentry cache and does not wait on the disk.
fn open_reader(path: &Path) -> io::Result<OwnedFd> {
    Ok(OwnedFd::from(std::fs::File::open(path)?))
}

/// Bytes available to unprivileged writers on the filesystem holding `dir`.
fn free_bytes(dir: &Path) -> io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: statvfs fills the zeroed struct; c is a valid NUL-terminated path.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st.f_bavail as u64 * st.f_frsize as u64)
}
