//! The per-worker ARC writer: one task owning the worker's open ARC file, appending gzip
//! members with O_DIRECT. Records that arrive while a write is in flight are batched into the
//! next write (group commit), laid out by `layout`. A record's location is published only
//! after its write completed, so readers never see padding or half a record. The writer also
//! rolls files (by size and idle time), hands them to the sealer, applies the fsync policy,
//! and stops taking records while `space` says the disk is full.

use std::cell::Cell;
use std::io;
use std::path::PathBuf;
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
use super::layout::{fitting, plan, Ending, Pad};
use super::open_arc::{seal_in_background, FileMaker, OpenArc};
use super::record::{pad_member, Codec};
use super::space::SpaceMonitor;

mod file_member;
use crate::error::Error;
pub use file_member::AppendFileRecord;

/// Where a record lives: file, byte offset of its gzip member, member length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordLoc {
    pub file_id: u32,
    pub offset: u64,
    pub len: u64,
}

/// When written records are made durable with fdatasync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Only when a file is sealed.
    Never,
    /// At most this long after a write.
    Interval(Duration),
    /// Before the reply is sent.
    Always,
}

/// Most bytes gathered into one group-commit write.
const MAX_BATCH_BYTES: usize = 32 << 20;

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
    /// ARC or WARC.
    pub format: super::format::Format,
    /// First file serial to use (above every serial already on disk).
    pub first_serial: u64,
    pub max_size: u64,
    pub max_idle: Duration,
    pub fsync: FsyncPolicy,
    pub min_free: u64,
    /// Receives sealed files, when `--on-seal` is set.
    pub handoff: Option<Arc<Handoff>>,
    /// Shared numbers for the operator's pages.
    pub stats: Arc<super::stats::ArchiveStats>,
}

/// A record to append: its gzip member and its index line (offset and length filled in here).
pub struct AppendRecord {
    /// The record, then the records that go with it (a WARC response's request record),
    /// written together.
    pub member: Bytes,
    /// How many bytes at the end of `member` are those other records: the location and the
    /// index line are the first record's.
    pub trailer_len: usize,
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
    AppendFile {
        record: AppendFileRecord,
        done: oneshot::Sender<Result<Appended, Error>>,
    },
    Close(oneshot::Sender<()>),
}

/// Cheap handle to the worker's writer task.
#[derive(Clone)]
pub struct ArcWriter {
    tx: mpsc::UnboundedSender<Command>,
    paused: Rc<Cell<bool>>,
    warcinfo: WarcinfoId,
    /// Shared by the handles alone: how many there are.
    handles: Rc<()>,
}

/// The record id of the `warcinfo` that opens the worker's current WARC file (or, between
/// files, the next one), which its records name in `WARC-Warcinfo-ID`. Records are encoded
/// before they are appended, so one encoded just before its file was sealed names the
/// previous file's warcinfo: the same worker and run, and still a warcinfo record.
#[derive(Clone, Default)]
pub struct WarcinfoId(Rc<std::cell::RefCell<Rc<str>>>);

impl WarcinfoId {
    fn fresh() -> WarcinfoId {
        WarcinfoId(Rc::new(std::cell::RefCell::new(
            super::warc::record_id().into(),
        )))
    }

    pub fn get(&self) -> Rc<str> {
        self.0.borrow().clone()
    }

    /// A new id, for the next file.
    fn renew(&self) {
        *self.0.borrow_mut() = super::warc::record_id().into();
    }
}

impl ArcWriter {
    /// Starts the writer task on the current monoio runtime.
    pub fn spawn(config: WriterConfig, files: Arc<FileTable>) -> Self {
        let (tx, rx) = mpsc::unbounded();
        let space = SpaceMonitor::new(
            config.dir.clone(),
            config.worker,
            config.min_free,
            config.stats.clone(),
        );
        let paused = space.paused_flag();
        let warcinfo = WarcinfoId::fresh();
        let writer = Writer {
            warcinfo: warcinfo.clone(),
            maker: FileMaker::new(&config),
            config,
            files,
            open: None,
            scratch: Some(AlignedBuf::with_capacity(1 << 20)),
            space,
            seals: Vec::new(),
        };
        monoio::spawn(writer.run(rx));
        ArcWriter {
            tx,
            paused,
            warcinfo,
            handles: Rc::new(()),
        }
    }

