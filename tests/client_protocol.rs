//! The client side of HTTP/1.1: malformed requests, limits, keep-alive, pipelining, admin.

mod common;

use common::*;
use std::io::{Read, Write};

fn status_of(proxy: &Proxy, raw: &[u8]) -> u16 {
    send_raw(proxy.addr, raw).status
}

#[test]
fn malformed_and_unsupported_requests_get_4xx_5xx() {
    let proxy = Proxy::start(&[]);
    assert_eq!(status_of(&proxy, b"GARBAGE\r\n\r\n"), 400);
    assert_eq!(
        status_of(&proxy, b"GET /page HTTP/1.1\r\n\r\n"),
        400,
        "origin-form (but `/`, the page a browser opening the proxy gets)"
    );
    let r = send_raw(proxy.addr, b"GET /index.html HTTP/1.1\r\n\r\n");
    assert_eq!(r.body, b"absolute URL required\n");
    assert_eq!(status_of(&proxy, b"GET ftp://x/ HTTP/1.1\r\n\r\n"), 400);
    assert_eq!(
        status_of(&proxy, b"GET http://bad host/ HTTP/1.1\r\n\r\n"),
        400
    );
    let r = send_raw(proxy.addr, b"GET http://user@x/ HTTP/1.1\r\n\r\n");
    assert_eq!(r.status, 400);
    assert_eq!(
        r.header("x-liveweb-error").as_deref(),
        Some("E10 invalid URL")
    );
    // https URLs go through the same upstream rules (tests/https.rs fetches them).
    assert_eq!(
        status_of(&proxy, b"GET https://10.0.0.1/ HTTP/1.1\r\n\r\n"),
        403
    );
    assert_eq!(
        status_of(
            &proxy,
            b"POST http://example.com/ HTTP/1.1\r\nContent-Length: 0\r\n\r\n"
        ),
        405
    );
    assert_eq!(
        status_of(&proxy, b"DELETE http://example.com/ HTTP/1.1\r\n\r\n"),
        405
    );
    let long = format!("GET http://x/{} HTTP/1.1\r\n\r\n", "a".repeat(10_000));
    assert_eq!(status_of(&proxy, long.as_bytes()), 414);
    let big = format!(
        "GET http://x/ HTTP/1.1\r\nX-Big: {}\r\n\r\n",
        "b".repeat(20_000)
    );
    assert_eq!(status_of(&proxy, big.as_bytes()), 431);
    let many: String = (0..100).map(|i| format!("X-{i}: v\r\n")).collect();
    assert_eq!(
        status_of(
            &proxy,
            format!("GET http://x/ HTTP/1.1\r\n{many}\r\n").as_bytes()
        ),
        431
    );
    assert_eq!(
        status_of(
            &proxy,
            b"GET http://x/ HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
        ),
        400
    );
    // Binary junk never panics the server.
    let junk: Vec<u8> = (0..2000u32).map(|i| (i * 7919 % 251) as u8).collect();
    let mut c = connect(proxy.addr);
    c.get_mut().write_all(&junk).unwrap();
    let mut sink = Vec::new();
    let _ = c.read_to_end(&mut sink);
    assert!(
        sink.starts_with(b"HTTP/1.1 4"),
        "{:?}",
        String::from_utf8_lossy(&sink[..sink.len().min(40)])
    );
    // And the server still answers.
    assert_eq!(
        status_of(&proxy, b"GET /_liveweb/health HTTP/1.1\r\n\r\n"),
        200
    );
    proxy.finish();
}

