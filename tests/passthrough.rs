//! Forward mode, methods other than GET/HEAD: request bodies streamed to the origin, responses
//! streamed back, nothing archived, stored entries invalidated by successful unsafe methods.

mod common;

use common::*;
use sha1::{Digest, Sha1};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};

/// An origin that reads a request body (Content-Length or chunked) and answers with its
/// length and SHA-1, echoing the method; `/cut` answers with a body shorter than declared.
fn body_origin() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in l.incoming().flatten() {
            std::thread::spawn(move || serve_body(conn));
        }
    });
    addr
}

fn serve_body(conn: TcpStream) {
    let mut r = BufReader::new(conn);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let lower = head.to_ascii_lowercase();
    let method = head.split(' ').next().unwrap_or("").to_string();
    let mut body = Vec::new();
    if let Some(len) = lower
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        body = vec![0; len];
        r.read_exact(&mut body).unwrap();
    } else if lower.contains("transfer-encoding: chunked") {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).unwrap();
            let n = usize::from_str_radix(size.trim(), 16).unwrap();
            let mut data = vec![0; n + 2];
            r.read_exact(&mut data).unwrap();
            if n == 0 {
                break;
            }
            body.extend_from_slice(&data[..n]);
        }
    }
    let reply = format!("{method} len={} sha1={:x}", body.len(), Sha1::digest(&body));
    let mut conn = r.into_inner();
    if head.contains(" /cut ") {
        let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nonly part");
        return;
    }
    let _ = conn.write_all(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-Seen-Via: {}\r\n\r\n{reply}",
            reply.len(),
            lower.contains("via: 1.1 liveweb")
        )
        .as_bytes(),
    );
}

fn expected(method: &str, body: &[u8]) -> String {
    format!("{method} len={} sha1={:x}", body.len(), Sha1::digest(body))
}