    /// How many handles to this writer exist (this one included).
    pub fn handles(&self) -> usize {
        Rc::strong_count(&self.handles)
    }

    /// The `WARC-Warcinfo-ID` a record encoded now names.
    pub fn warcinfo_id(&self) -> Rc<str> {
        self.warcinfo.get()
    }

    /// Whether archiving is paused (disk full); misses should not be fetched.
    pub fn is_paused(&self) -> bool {
        self.paused.get()
    }

    /// Appends one record; resolves once it is written (and durable under `--fsync always`).
    pub async fn append(&self, record: AppendRecord) -> Result<Appended, Error> {
        self.ask(|done| Command::Append { record, done }).await
    }

    /// Appends a record whose member is in a file; resolves once it is written (and durable
    /// under `--fsync always`). The member never sits whole in memory.
    pub async fn append_file(&self, record: AppendFileRecord) -> Result<Appended, Error> {
        self.ask(|done| Command::AppendFile { record, done }).await
    }

    /// Sends the writer a command and waits for its answer.
    async fn ask(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<Appended, Error>>) -> Command,
    ) -> Result<Appended, Error> {
        let stopped = || Error::Storage("archive writer has stopped".into());
        let (done, wait) = oneshot::channel();
        self.tx
            .unbounded_send(command(done))
            .map_err(|_| stopped())?;
        wait.await.unwrap_or_else(|_| Err(stopped()))
    }

    /// Seals the open file (and waits for every seal in progress), then stops the writer.
    pub async fn close(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.unbounded_send(Command::Close(done)).is_ok() {
            let _ = wait.await;
        }
    }
}

struct Writer {
    config: WriterConfig,
    /// Shared with the handles: the id of the current (or next) file's warcinfo.
    warcinfo: WarcinfoId,
    files: Arc<FileTable>,
    open: Option<OpenArc>,
    maker: FileMaker,
    scratch: Option<AlignedBuf>,
    space: SpaceMonitor,
    /// Seals running on the blocking pool; awaited at close.
    seals: Vec<monoio::task::JoinHandle<Result<(), monoio::blocking::JoinError>>>,
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
                    Command::AppendFile { record, done } => {
                        // The records before it first, then it alone.
                        if !batch.is_empty() {
                            self.append_batch(std::mem::take(&mut batch)).await;
                            bytes = 0;
                        }
                        let result = self.append_file(record).await;
                        let _ = done.send(result);
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
        let mut wake = self.space.next_check();
        if let Some(open) = &self.open {
            if !open.entries.is_empty() {
                wake = wake.min(open.last_append + self.config.max_idle);
            }
            if let (true, FsyncPolicy::Interval(d)) = (open.dirty, self.config.fsync) {
                wake = wake.min(open.last_sync + d);
            }
            if let Some(due) = open.entries.publish_due() {
                wake = wake.min(due);
            }
        }
        wake
    }

    async fn on_timers(&mut self) {
        let now = Instant::now();
        self.space.check_if_due(now).await;
        let idle = self
            .open
            .as_ref()
            .is_some_and(|o| !o.entries.is_empty() && now >= o.last_append + self.config.max_idle);
        if idle {
            self.seal_open().await;
        }
        if let Some(open) = self.open.as_mut() {
            if open.entries.publish_due().is_some_and(|due| now >= due) {
                open.entries.publish();
            }
        }
        if let (Some(open), FsyncPolicy::Interval(d)) = (self.open.as_mut(), self.config.fsync) {
            if open.dirty && now >= open.last_sync + d {
                // Already acknowledged: the failure is logged, the next sync or the seal
                // tries again.
                let _ = open.sync(self.config.worker).await;
            }
        }
    }

