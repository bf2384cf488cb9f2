//! Fault injection for the tests, in debug builds only (release builds have none):
//! `LIVEWEB_FAULT_FDATASYNC_AFTER=N` lets N fdatasync calls succeed, then fails every later
//! one with EIO, as a dying disk would.

use std::io;

#[cfg(debug_assertions)]
pub(super) fn fdatasync() -> Option<io::Error> {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static AFTER: OnceLock<Option<u64>> = OnceLock::new();
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let after = (*AFTER.get_or_init(|| {
        std::env::var("LIVEWEB_FAULT_FDATASYNC_AFTER")
            .ok()
            .and_then(|v| v.parse().ok())
    }))?;
    let n = CALLS.fetch_add(1, Ordering::Relaxed);
    (n >= after).then(|| io::Error::from_raw_os_error(libc::EIO))
}

#[cfg(not(debug_assertions))]
pub(super) fn fdatasync() -> Option<io::Error> {
    None
}
