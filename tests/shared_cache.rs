//! Forward mode is a shared cache (RFC 9111): private answers are never reused for others,
//! freshness and Age follow the origin's headers, Vary keeps variants apart, stale records
//! are revalidated, clients' conditional requests get 304. Liveweb mode keeps its fixed TTL
//! but never crosses credentials. Every case is checked on the bytes the origin received.

mod common;

use common::*;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

fn forward_proxy() -> Proxy {
    Proxy::start(&["--mode", "forward"])
}

/// An origin that answers every path with `headers` and a body naming the request's
/// Authorization, Cookie and Accept-Encoding, so a reply shows whose request it was for.
fn whose_origin(headers: &'static str) -> FnOrigin {
    FnOrigin::start(move |head| {
        let who = format!(
            "auth={} cookie={} ae={}",
            header_in(head, "authorization").unwrap_or_default(),
            header_in(head, "cookie").unwrap_or_default(),
            header_in(head, "accept-encoding").unwrap_or_default()
        );
        response("200 OK", headers, &who)
    })
}

#[test]
fn authorized_responses_are_not_reused_unless_the_origin_says_public() {
    let origin = whose_origin("Cache-Control: max-age=600\r\n");
    let public = whose_origin("Cache-Control: public, max-age=600\r\n");
    let proxy = forward_proxy();
    let url = origin.url("/account");
    let alice = fwd(&proxy, &url, "Authorization: Bearer alice\r\n");
    assert_eq!(alice.body, b"auth=Bearer alice cookie= ae=");
    // Bob and an anonymous client never see alice's page.
    let bob = fwd(&proxy, &url, "Authorization: Bearer bob\r\n");
    assert_eq!(bob.body, b"auth=Bearer bob cookie= ae=");
    let anon = fwd(&proxy, &url, "");
    assert_eq!(
        (cache(&anon).as_str(), &anon.body[..]),
        ("MISS", &b"auth= cookie= ae="[..])
    );
    wait_stored(&proxy, &url, "");
    // Alice is never answered from the anonymous record either: her request goes upstream.
    let again = fwd(&proxy, &url, "Authorization: Bearer alice\r\n");
    assert_eq!(
        (cache(&again).as_str(), &again.body[..]),
        ("MISS", &b"auth=Bearer alice cookie= ae="[..])
    );
    assert_eq!(origin.requests_for("/account").len(), 4);
    let anon = fwd(&proxy, &url, "");
    assert_eq!(
        (cache(&anon).as_str(), &anon.body[..]),
        ("HIT", &b"auth= cookie= ae="[..])
    );

    // `public` lets an authorized response be shared (RFC 9111 3.5).
    let url = public.url("/logo");
    // HEAD waits for the record (a GET streams before it is stored).
    let head = send_raw(
        proxy.addr,
        format!("HEAD {url} HTTP/1.1\r\nAuthorization: Bearer alice\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!(head.status, 200);
    let hit = fwd(&proxy, &url, "");
    assert_eq!(
        (cache(&hit).as_str(), &hit.body[..]),
        ("HIT", &b"auth=Bearer alice cookie= ae="[..])
    );
    assert_eq!(public.requests_for("/logo").len(), 1);
    proxy.finish();
}

#[test]
fn set_cookie_no_store_private_and_vary_star_are_never_reused() {
    let origin = FnOrigin::start(|head| {
        let path = head.split(' ').nth(1).unwrap_or("");
        let headers = match path {
            "/login" => "Set-Cookie: sid=s3cret\r\nCache-Control: max-age=600\r\n",
            "/nostore" => "Cache-Control: no-store\r\n",
            "/private" => "Cache-Control: private, max-age=600\r\n",
            "/star" => "Vary: *\r\n",
            "/public-cookie" => "Set-Cookie: theme=dark\r\nCache-Control: public, max-age=600\r\n",
            _ => "",
        };
        response("200 OK", headers, path)
    });
    let proxy = forward_proxy();
    for path in ["/login", "/nostore", "/private", "/star"] {
        let url = origin.url(path);
        for _ in 0..3 {
            let r = fwd(&proxy, &url, "");
            assert_eq!(
                (r.status, cache(&r).as_str()),
                (200, "MISS"),
                "{path}: {}",
                r.head
            );
            wait_stored(&proxy, &url, "");
        }
        assert_eq!(origin.requests_for(path).len(), 3, "{path}");
        // Nor does the liveweb-mode API hand a forward client's private answer to anyone.
        let r = fwd(&proxy, &url, "X-Liveweb-Mode: liveweb\r\n");
        assert_eq!(cache(&r), "MISS", "{path}: {}", r.head);
        assert_eq!(origin.requests_for(path).len(), 4, "{path}");
    }
    let url = origin.url("/public-cookie");
    fwd(&proxy, &url, "");
    wait_stored(&proxy, &url, "");
    assert_eq!(cache(&fwd(&proxy, &url, "")), "HIT");
    assert_eq!(origin.requests_for("/public-cookie").len(), 1);
    proxy.finish();
}

#[test]
fn concurrent_requests_never_share_a_private_response() {
    // Each answer is private and takes a moment, so the requests overlap: the ones that
    // waited on the first fetch must fetch their own.
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    let origin = FnOrigin::start(move |head| {
        std::thread::sleep(std::time::Duration::from_millis(300));
        let n = count.fetch_add(1, Ordering::SeqCst);
        let who = header_in(head, "x-user").unwrap_or_default();
        response("200 OK", &format!("Set-Cookie: sid={n}\r\n"), &who)
    });
    let proxy = forward_proxy();
    let url = origin.url("/me");
    let clients: Vec<_> = (0..4)
        .map(|i| {
            let (url, addr) = (url.clone(), proxy.addr);
            std::thread::spawn(move || {
                let mut conn = connect(addr);
                conn.get_mut()
                    .write_all(
                        format!("GET {url} HTTP/1.1\r\nX-User: u{i}\r\nConnection: close\r\n\r\n")
                            .as_bytes(),
                    )
                    .unwrap();
                (i, read_any_reply(&mut conn, false).0)
            })
        })
        .collect();
    for c in clients {
        let (i, r) = c.join().unwrap();
        assert_eq!(r.body, format!("u{i}").as_bytes(), "{}", r.head);
    }
    assert_eq!(served.load(Ordering::SeqCst), 4);
    proxy.finish();
}

#[test]
fn freshness_age_and_revalidation_follow_the_origin() {
    // ETag'd and revalidatable: 304 when the If-None-Match matches.
    let origin = FnOrigin::start(|head| {
        let path = head.split(' ').nth(1).unwrap_or("");
        let inm = header_in(head, "if-none-match");
        match path {
            "/stale" | "/no-cache" if inm.as_deref() == Some("\"v1\"") => response(
                "304 Not Modified",
                "ETag: \"v1\"\r\nCache-Control: max-age=600\r\n",
                "",
            ),
            "/stale" => response(
                "200 OK",
                "ETag: \"v1\"\r\nCache-Control: max-age=0\r\n",
                "v1 body",
            ),
            "/no-cache" => response(
                "200 OK",
                "ETag: \"v1\"\r\nCache-Control: no-cache\r\n",
                "nc body",
            ),
            "/aged" => response(
                "200 OK",
                "Age: 100\r\nCache-Control: max-age=600\r\n",
                "aged",
            ),
            "/expired" => response(
                "200 OK",
                "Expires: Thu, 01 Jan 2015 00:00:00 GMT\r\n",
                "old",
            ),
            "/fresh" => response(
                "200 OK",
                "ETag: \"f\"\r\nCache-Control: max-age=600\r\n",
                "fresh",
            ),
            _ => response("404 Not Found", "", "no"),
        }
    });
    let proxy = forward_proxy();
    // max-age=0: stored, then revalidated; the 304 makes it fresh for 600 s.
    let url = origin.url("/stale");
    assert_eq!(cache(&fwd(&proxy, &url, "")), "MISS");
    wait_stored(&proxy, &url, "X-Liveweb-Mode: liveweb\r\n");
    let r = fwd(&proxy, &url, "");
    assert_eq!(
        (r.status, cache(&r).as_str(), &r.body[..]),
        (200, "REVALIDATED", &b"v1 body"[..]),
        "{}",
        r.head
    );
    let sent = origin.requests_for("/stale");
    assert_eq!(
        header_in(&sent[1], "if-none-match").as_deref(),
        Some("\"v1\"")
    );
    let r = fwd(&proxy, &url, "");
    assert_eq!((cache(&r).as_str(), &r.body[..]), ("HIT", &b"v1 body"[..]));
    assert_eq!(origin.requests_for("/stale").len(), 2);
    // The 304 exchange is archived too.
    // A client's no-cache (or max-age=0) revalidates a fresh record.
    for directive in [
        "Cache-Control: no-cache\r\n",
        "Cache-Control: max-age=0\r\n",
    ] {
        let r = fwd(&proxy, &url, directive);
        assert_eq!(
            (cache(&r).as_str(), &r.body[..]),
            ("REVALIDATED", &b"v1 body"[..]),
            "{directive}"
        );
    }
    assert_eq!(origin.requests_for("/stale").len(), 4);

    // Response no-cache: validated before every reuse.
    let url = origin.url("/no-cache");
    fwd(&proxy, &url, "");
    wait_stored(&proxy, &url, "X-Liveweb-Mode: liveweb\r\n");
    assert_eq!(cache(&fwd(&proxy, &url, "")), "REVALIDATED");
    assert_eq!(origin.requests_for("/no-cache").len(), 2);

    // Age: the origin's own on the miss (a cache behind liveweb must not take the response
    // for a new one), then the origin's Age plus the time stored.
    let url = origin.url("/aged");
    let miss = fwd(&proxy, &url, "");
    assert_eq!(miss.header("age").as_deref(), Some("100"), "{}", miss.head);
    wait_stored(&proxy, &url, "");
    let r = fwd(&proxy, &url, "");
    let age: u64 = r
        .header("age")
        .and_then(|a| a.parse().ok())
        .expect("Age on a hit");
    assert!((100..110).contains(&age), "{}", r.head);
    assert_eq!(r.head.to_ascii_lowercase().matches("\r\nage:").count(), 1);
    // A request's max-age below that age refetches.
    assert_eq!(
        cache(&fwd(&proxy, &url, "Cache-Control: max-age=50\r\n")),
        "MISS"
    );

    // Expired without validators: fetched again every time.
    let url = origin.url("/expired");
    for _ in 0..2 {
        assert_eq!(cache(&fwd(&proxy, &url, "")), "MISS");
        wait_stored(&proxy, &url, "X-Liveweb-Mode: liveweb\r\n");
    }
    assert_eq!(origin.requests_for("/expired").len(), 2);
    proxy.finish();
}

#[test]
fn client_conditionals_are_answered_by_liveweb_and_never_stored() {
    let origin = FnOrigin::start(|head| {
        // An origin would answer a conditional with 304; liveweb must not send one on.
        if header_in(head, "if-none-match").is_some() || header_in(head, "range").is_some() {
            return response("304 Not Modified", "ETag: \"e1\"\r\n", "");
        }
        response(
            "200 OK",
            "ETag: \"e1\"\r\nLast-Modified: Tue, 14 Nov 2023 22:13:20 GMT\r\nCache-Control: max-age=600\r\n",
            "full body",
        )
    });
    let proxy = forward_proxy();
    let url = origin.url("/doc");
    // A miss with a conditional: the full response is fetched and stored.
    let r = fwd(
        &proxy,
        &url,
        "If-None-Match: \"e1\"\r\nRange: bytes=0-3\r\n",
    );
    assert_eq!(r.status, 200, "{}", r.head);
    let sent = &origin.requests_for("/doc")[0];
    assert!(
        header_in(sent, "if-none-match").is_none() && header_in(sent, "range").is_none(),
        "{sent}"
    );
    wait_stored(&proxy, &url, "");
    // From the fresh record: 304 for a matching validator, 200 otherwise.
    for (extra, status) in [
        ("If-None-Match: \"e1\"\r\n", 304),
        ("If-None-Match: W/\"e1\", \"x\"\r\n", 304),
        ("If-None-Match: \"zz\"\r\n", 200),
        ("If-Modified-Since: Tue, 14 Nov 2023 22:13:20 GMT\r\n", 304),
        ("If-Modified-Since: Mon, 13 Nov 2023 22:13:20 GMT\r\n", 200),
        ("", 200),
    ] {
        let r = fwd(&proxy, &url, extra);
        assert_eq!(
            (r.status, cache(&r).as_str()),
            (status, "HIT"),
            "{extra}: {}",
            r.head
        );
        if status == 304 {
            assert_eq!(r.header("etag").as_deref(), Some("\"e1\""));
            assert!(
                r.body.is_empty() && r.header("content-length").is_none(),
                "{}",
                r.head
            );
        } else {
            assert_eq!(r.body, b"full body");
        }
    }
    assert_eq!(origin.requests_for("/doc").len(), 1);
    proxy.finish();
}

#[test]
fn vary_keeps_each_variant_and_serves_the_right_one() {
    let origin = whose_origin("Vary: Accept-Encoding\r\nCache-Control: max-age=600\r\n");
    let proxy = forward_proxy();
    let url = origin.url("/v");
    let gzip = "Accept-Encoding: gzip\r\n";
    let br = "Accept-Encoding: br\r\n";
    for (extra, expect_cache) in [
        (gzip, "MISS"),
        (br, "MISS"),
        (gzip, "HIT"),
        (br, "HIT"),
        (gzip, "HIT"),
        ("", "MISS"),
    ] {
        let r = fwd(&proxy, &url, extra);
        let ae = extra
            .trim_end()
            .strip_prefix("Accept-Encoding: ")
            .unwrap_or("");
        assert_eq!(
            r.body,
            format!("auth= cookie= ae={ae}").as_bytes(),
            "{extra}"
        );
        // The first response was fetched before the URL's Vary was known: it is stored under
        // the URL and under its variant's key.
        assert_eq!(cache(&r), expect_cache, "{extra}: {}", r.head);
        // Wait for a fetch in flight under the URL (the first) or under the variant's key.
        wait_stored(&proxy, &url, "X-Liveweb-Mode: liveweb\r\n");
        wait_stored(&proxy, &url, extra);
    }
    assert_eq!(origin.requests.lock().unwrap().len(), 3);
    proxy.finish();
}

#[test]
fn liveweb_mode_never_crosses_credentials_unless_told_to() {
    let origin = whose_origin("");
    let proxy = Proxy::start(&[]);
    let url = origin.url("/p");
    let record = |r: &Reply| String::from_utf8_lossy(&r.record().1).into_owned();
    let alice = get(proxy.addr, &url, "Cookie: user=alice\r\n");
    assert!(
        record(&alice).ends_with("cookie=user=alice ae="),
        "{}",
        record(&alice)
    );
    // Nobody else gets alice's record, not even with only-if-cached.
    assert_eq!(
        get(proxy.addr, &url, "Cache-Control: only-if-cached\r\n").status,
        504
    );
    let anon = get(proxy.addr, &url, "");
    assert_eq!(anon.header("x-cache").as_deref(), Some("MISS"));
    assert!(record(&anon).ends_with("cookie= ae="));
    assert_eq!(
        get(proxy.addr, &url, "").header("x-cache").as_deref(),
        Some("HIT")
    );
    // And alice never gets the anonymous record.
    let again = get(proxy.addr, &url, "Authorization: Basic YTpi\r\n");
    assert_eq!(again.header("x-cache").as_deref(), Some("MISS"));
    assert!(record(&again).contains("auth=Basic YTpi"));
    assert_eq!(origin.requests_for("/p").len(), 3);
    let kept = proxy.finish();

    let shared = Proxy::start(&["--isolate-credentials", "false"]);
    let url = origin.url("/q");
    get(shared.addr, &url, "");
    let r = get(shared.addr, &url, "Cookie: user=alice\r\n");
    assert_eq!(r.header("x-cache").as_deref(), Some("HIT"));
    drop(kept);
    shared.finish();
}

#[test]
fn a_credentialed_record_stays_private_across_a_restart_and_a_crash() {
    let origin = whose_origin("Cache-Control: max-age=600\r\n");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cached = |proxy: &Proxy, path: &str| {
        get(
            proxy.addr,
            &origin.url(path),
            "Cache-Control: only-if-cached\r\n",
        )
        .status
    };
    let proxy = Proxy::start_in(&data, &[]);
    get(proxy.addr, &origin.url("/mine"), "Cookie: user=alice\r\n");
    get(proxy.addr, &origin.url("/public"), "");
    // Clean stop (files sealed, with their private list), then a crash (files scanned).
    let mut proxy = proxy;
    assert!(proxy.terminate().success());
    let proxy = Proxy::start_in(&data, &[]);
    assert_eq!(cached(&proxy, "/public"), 200);
    assert_eq!(
        cached(&proxy, "/mine"),
        504,
        "alice's record answers nobody else"
    );
    get(
        proxy.addr,
        &origin.url("/mine2"),
        "Authorization: Bearer alice\r\n",
    );
    proxy.kill9();
    let proxy = Proxy::start_in(&data, &[]);
    assert_eq!(cached(&proxy, "/public"), 200);
    assert_eq!(cached(&proxy, "/mine"), 504);
    assert_eq!(cached(&proxy, "/mine2"), 504);
    proxy.finish();
}
