//! Reading stored records back without blocking a worker: whether a record's bytes are in
//! the page cache (so sendfile can send them without waiting on the disk), and io_uring
//! reads of a record region when they are not.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

/// Reads parts of an ARC file through the runtime (never a blocking read on a worker).
pub struct RegionReader {
    file: monoio::fs::File,
}

impl RegionReader {
    /// A reader on a duplicate of `fd` (closed when the reader is dropped).
    pub fn open(fd: &OwnedFd) -> io::Result<Self> {
        let dup = fd.try_clone()?;
        Ok(RegionReader {
            file: monoio::fs::File::from_std(std::fs::File::from(dup))?,
        })
    }

    /// Reads exactly `len` bytes at `offset` into `buf` (reusing its allocation).
    pub async fn read(&self, mut buf: Vec<u8>, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        use monoio::buf::IoBufMut;
        buf.clear();
        let (res, slice) = self.file.read_exact_at(buf.slice_mut(0..len), offset).await;
        res?;
        Ok(slice.into_inner())
    }

    /// Reads a whole region into a new buffer (buffered, so its pages become resident too).
    pub async fn read_region(&self, offset: u64, len: u64) -> io::Result<Vec<u8>> {
        let len = usize::try_from(len).map_err(io::Error::other)?;
        self.read(Vec::with_capacity(len), offset, len).await
    }
}

/// Whether every page of `len` bytes at `offset` of `fd` is in the page cache. Asks
/// cachestat(2) (one syscall, Linux 6.5+); on older kernels, maps the region and asks
/// mincore(2), which costs an mmap and a munmap (and its TLB shootdown on the other cores).
pub fn is_resident(fd: &impl AsRawFd, offset: u64, len: u64) -> bool {
    if len == 0 {
        return true;
    }
    static NO_CACHESTAT: AtomicBool = AtomicBool::new(false);
    if !NO_CACHESTAT.load(Ordering::Relaxed) {
        match cachestat(fd.as_raw_fd(), offset, len) {
            Ok(resident) => return resident,
            // Not there (old kernel) or not allowed (a seccomp profile that knows the call
            // and refuses it): use mincore from now on, or no hit would ever use sendfile.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ENOSYS | libc::EPERM | libc::EOPNOTSUPP | libc::EINVAL)
                ) =>
            {
                NO_CACHESTAT.store(true, Ordering::Relaxed)
            }
            Err(_) => {}
        }
    }
    mincore_resident(fd.as_raw_fd(), offset, len)
}

/// cachestat(2)'s syscall number (the same on every architecture: it came after the tables
/// were unified); the libc crate does not name it for x86_64 glibc yet.
const SYS_CACHESTAT: libc::c_long = 451;

#[repr(C)]
struct CachestatRange {
    off: u64,
    len: u64,
}

#[repr(C)]
#[derive(Default)]
struct Cachestat {
    nr_cache: u64,
    nr_dirty: u64,
    nr_writeback: u64,
    nr_evicted: u64,
    nr_recently_evicted: u64,
}

/// Whether the kernel reports every page of the range cached.
fn cachestat(fd: RawFd, offset: u64, len: u64) -> io::Result<bool> {
    let range = CachestatRange { off: offset, len };
    let mut stat = Cachestat::default();
    // SAFETY: cachestat reads `range` and fills `stat`, both live and of the kernel's layout.
    let rc = unsafe {
        libc::syscall(
            SYS_CACHESTAT,
            fd,
            &range as *const CachestatRange,
            &mut stat as *mut Cachestat,
            0u32,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let page = page_size();
    let pages = (offset + len).div_ceil(page) - offset / page;
    Ok(stat.nr_cache >= pages)
}

fn page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        p if p > 0 => p as u64,
        _ => 4096,
    }
}

/// The mincore(2) way, for kernels without cachestat (public for `benches/hit_paths.rs`).
pub fn mincore_resident(fd: RawFd, offset: u64, len: u64) -> bool {
    let page = page_size();
    let start = offset / page * page;
    let Ok(map_len) = usize::try_from(offset + len - start) else {
        return false;
    };
    let Ok(map_off) = libc::off_t::try_from(start) else {
        return false;
    };
    // SAFETY: a fresh read-only shared mapping of our own descriptor; unmapped below and never
    // dereferenced (mincore only inspects page-table state).
    unsafe {
        let addr = libc::mmap(
            std::ptr::null_mut(),
            map_len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            fd,
            map_off,
        );
        if addr == libc::MAP_FAILED {
            return false;
        }
        let mut vec = vec![0u8; map_len.div_ceil(page as usize)];
        let ok = libc::mincore(addr, map_len, vec.as_mut_ptr()) == 0;
        libc::munmap(addr, map_len);
        ok && vec.iter().all(|b| b & 1 == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Evicts a file's pages (after syncing them, which fadvise needs to drop dirty ones).
    fn evict(f: &std::fs::File) {
        f.sync_all().unwrap();
        // SAFETY: advisory call on our own descriptor.
        unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    }

    #[test]
    fn both_ways_agree_on_what_is_resident() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(&vec![7u8; 64 * 1024]).unwrap();
        let r = std::fs::File::open(&path).unwrap();
        // Just written through the page cache: resident.
        assert!(is_resident(&r, 0, 64 * 1024));
        assert!(mincore_resident(r.as_raw_fd(), 100, 5000));
        assert!(is_resident(&r, 100, 0));
        evict(&f);
        // tmpfs keeps pages whatever fadvise says; elsewhere they are gone.
        let still = mincore_resident(r.as_raw_fd(), 0, 64 * 1024);
        assert_eq!(is_resident(&r, 0, 64 * 1024), still);
        assert_eq!(
            is_resident(&r, 4096, 8192),
            mincore_resident(r.as_raw_fd(), 4096, 8192)
        );
    }
}
