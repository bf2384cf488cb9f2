//! Where a response too big to keep in memory goes as it arrives: an unnamed temporary file
//! (`O_TMPFILE`) in the worker's directory, written through the runtime, read back on the
//! blocking pool when its record is encoded. Unnamed, it needs no clean-up: the kernel frees
//! it when the last descriptor closes, after a crash too.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::{Path, PathBuf};

use monoio::buf::IoBuf;

/// Where and past what size response bodies spill (per worker).
#[derive(Debug, Clone)]
pub struct SpillTo {
    /// The worker's directory (`DATA/<worker>/`): the same file system as its archive.
    pub dir: PathBuf,
    /// A response held in memory grows at most to this many bytes; past it, it goes to disk.
    pub threshold: u64,
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
    /// A new, empty, unnamed file in `dir`.
    pub async fn create(dir: &Path) -> io::Result<Spill> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = monoio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_TMPFILE)
            .open(dir)
            .await
            .map_err(|e| {
                io::Error::new(e.kind(), format!("spill file in {}: {e}", dir.display()))
            })?;
        Ok(Spill { file, len: 0 })
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
        // SAFETY: duplicating a descriptor this Spill owns; the copy is owned by the File.
        let fd = unsafe { libc::fcntl(self.file.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor nobody else owns.
        Ok(unsafe { std::fs::File::from_raw_fd(fd) })
    }
}