#[test]
fn post_5mb_and_chunked_upload_are_streamed_through() {
    let origin = body_origin();
    let proxy = Proxy::start(&["--mode", "forward"]);
    let body: Vec<u8> = (0..5_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 17) as u8)
        .collect();
    let mut c = connect(proxy.addr);
    c.get_mut()
        .write_all(format!("POST http://{origin}/upload HTTP/1.1\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes())
        .unwrap();
    c.get_mut().write_all(&body).unwrap();
    let (r, _) = read_any_reply(&mut c, false);
    assert_eq!(r.status, 200);
    assert_eq!(String::from_utf8_lossy(&r.body), expected("POST", &body));
    assert_eq!(r.header("x-seen-via").as_deref(), Some("true"));
    assert_eq!(r.header("via"), Some(own_via()));

    // Same connection: a chunked PUT.
    c.get_mut()
        .write_all(
            format!("PUT http://{origin}/chunks HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
    let mut sent = Vec::new();
    for i in 0..50u32 {
        let piece = vec![(i % 251) as u8; 3000 + i as usize];
        c.get_mut()
            .write_all(format!("{:x}\r\n", piece.len()).as_bytes())
            .unwrap();
        c.get_mut().write_all(&piece).unwrap();
        c.get_mut().write_all(b"\r\n").unwrap();
        sent.extend_from_slice(&piece);
    }
    c.get_mut().write_all(b"0\r\n\r\n").unwrap();
    let (r, _) = read_any_reply(&mut c, false);
    assert_eq!(String::from_utf8_lossy(&r.body), expected("PUT", &sent));

    // Expect: 100-continue is answered before the body is sent.
    c.get_mut()
        .write_all(format!("POST http://{origin}/e HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n").as_bytes())
        .unwrap();
    let mut line = String::new();
    c.read_line(&mut line).unwrap();
    assert_eq!(line, "HTTP/1.1 100 Continue\r\n");
    c.read_line(&mut line).unwrap();
    c.get_mut().write_all(b"hello").unwrap();
    let (r, _) = read_any_reply(&mut c, false);
    assert_eq!(String::from_utf8_lossy(&r.body), expected("POST", b"hello"));

    let data = proxy.data_dir.clone();
    let _keep = proxy.finish();
    let mut arcs = Vec::new();
    collect_arcs(&data, &mut arcs);
    assert!(arcs.is_empty(), "pass-through is not archived");
}

#[test]
fn successful_unsafe_methods_invalidate_and_options_do_not() {
    let origin = Origin::start();
    origin.ok("/res", "text/plain", b"v1");
    let proxy = Proxy::start(&["--mode", "forward"]);
    let url = origin.url("/res");
    let fetch = |p: &Proxy| {
        let mut c = connect(p.addr);
        c.get_mut()
            .write_all(format!("GET {url} HTTP/1.1\r\nConnection: close\r\n\r\n").as_bytes())
            .unwrap();
        read_any_reply(&mut c, false).0
    };
    let send = |p: &Proxy, method: &str| {
        let mut c = connect(p.addr);
        c.get_mut()
            .write_all(
                format!(
                    "{method} {url} HTTP/1.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                )
                .as_bytes(),
            )
            .unwrap();
        read_any_reply(&mut c, false).0
    };
    assert_eq!(fetch(&proxy).header("x-cache").as_deref(), Some("MISS"));
    // A forward-mode miss streams its reply before the record is stored; until it is, a
    // repeat is COALESCED onto the same fetch. only-if-cached waits on that fetch.
    assert_eq!(
        get(proxy.addr, &url, "Cache-Control: only-if-cached\r\n").status,
        200
    );
    assert_eq!(origin.hits("/res"), 1, "one fetch so far");
    assert_eq!(send(&proxy, "OPTIONS").status, 200);
    assert_eq!(
        fetch(&proxy).header("x-cache").as_deref(),
        Some("HIT"),
        "OPTIONS is safe"
    );
    assert_eq!(send(&proxy, "DELETE").status, 200);
    origin.ok("/res", "text/plain", b"v2");
    let r = fetch(&proxy);
    assert_eq!(
        r.header("x-cache").as_deref(),
        Some("MISS"),
        "DELETE invalidated the entry"
    );
    assert_eq!(r.body, b"v2");
    proxy.finish();
}

#[test]
fn cut_responses_close_the_connection_and_liveweb_mode_refuses() {
    let origin = body_origin();
    let proxy = Proxy::start(&["--mode", "forward"]);
    let all = send_until_close(
        proxy.addr,
        format!("POST http://{origin}/cut HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi").as_bytes(),
    );
    let text = String::from_utf8_lossy(&all);
    assert!(
        text.starts_with("HTTP/1.1 200 OK\r\n") && text.contains("Content-Length: 1000"),
        "{text}"
    );
    assert!(
        all.len() < 1000,
        "the client sees the cut (connection closed early), not a complete reply"
    );
    proxy.finish();

    let proxy = Proxy::start(&[]);
    let r = send_raw(
        proxy.addr,
        format!("POST http://{origin}/x HTTP/1.1\r\nContent-Length: 0\r\n\r\n").as_bytes(),
    );
    assert_eq!(r.status, 405);
    proxy.finish();
}

#[test]
fn a_fetch_in_flight_when_an_unsafe_method_succeeds_is_not_cached() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
    use std::sync::{mpsc, Arc, Mutex};
    // The origin answers a GET with the version current when the GET arrived; the first GET
    // is answered only once released, so a DELETE can complete while it is in flight.
    let version = Arc::new(AtomicUsize::new(1));
    let hold_first = Arc::new(AtomicBool::new(true));
    let (release, released) = mpsc::channel::<()>();
    let released = Arc::new(Mutex::new(released));
    let v = version.clone();
    let origin = FnOrigin::start(move |head| {
        if head.starts_with("DELETE ") {
            v.store(2, SeqCst);
            return response("200 OK", "", "deleted");
        }
        let body = format!("v{}", v.load(SeqCst));
        if hold_first.swap(false, SeqCst) {
            let _ = released.lock().unwrap().recv();
        }
        response("200 OK", "Cache-Control: max-age=600\r\n", &body)
    });
    let proxy = Proxy::start(&["--mode", "forward"]);
    let url = origin.url("/x");
    let first = {
        let (addr, url) = (proxy.addr, url.clone());
        std::thread::spawn(move || get(addr, &url, ""))
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while origin.requests_for("/x").is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the GET never reached the origin"
        );
        std::thread::yield_now();
    }
    let deleted = send_raw(
        proxy.addr,
        format!("DELETE {url} HTTP/1.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!(deleted.status, 200);
    release.send(()).unwrap();
    let first = first.join().unwrap();
    assert_eq!(first.body, b"v1", "a request gets its own fetch's answer");
    let after = get(proxy.addr, &url, "");
    assert_eq!(
        String::from_utf8_lossy(&after.body),
        "v2",
        "the answer that predates the DELETE must not be reused after it"
    );
    assert_eq!(after.header("x-cache").as_deref(), Some("MISS"));
    proxy.finish();
}
