//! The access log (`--access-log FILE|-`): one line per request, formatted into the worker's
//! own buffer and handed over in batches to one thread that owns the file, so a request never
//! waits on a disk write. The thread reopens the file on SIGHUP (logrotate's way).

use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use crossbeam_channel::{Sender, TrySendError};

/// A worker hands its buffer over once it holds this much.
pub const BATCH: usize = 32 * 1024;
/// Batches waiting for the log thread at most; past it lines are dropped (and counted), so a
/// stalled disk never stalls requests.
const QUEUE: usize = 256;

enum Msg {
    Lines(Vec<u8>),
    /// Wakes the thread to look at `reopen` (the flag carries the request, so a full queue
    /// cannot lose it).
    Reopen,
    /// Write what is queued, then end.
    Close,
}

pub struct AccessLog {
    tx: Sender<Msg>,
    /// Lines dropped because the log thread fell behind.
    pub dropped: AtomicU64,
    reopen: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

enum Sink {
    Stdout,
    File(PathBuf, File),
}

fn open(path: &PathBuf) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("--access-log {}: {e}", path.display())))
}

impl AccessLog {
    /// Opens `target` (a path, or `-` for stdout) now, so a bad path stops start-up, and
    /// starts the thread that writes it.
    pub fn start(target: &str) -> io::Result<AccessLog> {
        let mut sink = if target == "-" {
            Sink::Stdout
        } else {
            let path = PathBuf::from(target);
            let file = open(&path)?;
            Sink::File(path, file)
        };
        let (tx, rx) = crossbeam_channel::bounded::<Msg>(QUEUE);
        let reopen = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let asked = reopen.clone();
        let thread = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                for msg in rx {
                    if asked.swap(false, Ordering::Relaxed) {
                        if let Sink::File(path, file) = &mut sink {
                            match open(path) {
                                Ok(fresh) => *file = fresh,
                                Err(e) => log::error!("{e}; still writing the old file"),
                            }
                        }
                    }
                    match (msg, &mut sink) {
                        (Msg::Lines(lines), Sink::Stdout) => {
                            let _ = io::stdout().lock().write_all(&lines);
                        }
                        (Msg::Lines(lines), Sink::File(path, file)) => {
                            if let Err(e) = file.write_all(&lines) {
                                log::error!("access log {}: {e}", path.display());
                            }
                        }
                        (Msg::Reopen, _) => {}
                        (Msg::Close, _) => return,
                    }
                }
            })?;
        Ok(AccessLog {
            tx,
            dropped: AtomicU64::new(0),
            reopen,
            thread: std::sync::Mutex::new(Some(thread)),
        })
    }

    /// Writes what is queued and stops the thread (at shutdown, after the workers flushed);
    /// waits at most `wait` for room in the queue.
    pub fn close(&self, wait: Duration) {
        let handle = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if self.tx.send_timeout(Msg::Close, wait).is_ok() {
            if let Some(handle) = handle {
                let _ = handle.join();
            }
        }
    }

    /// Hands a batch of lines to the log thread; never waits.
    pub fn send(&self, lines: Vec<u8>) {
        if lines.is_empty() {
            return;
        }
        let count = lines.iter().filter(|&&b| b == b'\n').count() as u64;
        match self.tx.try_send(Msg::Lines(lines)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(count, Ordering::Relaxed);
            }
        }
    }

    /// Reopens the file (after logrotate moved it) before the next batch is written.
    pub fn reopen(&self) {
        self.reopen.store(true, Ordering::Relaxed);
        let _ = self.tx.try_send(Msg::Reopen);
    }
}

/// What one line says.
pub struct Entry<'a> {
    pub at: SystemTime,
    pub elapsed: Duration,
    pub client: IpAddr,
    /// The `X-Cache` value (`HIT`, `MISS`, ..., `ERROR`).
    pub outcome: &'a str,
    /// The status sent, 0 when none was.
    pub status: u16,
    pub bytes: u64,
    pub method: &'a str,
    pub url: &'a str,
    /// The liveweb error code (`E30`), if any.
    pub code: Option<&'a str>,
    /// The origin address contacted for it (none for a hit).
    pub upstream: Option<IpAddr>,
}

