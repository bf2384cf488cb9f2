//! A real browser through liveweb: Debian's headless Chromium loads a local page with a
//! stylesheet, a script and an image via `--proxy-server`; every sub-resource reaches the
//! origin once, and a second load (fresh browser profile, so no browser cache) is served from
//! liveweb's store.

mod common;

use common::*;
use std::process::Command;
use std::time::Duration;

const PAGE: &str = r#"<!doctype html>
<html><head><link rel="stylesheet" href="/style.css"><script src="/app.js"></script></head>
<body><img id="pic" src="/pic.png" onload="document.body.setAttribute('data-img', 'loaded')">
<p id="out">static</p></body></html>"#;
const SCRIPT: &str = "document.addEventListener('DOMContentLoaded', function () {\n  document.getElementById('out').textContent = 'script ran';\n});\n";
/// A 1x1 PNG.
const PIXEL_B64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";

fn load(proxy: &Proxy, url: &str) -> String {
    load_with(proxy, url, &[])
}

/// Loads `url` in a fresh headless Chromium through `proxy`, with `extra` flags; the DOM after
/// scripts ran.
fn load_with(proxy: &Proxy, url: &str, extra: &[&str]) -> String {
    let proxy_server = format!("--proxy-server=http://{}", proxy.addr);
    let mut args = vec![
        proxy_server.as_str(),
        // Chromium never proxies loopback unless told to.
        "--proxy-bypass-list=<-loopback>",
    ];
    args.extend_from_slice(extra);
    args.extend(["--virtual-time-budget=5000", "--dump-dom"]);
    String::from_utf8_lossy(&chromium(&args, url).stdout).into_owned()
}

#[test]
fn chromium_loads_a_page_through_liveweb_and_again_from_the_store() {
    let origin = Origin::start();
    origin.ok("/index.html", "text/html; charset=utf-8", PAGE.as_bytes());
    origin.ok("/style.css", "text/css", b"body { color: #333; }\n");
    origin.ok("/app.js", "application/javascript", SCRIPT.as_bytes());
    let pixel = data_encoding::BASE64.decode(PIXEL_B64.as_bytes()).unwrap();
    origin.ok("/pic.png", "image/png", &pixel);
    let proxy = Proxy::start(&["--mode", "forward"]);
    let url = origin.url("/index.html");

    let dom = load(&proxy, &url);
    assert!(dom.contains("script ran"), "the script ran: {dom}");
    assert!(
        dom.contains("data-img=\"loaded\""),
        "the image loaded: {dom}"
    );
    let resources = ["/index.html", "/style.css", "/app.js", "/pic.png"];
    for path in resources {
        assert_eq!(origin.hits(path), 1, "{path} fetched once");
    }
    std::thread::sleep(Duration::from_millis(200));

    let dom = load(&proxy, &url);
    assert!(
        dom.contains("script ran") && dom.contains("data-img=\"loaded\""),
        "{dom}"
    );
    for path in resources {
        assert_eq!(
            origin.hits(path),
            1,
            "{path} came from the store the second time"
        );
    }
    proxy.finish();
}

/// The base64 SHA-256 of a certificate's public key (what Chromium's
/// `--ignore-certificate-errors-spki-list` takes), computed with openssl.
fn spki_hash(cert: &std::path::Path) -> String {
    let script = format!(
        "openssl x509 -in '{}' -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64",
        cert.display()
    );
    let out = Command::new("sh").args(["-c", &script]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn chromium_loads_an_https_page_through_an_intercepted_connect_and_again_from_the_store() {
    use common::tls::{intercepting_proxy, valid_origin, TestCa};
    let ca = TestCa::new("liveweb test CA");
    let origin = valid_origin(&ca);
    origin.ok("/index.html", "text/html; charset=utf-8", PAGE.as_bytes());
    origin.ok("/style.css", "text/css", b"body { color: #333; }\n");
    origin.ok("/app.js", "application/javascript", SCRIPT.as_bytes());
    let pixel = data_encoding::BASE64.decode(PIXEL_B64.as_bytes()).unwrap();
    origin.ok("/pic.png", "image/png", &pixel);
    let (proxy, mitm_ca, _dir) = intercepting_proxy(&ca, &origin, &[]);
    // Chromium trusts liveweb's CA by its key (the chain liveweb sends includes the CA).
    let trust = format!(
        "--ignore-certificate-errors-spki-list={}",
        spki_hash(&mitm_ca)
    );
    let url = origin.url("127.0.0.1", "/index.html");

    for round in ["first", "second"] {
        let dom = load_with(&proxy, &url, &[&trust]);
        assert!(
            dom.contains("script ran") && dom.contains("data-img=\"loaded\""),
            "{round} load: {dom}"
        );
        for path in ["/index.html", "/style.css", "/app.js", "/pic.png"] {
            assert_eq!(
                origin.requests_for(path),
                1,
                "{path} after the {round} load"
            );
        }
    }
    let dir = proxy.finish().expect("data dir");
    // Archived under the https URLs.
    let mut urls = String::new();
    let mut arcs = Vec::new();
    common::collect_arcs(dir.path(), &mut arcs);
    for arc in arcs {
        let plain = common::gunzip_all(&std::fs::read(arc).unwrap());
        urls.push_str(&String::from_utf8_lossy(&plain));
    }
    for path in ["/index.html", "/style.css", "/app.js", "/pic.png"] {
        let url = origin.url("127.0.0.1", path);
        assert!(
            urls.contains(&format!("\n{url} 127.0.0.1 ")),
            "{url} archived"
        );
    }
}
