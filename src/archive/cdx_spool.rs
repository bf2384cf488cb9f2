//! An open file's CDX lines waiting for its seal, kept on disk instead of in memory: one
//! line per record in an unnamed file beside it, appended as records are written and read
//! back (then sorted) only when the file is sealed, on the blocking pool. A file holds
//! hundreds of thousands of small records, so in memory their lines would cost more per
//! stored URL than the index does. After a crash the spool is gone with the process, and
//! recovery rebuilds the CDX from the file itself, as it always did. CDX queries read the
//! lines flushed so far through a `SpoolView` (flushed at least every `PUBLISH_EVERY`).

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Seek, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::cdx::CdxEntry;

/// Lines buffered before they are written to the spool.
const BUFFER: usize = 64 * 1024;
/// Lines spooled are visible to CDX queries within this long.
pub const PUBLISH_EVERY: Duration = Duration::from_secs(1);

pub struct CdxSpool {
    out: Option<BufWriter<File>>,
    /// Entries the spool could not take (it failed to write): kept in memory instead, so
    /// no record goes missing from the CDX.
    kept: Vec<CdxEntry>,
    len: usize,
    /// Bytes handed to `out`.
    written: u64,
    /// Lines written since the view last saw them.
    unpublished: bool,
    published_at: Instant,
    view: Option<Arc<SpoolView>>,
}

/// What CDX queries may read of an open file's spool while it is written: the lines
/// flushed so far.
#[derive(Debug)]
pub struct SpoolView {
    file: File,
    /// Bytes of whole lines flushed to `file`.
    visible: AtomicU64,
    pub worker: usize,
    /// The open file's name (with its `.open` suffix).
    pub name: String,
}

impl SpoolView {
    /// The captures listed so far (failures left out, as the CDX a seal writes leaves them
    /// out; private records are in, as they are there).
    pub fn entries(&self) -> io::Result<Vec<CdxEntry>> {
        let len = self.visible.load(Ordering::Acquire) as usize;
        let mut bytes = vec![0; len];
        self.file.read_exact_at(&mut bytes, 0)?;
        Ok(String::from_utf8_lossy(&bytes)
            .lines()
            .filter_map(decode)
            .filter(|e| !e.failure)
            .collect())
    }
}

impl CdxSpool {
    /// A spool in `dir` for the open file `name` of `worker`; if no file can be made there,
    /// entries stay in memory (and queries do not see them before the seal).
    pub fn new(dir: &Path, worker: usize, name: &str) -> CdxSpool {
        let file = super::from_file::unnamed_file(dir);
        let view = file.as_ref().ok().and_then(|f| {
            let reader = f.try_clone().ok()?;
            Some(Arc::new(SpoolView {
                file: reader,
                visible: AtomicU64::new(0),
                worker,
                name: name.to_string(),
            }))
        });
        let out = match file {
            Ok(file) => Some(BufWriter::with_capacity(BUFFER, file)),
            Err(e) => {
                log::warn!("CDX lines of the open file stay in memory: {e}");
                None
            }
        };
        CdxSpool {
            out,
            kept: Vec::new(),
            len: 0,
            written: 0,
            unpublished: false,
            published_at: Instant::now(),
            view,
        }
    }

    /// What queries read of this spool.
    pub fn view(&self) -> Option<Arc<SpoolView>> {
        self.view.clone()
    }

    /// When lines written since the last flush are due to be made visible.
    pub fn publish_due(&self) -> Option<Instant> {
        self.unpublished
            .then_some(self.published_at + PUBLISH_EVERY)
    }

