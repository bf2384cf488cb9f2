//! The per-request pure work: request-head parse, URL normalization, upstream range lookup,
//! finding a response's final head (what a miss no longer parses a second time),
//! the shared index (lookup and insert from 2 threads at once), and a forward hit's client
//! head (parsed and rewritten per hit, against prepared once in a `ForwardTemplate`).
//! Run: `cargo bench --bench hot_paths`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use liveweb::archive::RecordLoc;
use liveweb::http::reply::RecordStatus;
use liveweb::http::request::{parse_request_head, Limits};
use liveweb::http::response::split_head;
use liveweb::http::url::parse_absolute;
use liveweb::index::{Index, Lookup, StoredRecord};
use liveweb::policy::UpstreamRules;

const BROWSER_HEAD: &[u8] = b"GET http://www.example.com/articles/2026/11/some-page.html?ref=home HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Safari/537.36\r\nAccept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\nAccept-Language: en-US,en;q=0.9\r\nAccept-Encoding: gzip, deflate\r\nProxy-Connection: keep-alive\r\nCookie: session=abcdef0123456789; theme=dark\r\n\r\n";
/// What the peers race's origin (nginx) answers for a miss.
const NGINX_RESPONSE_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Thu, 26 Nov 2026 11:00:00 GMT\r\nContent-Type: application/octet-stream\r\nContent-Length: 4096\r\nLast-Modified: Thu, 26 Nov 2026 10:59:00 GMT\r\nConnection: keep-alive\r\nETag: \"6929ae1c-1000\"\r\nExpires: Thu, 26 Nov 2026 12:00:00 GMT\r\nCache-Control: max-age=3600\r\nAccept-Ranges: bytes\r\n\r\n";
const WRK_HEAD: &[u8] =
    b"GET http://127.0.0.1:8081/1k.bin HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n";

/// The liveweb-mode rule: within `--ttl`.
fn fresh(r: &StoredRecord) -> bool {
    r.is_fresh(Instant::now())
}

fn record(i: u64) -> Arc<StoredRecord> {
    Arc::new(StoredRecord::stored(
        RecordLoc {
            file_id: 1,
            offset: i * 1000,
            len: 900,
        },
        RecordStatus::new(200, "OK", None),
        Instant::now(),
        Instant::now() + Duration::from_secs(3600),
        None,
    ))
}

fn parsing(c: &mut Criterion) {
    let limits = Limits::default();
    let mut g = c.benchmark_group("request");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse_head_browser", |b| {
        b.iter(|| parse_request_head(BROWSER_HEAD, &limits))
    });
    g.bench_function("parse_head_wrk", |b| {
        b.iter(|| parse_request_head(WRK_HEAD, &limits))
    });
    // Before 2026-11-26 a miss ran this again on the fetched response to find its final
    // head; now the exchange records where the body starts.
    g.bench_function("split_response_head_nginx", |b| {
        b.iter(|| split_head(std::hint::black_box(NGINX_RESPONSE_HEAD)))
    });
    g.bench_function("normalize_url", |b| {
        b.iter(|| {
            parse_absolute("HTTP://WWW.Example.COM:80/articles/2026/11/some-page.html?ref=home#top")
        })
    });
    let rules = UpstreamRules::new(&["127.0.0.0/8".parse().expect("cidr")]);
    let ips: Vec<std::net::IpAddr> = [
        "93.184.216.34",
        "10.1.2.3",
        "127.0.0.1",
        "2606:4700::1",
        "fe80::1",
    ]
    .iter()
    .map(|s| s.parse().expect("ip"))
    .collect();
    g.bench_function("upstream_rules_lookup", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % ips.len();
            rules.allows(ips[i])
        })
    });
    g.finish();
}

fn index(c: &mut Criterion) {
    let index = Arc::new(Index::new());
    let urls: Vec<String> = (0..100_000)
        .map(|i| format!("http://www.example-{}.com/page-{i}.html", i % 100))
        .collect();
    for (i, u) in urls.iter().enumerate() {
        let flight = index.claim(u, fresh).expect("claim").flight;
        index.settle(u, &flight, Some(record(i as u64)));
    }
    let mut g = c.benchmark_group("index");
    g.throughput(Throughput::Elements(1));
    // Lookups stride through the URLs so each one misses the CPU caches, as real traffic does.
    let lookups = |b: &mut criterion::Bencher| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 7919) % urls.len();
            matches!(index.lookup(&urls[i], fresh), Lookup::Hit(_))
        })
    };
    g.bench_function("lookup_hit", lookups);
    // Two threads at once: this one measures, another keeps looking up and inserting.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (bg_index, bg_stop) = (index.clone(), stop.clone());
    let background = std::thread::spawn(move || {
        let mut n = 0u64;
        while !bg_stop.load(std::sync::atomic::Ordering::Relaxed) {
            n += 1;
            let u = format!("http://bg.example/{n}");
            if let Ok(c) = bg_index.claim(&u, fresh) {
                bg_index.settle(&u, &c.flight, Some(record(n)));
            }
            let _ = bg_index.lookup("http://www.example-3.com/page-3.html", fresh);
        }
    });
    g.bench_function("lookup_hit_with_concurrent_writer", lookups);
    let mut n = 0u64;
    g.bench_function("claim_and_settle_with_concurrent_writer", |b| {
        b.iter(|| {
            n += 1;
            let u = format!("http://fg.example/{n}");
            if let Ok(c) = index.claim(&u, fresh) {
                index.settle(&u, &c.flight, Some(record(n)));
            }
        })
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = background.join();
    g.finish();
}

/// A typical stored response head (nginx serving a 1 KiB file) and its body.
const STORED: &[u8] = b"HTTP/1.1 200 OK\r\nServer: nginx/1.24.0\r\nDate: Wed, 25 Nov 2026 18:00:00 GMT\r\nContent-Type: application/octet-stream\r\nContent-Length: 16\r\nLast-Modified: Wed, 25 Nov 2026 17:00:00 GMT\r\nConnection: keep-alive\r\nETag: \"6925e0a0-400\"\r\nExpires: Wed, 25 Nov 2026 19:00:00 GMT\r\nCache-Control: max-age=3600\r\nAccept-Ranges: bytes\r\n\r\n0123456789abcdef";

fn forward_head(c: &mut Criterion) {
    use liveweb::http::client_body::ResponseStreamer;
    use liveweb::http::client_head::{ClientSide, ForwardTemplate};
    let client = ClientSide {
        version: 1,
        keep_alive: true,
        head_only: false,
        cache: "HIT",
        age: Some(12),
        archive_limit: None,
        update: None,
        range: None,
    };
    let mut g = c.benchmark_group("forward_hit_head");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parsed_per_hit", |b| {
        let mut out = Vec::with_capacity(1024);
        b.iter(|| {
            out.clear();
            let mut s = ResponseStreamer::new(client.clone(), Some(STORED.len() as u64));
            s.push(STORED, &mut out).expect("stored response");
            out.len()
        })
    });
    let template = ForwardTemplate::new(STORED).expect("stored response");
    g.bench_function("prepared_template", |b| {
        b.iter(|| template.head_for(&client).map(|f| f.head.len()))
    });
    g.finish();
}

criterion_group!(benches, parsing, index, forward_head);
criterion_main!(benches);
