//! The writer's free-space watch: pauses archiving below `--min-free` or when a write finds
//! the disk full, and resumes once `--min-free` plus one write is free again, so a resumed
//! write cannot fill the disk at once.

use std::cell::Cell;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// How often free space is checked.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// What a free-space reading changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Pause { until: u64 },
    Resume,
}

/// The decision for one reading of `free` bytes; `floor` is what a pause waits for.
fn decide(paused: bool, free: u64, min_free: u64, floor: u64, last_write: u64) -> Option<Change> {
    if !paused && min_free > 0 && free < min_free {
        Some(Change::Pause {
            until: min_free.saturating_add(last_write),
        })
    } else if paused && free >= floor {
        Some(Change::Resume)
    } else {
        None
    }
}

pub(super) struct SpaceMonitor {
    dir: PathBuf,
    worker: usize,
    min_free: u64,
    /// Shared with the writer's handles, which refuse misses while it is set.
    paused: Rc<Cell<bool>>,
    /// While paused: free bytes needed to resume.
    floor: u64,
    /// Bytes the last write put on disk (blocks included).
    last_write: u64,
    last_check: Instant,
    stats: std::sync::Arc<super::stats::ArchiveStats>,
}

impl SpaceMonitor {
    pub(super) fn new(
        dir: PathBuf,
        worker: usize,
        min_free: u64,
        stats: std::sync::Arc<super::stats::ArchiveStats>,
    ) -> Self {
        SpaceMonitor {
            dir,
            worker,
            min_free,
            paused: Rc::new(Cell::new(false)),
            floor: 0,
            last_write: 0,
            last_check: Instant::now() - CHECK_EVERY,
            stats,
        }
    }

    pub(super) fn paused_flag(&self) -> Rc<Cell<bool>> {
        self.paused.clone()
    }

    pub(super) fn is_paused(&self) -> bool {
        self.paused.get()
    }

    pub(super) fn next_check(&self) -> Instant {
        self.last_check + CHECK_EVERY
    }

    /// Records the size of the write just made (what a resume must leave room for).
    pub(super) fn wrote(&mut self, bytes: u64) {
        self.last_write = bytes;
    }

    /// A write of `bytes` failed for lack of space: pause until they fit above `--min-free`.
    pub(super) fn disk_full(&mut self, bytes: u64) {
        self.floor = self.min_free.saturating_add(bytes);
        log::warn!(
            "worker {}: disk full, archiving paused until {} bytes are free",
            self.worker,
            self.floor
        );
        self.paused.set(true);
    }

    /// Reads the free space if a check is due and pauses or resumes accordingly.
    pub(super) async fn check_if_due(&mut self, now: Instant) {
        if now < self.next_check() {
            return;
        }
        self.last_check = now;
        let dir = self.dir.clone();
        let Ok(Ok(free)) = monoio::spawn_blocking(move || free_bytes(&dir)).await else {
            return;
        };
        self.stats
            .free_bytes
            .store(free, std::sync::atomic::Ordering::Relaxed);
        let w = self.worker;
        match decide(
            self.paused.get(),
            free,
            self.min_free,
            self.floor,
            self.last_write,
        ) {
            Some(Change::Pause { until }) => {
                self.floor = until;
                log::warn!(
                    "worker {w}: {free} bytes free (< --min-free {}), archiving paused until {until} are",
                    self.min_free
                );
                self.paused.set(true);
            }
            Some(Change::Resume) => {
                log::info!("worker {w}: {free} bytes free, archiving resumed");
                self.paused.set(false);
            }
            None => {}
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_under_min_free_and_resumes_above_it_plus_one_write() {
        assert_eq!(
            decide(false, 99, 100, 0, 30),
            Some(Change::Pause { until: 130 })
        );
        assert_eq!(decide(false, 100, 100, 0, 30), None);
        assert_eq!(decide(true, 129, 100, 130, 30), None);
        assert_eq!(decide(true, 130, 100, 130, 30), Some(Change::Resume));
    }

    #[test]
    fn with_min_free_zero_only_a_full_disk_pauses_and_any_room_for_the_write_resumes() {
        assert_eq!(decide(false, 0, 0, 0, 4096), None);
        // After `disk_full(8192)` the floor is the failed write itself, not a fixed amount.
        assert_eq!(decide(true, 8191, 0, 8192, 4096), None);
        assert_eq!(decide(true, 8192, 0, 8192, 4096), Some(Change::Resume));
    }
}
