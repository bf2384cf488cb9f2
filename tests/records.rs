//! Misses, hits and coalescing through the real binary: replies are one gzip member whose
//! payload is byte for byte what the origin sent.

mod common;

use common::*;
use std::time::Duration;

#[test]
fn miss_then_hit_is_byte_identical_and_origin_untouched() {
    let origin = Origin::start();
    let raw = origin.ok("/page", "text/html; charset=utf-8", b"<html>hello</html>");
    let proxy = Proxy::start(&[]);
    let url = origin.url("/page");

    let first = get(proxy.addr, &url, "");
    assert_eq!(first.status, 200);
    assert_eq!(
        first.header("content-type").as_deref(),
        Some("application/arc-gz")
    );
    assert_eq!(first.header("x-cache").as_deref(), Some("MISS"));
    let (header, payload) = first.record();
    assert_eq!(payload, raw, "payload is the origin's bytes as received");
    let fields: Vec<&str> = header.split(' ').collect();
    assert_eq!(fields.len(), 5, "{header}");
    assert_eq!(fields[0], url);
    assert_eq!(fields[1], "127.0.0.1");
    assert_eq!(fields[2].len(), 14);
    assert!(fields[2].bytes().all(|b| b.is_ascii_digit()));
    assert_eq!(fields[3], "text/html");
    assert_eq!(fields[4], raw.len().to_string());

    for _ in 0..3 {
        let again = get(proxy.addr, &url, "");
        assert_eq!(again.header("x-cache").as_deref(), Some("HIT"));
        assert_eq!(again.body, first.body, "hit is byte-identical");
    }
    assert_eq!(origin.hits("/page"), 1);

    // The record on disk is the reply body, byte for byte.
    let mut files = Vec::new();
    collect_arcs(&proxy.data_dir, &mut files);
    let on_disk: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    assert!(
        on_disk
            .iter()
            .any(|d| d.windows(first.body.len()).any(|w| w == first.body)),
        "reply body found in an ARC file"
    );
    proxy.finish();
}

#[test]
fn status_is_mirrored_and_head_gets_no_body() {
    let origin = Origin::start();
    let proxy = Proxy::start(&[]);
    let r = get(proxy.addr, &origin.url("/missing"), "");
    assert_eq!(r.status, 404);
    assert!(r.head.starts_with("HTTP/1.1 404 Not Found\r\n"));
    let (_, payload) = r.record();
    assert!(payload.starts_with(b"HTTP/1.1 404 Not Found\r\n"));

    let head = send_raw(
        proxy.addr,
        format!(
            "HEAD {} HTTP/1.1\r\nConnection: close\r\n\r\n",
            origin.url("/missing")
        )
        .as_bytes(),
    );
    assert_eq!(head.status, 404);
    assert_eq!(head.header("x-cache").as_deref(), Some("HIT"));
    assert_eq!(head.header("content-length"), r.header("content-length"));
    proxy.finish();
}

#[test]
fn binary_300k_served_from_memory_disk_and_sendfile() {
    let origin = Origin::start();
    let body: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let raw = origin.ok("/bin", "application/octet-stream", &body);
    // No hot shard: every hit goes to the ARC file (cold read first, then sendfile).
    let proxy = Proxy::start(&["--mem-cache", "0"]);
    let url = origin.url("/bin");
    let first = get(proxy.addr, &url, "");
    assert_eq!(first.record().1, raw);
    for _ in 0..4 {
        let hit = get(proxy.addr, &url, "");
        assert_eq!(hit.header("x-cache").as_deref(), Some("HIT"));
        assert_eq!(hit.body, first.body);
    }
    assert_eq!(origin.hits("/bin"), 1);
    proxy.finish();
}

#[test]
fn chunked_and_close_delimited_origins_are_archived_as_received() {
    let origin = Origin::start();
    let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n5\r\nhello\r\n7;x=y\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n".to_vec();
    origin.route("/chunked", Behavior::Send(chunked.clone()));
    let close =
        b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the origin closes".to_vec();
    origin.route("/close", Behavior::Send(close.clone()));
    let proxy = Proxy::start(&[]);
    let r = get(proxy.addr, &origin.url("/chunked"), "");
    assert_eq!(r.status, 200);
    assert_eq!(r.record().1, chunked, "chunked framing kept");
    let r = get(proxy.addr, &origin.url("/close"), "");
    assert_eq!(r.status, 200);
    assert_eq!(r.record().1, close);
    proxy.finish();
}

