//! The dedup store at scale: records N payload digests (1M, or `DEDUP_ENTRIES`) through
//! the writer thread, reopens the store (its page cache cold), then times lookups of
//! digests it holds and of digests it does not, one thread, and prints lookups per second
//! with p50/p99, and the file's size. A forward-mode WARC miss makes one lookup (on the
//! blocking pool): compare the rate with the miss rates in docs/performance.md.
//! Run: `cargo bench --bench dedup_store`.

use std::time::{Duration, Instant};

use liveweb::dedup::{DedupStore, Original, DEFAULT_BUCKET};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn digest(i: u64) -> String {
    // 32 base32 characters, like a SHA-1's.
    format!("sha1:{:032X}", i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

fn original(i: u64) -> Original {
    Original {
        url: format!(
            "https://www.example-{}.com/articles/2026/{i}-a-title.html",
            i % 5000
        ),
        warc_date: "2026-12-06T16:00:00.000Z".into(),
        record_id: format!("<urn:uuid:{i:032x}>"),
        stored_at: 1_796_000_000,
    }
}

/// Bytes of the files under `dir`.
fn dir_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

fn timed(store: &DedupStore, keys: impl Iterator<Item = u64>, present: bool) -> String {
    let mut times = Vec::new();
    let started = Instant::now();
    for i in keys {
        let t = Instant::now();
        let found = store
            .lookup(&digest(i), &[DEFAULT_BUCKET], None, 1_796_000_100)
            .expect("lookup");
        times.push(t.elapsed());
        assert_eq!(found.is_some(), present);
    }
    let total = started.elapsed();
    times.sort_unstable();
    let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
    format!(
        "{:.0} lookups/s, p50 {:?}, p99 {:?}",
        times.len() as f64 / total.as_secs_f64(),
        at(0.5),
        at(0.99)
    )
}

fn main() {
    let n: u64 = std::env::var("DEDUP_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("dedup");
    let store = DedupStore::open(&path).expect("open");
    let started = Instant::now();
    for i in 0..n {
        store.put(&digest(i), &[DEFAULT_BUCKET], &original(i));
        // The queue is bounded: let the writer thread catch up, as misses would.
        if i % 50_000 == 49_999 {
            while store.queued() > 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
    assert_eq!(
        store.dropped.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "entries dropped: the writer fell behind"
    );
    store.close();
    let wrote = started.elapsed();
    drop(store);
    let size = dir_size(&path);
    println!(
        "dedup store: {n} entries written in {wrote:.2?} ({:.0}/s), {} MiB on disk ({} bytes/entry)",
        n as f64 / wrote.as_secs_f64(),
        size >> 20,
        size / n.max(1)
    );
    let store = DedupStore::open(&path).expect("reopen");
    let sample = 200_000.min(n);
    let step = (n / sample).max(1);
    println!(
        "  held digests:   {}",
        timed(&store, (0..sample).map(|k| k * step), true)
    );
    println!(
        "  absent digests: {}",
        timed(&store, (0..sample).map(|k| n + k), false)
    );
    store.close();
}
