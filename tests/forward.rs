//! Forward mode: the client gets the origin's own response (re-headed for it), from the same
//! store liveweb mode uses.

mod common;

use common::*;
use std::io::{BufRead, Read, Write};

/// A forward-mode GET on a new connection (HTTP/1.1, Connection: close unless `keep`).
fn fget(proxy: &Proxy, url: &str, extra: &str) -> (Reply, Vec<u8>) {
    let mut c = connect(proxy.addr);
    c.get_mut()
        .write_all(
            format!("GET {url} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n").as_bytes(),
        )
        .unwrap();
    read_any_reply(&mut c, false)
}

#[test]
fn miss_then_hit_is_the_origins_response() {
    let origin = Origin::start();
    origin.route(
        "/page",
        Behavior::Send(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nX-Origin: yes\r\nConnection: keep-alive, X-Hop\r\nX-Hop: secret\r\nKeep-Alive: timeout=5\r\nContent-Length: 11\r\n\r\n<p>hi!</p>\n"
                .to_vec(),
        ),
    );
    let proxy = Proxy::start(&["--mode", "forward"]);
    let url = origin.url("/page");
    let (miss, _) = fget(&proxy, &url, "");
    assert_eq!(miss.status, 200);
    assert!(miss.head.starts_with("HTTP/1.1 200 OK\r\n"));
    assert_eq!(miss.body, b"<p>hi!</p>\n");
    assert_eq!(miss.header("content-type").as_deref(), Some("text/html"));
    assert_eq!(miss.header("x-origin").as_deref(), Some("yes"));
    assert_eq!(miss.header("via"), Some(own_via()));
    assert_eq!(miss.header("x-cache").as_deref(), Some("MISS"));
    assert!(miss.header("x-hop").is_none() && miss.header("keep-alive").is_none());
    // The miss streamed while it was being archived: a request right behind it may still
    // find the fetch in flight (COALESCED); once archived it is a HIT with an Age.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let hit = loop {
        let (r, _) = fget(&proxy, &url, "");
        assert_eq!(r.body, miss.body);
        if r.header("x-cache").as_deref() == Some("HIT") {
            break r;
        }
        assert_eq!(r.header("x-cache").as_deref(), Some("COALESCED"));
        assert!(std::time::Instant::now() < deadline);
    };
    assert!(hit.header("age").is_some());
    assert_eq!(origin.hits("/page"), 1);
    // One store, two shapes: the same entry answers liveweb mode with the record.
    let rec = get(proxy.addr, &url, "X-Liveweb-Mode: liveweb\r\n");
    assert_eq!(
        rec.header("content-type").as_deref(),
        Some("application/arc-gz")
    );
    assert!(rec.record().1.ends_with(b"<p>hi!</p>\n"));
    assert_eq!(origin.hits("/page"), 1);
    proxy.finish();
}

#[test]
fn origin_receives_end_to_end_headers_plus_via_and_user_agent() {
    let origin = Origin::start();
    origin.ok("/h", "text/plain", b"h");
    let proxy = Proxy::start(&["--mode", "forward"]);
    let mut c = connect(proxy.addr);
    c.get_mut()
        .write_all(
            format!(
                "GET {} HTTP/1.1\r\nHost: other.example\r\nAccept: text/plain\r\nConnection: keep-alive, X-Private\r\nX-Private: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\nProxy-Authorization: Basic eA==\r\nProxy-Connection: keep-alive\r\n\r\n",
                origin.url("/h")
            )
            .as_bytes(),
        )
        .unwrap();
    assert_eq!(read_any_reply(&mut c, false).0.status, 200);
    let seen = origin.requests.lock().unwrap()[0].clone();
    assert!(seen.starts_with("GET /h HTTP/1.1\r\n"), "{seen}");
    assert!(
        seen.contains(&format!("Host: {}\r\n", origin.addr)),
        "absolute-form URL's host wins: {seen}"
    );
    assert!(seen.contains("Accept: text/plain\r\n"), "{seen}");
    assert!(seen.contains(&format!("Via: {}\r\n", own_via())), "{seen}");
    assert!(seen.contains("User-Agent: liveweb/"), "{seen}");
    for gone in [
        "X-Private",
        "Keep-Alive",
        "TE:",
        "Proxy-Authorization",
        "Proxy-Connection",
        "other.example",
    ] {
        assert!(
            !seen.contains(gone),
            "{gone} must not reach the origin: {seen}"
        );
    }
    proxy.finish();
}

