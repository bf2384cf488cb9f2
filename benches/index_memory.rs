//! Resident memory per indexed URL: inserts 1M stored entries with ~60-byte URLs into the
//! real index and reports the RSS growth. Run: `cargo bench --bench index_memory`.

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
    let n: u64 = if std::env::args().any(|a| a == "--bench") {
        1_000_000
    } else {
        10_000
    };
    let index = Index::new();
    let before = rss_bytes();
    let started = Instant::now();
    let expires = Instant::now() + Duration::from_secs(3600);
    // The reuse rules of a typical static response (an ETag and a Last-Modified kept).
    let typical = liveweb::http::cache::reuse_for(
        200,
        &liveweb::http::cache::response_facts(
            b"HTTP/1.1 200 OK\r\nETag: \"5f3e-1a2b3c\"\r\nLast-Modified: Tue, 14 Nov 2023 22:13:20 GMT\r\n\r\n",
        ),
        &[],
        std::time::SystemTime::now(),
        Duration::from_secs(3600),
    );
    for i in 0..n {
        let url = format!(
            "http://www.example-{}.com/path/to/page-{i}.html?q={}",
            i % 1000,
            i * 7
        );
        let flight = index
            .claim(&url, |r| r.is_fresh(Instant::now()))
            .expect("fresh URL")
            .flight;
        let record = Arc::new(StoredRecord {
            loc: RecordLoc {
                file_id: (i % 64) as u32,
                offset: i * 4000,
                len: 3000,
            },
            status: RecordStatus::new(200, "OK", None),
            expires_at: expires,
            stored_at: Instant::now(),
            reuse: Some(Box::new(typical.clone())),
            unconfirmed: Default::default(),
        });
        index.settle(&url, &flight, Some(record));
    }
    let grown = rss_bytes().saturating_sub(before);
    println!(
        "index_memory: {n} entries in {:.2?}, RSS +{:.1} MB, {} bytes/entry, {:.0} MB per million",
        started.elapsed(),
        grown as f64 / 1e6,
        grown / n,
        grown as f64 / n as f64
    );
}