#[test]
fn health_endpoint() {
    let proxy = Proxy::start(&[]);
    let r = send_raw(
        proxy.addr,
        b"GET /_liveweb/health HTTP/1.1\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"ok\n");
    assert_eq!(
        status_of(&proxy, b"GET /_liveweb/nothing HTTP/1.1\r\n\r\n"),
        404
    );
    proxy.finish();
}

#[test]
fn fifty_requests_on_one_keep_alive_connection() {
    let origin = Origin::start();
    origin.ok_numbered("/k", 5, "body");
    let proxy = Proxy::start(&[]);
    let mut conn = connect(proxy.addr);
    for n in 0..50 {
        let url = origin.url(&format!("/k{}", n % 5));
        conn.get_mut()
            .write_all(format!("GET {url} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .unwrap();
        let r = read_reply(&mut conn, false);
        assert_eq!(r.status, 200);
        let (header, payload) = r.record();
        assert!(header.starts_with(&url), "{header}");
        assert!(payload.ends_with(format!("body {}", n % 5).as_bytes()));
    }
    for i in 0..5 {
        assert_eq!(origin.hits(&format!("/k{i}")), 1);
    }
    // Connection: close is honoured: the server closes after the reply.
    conn.get_mut()
        .write_all(
            format!(
                "GET {} HTTP/1.1\r\nConnection: close\r\n\r\n",
                origin.url("/k0")
            )
            .as_bytes(),
        )
        .unwrap();
    let r = read_reply(&mut conn, false);
    assert_eq!(r.header("connection").as_deref(), Some("close"));
    let mut rest = Vec::new();
    assert_eq!(conn.read_to_end(&mut rest).unwrap(), 0);
    proxy.finish();
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let origin = Origin::start();
    origin.route(
        "/slow",
        Behavior::Delay(
            std::time::Duration::from_millis(300),
            b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow".to_vec(),
        ),
    );
    origin.ok("/fast", "text/plain", b"fast");
    let proxy = Proxy::start(&[]);
    let mut conn = connect(proxy.addr);
    let mut batch = String::new();
    for path in ["/slow", "/fast", "/missing", "/fast"] {
        batch.push_str(&format!(
            "GET {} HTTP/1.1\r\nHost: x\r\n\r\n",
            origin.url(path)
        ));
    }
    batch.push_str("HEAD /_liveweb/health HTTP/1.1\r\n\r\n");
    conn.get_mut().write_all(batch.as_bytes()).unwrap();
    let expected = [
        (200, "/slow"),
        (200, "/fast"),
        (404, "/missing"),
        (200, "/fast"),
    ];
    for (status, path) in expected {
        let r = read_reply(&mut conn, false);
        assert_eq!(r.status, status);
        assert!(r.record().0.starts_with(&origin.url(path)));
    }
    let health = read_reply(&mut conn, true);
    assert_eq!(health.status, 200);
    proxy.finish();
}

#[test]
fn http10_client_closes_unless_keep_alive() {
    let origin = Origin::start();
    origin.ok("/a", "text/plain", b"a");
    let proxy = Proxy::start(&[]);
    let mut conn = connect(proxy.addr);
    conn.get_mut()
        .write_all(format!("GET {} HTTP/1.0\r\n\r\n", origin.url("/a")).as_bytes())
        .unwrap();
    let r = read_reply(&mut conn, false);
    assert_eq!(r.status, 200);
    let mut rest = Vec::new();
    assert_eq!(
        conn.read_to_end(&mut rest).unwrap(),
        0,
        "HTTP/1.0 closes by default"
    );

    let mut conn = connect(proxy.addr);
    for _ in 0..2 {
        conn.get_mut()
            .write_all(
                format!(
                    "GET {} HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
                    origin.url("/a")
                )
                .as_bytes(),
            )
            .unwrap();
        let r = read_reply(&mut conn, false);
        assert_eq!(r.header("connection").as_deref(), Some("keep-alive"));
    }
    proxy.finish();
}

#[test]
fn get_with_small_body_is_consumed_and_connection_reused() {
    let origin = Origin::start();
    origin.ok("/b", "text/plain", b"b");
    let proxy = Proxy::start(&[]);
    let mut conn = connect(proxy.addr);
    let url = origin.url("/b");
    conn.get_mut()
        .write_all(
            format!(
                "GET {url} HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET {url} HTTP/1.1\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap();
    assert_eq!(read_reply(&mut conn, false).status, 200);
    assert_eq!(
        read_reply(&mut conn, false).header("x-cache").as_deref(),
        Some("HIT")
    );
    proxy.finish();
}

#[test]
fn cpu_affinity_each_and_lists_serve_and_unknown_cpus_are_refused() {
    for affinity in ["each", "0", "0,0"] {
        let proxy = Proxy::start(&["--workers", "2", "--cpu-affinity", affinity]);
        let r = send_raw(
            proxy.addr,
            b"GET /_liveweb/health HTTP/1.1\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(r.status, 200, "--cpu-affinity {affinity}");
        proxy.finish();
    }
    let dir = tempfile::tempdir().expect("tempdir");
    for (affinity, expect) in [
        ("4095", "CPU 4095 is not available"),
        ("1-x", "invalid --cpu-affinity"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_liveweb"))
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .args(["--cpu-affinity", affinity])
            .output()
            .expect("run liveweb");
        assert!(!out.status.success(), "--cpu-affinity {affinity} must fail");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expect), "{affinity}: {stderr}");
    }
}

#[test]
fn a_burst_of_connections_is_accepted_and_served() {
    // One worker, 200 connects before any request: most are taken from the listener's queue
    // in one pass, outside the runtime's own accept; each must still be served.
    let proxy = Proxy::start(&["--workers", "1"]);
    let mut conns: Vec<std::net::TcpStream> = (0..200)
        .map(|_| std::net::TcpStream::connect(proxy.addr).expect("connect"))
        .collect();
    for c in &mut conns {
        c.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        c.write_all(b"GET /_liveweb/health HTTP/1.1\r\nConnection: close\r\n\r\n")
            .unwrap();
    }
    for (i, c) in conns.iter_mut().enumerate() {
        let mut reply = Vec::new();
        c.read_to_end(&mut reply).unwrap();
        assert!(reply.starts_with(b"HTTP/1.1 200"), "connection {i}");
        assert!(reply.ends_with(b"ok\n"), "connection {i}");
    }
    proxy.finish();
}