#[test]
fn liveweb_fetch_is_a_forward_hit_and_mode_header_is_checked() {
    let origin = Origin::start();
    origin.ok("/x", "text/plain", b"shared");
    let proxy = Proxy::start(&[]);
    get(proxy.addr, &origin.url("/x"), "");
    let (r, _) = fget(&proxy, &origin.url("/x"), "X-Liveweb-Mode: forward\r\n");
    assert_eq!(r.body, b"shared");
    assert_eq!(r.header("x-cache").as_deref(), Some("HIT"));
    assert_eq!(
        get(
            proxy.addr,
            &origin.url("/x"),
            "X-Liveweb-Mode: sideways\r\n"
        )
        .status,
        400
    );
    let seen = origin.requests.lock().unwrap()[0].to_ascii_lowercase();
    assert!(
        !seen.contains("x-liveweb"),
        "mode header never goes upstream"
    );
    proxy.finish();
}

#[test]
fn chunked_and_close_delimited_origins_for_http11_and_http10_clients() {
    let origin = Origin::start();
    origin.route(
        "/chunked",
        Behavior::Send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n".to_vec()),
    );
    origin.route(
        "/close",
        Behavior::Send(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nclosed body".to_vec()),
    );
    let proxy = Proxy::start(&["--mode", "forward"]);
    for round in 0..2 {
        let (r, raw) = fget(&proxy, &origin.url("/chunked"), "");
        assert_eq!(
            r.header("transfer-encoding").as_deref(),
            Some("chunked"),
            "round {round}"
        );
        assert_eq!(r.body, b"hello world");
        assert_eq!(raw, b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
        let (r, _) = fget(&proxy, &origin.url("/close"), "");
        assert_eq!(r.body, b"closed body");
        if round == 0 {
            // Streamed while the origin was still sending: length unknown, so re-chunked.
            assert_eq!(r.header("transfer-encoding").as_deref(), Some("chunked"));
        } else {
            // From the store, where the length is known.
            assert_eq!(r.header("content-length").as_deref(), Some("11"));
        }
    }
    // An HTTP/1.0 client cannot read chunked: it gets the decoded body, then the close.
    let all = send_until_close(
        proxy.addr,
        format!("GET {} HTTP/1.0\r\n\r\n", origin.url("/chunked")).as_bytes(),
    );
    let text = String::from_utf8(all).unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(!text.contains("Transfer-Encoding") && text.contains("Connection: close\r\n"));
    assert!(text.ends_with("\r\n\r\nhello world"), "{text}");
    proxy.finish();
}

#[test]
fn big_binary_from_memory_and_from_the_arc_file() {
    let origin = Origin::start();
    let body: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 20) as u8)
        .collect();
    origin.ok("/bin", "application/octet-stream", &body);
    let text = vec![b'a'; 5_000_000];
    origin.ok("/text", "text/plain", &text);
    // No hot shard: hits stream from the ARC file through io_uring reads.
    for cache in ["256MB", "0"] {
        let proxy = Proxy::start(&["--mode", "forward", "--mem-cache", cache]);
        for _ in 0..2 {
            let (r, _) = fget(&proxy, &origin.url("/bin"), "");
            assert_eq!(r.body.len(), body.len());
            assert!(r.body == body, "binary body identical (mem-cache {cache})");
            let (r, _) = fget(&proxy, &origin.url("/text"), "");
            assert!(
                r.body == text,
                "compressible body identical (mem-cache {cache})"
            );
        }
        proxy.finish();
    }
}

