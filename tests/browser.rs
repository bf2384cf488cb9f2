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
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new("timeout")
        .args([
            "60",
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
        ])
        .args([
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--proxy-server=http://{}", proxy.addr))
        // Chromium never proxies loopback unless told to.
        .arg("--proxy-bypass-list=<-loopback>")
        .args(["--virtual-time-budget=5000", "--dump-dom", url])
        .output()
        .expect("chromium must be installed (apt-get install chromium)");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
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
