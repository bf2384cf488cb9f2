//! RFC 9111 and 9110 details of forward mode, on the bytes the origin received and the client
//! got: what a 304 updates, ranges and stored partial responses, Vary with empty values,
//! `Expect: 100-continue` on GET, and forward-mode failures counted like liveweb mode's.

mod common;

use common::*;
use std::io::Write;

fn forward_proxy() -> Proxy {
    Proxy::start(&["--mode", "forward"])
}

#[test]
fn a_header_present_but_empty_is_not_the_same_variant_as_one_absent() {
    let origin = FnOrigin::start(|head| {
        let v = header_in(head, "x-variant");
        let body = match &v {
            None => "absent".to_string(),
            Some(v) => format!("value=[{v}]"),
        };
        response(
            "200 OK",
            "Cache-Control: max-age=600\r\nVary: X-Variant\r\n",
            &body,
        )
    });
    let proxy = forward_proxy();
    let url = origin.url("/v");
    let r = fwd(&proxy, &url, "X-Variant:\r\n");
    assert_eq!(
        (cache(&r).as_str(), &r.body[..]),
        ("MISS", &b"value=[]"[..])
    );
    wait_stored(&proxy, &url, "X-Variant:\r\n");
    let r = fwd(&proxy, &url, "");
    assert_eq!(&r.body[..], b"absent", "{}", r.head);
    wait_stored(&proxy, &url, "");
    let r = fwd(&proxy, &url, "X-Variant: \r\n");
    assert_eq!((cache(&r).as_str(), &r.body[..]), ("HIT", &b"value=[]"[..]));
    let r = fwd(&proxy, &url, "");
    assert_eq!((cache(&r).as_str(), &r.body[..]), ("HIT", &b"absent"[..]));
    // The other order, on a URL of its own.
    let url = origin.url("/w");
    assert_eq!(&fwd(&proxy, &url, "").body[..], b"absent");
    wait_stored(&proxy, &url, "");
    let r = fwd(&proxy, &url, "X-Variant:\r\n");
    assert_eq!(&r.body[..], b"value=[]", "{}", r.head);
    proxy.finish();
}

/// A GET or HEAD with a body and `Expect: 100-continue` gets `100 Continue` before liveweb
/// reads (and drops) the body, then its answer; a body too large is refused at once.
#[test]
fn expect_100_continue_on_get_is_answered_instead_of_hanging() {
    use std::io::BufRead;
    let origin = Origin::start();
    origin.ok("/c", "text/plain", b"continued");
    let proxy = forward_proxy();
    for method in ["GET", "HEAD"] {
        let mut conn = connect(proxy.addr);
        let head = format!(
            "{method} {} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
            origin.url("/c")
        );
        conn.get_mut().write_all(head.as_bytes()).unwrap();
        // Nothing more is sent until the interim response comes.
        let mut line = String::new();
        conn.read_line(&mut line).unwrap();
        assert_eq!(line, "HTTP/1.1 100 Continue\r\n", "{method}");
        line.clear();
        conn.read_line(&mut line).unwrap();
        assert_eq!(line, "\r\n");
        conn.get_mut().write_all(b"hello").unwrap();
        let r = read_reply(&mut conn, method == "HEAD");
        assert_eq!(r.status, 200, "{method}: {}", r.head);
        if method == "GET" {
            assert_eq!(r.body, b"continued");
        }
    }
    // Too large to read: the final answer, without waiting for the body.
    let mut conn = connect(proxy.addr);
    let head = format!(
        "GET {} HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\nExpect: 100-continue\r\n\r\n",
        origin.url("/c")
    );
    conn.get_mut().write_all(head.as_bytes()).unwrap();
    let r = read_reply(&mut conn, false);
    assert_eq!(r.status, 413, "{}", r.head);
    // HTTP/1.0 clients get no interim response (and none asked for one here).
    let mut conn = connect(proxy.addr);
    let head = format!(
        "GET {} HTTP/1.0\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello",
        origin.url("/c")
    );
    conn.get_mut().write_all(head.as_bytes()).unwrap();
    let (r, _) = read_any_reply(&mut conn, false);
    assert_eq!(
        (r.status, &r.body[..]),
        (200, &b"continued"[..]),
        "{}",
        r.head
    );
    proxy.finish();
}