#[test]
fn head_and_keep_alive_across_hits_and_misses() {
    let origin = Origin::start();
    origin.ok_numbered("/k", 3, "body");
    let proxy = Proxy::start(&["--mode", "forward"]);
    let mut c = connect(proxy.addr);
    for n in 0..12 {
        let url = origin.url(&format!("/k{}", n % 3));
        c.get_mut()
            .write_all(format!("GET {url} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .unwrap();
        let (r, _) = read_any_reply(&mut c, false);
        assert_eq!(r.body, format!("body {}", n % 3).as_bytes());
        let cache = r.header("x-cache").unwrap_or_default();
        if n < 3 {
            assert_eq!(cache, "MISS");
        } else {
            // Right after a streamed miss its record may still be being written.
            assert!(cache == "HIT" || cache == "COALESCED", "{cache}");
        }
    }
    c.get_mut()
        .write_all(format!("HEAD {} HTTP/1.1\r\nHost: x\r\n\r\n", origin.url("/k1")).as_bytes())
        .unwrap();
    let (r, _) = read_any_reply(&mut c, true);
    assert_eq!(r.header("content-length").as_deref(), Some("6"));
    // The connection is still usable after the HEAD (no body was sent).
    c.get_mut()
        .write_all(format!("GET {} HTTP/1.1\r\nHost: x\r\n\r\n", origin.url("/k2")).as_bytes())
        .unwrap();
    assert_eq!(read_any_reply(&mut c, false).0.body, b"body 2");
    proxy.finish();
}

#[test]
fn cut_origins_close_the_client_and_failures_are_not_archived() {
    let origin = Origin::start();
    origin.route(
        "/short",
        Behavior::Send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\ncut".to_vec()),
    );
    let proxy = Proxy::start(&["--mode", "forward"]);
    for _ in 0..2 {
        // The head went out before the origin cut: the client sees its connection close
        // short of Content-Length, never a complete-looking reply.
        let all = send_until_close(
            proxy.addr,
            format!("GET {} HTTP/1.1\r\n\r\n", origin.url("/short")).as_bytes(),
        );
        let text = String::from_utf8_lossy(&all);
        assert!(text.contains("Content-Length: 100\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\ncut"), "{text}");
    }
    assert_eq!(origin.hits("/short"), 2, "a failed fetch is not cached");
    // An invalid chunk: the client sees the connection end without the final chunk.
    origin.route(
        "/badchunk",
        Behavior::Send(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nZZ\r\nnope"
                .to_vec(),
        ),
    );
    let all = send_until_close(
        proxy.addr,
        format!("GET {} HTTP/1.1\r\n\r\n", origin.url("/badchunk")).as_bytes(),
    );
    let text = String::from_utf8_lossy(&all);
    // Either the fetch failed before anything was sent (a plain 502 E35), or the client saw
    // the chunked reply end without its last chunk: never a complete-looking 200.
    let clean_error = text.starts_with("HTTP/1.1 502") && text.contains("E35 invalid response");
    let cut = text.starts_with("HTTP/1.1 200") && !text.ends_with("0\r\n\r\n");
    assert!(clean_error || cut, "{text}");
    // A failure before any byte arrived is a plain error reply.
    let refused = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (r, _) = fget(&proxy, &format!("http://127.0.0.1:{refused}/"), "");
    assert_eq!(r.status, 502);
    assert_eq!(
        r.header("x-liveweb-error").as_deref(),
        Some("E30 connection refused")
    );
    assert!(r
        .header("content-type")
        .unwrap_or_default()
        .starts_with("text/plain"));
    let data = proxy.data_dir.clone();
    let _keep = proxy.finish();
    let mut arcs = Vec::new();
    collect_arcs(&data, &mut arcs);
    assert!(arcs.is_empty(), "nothing archived");
}

#[test]
fn first_byte_is_streamed_before_the_origin_finishes_and_over_max_body_is_not_archived() {
    // An origin that sends its head and first part, then the rest a second later.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut conn = conn;
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && conn.read(&mut b).unwrap_or(0) == 1 {
                    head.push(b[0]);
                }
                let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4000\r\n\r\n");
                let _ = conn.write_all(&[b'a'; 2000]);
                std::thread::sleep(std::time::Duration::from_millis(1000));
                let _ = conn.write_all(&[b'b'; 2000]);
            });
        }
    });
    let proxy = Proxy::start(&[
        "--mode",
        "forward",
        "--max-body",
        "3KB",
        "--read-timeout",
        "5s",
    ]);
    let mut c = connect(proxy.addr);
    let started = std::time::Instant::now();
    c.get_mut()
        .write_all(
            format!("GET http://{addr}/slow HTTP/1.1\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .unwrap();
    let mut line = String::new();
    c.read_line(&mut line).unwrap();
    assert!(
        started.elapsed() < std::time::Duration::from_millis(800),
        "first byte streamed early"
    );
    assert_eq!(line, "HTTP/1.1 200 OK\r\n");
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).unwrap();
    let head = String::from_utf8_lossy(&rest);
    assert!(
        head.contains("X-Liveweb-Archived: no; E40\r\n"),
        "declared length over --max-body is labelled"
    );
    let body_at = rest.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let body = &rest[body_at..];
    assert_eq!(body.len(), 4000, "the whole body reaches the client");
    assert!(body[..2000].iter().all(|&b| b == b'a') && body[2000..].iter().all(|&b| b == b'b'));
    let data = proxy.data_dir.clone();
    let _keep = proxy.finish();
    let mut arcs = Vec::new();
    collect_arcs(&data, &mut arcs);
    assert!(arcs.is_empty(), "over --max-body: not archived");
}

