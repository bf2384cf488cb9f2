//! The crawl log (`--crawl-log-dir`): one line per capture in Heritrix's format, as warcprox
//! writes it, in `PREFIX-HOST-PORT.log` (`PREFIX` the capture's `warc-prefix`, else
//! `crawl`). Lines are formatted on the worker and handed over a bounded channel to one
//! thread that appends them to the files; when it falls behind, lines are dropped and
//! counted, never waited for. The thread reopens the files on SIGHUP (logrotate's way).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::clock::UtcTime;

/// Lines waiting for the log thread.
const QUEUE: usize = 16 * 1024;
/// Files kept open by the log thread (one per prefix); past that the oldest is closed.
const MAX_FILES: usize = 64;

/// One capture as the crawl log tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The response's status, or Heritrix's negative code for a fetch that failed.
    pub status: i32,
    /// Payload bytes (the body, transfer coding removed).
    pub size: u64,
    pub url: &'a str,
    pub hop_path: &'a str,
    pub via: &'a str,
    pub mime: &'a str,
    /// When the fetch began, and how long it took (milliseconds).
    pub began: UtcTime,
    pub took_ms: u64,
    /// `sha1:...`, or `-`.
    pub digest: &'a str,
    pub seed: &'a str,
    /// Archived as an identical-payload revisit.
    pub duplicate: bool,
    /// The archive file and the record's offset in it.
    pub warc: Option<(&'a str, u64)>,
    /// What went wrong, for a failed fetch (spaces become `_`, as warcprox writes it).
    pub exception: Option<&'a str>,
}

/// The line for `entry`, logged at `now` (ends in `\n`).
pub fn line(now: UtcTime, e: &Entry<'_>) -> String {
    let mut extra = serde_json::Map::new();
    if e.size > 0 {
        extra.insert("contentSize".into(), e.size.into());
    }
    if let Some(exception) = e.exception {
        extra.insert("exception".into(), exception.replace(' ', "_").into());
    }
    if let Some((file, offset)) = e.warc {
        extra.insert("warcFilename".into(), file.into());
        extra.insert("warcFileOffset".into(), offset.into());
    }
    let mime = match e.mime.trim() {
        "" => "unknown",
        m => m,
    };
    let stamp = now.warc_date();
    let began = format!("{}+{}", e.began.stamp17(), e.took_ms);
    format!(
        "{stamp} {:>5} {:>10} {} {} {} {} - {began} {} {} {} {}\n",
        e.status,
        e.size,
        e.url,
        dash(e.hop_path),
        dash(e.via),
        field(mime),
        dash(e.digest),
        dash(e.seed),
        if e.duplicate { "duplicate:digest" } else { "-" },
        serde_json::Value::Object(extra),
    )
}

/// A space-free field (a URL or a name from a request can hold anything).
fn field(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join("%20")
}

fn dash(s: &str) -> String {
    match field(s) {
        f if f.is_empty() => "-".into(),
        f => f,
    }
}

/// The Heritrix status of a fetch that failed with liveweb code `code` (`E20`, ...).
pub fn failure_status(code: &str) -> i32 {
    match code.get(..3) {
        // DNS lookup failed.
        Some("E20" | "E21") => -6,
        // Connection refused or not made in time.
        Some("E30" | "E31") => -2,
        // Timed out waiting for the response.
        Some("E32" | "E33" | "E38") => -4,
        // Connection broken.
        Some("E34" | "E35" | "E36" | "E37") => -3,
        _ => -5,
    }
}

enum Msg {
    Line {
        prefix: String,
        line: String,
    },
    /// Wakes the thread to look at `reopen` (the flag carries the request, so a full queue
    /// cannot lose it).
    Reopen,
    Close,
}

/// The crawl log's writer: shared by every worker.
pub struct CrawlLog {
    queue: Sender<Msg>,
    thread: Mutex<Option<JoinHandle<()>>>,
    reopen: Arc<AtomicBool>,
    /// Lines dropped because the log thread fell behind.
    pub dropped: AtomicU64,
}

impl CrawlLog {
    /// Starts the log thread writing under `dir` (created if missing); file names end in
    /// `-HOST-PORT.log`.
    pub fn start(dir: &Path, host: &str, port: u16) -> io::Result<CrawlLog> {
        std::fs::create_dir_all(dir)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
        let (queue, rx) = crossbeam_channel::bounded(QUEUE);
        let files = LogFiles {
            dir: dir.to_path_buf(),
            suffix: format!("-{host}-{port}.log"),
            open: HashMap::new(),
        };
        let reopen = Arc::new(AtomicBool::new(false));
        let asked = reopen.clone();
        let thread = std::thread::Builder::new()
            .name("liveweb-crawl-log".into())
            .spawn(move || run(files, rx, &asked))?;
        Ok(CrawlLog {
            queue,
            thread: Mutex::new(Some(thread)),
            reopen,
            dropped: AtomicU64::new(0),
        })
    }