/// A 304's header fields replace the stored ones in what clients get (RFC 9111 4.3.4), on the
/// revalidated reply and on later hits; the stored body and its framing stay. A 304 that adds
/// `Vary` re-keys the response: another variant is fetched, not served this one.
#[test]
fn a_304_updates_the_stored_headers_and_can_add_vary() {
    let origin = FnOrigin::start(|head| {
        let path = head.split(' ').nth(1).unwrap_or("");
        let revalidating = header_in(head, "if-none-match").as_deref() == Some("\"v1\"");
        match (path, revalidating) {
            ("/r", false) => response(
                "200 OK",
                "ETag: \"v1\"\r\nCache-Control: max-age=0\r\nX-Version: 1\r\nX-Stays: yes\r\n",
                "the body",
            ),
            ("/r", true) => response(
                "304 Not Modified",
                "ETag: \"v1\"\r\nCache-Control: max-age=600\r\nX-Version: 2\r\nExpires: Thu, 01 Jan 2037 00:00:00 GMT\r\n",
                "",
            ),
            ("/k", false) => response(
                "200 OK",
                "ETag: \"v1\"\r\nCache-Control: max-age=0\r\n",
                &format!("lang={}", header_in(head, "x-lang").unwrap_or_default()),
            ),
            ("/k", true) => response(
                "304 Not Modified",
                "ETag: \"v1\"\r\nCache-Control: max-age=600\r\nVary: X-Lang\r\n",
                "",
            ),
            _ => response("404 Not Found", "", "no"),
        }
    });
    let proxy = forward_proxy();
    let url = origin.url("/r");
    assert_eq!(cache(&fwd(&proxy, &url, "")), "MISS");
    wait_stored(&proxy, &url, "X-Liveweb-Mode: liveweb\r\n");
    for expected in ["REVALIDATED", "HIT"] {
        let r = fwd(&proxy, &url, "");
        assert_eq!(
            (cache(&r).as_str(), &r.body[..]),
            (expected, &b"the body"[..])
        );
        assert_eq!(
            r.header("cache-control").as_deref(),
            Some("max-age=600"),
            "{}",
            r.head
        );
        assert_eq!(r.header("x-version").as_deref(), Some("2"), "{}", r.head);
        assert_eq!(r.head.matches("X-Version").count(), 1, "{}", r.head);
        assert_eq!(r.header("x-stays").as_deref(), Some("yes"));
        assert!(
            r.header("expires").is_some_and(|e| e.contains("2037")),
            "{}",
            r.head
        );
        assert_eq!(r.header("content-length").as_deref(), Some("8"));
    }
    assert_eq!(origin.requests_for("/r").len(), 2);

    let url = origin.url("/k");
    assert_eq!(fwd(&proxy, &url, "X-Lang: en\r\n").body, b"lang=en");
    wait_stored(&proxy, &url, "X-Liveweb-Mode: liveweb\r\n");
    let r = fwd(&proxy, &url, "X-Lang: en\r\n");
    assert_eq!(cache(&r), "REVALIDATED");
    assert_eq!(r.header("vary").as_deref(), Some("X-Lang"), "{}", r.head);
    let r = fwd(&proxy, &url, "X-Lang: de\r\n");
    assert_eq!(
        (cache(&r).as_str(), &r.body[..]),
        ("MISS", &b"lang=de"[..]),
        "{}",
        r.head
    );
    wait_stored(&proxy, &url, "X-Lang: de\r\n");
    let r = fwd(&proxy, &url, "X-Lang: en\r\n");
    assert_eq!(
        (cache(&r).as_str(), &r.body[..]),
        ("HIT", &b"lang=en"[..]),
        "{}",
        r.head
    );
    proxy.finish();
}

