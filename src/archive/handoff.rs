//! Hands sealed ARC files to the operator's `--on-seal CMD` (typically: upload, then delete),
//! on its own thread, never on a worker. A failing hook is retried with exponential backoff;
//! hooks run one at a time, so one file's hook never runs twice at once. When the hook has
//! removed the file, the file leaves the file table and its records stop being hits.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::Command;
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::files::FileTable;

/// First retry delay; doubles per failure up to `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(300);

enum Msg {
    File {
        id: Option<u32>,
        path: PathBuf,
    },
    /// Try every queued file once more (no waiting for backoff) until the deadline, then stop.
    Finish(Instant),
}

struct Pending {
    id: Option<u32>,
    path: PathBuf,
    attempts: u32,
    next_try: Instant,
}

/// Handle to the hook thread.
pub struct Handoff {
    tx: Sender<Msg>,
    thread: Option<JoinHandle<()>>,
}

impl Handoff {
    pub fn start(
        command: String,
        files: Arc<FileTable>,
        stats: Arc<super::stats::ArchiveStats>,
    ) -> std::io::Result<Handoff> {
        let (tx, rx) = channel();
        let thread = std::thread::Builder::new()
            .name("liveweb-on-seal".into())
            .spawn(move || run(command, files, rx, stats))?;
        Ok(Handoff {
            tx,
            thread: Some(thread),
        })
    }

    /// Queues a sealed file (its file-table id, if it has one).
    pub fn submit(&self, id: Option<u32>, path: PathBuf) {
        let _ = self.tx.send(Msg::File { id, path });
    }

    /// Gives every queued file one more try before `deadline`, then stops the thread.
    pub fn finish(mut self, deadline: Instant) {
        let _ = self.tx.send(Msg::Finish(deadline));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(
    command: String,
    files: Arc<FileTable>,
    rx: Receiver<Msg>,
    stats: Arc<super::stats::ArchiveStats>,
) {
    let mut queue: VecDeque<Pending> = VecDeque::new();
    let mut finish_by: Option<Instant> = None;
    loop {
        // Wait for news or for the earliest retry.
        let now = Instant::now();
        let wait = match (finish_by, queue.iter().map(|p| p.next_try).min()) {
            (Some(_), _) => Duration::ZERO,
            (None, Some(t)) => t.saturating_duration_since(now),
            (None, None) => Duration::from_secs(3600),
        };
        match rx.recv_timeout(wait) {
            Ok(Msg::File { id, path }) => queue.push_back(Pending {
                id,
                path,
                attempts: 0,
                next_try: Instant::now(),
            }),
            Ok(Msg::Finish(deadline)) => finish_by = Some(deadline),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => finish_by = finish_by.or(Some(Instant::now())),
        }
        if let Some(deadline) = finish_by {
            // Shutdown: one last try each, within the deadline.
            while let Some(p) = queue.pop_front() {
                if Instant::now() >= deadline {
                    log::warn!(
                        "on-seal not run for {} (shutdown deadline)",
                        p.path.display()
                    );
                    continue;
                }
                run_hook(&command, &files, &p);
            }
            return;
        }
        let now = Instant::now();
        let mut still = VecDeque::with_capacity(queue.len());
        while let Some(mut p) = queue.pop_front() {
            if p.next_try > now {
                still.push_back(p);
                continue;
            }
            if !run_hook(&command, &files, &p) {
                stats
                    .on_seal_failures
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                p.attempts += 1;
                let backoff = FIRST_BACKOFF
                    .saturating_mul(1u32 << p.attempts.min(10))
                    .min(MAX_BACKOFF);
                p.next_try = Instant::now() + backoff;
                log::warn!(
                    "on-seal failed for {} (attempt {}), retrying in {:?}",
                    p.path.display(),
                    p.attempts,
                    backoff
                );
                still.push_back(p);
            }
        }
        queue = still;
    }
}

/// Makes the child inherit stdin, stdout and stderr and nothing else. Most of liveweb's
/// descriptors are created close-on-exec, but not all can be: monoio's io_uring accept takes
/// no flags, and its pipes are made without `O_CLOEXEC`, so a connection accepted (or a
/// tunnel's pipe made) on a worker while this thread forks would be inherited, and a hook
/// that runs for minutes (an upload) would keep it open, after a crash too. In the child,
/// between fork and exec, every descriptor from 3 up is marked close-on-exec in one call
/// (`close_range` with `CLOSE_RANGE_CLOEXEC`, Linux 5.11; one `fcntl` per descriptor before
/// that); marked rather than closed, so the standard library still learns of a failed exec.
fn only_standard_streams(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and makes only
    // async-signal-safe system calls (close_range, getrlimit, fcntl), allocating nothing.
    unsafe {
        command.pre_exec(|| {
            let all = libc::c_uint::MAX;
            if libc::syscall(
                libc::SYS_close_range,
                3 as libc::c_uint,
                all,
                libc::CLOSE_RANGE_CLOEXEC,
            ) == 0
            {
                return Ok(());
            }
            let mut limit = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            let top = if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
                limit.rlim_cur.min(1 << 20) as libc::c_int
            } else {
                1 << 16
            };
            for fd in 3..top {
                libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
            }
            Ok(())
        });
    }
}

/// Runs the hook once; `true` on exit status 0.
fn run_hook(command: &str, files: &FileTable, p: &Pending) -> bool {
    let mut hook = Command::new("sh");
    hook.arg("-c")
        .arg(format!("{command} \"$1\""))
        .arg("liveweb-on-seal")
        .arg(&p.path);
    only_standard_streams(&mut hook);
    let status = hook.status();
    match status {
        Ok(s) if s.success() => {
            if !p.path.exists() {
                if let Some(id) = p.id {
                    files.remove(id);
                }
            }
            true
        }
        Ok(s) => {
            log::warn!("on-seal {command:?} {} exited with {s}", p.path.display());
            false
        }
        Err(e) => {
            log::error!("on-seal {command:?} could not start: {e}");
            false
        }
    }
}