/// Appends one line, Squid's native layout with liveweb's code where Squid has the content
/// type: `time.ms elapsed_ms client OUTCOME/status bytes method URL - HIER/origin code`,
/// where `HIER/origin` is `DIRECT/ip` when an origin was contacted and `HIER_NONE/-` when not
/// (hits, refusals), and `-` stands for what is absent.
pub fn format_line(out: &mut Vec<u8>, e: &Entry<'_>) {
    let t =
        e.at.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
    let status = if e.status == 0 {
        "-".to_string()
    } else {
        e.status.to_string()
    };
    let code = e.code.and_then(|c| c.split(' ').next()).unwrap_or("-");
    let hierarchy = match e.upstream {
        Some(ip) => format!("DIRECT/{ip}"),
        None => "HIER_NONE/-".to_string(),
    };
    let _ = writeln!(
        out,
        "{}.{:03} {:>6} {} {}/{} {} {} {} - {} {}",
        t.as_secs(),
        t.subsec_millis(),
        e.elapsed.as_millis(),
        e.client,
        e.outcome,
        status,
        e.bytes,
        printable(e.method),
        printable(e.url),
        hierarchy,
        code
    );
}

/// Request text as one field: no spaces or control characters that would break the line.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_whitespace() || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect()
}

/// One worker's lines not yet handed over.
#[derive(Default)]
pub struct WorkerBuffer(RefCell<Vec<u8>>);

impl WorkerBuffer {
    /// Adds a line; hands the buffer over once it is big enough.
    pub fn push(&self, log: &AccessLog, e: &Entry<'_>) {
        let full = {
            let mut buf = self.0.borrow_mut();
            format_line(&mut buf, e);
            buf.len() >= BATCH
        };
        if full {
            self.flush(log);
        }
    }

    /// Hands over what is buffered (the worker does this every second, and at exit).
    pub fn flush(&self, log: &AccessLog) {
        let lines = std::mem::take(&mut *self.0.borrow_mut());
        log.send(lines);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_have_every_field_and_nothing_can_split_them() {
        let mut out = Vec::new();
        format_line(
            &mut out,
            &Entry {
                at: SystemTime::UNIX_EPOCH + Duration::from_millis(1_764_115_200_123),
                elapsed: Duration::from_micros(12_700),
                client: [127, 0, 0, 1].into(),
                outcome: "MISS",
                status: 502,
                bytes: 351,
                method: "GET",
                url: "http://a.example/x y\n",
                code: Some("E30 connection refused"),
                upstream: Some([127, 0, 0, 9].into()),
            },
        );
        format_line(
            &mut out,
            &Entry {
                at: SystemTime::UNIX_EPOCH + Duration::from_millis(1_764_115_200_200),
                elapsed: Duration::from_micros(90),
                client: "::1".parse().unwrap(),
                outcome: "HIT",
                status: 200,
                bytes: 1024,
                method: "GET",
                url: "http://a.example/",
                code: None,
                upstream: None,
            },
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "1764115200.123     12 127.0.0.1 MISS/502 351 GET http://a.example/x_y_ - DIRECT/127.0.0.9 E30\n\
             1764115200.200      0 ::1 HIT/200 1024 GET http://a.example/ - HIER_NONE/- -\n"
        );
    }

    fn wait_for_contents(path: &std::path::Path, want: &[u8]) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::fs::read(path).unwrap_or_default() != want {
            assert!(
                std::time::Instant::now() < deadline,
                "{} never held {want:?}",
                path.display()
            );
            std::thread::yield_now();
        }
    }

    #[test]
    fn batches_reach_the_file_and_a_reopen_follows_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let log = AccessLog::start(path.to_str().unwrap()).unwrap();
        log.send(b"one\n".to_vec());
        let rotated = dir.path().join("access.log.1");
        wait_for_contents(&path, b"one\n");
        std::fs::rename(&path, &rotated).unwrap();
        log.reopen();
        log.send(b"two\n".to_vec());
        wait_for_contents(&path, b"two\n");
        assert_eq!(std::fs::read(&rotated).unwrap(), b"one\n");
        // Closing writes what is queued before the thread ends.
        log.send(b"three\n".to_vec());
        log.close(Duration::from_secs(5));
        assert_eq!(std::fs::read(&path).unwrap(), b"two\nthree\n");
        let bad = AccessLog::start(dir.path().join("no/such/dir/x.log").to_str().unwrap());
        assert!(bad.err().unwrap().to_string().contains("--access-log"));
    }
}