    /// Writes a batch, rolling to a new file whenever the next record would not fit.
    async fn append_batch(&mut self, batch: Vec<Pending>) {
        if self.space.is_paused() {
            for (_, done) in batch {
                let _ = done.send(Err(Error::Storage("disk full, archiving paused".into())));
            }
            return;
        }
        let mut rest = batch;
        while !rest.is_empty() {
            let fitting = self.fitting(rest.iter().map(|(r, _)| r.member.len()));
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
                    // Each record as written (padding included) and what was written with it.
                    let bytes = locs
                        .iter()
                        .zip(&group)
                        .map(|(loc, (r, _))| loc.len + r.trailer_len as u64)
                        .sum();
                    self.wrote(locs.len() as u64, bytes);
                    let last = locs.len().saturating_sub(1);
                    for (i, ((record, done), loc)) in group.into_iter().zip(locs).enumerate() {
                        self.index(record.cdx, loc);
                        let padded = if i == last { padded.take() } else { None };
                        let _ = done.send(Ok(Appended { loc, padded }));
                    }
                }
                Err(e) => {
                    let write: usize = group.iter().map(|(r, _)| r.member.len()).sum();
                    let err = self.write_failed(&e, write as u64);
                    for (_, done) in group.into_iter().chain(std::mem::take(&mut rest)) {
                        let _ = done.send(Err(err.clone()));
                    }
                }
            }
            self.seal_if_full().await;
        }
    }

    /// Notes `records` records and `bytes` bytes just written to the open file.
    fn wrote(&mut self, records: u64, bytes: u64) {
        self.config.stats.appended(records, bytes);
        if let Some(open) = self.open.as_mut() {
            open.last_append = Instant::now();
            // The name on disk (with `.open`), as an operator finds it.
            let name = open.path.file_name().map(|n| n.to_string_lossy());
            let file = name.as_deref().map(|n| (n, open.logical));
            self.config.stats.set_open(self.config.worker, file);
        }
    }

    /// Adds a written record's CDX line (its offset and length filled in) to the open file's.
    fn index(&mut self, mut entry: CdxEntry, loc: RecordLoc) {
        if let Some(open) = self.open.as_mut() {
            entry.offset = loc.offset;
            let gzip = matches!(self.config.codec, Codec::Gzip(_));
            entry.length = super::cdx::cdx_length(loc.len, gzip);
            open.entries.push(entry);
        }
    }

    /// Logs a failed write of `bytes` (a full disk pauses archiving); the error to answer.
    fn write_failed(&mut self, e: &io::Error, bytes: u64) -> Error {
        let w = self.config.worker;
        log::error!("worker {w} archive write failed: {e}");
        if matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT)) {
            self.space.disk_full(bytes + 2 * BLOCK as u64);
        }
        Error::Storage(e.to_string())
    }

    /// Seals the open file once it has reached `--arc-max-size`.
    async fn seal_if_full(&mut self) {
        let full = self
            .open
            .as_ref()
            .is_some_and(|o| o.logical >= self.config.max_size);
        if full {
            self.seal_open().await;
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
        let Err(e) = open.sync(self.config.worker).await else {
            return Ok(());
        };
        open.logical = before;
        log::error!(
            "worker {}: {} poisoned by the failed fdatasync: cut to {before} bytes and sealed",
            self.config.worker,
            open.path.display()
        );
        self.seal_open().await;
        Err(io::Error::new(e.kind(), format!("fdatasync failed: {e}")))
    }

    /// How many records of these sizes, from the front, go into the open file
    /// (`layout::fitting`).
    fn fitting(&self, sizes: impl IntoIterator<Item = usize>) -> usize {
        let (used, empty) = match &self.open {
            Some(o) => (o.logical, o.entries.is_empty()),
            None => (0, true),
        };
        fitting(used, empty, sizes, self.config.max_size)
    }

    /// Seals the open file in the background (`open_arc::seal_in_background`).
    async fn seal_open(&mut self) {
        let Some(mut open) = self.open.take() else {
            return;
        };
        // Queries see every line until the seal's CDX replaces the spool.
        open.entries.publish();
        self.warcinfo.renew();
        self.config.stats.set_open(self.config.worker, None);
        if let Some(sealing) = seal_in_background(open, &self.files, &self.config).await {
            self.seals.push(sealing);
        }
        // Forget finished seals so the list stays short.
        self.seals.retain(|s| !s.is_finished());
    }

    /// Opens a file if none is open; returns the filedesc record the write must start with
    /// (until a write has succeeded the file is empty, so it goes first, again if the write
    /// that carried it failed) and how the write must end under the fsync policy.
    async fn prepare_write(&mut self) -> io::Result<(Option<Vec<u8>>, Ending)> {
        if self.open.is_none() {
            let open = self.maker.open_next(&self.files).await?;
            if let Some(view) = open.entries.view() {
                self.config.stats.add_open_cdx(view);
            }
            self.open = Some(open);
        }
        let Some(open) = self.open.as_ref() else {
            return Err(io::Error::other("no open ARC file"));
        };
        let header = (open.logical == 0).then(|| {
            self.config
                .format
                .first_record(self.config.codec, &open.name, &self.warcinfo.get())
        });
        let ending = match (self.config.fsync, self.config.codec) {
            (FsyncPolicy::Always, Codec::Plain) => Ending::PadBlankLines,
            (FsyncPolicy::Always, Codec::Gzip(_)) => Ending::PadMember,
            _ => Ending::Partial,
        };
        Ok((header, ending))
    }

    /// Writes members back to back after the current end; returns each one's location, and
    /// the last member as written when it was padded.
    ///
    /// The partial last block of a write is rewritten by the next one, its acknowledged bytes
    /// unchanged. A device that garbles the sectors a power cut interrupts could damage those
    /// bytes, so under `--fsync always` (the policy that promises acknowledged records survive
    /// a power loss) acknowledged bytes are never rewritten: each write ends on a block
    /// boundary, its last gzip member grown by a filler extra field (plain records are
    /// followed by blank lines, which ARC readers skip). Other policies do not pay that space.
    async fn write_group(
        &mut self,
        group: &[Pending],
    ) -> io::Result<(Vec<RecordLoc>, Option<Bytes>)> {
        let (header, ending) = self.prepare_write().await?;
        let Some(open) = self.open.as_mut() else {
            return Err(io::Error::other("no open ARC file"));
        };
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
        let sizes: Vec<usize> = group.iter().map(|(r, _)| r.member.len()).collect();
        let mut layout = plan(open.tail_start, open.tail.len(), header_len, &sizes, ending);
        let mut padded = None;
        if let (Pad::Member(grow), Some((last, _))) = (layout.pad, group.last()) {
            padded = pad_member(&last.member, grow).map(Bytes::from);
            if padded.is_none() {
                // Not a member this writer made: left unpadded, to be rewritten.
                layout = plan(
                    open.tail_start,
                    open.tail.len(),
                    header_len,
                    &sizes,
                    Ending::Partial,
                );
            }
        }
        let last = group.len().saturating_sub(1);
        let mut locs = Vec::with_capacity(group.len());
        for (i, ((record, _), &offset)) in group.iter().zip(&layout.offsets).enumerate() {
            let member: &[u8] = match &padded {
                Some(p) if i == last => p,
                _ => &record.member,
            };
            locs.push(RecordLoc {
                file_id: open.id,
                offset,
                len: member.len().saturating_sub(record.trailer_len) as u64,
            });
            buf.extend_from_slice(member);
        }
        if let Pad::BlankLines(n) = layout.pad {
            buf.extend_from_slice(&[b'\n'; BLOCK][..n]);
        }
        debug_assert_eq!(buf.len(), layout.data_len);
        let (data_len, keep_from) = (layout.data_len, layout.keep_from);
        buf.pad_to_block();
        self.space.wrote(buf.len() as u64);
        if super::fault::garble_write() {
            super::fault::garble_and_die(&open.file, buf.len(), open.tail_start).await;
        }
        let (res, buf) = open.file.write_all_at(buf, open.tail_start).await;
        let outcome = res.map(|()| {
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
}