#[test]
fn sixteen_concurrent_requests_cause_one_fetch() {
    let origin = Origin::start();
    let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow".to_vec();
    origin.route(
        "/slow",
        Behavior::Delay(Duration::from_millis(600), raw.clone()),
    );
    let proxy = Proxy::start(&[]);
    let url = origin.url("/slow");
    let addr = proxy.addr;
    let threads: Vec<_> = (0..16)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || get(addr, &url, ""))
        })
        .collect();
    let replies: Vec<Reply> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(origin.hits("/slow"), 1, "exactly one origin request");
    let misses = replies
        .iter()
        .filter(|r| r.header("x-cache").as_deref() == Some("MISS"))
        .count();
    assert_eq!(misses, 1);
    for r in &replies {
        assert_eq!(r.status, 200);
        assert_eq!(r.body, replies[0].body);
        assert_eq!(r.record().1, raw);
        let cache = r.header("x-cache").unwrap();
        assert!(
            ["MISS", "COALESCED", "HIT"].contains(&cache.as_str()),
            "{cache}"
        );
    }
    proxy.finish();
}

#[test]
fn only_if_cached_and_no_cache() {
    let origin = Origin::start();
    origin.ok("/c", "text/plain", b"v1");
    let proxy = Proxy::start(&[]);
    let url = origin.url("/c");
    let r = get(proxy.addr, &url, "Cache-Control: only-if-cached\r\n");
    assert_eq!(r.status, 504);
    assert_eq!(origin.hits("/c"), 0);
    assert_eq!(
        get(proxy.addr, &url, "").header("x-cache").as_deref(),
        Some("MISS")
    );
    let r = get(proxy.addr, &url, "Cache-Control: only-if-cached\r\n");
    assert_eq!(r.header("x-cache").as_deref(), Some("HIT"));
    origin.ok("/c", "text/plain", b"v2");
    let r = get(proxy.addr, &url, "Cache-Control: no-cache\r\n");
    assert_eq!(r.header("x-cache").as_deref(), Some("MISS"));
    assert!(r.record().1.ends_with(b"v2"));
    assert_eq!(origin.hits("/c"), 2);
    // The refetched record now answers hits.
    assert!(get(proxy.addr, &url, "").record().1.ends_with(b"v2"));
    proxy.finish();
}

#[test]
fn expired_records_are_refetched() {
    let origin = Origin::start();
    origin.ok("/ttl", "text/plain", b"x");
    let proxy = Proxy::start(&["--ttl", "300ms"]);
    let url = origin.url("/ttl");
    get(proxy.addr, &url, "");
    assert_eq!(
        get(proxy.addr, &url, "").header("x-cache").as_deref(),
        Some("HIT")
    );
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(
        get(proxy.addr, &url, "").header("x-cache").as_deref(),
        Some("MISS")
    );
    assert_eq!(origin.hits("/ttl"), 2);
    proxy.finish();
}

#[test]
fn upstream_request_carries_host_user_agent_and_no_hop_by_hop() {
    let origin = Origin::start();
    origin.ok("/h", "text/plain", b"x");
    let proxy = Proxy::start(&["--user-agent", "test-agent/1"]);
    get(
        proxy.addr,
        &origin.url("/h?q=1"),
        "Proxy-Authorization: secret\r\nX-Keep: yes\r\n",
    );
    let seen = origin.requests.lock().unwrap()[0].clone();
    assert!(seen.starts_with("GET /h?q=1 HTTP/1.1\r\n"), "{seen}");
    assert!(
        seen.contains(&format!("Host: {}\r\n", origin.addr)),
        "{seen}"
    );
    assert!(seen.contains("User-Agent: test-agent/1\r\n"), "{seen}");
    assert!(seen.contains("X-Keep: yes\r\n"), "{seen}");
    assert!(!seen.contains("secret"), "{seen}");
    proxy.finish();
}

#[test]
fn upstream_connections_are_reused_and_stale_ones_retried() {
    use std::io::{BufRead, BufReader, Write};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    // An origin that serves many requests per connection and counts connections.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            counter.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut conn = conn;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let path = line.split(' ').nth(1).unwrap_or("").to_string();
                    loop {
                        let mut h = String::new();
                        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                            break;
                        }
                    }
                    let body = format!("body of {path}");
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if conn.write_all(reply.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    let proxy = Proxy::start(&["--workers", "1"]);
    for i in 0..5 {
        let r = get(proxy.addr, &format!("http://{addr}/p{i}"), "");
        assert_eq!(r.status, 200);
        assert!(r.record().1.ends_with(format!("body of /p{i}").as_bytes()));
    }
    assert_eq!(
        connections.load(Ordering::SeqCst),
        1,
        "five fetches on one upstream connection"
    );
    proxy.finish();
    // The usual test origin closes after every response: each pooled connection it leaves
    // is dead, and the next fetch must retry on a fresh one and succeed.
    let origin = Origin::start();
    for i in 0..3 {
        origin.ok(&format!("/s{i}"), "text/plain", b"x");
    }
    let proxy = Proxy::start(&["--workers", "1"]);
    for i in 0..3 {
        assert_eq!(
            get(proxy.addr, &origin.url(&format!("/s{i}")), "").status,
            200
        );
    }
    proxy.finish();
}

