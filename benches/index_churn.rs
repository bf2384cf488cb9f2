//! Index memory while URLs keep changing: 5M unique URLs arriving one per (simulated)
//! microsecond, each stored with a 500 ms TTL, so about 500k are live at any time; the index
//! is swept as the server's sweeper does (here every 250k inserts). Reports RSS after the
//! first million and at the end, which should stay within 20% of each other. The clock is
//! simulated so the live set is the same size whatever the machine's speed.
//! Run: `cargo bench --bench index_churn`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use liveweb::archive::RecordLoc;
use liveweb::http::reply::RecordStatus;
use liveweb::index::{Index, StoredRecord};

mod common;
use common::rss_bytes;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` would pass nothing: stay quick then.
    let total: u64 = if std::env::args().any(|a| a == "--bench") {
        5_000_000
    } else {
        20_000
    };
    let ttl = Duration::from_millis(500);
    let tick = Duration::from_micros(1);
    let base = Instant::now();
    let sweep_every = (total / 20).max(1);
    let index = Index::new();
    let started = Instant::now();
    let mut after_first_million = None;
    let mut swept = 0;
    for i in 0..total {
        let url = format!("http://www.example-{}.com/path/to/page-{i}.html", i % 1000);
        let now = base + tick * (i as u32);
        let claim = index
            .claim(&url, |r| r.is_fresh(now))
            .expect("a unique URL");
        let record = Arc::new(StoredRecord::stored(
            RecordLoc {
                file_id: 0,
                offset: i * 4000,
                len: 3000,
            },
            RecordStatus::new(200, "OK", None),
            now,
            now + ttl,
            None,
        ));
        index.settle(&url, &claim.flight, Some(record));
        if (i + 1) % sweep_every == 0 {
            swept += index.sweep(now, ttl);
        }
        if i + 1 == total.min(1_000_000) {
            after_first_million = Some(rss_bytes());
        }
    }
    let end = rss_bytes();
    let first = after_first_million.unwrap_or(end);
    println!(
        "index_churn: {total} URLs with a {ttl:?} TTL in {:.2?}; {swept} swept, {} left; RSS after 1M {:.1} MB, at the end {:.1} MB ({:+.1}%)",
        started.elapsed(),
        index.len(),
        first as f64 / 1e6,
        end as f64 / 1e6,
        (end as f64 / first as f64 - 1.0) * 100.0
    );
}
