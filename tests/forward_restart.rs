//! The forward cache survives restarts: after SIGTERM or kill -9, a fresh stored response is
//! a HIT with its age counted from when it was archived, validators read from the record
//! head answer conditional requests and revalidations, and what was never for everyone
//! (private answers, Vary variants whose request is unknown) is fetched again, never reused.

mod common;

use common::*;

fn origin() -> FnOrigin {
    FnOrigin::start(|head| {
        let path = head.split(' ').nth(1).unwrap_or("");
        let inm = header_in(head, "if-none-match");
        let ae = header_in(head, "accept-encoding").unwrap_or_default();
        match path {
            "/fresh" => response(
                "200 OK",
                "ETag: \"f1\"\r\nCache-Control: max-age=600\r\n",
                "fresh body",
            ),
            "/aged" => response(
                "200 OK",
                "Age: 100\r\nCache-Control: max-age=600\r\n",
                "aged",
            ),
            "/stale" if inm.as_deref() == Some("\"s1\"") => response(
                "304 Not Modified",
                "ETag: \"s1\"\r\nCache-Control: max-age=600\r\n",
                "",
            ),
            "/stale" => response(
                "200 OK",
                "ETag: \"s1\"\r\nCache-Control: max-age=0\r\n",
                "stale body",
            ),
            "/private" => response("200 OK", "Cache-Control: private, max-age=600\r\n", "mine"),
            "/vary" => response(
                "200 OK",
                "Vary: Accept-Encoding\r\nCache-Control: max-age=600\r\n",
                &format!("ae={ae}"),
            ),
            _ => response("404 Not Found", "", "no"),
        }
    })
}

const PATHS: [&str; 5] = ["/fresh", "/aged", "/stale", "/private", "/vary"];

#[test]
fn stored_responses_are_hits_after_sigterm_and_kill9_and_private_ones_never_are() {
    let origin = origin();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let args = ["--mode", "forward"];
    let proxy = Proxy::start_in(&data, &args);
    for path in PATHS {
        let url = origin.url(path);
        let r = fwd(&proxy, &url, "Accept-Encoding: gzip\r\n");
        assert_eq!(cache(&r), "MISS", "{path}");
        wait_stored(&proxy, &url, "Accept-Encoding: gzip\r\n");
    }
    let mut proxy = proxy;
    assert!(proxy.terminate().success());

    // After a clean stop.
    let proxy = Proxy::start_in(&data, &args);
    let url = origin.url("/fresh");
    let r = fwd(&proxy, &url, "");
    assert_eq!(
        (cache(&r).as_str(), &r.body[..]),
        ("HIT", &b"fresh body"[..]),
        "{}",
        r.head
    );
    assert_eq!(origin.requests_for("/fresh").len(), 1);
    // A conditional request is answered from the validators in the record head.
    let r = fwd(&proxy, &url, "If-None-Match: \"f1\"\r\n");
    assert_eq!(r.status, 304, "{}", r.head);
    assert_eq!(r.header("etag").as_deref(), Some("\"f1\""));
    let r = fwd(&proxy, &url, "If-None-Match: \"other\"\r\n");
    assert_eq!((r.status, &r.body[..]), (200, &b"fresh body"[..]));
    assert_eq!(origin.requests_for("/fresh").len(), 1);
    // The age counts from the origin's, not from the restart.
    let r = fwd(&proxy, &origin.url("/aged"), "");
    assert_eq!(cache(&r), "HIT", "{}", r.head);
    let age: u64 = r.header("age").and_then(|a| a.parse().ok()).expect("Age");
    assert!((100..160).contains(&age), "{}", r.head);

    // After a crash.
    proxy.kill9();
    let proxy = Proxy::start_in(&data, &args);
    assert_eq!(cache(&fwd(&proxy, &url, "")), "HIT");
    assert_eq!(origin.requests_for("/fresh").len(), 1);
    // A stale one is revalidated with the ETag read from its head.
    let r = fwd(&proxy, &origin.url("/stale"), "");
    assert_eq!(
        (cache(&r).as_str(), &r.body[..]),
        ("REVALIDATED", &b"stale body"[..]),
        "{}",
        r.head
    );
    let sent = origin.requests_for("/stale");
    assert_eq!(sent.len(), 2);
    assert_eq!(
        header_in(&sent[1], "if-none-match").as_deref(),
        Some("\"s1\"")
    );
    // A private answer is fetched again, for each client.
    assert_eq!(cache(&fwd(&proxy, &origin.url("/private"), "")), "MISS");
    assert_eq!(origin.requests_for("/private").len(), 2);
    // A variant is never handed to a request of another: whose it was is not on disk.
    let r = fwd(&proxy, &origin.url("/vary"), "Accept-Encoding: br\r\n");
    assert_eq!((cache(&r).as_str(), &r.body[..]), ("MISS", &b"ae=br"[..]));
    wait_stored(&proxy, &origin.url("/vary"), "Accept-Encoding: br\r\n");
    let r = fwd(&proxy, &origin.url("/vary"), "Accept-Encoding: br\r\n");
    assert_eq!((cache(&r).as_str(), &r.body[..]), ("HIT", &b"ae=br"[..]));
    let r = fwd(&proxy, &origin.url("/vary"), "Accept-Encoding: gzip\r\n");
    assert_eq!(&r.body[..], b"ae=gzip");
    proxy.finish();
}