#[test]
fn a_cold_hit_of_a_big_record_streams_in_bounded_memory() {
    let body: Vec<u8> = (0..24u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let origin = Origin::start();
    origin.ok("/big", "application/octet-stream", &body);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let args = ["--workers", "1", "--gzip-level", "0", "--mem-cache", "1MB"];
    let proxy = Proxy::start_in(&data, &args);
    let first = get(proxy.addr, &origin.url("/big"), "");
    assert_eq!(first.status, 200);
    let mut proxy = proxy;
    assert!(proxy.terminate().success());
    // A fresh process (its peak memory starts low), the record's pages out of the cache.
    let mut arcs = Vec::new();
    collect_arcs(&data, &mut arcs);
    for arc in &arcs {
        let f = std::fs::File::open(arc).unwrap();
        // SAFETY: advice on our own descriptor; dropping clean pages is always allowed.
        unsafe {
            libc::posix_fadvise(
                std::os::fd::AsRawFd::as_raw_fd(&f),
                0,
                0,
                libc::POSIX_FADV_DONTNEED,
            )
        };
    }
    let proxy = Proxy::start_in(&data, &args);
    let before = peak_rss(proxy.pid());
    let hit = get(proxy.addr, &origin.url("/big"), "");
    assert_eq!(hit.header("x-cache").as_deref(), Some("HIT"));
    assert!(hit.body == first.body, "byte-identical");
    let grown = peak_rss(proxy.pid()).saturating_sub(before);
    // Reading it whole raised the peak by 29.6 MB; streaming stays near one piece plus the
    // process's own warm-up on its first request (a few MB).
    assert!(
        grown < 12 << 20,
        "a 24 MiB cold hit raised peak memory by {grown} bytes"
    );
    assert_eq!(origin.hits("/big"), 1);
    proxy.finish();
}

#[test]
fn every_origin_status_gets_a_reply_that_is_valid_http_and_carries_the_record() {
    use std::io::Write;
    let origin = Origin::start();
    let statuses: [(&str, &[u8], u16, Option<&str>); 9] = [
        (
            "/200",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            200,
            None,
        ),
        // An interim response, then the final one: the final one's status counts.
        (
            "/1xx",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
            200,
            Some("204 No Content"),
        ),
        (
            "/204",
            b"HTTP/1.1 204 No Content\r\n\r\n",
            200,
            Some("204 No Content"),
        ),
        (
            "/205",
            b"HTTP/1.1 205 Reset Content\r\nContent-Length: 0\r\n\r\n",
            200,
            Some("205 Reset Content"),
        ),
        (
            "/301",
            b"HTTP/1.1 301 Moved Permanently\r\nLocation: /200\r\nContent-Length: 0\r\n\r\n",
            301,
            None,
        ),
        (
            "/304",
            b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n",
            200,
            Some("304 Not Modified"),
        ),
        (
            "/404",
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\nnope",
            404,
            None,
        ),
        (
            "/503",
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n",
            503,
            None,
        ),
        (
            "/799",
            b"HTTP/1.1 799 Made Up\r\nContent-Length: 1\r\n\r\n?",
            200,
            Some("799 Made Up"),
        ),
    ];
    for (path, raw, _, _) in &statuses {
        origin.route(path, Behavior::Send(raw.to_vec()));
    }
    let proxy = Proxy::start(&[]);
    // One connection for everything, twice over (misses, then hits): a reply that carried
    // bytes its status forbids would desynchronise the replies after it.
    let mut conn = connect(proxy.addr);
    for round in ["MISS", "HIT"] {
        for (path, raw, status, archive_status) in &statuses {
            let url = origin.url(path);
            conn.get_mut()
                .write_all(format!("GET {url} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
                .unwrap();
            let reply = read_reply(&mut conn, false);
            assert_eq!(reply.status, *status, "{path} {round}: {}", reply.head);
            assert_eq!(reply.header("x-cache").as_deref(), Some(round), "{path}");
            assert_eq!(
                reply.header("x-archive-status").as_deref(),
                *archive_status,
                "{path}"
            );
            let (header, payload) = reply.record();
            assert!(header.starts_with(&format!("{url} ")), "{header}");
            // Archived as received, an interim response included.
            assert_eq!(payload, *raw, "{path}");
        }
    }
}
