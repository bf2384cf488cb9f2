//! The housekeeping thread: sweeps expired records and old Vary lists out of the index,
//! trims the Vary lists to their share of the budget, and forgets archive files deleted
//! outside liveweb.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::proxy::Shared;

/// How often expired records are swept from the index: a quarter of `--ttl`, between 1 s
/// and 1 min (an expired record never answers; the sweep only frees its memory).
fn sweep_every(ttl: Duration) -> Duration {
    (ttl / 4).clamp(Duration::from_secs(1), Duration::from_secs(60))
}

/// Starts the thread that sweeps expired records out of the index until `stop` is set.
pub(super) fn start(shared: Arc<Shared>) -> io::Result<(Arc<AtomicBool>, JoinHandle<()>)> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let every = sweep_every(shared.config.cache.ttl);
    let handle = std::thread::Builder::new()
        .name("liveweb-sweep".into())
        .spawn(move || {
            let mut swept = Instant::now();
            while !flag.load(Ordering::Acquire) {
                // Vary lists can arrive faster than a sweep apart allows: trimmed each second.
                std::thread::park_timeout(every.min(Duration::from_secs(1)));
                if flag.load(Ordering::Acquire) {
                    break;
                }
                if swept.elapsed() < every {
                    shared.index.trim_vary_lists();
                    continue;
                }
                swept = Instant::now();
                shared.index.sweep(Instant::now(), shared.config.cache.ttl);
                let forgotten = shared.files.forget_unlinked();
                if forgotten > 0 {
                    log::info!(
                        "{forgotten} archive file(s) deleted outside liveweb: their records \
                         are no longer hits, and their disk space is released"
                    );
                }
            }
        })?;
    Ok((stop, handle))
}
