//! How long an insert into the index can stall while the table grows: 2M inserts one by one
//! into an index that starts empty, and into one reserved up front (what `--expected-urls`
//! and recovery's CDX-based reserve do); reports the slowest inserts. Blocking resizes copy
//! the shard that doubles in the inserting thread, so the slowest insert of the growing index
//! is a copy of the biggest shard. Run: `cargo bench --bench index_growth`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use liveweb::archive::RecordLoc;
use liveweb::http::reply::RecordStatus;
use liveweb::index::{Index, StoredRecord};

mod common;
use common::rss_bytes;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn run(index: &Index, n: u64) -> (Duration, Duration, Duration) {
    let mut times = Vec::with_capacity(n as usize);
    let expires = Instant::now() + Duration::from_secs(3600);
    for i in 0..n {
        let url = format!("http://www.example-{}.com/page-{i}.html", i % 1000);
        let started = Instant::now();
        let claim = index
            .claim(&url, |r| r.is_fresh(Instant::now()))
            .expect("a unique URL");
        index.settle(
            &url,
            &claim.flight,
            Some(Arc::new(StoredRecord::stored(
                RecordLoc {
                    file_id: 0,
                    offset: i,
                    len: 1,
                },
                RecordStatus::new(200, "OK", None),
                started,
                expires,
                None,
            ))),
        );
        times.push(started.elapsed());
    }
    times.sort_unstable();
    let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
    (at(0.5), at(0.999), at(1.0))
}

fn main() {
    let n: u64 = if std::env::args().any(|a| a == "--bench") {
        2_000_000
    } else {
        20_000
    };
    let growing = Index::new();
    let (p50, p999, max) = run(&growing, n);
    println!(
        "index_growth: {n} inserts, growing from empty: p50 {p50:?}, p99.9 {p999:?}, max {max:?}"
    );
    let reserved = Index::new();
    let before = rss_bytes();
    reserved.reserve(n as usize);
    println!(
        "index_growth: reserving {n} entries takes {:.1} MB of RSS up front",
        rss_bytes().saturating_sub(before) as f64 / 1e6
    );
    let (p50, p999, max) = run(&reserved, n);
    println!(
        "index_growth: {n} inserts, reserved up front: p50 {p50:?}, p99.9 {p999:?}, max {max:?}"
    );
}