/// The first forward hit on a record decodes it and prepares its reply; later hits send the
/// prepared reply. Each is byte-identical to the decoded one (apart from `Age`), for GET and
/// HEAD, HTTP/1.1 and HTTP/1.0 clients, plain and chunked bodies.
#[test]
fn prepared_forward_hits_match_the_decoded_ones_byte_for_byte() {
    let origin = Origin::start();
    let page = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nConnection: X-Hop\r\nX-Hop: 1\r\nContent-Length: 11\r\nCache-Control: max-age=3600\r\n\r\n<p>hi!</p>\n";
    let chunked = b"HTTP/1.1 200 OK\r\nCache-Control: max-age=3600\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    let proxy = Proxy::start(&["--mode", "forward"]);
    let no_age = |raw: Vec<u8>| {
        String::from_utf8(raw)
            .unwrap()
            .split("\r\n")
            .filter(|l| !l.starts_with("Age: "))
            .collect::<Vec<_>>()
            .join("\r\n")
    };
    let kinds = [
        ("GET", "HTTP/1.1\r\nHost: x\r\nConnection: close"),
        ("HEAD", "HTTP/1.1\r\nHost: x\r\nConnection: close"),
        ("GET", "HTTP/1.0"),
    ];
    for (n, response) in [&page[..], &chunked[..]].into_iter().enumerate() {
        for (k, (method, rest)) in kinds.iter().enumerate() {
            let path = format!("/r{n}-{k}");
            origin.route(&path, Behavior::Send(response.to_vec()));
            let url = origin.url(&path);
            // Stored by a liveweb-mode miss, so no decoded copy exists yet.
            assert_eq!(
                get(proxy.addr, &url, "X-Liveweb-Mode: liveweb\r\n").status,
                200
            );
            let request = format!("{method} {url} {rest}\r\n\r\n");
            let decoded = no_age(send_until_close(proxy.addr, request.as_bytes()));
            assert!(decoded.contains("X-Cache: HIT\r\n"), "{decoded}");
            assert!(!decoded.contains("X-Hop"), "{decoded}");
            // A GET keeps the decoded copy and its prepared reply.
            fget(&proxy, &url, "");
            for _ in 0..2 {
                let prepared = no_age(send_until_close(proxy.addr, request.as_bytes()));
                assert_eq!(prepared, decoded, "{request}");
            }
        }
    }
    proxy.finish();
}

#[test]
fn big_incompressible_bodies_are_sent_from_the_file_byte_for_byte() {
    // Random bytes: stored in the ARC file without compression, so from the second forward
    // hit on the body goes from the file's stored blocks (sendfile), not from memory.
    let body = incompressible(300_000, 7);
    let origin = Origin::start();
    let mut response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nCache-Control: max-age=3600\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(&body);
    origin.route("/photo.jpg", Behavior::Send(response));
    let url = origin.url("/photo.jpg");
    let proxy = Proxy::start(&["--mode", "forward"]);
    // Stored by a liveweb-mode miss (answered once the record is written, so the next
    // request is a hit, not a wait on the fetch).
    assert_eq!(
        get(proxy.addr, &url, "X-Liveweb-Mode: liveweb\r\n").status,
        200
    );
    for round in 0..3 {
        let (hit, _) = fget(&proxy, &url, "");
        assert_eq!(hit.header("x-cache").as_deref(), Some("HIT"));
        assert_eq!(hit.header("content-length"), Some(body.len().to_string()));
        assert!(hit.body == body, "hit {round}");
        let head = send_until_close(
            proxy.addr,
            format!("HEAD {url} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        let head = String::from_utf8_lossy(&head);
        assert!(head.ends_with("\r\n\r\n"), "HEAD has no body: {head}");
        let old = send_until_close(proxy.addr, format!("GET {url} HTTP/1.0\r\n\r\n").as_bytes());
        assert!(old.ends_with(&body), "HTTP/1.0 hit {round}");
    }
    assert_eq!(origin.hits("/photo.jpg"), 1);
    proxy.finish();
}
