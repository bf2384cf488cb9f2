//! Where a response too big to keep in memory goes as it arrives: an unnamed temporary file
//! (`O_TMPFILE`) in the worker's directory, made on the blocking pool, written through the
//! runtime, read back on the blocking pool when its record is encoded. Unnamed, it needs no
//! clean-up: the kernel frees it when the last descriptor closes, after a crash too.

use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use monoio::buf::IoBuf;

/// Where and past what size response bodies spill (per worker).
#[derive(Debug, Clone)]
pub struct SpillTo {
    /// The worker's directory (`DATA/<worker>/`): the same file system as its archive.
    pub dir: PathBuf,
    /// A response held in memory grows at most to this many bytes; past it, it goes to disk.
    pub threshold: u64,
    /// Shared by every worker (`--transfer-memory`).
    pub budget: std::sync::Arc<TransferBudget>,
}

/// A response on its way to disk: everything received so far, in order.
pub struct Spill {
    file: monoio::fs::File,
    len: u64,
}

impl std::fmt::Debug for Spill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spill").field("len", &self.len).finish()
    }
}

impl Spill {
    /// A new, empty, unnamed file in `dir` (`archive::from_file::unnamed_file`, made off the
    /// worker: only big responses spill).
    pub async fn create(dir: &Path) -> io::Result<Spill> {
        let dir = dir.to_path_buf();
        let made = monoio::spawn_blocking(move || crate::archive::from_file::unnamed_file(&dir))
            .await
            .map_err(|_| io::Error::other("spill file task was cancelled"))??;
        Ok(Spill {
            file: monoio::fs::File::from_std(made)?,
            len: 0,
        })
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends `buf[..n]`; gives the buffer back.
    pub async fn append(&mut self, buf: Vec<u8>, n: usize) -> (io::Result<()>, Vec<u8>) {
        let n = n.min(buf.len());
        let (result, slice) = self.file.write_all_at(buf.slice(0..n), self.len).await;
        if result.is_ok() {
            self.len += n as u64;
        }
        (result, slice.into_inner())
    }

    /// A descriptor of the same file for a blocking reader (close-on-exec, like every
    /// descriptor liveweb makes).
    pub fn reader(&self) -> io::Result<std::fs::File> {
        // SAFETY: the descriptor is this Spill's file's, open for as long as `self` is
        // borrowed here (monoio's File offers only `AsRawFd`).
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(self.file.as_raw_fd()) };
        // std duplicates with F_DUPFD_CLOEXEC.
        Ok(std::fs::File::from(fd.try_clone_to_owned()?))
    }
}

/// Memory all workers together may hold in response bodies still arriving (in memory, below
/// `--spill-threshold`): `--transfer-memory`. A transfer that cannot take its next bytes from
/// it spills to disk at once; nothing fails for lack of memory.
#[derive(Debug)]
pub struct TransferBudget {
    limit: u64,
    used: std::sync::atomic::AtomicU64,
    /// Responses that spilled (metrics).
    spilled: std::sync::atomic::AtomicU64,
}

impl TransferBudget {
    pub fn new(limit: u64) -> std::sync::Arc<TransferBudget> {
        std::sync::Arc::new(TransferBudget {
            limit,
            used: Default::default(),
            spilled: Default::default(),
        })
    }

    /// Takes `n` bytes if they fit; the caller gives them back with `give_back`.
    pub fn try_take(&self, n: u64) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        self.used
            .fetch_update(Relaxed, Relaxed, |used| {
                used.checked_add(n).filter(|total| *total <= self.limit)
            })
            .is_ok()
    }

    pub fn give_back(&self, n: u64) {
        self.used.fetch_sub(n, std::sync::atomic::Ordering::Relaxed);
    }

    /// Counts a response that went to disk.
    pub fn count_spill(&self) {
        self.spilled
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// Responses that went to disk so far.
    pub fn spilled(&self) -> u64 {
        self.spilled.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Bytes taken now (metrics).
    pub fn used(&self) -> u64 {
        self.used.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Bytes of a `TransferBudget` a response holds, given back when it is dropped.
#[derive(Debug, Default)]
pub struct Held {
    budget: Option<std::sync::Arc<TransferBudget>>,
    bytes: u64,
}

impl Held {
    pub fn new(budget: &std::sync::Arc<TransferBudget>) -> Held {
        Held {
            budget: Some(budget.clone()),
            bytes: 0,
        }
    }

    /// Takes `n` more bytes; `false` (nothing taken) when the budget is spent.
    pub fn take(&mut self, n: u64) -> bool {
        match &self.budget {
            Some(b) if b.try_take(n) => {
                self.bytes += n;
                true
            }
            Some(_) => false,
            None => true,
        }
    }

    /// Gives back everything held (the body went to disk, or is gone).
    pub fn release(&mut self) {
        if let Some(b) = &self.budget {
            b.give_back(self.bytes);
        }
        self.bytes = 0;
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_shared_and_given_back() {
        let budget = TransferBudget::new(100);
        let mut a = Held::new(&budget);
        let mut b = Held::new(&budget);
        assert!(a.take(60));
        assert!(!b.take(50), "over the budget");
        assert!(b.take(40));
        assert_eq!(budget.used(), 100);
        a.release();
        assert_eq!(budget.used(), 40);
        drop(b);
        assert_eq!(budget.used(), 0);
    }
}