/// A stored full `200` answers a single `Range` with `206` from the store (gzip and plain
/// records); several ranges or a stale `If-Range` get the whole `200`; a range past the end is
/// `416`. A stored `206` is never served as a hit.
#[test]
fn ranges_are_answered_from_stored_full_responses_and_stored_partials_never_hit() {
    let origin = FnOrigin::start(|head| {
        match head.split(' ').nth(1).unwrap_or("") {
            "/file" => response(
                "200 OK",
                "ETag: \"e1\"\r\nCache-Control: max-age=600\r\n",
                "0123456789",
            ),
            // A partial answer to a request that asked for no range.
            "/partial" => response(
                "206 Partial Content",
                "Content-Range: bytes 0-3/10\r\nCache-Control: max-age=600\r\n",
                "0123",
            ),
            _ => response("404 Not Found", "", "no"),
        }
    });
    for gzip in ["true", "false"] {
        let proxy = Proxy::start(&["--mode", "forward", "--arc-gzip", gzip]);
        let url = origin.url("/file");
        assert_eq!(
            fwd(&proxy, &url, "Range: bytes=2-4\r\n").status,
            200,
            "a miss sends it whole"
        );
        wait_stored(&proxy, &url, "");
        for (range, status, body, content_range) in [
            ("bytes=2-4", 206, "234", Some("bytes 2-4/10")),
            ("bytes=-3", 206, "789", Some("bytes 7-9/10")),
            ("bytes=7-", 206, "789", Some("bytes 7-9/10")),
            ("bytes=0-99", 206, "0123456789", Some("bytes 0-9/10")),
            ("bytes=0-1,3-4", 200, "0123456789", None),
            ("bytes=20-", 416, "", Some("bytes */10")),
        ] {
            let r = fwd(&proxy, &url, &format!("Range: {range}\r\n"));
            assert_eq!(
                (
                    r.status,
                    String::from_utf8_lossy(&r.body).as_ref(),
                    r.header("content-range").as_deref()
                ),
                (status, body, content_range),
                "gzip {gzip}, {range}: {}",
                r.head
            );
            assert_eq!(cache(&r), "HIT");
            assert_eq!(r.header("content-length"), Some(body.len().to_string()));
        }
        let r = fwd(&proxy, &url, "Range: bytes=2-4\r\nIf-Range: \"e1\"\r\n");
        assert_eq!((r.status, &r.body[..]), (206, &b"234"[..]));
        let r = fwd(&proxy, &url, "Range: bytes=2-4\r\nIf-Range: \"old\"\r\n");
        assert_eq!((r.status, &r.body[..]), (200, &b"0123456789"[..]));
        // HEAD ignores Range.
        let mut conn = connect(proxy.addr);
        conn.get_mut()
            .write_all(
                format!("HEAD {url} HTTP/1.1\r\nRange: bytes=2-4\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .unwrap();
        assert_eq!(read_reply(&mut conn, true).status, 200);

        let url = origin.url("/partial");
        for _ in 0..2 {
            let r = fwd(&proxy, &url, "");
            assert_eq!((r.status, cache(&r).as_str()), (206, "MISS"), "gzip {gzip}");
            wait_stored(&proxy, &url, "X-Liveweb-Mode: liveweb\r\n");
        }
        proxy.finish();
    }
    assert_eq!(origin.requests_for("/partial").len(), 4);
    // Range is never sent upstream on a fetch that is stored.
    assert!(origin
        .requests_for("/file")
        .iter()
        .all(|r| header_in(r, "range").is_none()));
}

/// Requests that arrive together for a page to be validated before every reuse each get it
/// through a conditional request (a `304`), never by fetching it whole again: a busy page
/// would otherwise be fetched, and archived, once per request.
#[test]
fn requests_joining_a_revalidation_validate_rather_than_fetch_whole() {
    use std::sync::{Arc, Condvar, Mutex};
    // The origin holds its first 304 until the test lets it go, so the other requests join
    // that revalidation while it is in flight.
    let gate = Arc::new((Mutex::new(false), Condvar::new()));
    let held = gate.clone();
    let origin = FnOrigin::start(move |head| {
        if header_in(head, "if-none-match").as_deref() == Some("\"v1\"") {
            let (open, opened) = &*held;
            let mut open = open.lock().unwrap();
            while !*open {
                open = opened.wait(open).unwrap();
            }
        }
        no_cache_page(head)
    });
    let proxy = forward_proxy();
    let url = origin.url("/busy");
    assert_eq!(&fwd(&proxy, &url, "").body[..], b"the page");
    wait_stored(&proxy, &url, "");
    let clients: Vec<_> = (0..6)
        .map(|_| {
            let (addr, url) = (proxy.addr, url.clone());
            std::thread::spawn(move || {
                let r = get(addr, &url, "X-Liveweb-Mode: forward\r\n");
                (r.status, r.body)
            })
        })
        .collect();
    // All six are connected (and so asking) before the origin answers the first.
    loop {
        let metrics = send_raw(
            proxy.addr,
            b"GET /_liveweb/metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        let text = String::from_utf8(metrics.body).unwrap();
        let connected = text
            .lines()
            .find_map(|l| l.strip_prefix("liveweb_client_connections "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        if connected >= 7.0 {
            break; // six clients and this request
        }
        std::thread::yield_now();
    }
    *gate.0.lock().unwrap() = true;
    gate.1.notify_all();
    for client in clients {
        let (status, body) = client.join().unwrap();
        assert_eq!((status, &body[..]), (200, &b"the page"[..]));
    }
    let received = origin.requests_for("/busy");
    let whole: Vec<_> = received
        .iter()
        .skip(1)
        .filter(|r| header_in(r, "if-none-match").is_none())
        .collect();
    assert!(whole.is_empty(), "fetched whole again: {whole:?}");
    assert!(received.len() >= 2, "{received:?}");
    proxy.finish();
}
