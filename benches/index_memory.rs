//! The index at scale: stores N URLs of realistic length (10M with `cargo bench`, or
//! `INDEX_URLS`), then prints resident memory per URL, insert and lookup latencies
//! (p50/p99/p99.9/max: the max insert is the longest growth step), and one shard filled to
//! the size 100M URLs give each of the 256 (what a 100M index costs per URL and how long
//! its growth steps take). Run: `cargo bench --bench index_memory`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use liveweb::archive::RecordLoc;
use liveweb::http::reply::RecordStatus;
use liveweb::index::{Index, Lookup, StoredRecord};

mod common;
use common::rss_bytes;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A URL of realistic length (about 75 bytes).
fn url(i: u64) -> String {
    format!(
        "https://www.example-{}.com/articles/2026/{:02}/{i}-a-title-of-some-words.html",
        i % 5000,
        i % 12 + 1
    )
}

fn record(i: u64, now: Instant) -> Arc<StoredRecord> {
    let loc = RecordLoc {
        file_id: (i >> 18) as u32,
        offset: (i & 0x3_ffff) * 4000,
        len: 3000,
    };
    let status = RecordStatus::new(200, "OK", None);
    let expires = now + Duration::from_secs(3600);
    Arc::new(StoredRecord::stored(loc, status, now, expires, None))
}

/// Stores URLs `from..to` one by one; each store's time in ns goes into `times`.
fn fill(index: &Index, from: u64, to: u64, times: &mut Vec<u32>) {
    let now = Instant::now();
    for i in from..to {
        let key = url(i);
        let started = Instant::now();
        let claim = index.claim(&key, |_| false).expect("a unique URL");
        index.settle(&key, &claim.flight, Some(record(i, now)));
        times.push(started.elapsed().as_nanos().min(u128::from(u32::MAX)) as u32);
    }
}

fn quantiles(times: &mut [u32]) -> String {
    times.sort_unstable();
    let at =
        |q: f64| Duration::from_nanos(u64::from(times[((times.len() - 1) as f64 * q) as usize]));
    format!(
        "p50 {:?}, p99 {:?}, p99.9 {:?}, max {:?}",
        at(0.5),
        at(0.99),
        at(0.999),
        at(1.0)
    )
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let n: u64 = std::env::var("INDEX_URLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if bench { 10_000_000 } else { 20_000 });
    // Latency samples are allocated (and touched) before the baseline, so they do not count.
    let mut times: Vec<u32> = vec![1; n as usize];
    times.clear();
    let index = Index::new();
    let before = rss_bytes();
    let started = Instant::now();
    fill(&index, 0, n, &mut times);
    let grown = rss_bytes().saturating_sub(before);
    let m = index.memory();
    println!(
        "index_memory: {n} URLs stored in {:.2?}: RSS +{:.1} MB, {:.1} bytes/URL (tables {:.1} bytes/URL)",
        started.elapsed(),
        grown as f64 / 1e6,
        grown as f64 / n as f64,
        m.table_bytes as f64 / n as f64
    );
    println!("index_memory: insert {}", quantiles(&mut times));
    // Lookups of stored URLs in a scattered order.
    times.clear();
    let lookups = n.min(2_000_000);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..lookups {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let key = url(x % n);
        let started = Instant::now();
        let hit = index.lookup(&key, |_| true);
        times.push(started.elapsed().as_nanos() as u32);
        assert!(matches!(hit, Lookup::Hit(_)), "{key}");
    }
    println!("index_memory: lookup {}", quantiles(&mut times));
    drop(index);

    // One shard at the size of each of the 256 in a 100M-URL index.
    let per_shard = if bench { 100_000_000 / 256 } else { 2_000 };
    let shard = Index::one_shard();
    times.clear();
    fill(&shard, 0, per_shard, &mut times);
    let m = shard.memory();
    println!(
        "index_memory: one shard of a 100M index ({per_shard} URLs): tables {:.1} bytes/URL; insert {}",
        m.table_bytes as f64 / per_shard as f64,
        quantiles(&mut times)
    );
}