    /// Hands a line to the log thread; never waits.
    pub fn log(&self, prefix: Option<&str>, line: String) {
        let prefix = prefix.unwrap_or("crawl").to_string();
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            self.queue.try_send(Msg::Line { prefix, line })
        {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Reopens the files (after logrotate moved them) before the next line is written.
    pub fn reopen(&self) {
        self.reopen.store(true, Ordering::Relaxed);
        let _ = self.queue.try_send(Msg::Reopen);
    }

    /// Writes every line handed over and stops the thread (at shutdown).
    pub fn close(&self) {
        let thread = crate::lock(&self.thread).take();
        if let Some(thread) = thread {
            let _ = self.queue.send(Msg::Close);
            let _ = thread.join();
        }
    }
}

struct LogFiles {
    dir: PathBuf,
    suffix: String,
    open: HashMap<String, BufWriter<File>>,
}

impl LogFiles {
    fn write(&mut self, prefix: &str, line: &str) -> io::Result<()> {
        if !self.open.contains_key(prefix) {
            if self.open.len() >= MAX_FILES {
                self.flush();
                self.open.clear();
            }
            let path = self.dir.join(format!("{prefix}{}", self.suffix));
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
            self.open.insert(prefix.to_string(), BufWriter::new(file));
        }
        match self.open.get_mut(prefix) {
            Some(out) => out.write_all(line.as_bytes()),
            None => Ok(()),
        }
    }

    fn flush(&mut self) {
        for (prefix, out) in &mut self.open {
            if let Err(e) = out.flush() {
                log::error!("crawl log {prefix}{}: {e}", self.suffix);
            }
        }
    }
}

/// The log thread: writes what arrives, flushing whenever the queue runs dry.
fn run(mut files: LogFiles, rx: Receiver<Msg>, reopen: &AtomicBool) {
    while let Ok(first) = rx.recv() {
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            if reopen.swap(false, Ordering::Relaxed) {
                // A file logrotate renamed would otherwise keep growing under its new name:
                // closed here, each is opened again by path at its next line.
                files.flush();
                files.open.clear();
            }
            match msg {
                Msg::Line { prefix, line } => {
                    if let Err(e) = files.write(&prefix, &line) {
                        log::error!("crawl log: {e}");
                    }
                }
                Msg::Reopen => {}
                Msg::Close => {
                    files.flush();
                    return;
                }
            }
            next = rx.try_recv().ok();
        }
        files.flush();
    }
    files.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry<'static> {
        Entry {
            status: 200,
            size: 2495,
            url: "https://example.com/robots.txt",
            hop_path: "P",
            via: "https://example.com/",
            mime: "text/plain",
            began: UtcTime::from_unix_millis(1_501_796_723_617),
            took_ms: 365,
            digest: "sha1:PBS2CEF7B4OSEXZZF3QE2XN2VHYCPNPX",
            seed: "-",
            duplicate: true,
            warc: Some(("JOB-20170803214522386-00000.warc.gz", 942)),
            exception: None,
        }
    }

    #[test]
    fn a_line_is_heritrix_s_as_warcprox_writes_it() {
        let now = UtcTime::from_unix_millis(1_501_796_724_496);
        assert_eq!(
            line(now, &entry()),
            "2017-08-03T21:45:24.496Z   200       2495 https://example.com/robots.txt P https://example.com/ text/plain - 20170803214523617+365 sha1:PBS2CEF7B4OSEXZZF3QE2XN2VHYCPNPX - duplicate:digest {\"contentSize\":2495,\"warcFileOffset\":942,\"warcFilename\":\"JOB-20170803214522386-00000.warc.gz\"}\n"
        );
        let failed = Entry {
            status: failure_status("E20 DNS failure"),
            size: 0,
            mime: "",
            digest: "-",
            duplicate: false,
            warc: None,
            exception: Some("E20 DNS failure: a.example: name does not resolve"),
            hop_path: "",
            via: "",
            ..entry()
        };
        let text = line(now, &failed);
        assert!(
            text.contains("    -6          0 https://example.com/robots.txt - - unknown - "),
            "{text}"
        );
        assert!(
            text.contains("\"exception\":\"E20_DNS_failure:_a.example:_name_does_not_resolve\"")
        );
        assert_eq!(
            text.split(' ').filter(|f| !f.is_empty()).count(),
            13,
            "{text}"
        );
    }

    #[test]
    fn lines_land_in_one_file_per_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let log = CrawlLog::start(&dir.path().join("logs"), "node", 8080).unwrap();
        log.log(None, "a\n".into());
        log.log(Some("job1"), "b\n".into());
        log.log(None, "c\n".into());
        log.close();
        let read =
            |name: &str| std::fs::read_to_string(dir.path().join("logs").join(name)).unwrap();
        assert_eq!(read("crawl-node-8080.log"), "a\nc\n");
        assert_eq!(read("job1-node-8080.log"), "b\n");
    }

    #[test]
    fn a_reopen_sends_the_next_lines_to_a_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let log = CrawlLog::start(dir.path(), "node", 8080).unwrap();
        let path = dir.path().join("crawl-node-8080.log");
        log.log(None, "a\n".into());
        // The thread flushes once the queue runs dry.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::fs::read_to_string(&path).unwrap_or_default() != "a\n" {
            assert!(std::time::Instant::now() < deadline, "a never written");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        // logrotate: move the file, then ask for a reopen.
        let rotated = dir.path().join("crawl-node-8080.log.1");
        std::fs::rename(&path, &rotated).unwrap();
        log.reopen();
        log.log(None, "b\n".into());
        log.close();
        assert_eq!(std::fs::read_to_string(&rotated).unwrap(), "a\n");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "b\n");
    }
}
