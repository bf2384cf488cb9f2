//! Start-up recovery time with 1M records on disk: builds a data directory of sealed ARC
//! files (real gzip members) with their CDX files, then times `recover()` into a fresh index.
//! Prints the time and the RSS the index took. Run: `cargo bench --bench startup` (add
//! `-- 10000000` for another record count).

use std::time::{Duration, Instant};

use liveweb::archive::cdx::{cdx_file, payload_digest, surt, CdxEntry};
use liveweb::archive::record::{encode_member, filedesc_member, header_line};
use liveweb::archive::recover::recover;
use liveweb::archive::FileTable;
use liveweb::clock::UtcTime;
use liveweb::index::{Index, Restorer};

mod common;
use common::rss_bytes;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PER_FILE: usize = 100_000;

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let total: usize = std::env::args()
        .filter_map(|a| a.parse().ok())
        .next()
        .unwrap_or(if bench { 1_000_000 } else { 2_000 });
    // STARTUP_DATA names a directory to build once and recover again on later runs.
    let kept = std::env::var_os("STARTUP_DATA").map(std::path::PathBuf::from);
    let temp = tempfile::tempdir().expect("tempdir");
    let root = kept.clone().unwrap_or_else(|| temp.path().to_path_buf());
    let sealed = root.join("sealed");
    let built_before = kept.is_some() && sealed.exists();
    std::fs::create_dir_all(&sealed).expect("mkdir");
    let date = UtcTime::now().arc14();
    let built = Instant::now();
    let mut made = 0;
    let mut serial = 0;
    while made < total && !built_before {
        let name = format!("BENCH-20261122000000000-0-{serial:05}.arc.gz");
        serial += 1;
        let mut data = filedesc_member(&name, &date, 1);
        let mut entries = Vec::new();
        for _ in 0..PER_FILE.min(total - made) {
            let url = format!(
                "http://www.example-{}.com/path/page-{made}.html",
                made % 997
            );
            let payload =
                format!("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n<p>{made}</p>");
            let member = encode_member(
                &header_line(&url, None, &date, "text/html", payload.len()),
                payload.as_bytes(),
                1,
            );
            entries.push(CdxEntry {
                urlkey: surt(&url),
                date14: date.clone(),
                url,
                mime: "text/html".into(),
                status: 200,
                digest: payload_digest(payload.as_bytes()),
                length: member.len() as u64,
                offset: data.len() as u64,
                private: false,
                failure: false,
            });
            data.extend(member);
            made += 1;
        }
        std::fs::write(sealed.join(&name), &data).expect("write arc");
        let cdx = cdx_file(&entries, &name);
        std::fs::write(sealed.join(name.replace(".arc.gz", ".cdx")), cdx).expect("write cdx");
    }
    eprintln!(
        "startup: built {made} records in {serial} files in {:.1?}",
        built.elapsed()
    );

    let before = rss_bytes();
    let index = Index::new();
    let files = FileTable::new();
    let started = Instant::now();
    let restorer = Restorer::new(&index, Duration::from_secs(3600));
    let r = recover(&root, &files, &restorer).expect("recover");
    let took = started.elapsed();
    let grown = rss_bytes().saturating_sub(before);
    println!(
        "startup: recovered {} records from {} files in {took:.2?} ({} indexed URLs, RSS +{:.1} MB, {:.1} bytes per URL, tables {:.1})",
        r.indexed,
        r.sealed.len(),
        index.len(),
        grown as f64 / 1e6,
        grown as f64 / index.len().max(1) as f64,
        index.memory().table_bytes as f64 / index.len().max(1) as f64
    );
}