    /// Flushes the lines written so far and lets queries see them. A failed flush is a
    /// failed spool write (see `push`).
    pub fn publish(&mut self) {
        self.published_at = Instant::now();
        if !self.unpublished {
            return;
        }
        self.unpublished = false;
        let Some(out) = self.out.as_mut() else { return };
        match out.flush() {
            Ok(()) => {
                if let Some(view) = &self.view {
                    view.visible.store(self.written, Ordering::Release);
                }
            }
            Err(e) => {
                log::error!(
                    "CDX spool write failed ({e}); the open file's CDX is rebuilt at next start"
                );
                self.out = None;
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn push(&mut self, entry: CdxEntry) {
        self.len += 1;
        if let Some(out) = self.out.as_mut() {
            let line = encode(&entry);
            match out.write_all(line.as_bytes()) {
                Ok(()) => {
                    self.written += line.len() as u64;
                    self.unpublished = true;
                    return;
                }
                Err(e) => {
                    // Lines already spooled may be half written: the count no longer
                    // matches what can be read back, so this file's seal fails and the next
                    // start rebuilds its CDX from the file. New lines stay in memory.
                    log::error!("CDX spool write failed ({e}); the open file's CDX is rebuilt at next start");
                    self.out = None;
                }
            }
        }
        self.kept.push(entry);
    }

    /// Every entry pushed, in order. Blocking: for the seal, on the blocking pool.
    pub fn into_entries(self) -> io::Result<Vec<CdxEntry>> {
        let mut entries = Vec::with_capacity(self.len);
        if let Some(out) = self.out {
            let mut file = out.into_inner().map_err(|e| e.into_error())?;
            file.rewind()?;
            for line in BufReader::new(file).lines() {
                let line = line?;
                let entry = decode(&line).ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidData, "damaged CDX spool line")
                })?;
                entries.push(entry);
            }
        }
        entries.extend(self.kept);
        if entries.len() != self.len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("CDX spool holds {} of {} lines", entries.len(), self.len),
            ));
        }
        Ok(entries)
    }
}

/// One entry as a spool line: its fields tab-separated, tabs, newlines and backslashes in
/// them escaped.
fn encode(e: &CdxEntry) -> String {
    let flags = match (e.private, e.failure) {
        (false, false) => "-",
        (true, false) => "p",
        (false, true) => "f",
        (true, true) => "pf",
    };
    let fields = [
        escape(&e.urlkey),
        escape(&e.date14),
        escape(&e.url),
        escape(&e.mime),
        e.status.to_string(),
        escape(&e.digest),
        e.length.to_string(),
        e.offset.to_string(),
        flags.to_string(),
    ];
    let mut line = fields.join("\t");
    line.push('\n');
    line
}

fn decode(line: &str) -> Option<CdxEntry> {
    let mut f = line.split('\t');
    let mut text = || f.next().map(unescape);
    let (urlkey, date14, url, mime) = (text()?, text()?, text()?, text()?);
    let status = text()?.parse().ok()?;
    let digest = text()?;
    let length = text()?.parse().ok()?;
    let offset = text()?.parse().ok()?;
    let flags = text()?;
    Some(CdxEntry {
        urlkey,
        date14,
        url,
        mime,
        status,
        digest,
        length,
        offset,
        private: flags.contains('p'),
        failure: flags.contains('f'),
    })
}

fn escape(s: &str) -> String {
    if !s.contains(['\t', '\n', '\\']) {
        return s.to_owned();
    }
    s.replace('\\', "\\\\")
        .replace('\t', "\\t")
        .replace('\n', "\\n")
}

fn unescape(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (c, c == '\\') {
            (_, true) => match chars.next() {
                Some('t') => out.push('\t'),
                Some('n') => out.push('\n'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            },
            (c, false) => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: u64) -> CdxEntry {
        CdxEntry {
            urlkey: format!("com,example)/{i}"),
            date14: "20261206120000".into(),
            url: format!("http://example.com/{i}\todd\\name\n"),
            mime: "text/html".into(),
            status: if i.is_multiple_of(2) { 200 } else { 0 },
            digest: "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567".into(),
            length: 1000 + i,
            offset: 4096 * i,
            private: i.is_multiple_of(3),
            failure: i.is_multiple_of(5),
        }
    }

    #[test]
    fn entries_come_back_whole_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = CdxSpool::new(dir.path(), 0, "f.open");
        assert!(spool.is_empty());
        // More than one buffer's worth, so lines cross buffer flushes.
        let n = 3000;
        for i in 0..n {
            spool.push(entry(i));
        }
        let back = spool.into_entries().unwrap();
        assert_eq!(back, (0..n).map(entry).collect::<Vec<_>>());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "nothing left named"
        );
    }

    #[test]
    fn without_a_spool_file_entries_stay_in_memory() {
        let mut spool = CdxSpool::new(Path::new("/nonexistent/dir"), 0, "f.open");
        spool.push(entry(1));
        spool.push(entry(2));
        assert_eq!(spool.into_entries().unwrap(), vec![entry(1), entry(2)]);
    }
}
