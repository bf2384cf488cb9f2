//! Fault injection for the tests, in debug builds only (release builds have none):
//! `LIVEWEB_FAULT_FDATASYNC_AFTER=N` lets N fdatasync calls succeed, then fails every later
//! one with EIO, as a dying disk would. `LIVEWEB_FAULT_GARBLE_WRITE_AFTER=N` lets N archive
//! writes land, then makes the next one a power cut on a device without sector atomicity:
//! every block it would have written is overwritten with garbage and the process dies at
//! once, nothing acknowledged. `LIVEWEB_FAULT_RECOVERY_DELAY_MS=N` makes start-up recovery
//! take N ms longer, as a big data directory would.

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

/// Whether this archive write is the one to garble (see the module doc).
#[cfg(debug_assertions)]
pub(super) fn garble_write() -> bool {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static AFTER: OnceLock<Option<u64>> = OnceLock::new();
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let Some(after) = *AFTER.get_or_init(|| {
        std::env::var("LIVEWEB_FAULT_GARBLE_WRITE_AFTER")
            .ok()
            .and_then(|v| v.parse().ok())
    }) else {
        return false;
    };
    WRITES.fetch_add(1, Ordering::Relaxed) == after
}

#[cfg(not(debug_assertions))]
pub(super) fn garble_write() -> bool {
    false
}

/// Overwrites `len` bytes at `offset` (the blocks a write was about to cover) with garbage,
/// then ends the process as a power cut would: no reply, no seal, no cleanup.
pub(super) async fn garble_and_die(file: &monoio::fs::File, len: usize, offset: u64) -> ! {
    let mut junk = super::aligned::AlignedBuf::with_capacity(len);
    junk.extend_from_slice(&vec![0xA5; len]);
    let (res, _) = file.write_all_at(junk, offset).await;
    log::error!("fault injection: write at {offset} garbled ({res:?}), dying");
    std::process::abort()
}

/// Stretches start-up recovery (see the module doc).
pub(super) fn slow_recovery() {
    #[cfg(debug_assertions)]
    if let Some(ms) = std::env::var("LIVEWEB_FAULT_RECOVERY_DELAY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}
