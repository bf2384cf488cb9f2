//! Replay in a real replay tool: pywb's `wayback`, given liveweb's sealed files and liveweb's
//! own CDX files (not an index pywb builds itself), serves the pages, images, redirects and
//! 404s that were fetched through liveweb with the origin's bytes and statuses.

mod common;

use common::*;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;

/// pywb's server.
struct Wayback(Service);

impl Wayback {
    /// Serves collection `lw` from `sealed` (ARC files and their CDX files), once it answers.
    fn start(sealed: &Path, dir: &Path) -> Wayback {
        let sealed = sealed.display();
        fs::write(
            dir.join("config.yaml"),
            format!(
                "collections:\n  lw:\n    index_paths: {sealed}/\n    archive_paths: {sealed}/\n"
            ),
        )
        .unwrap();
        let addr = free_addr();
        let mut command = Command::new("wayback");
        command
            .args(["-p", &addr.port().to_string(), "-b", "127.0.0.1", "-t", "2"])
            .current_dir(dir);
        Wayback(Service::start(command, addr, "pywb's wayback"))
    }

    /// The capture of `url` at `date14`, as recorded (`id_`: no rewriting).
    fn replay(&self, date14: &str, url: &str) -> Reply {
        let mut s = TcpStream::connect(self.0.addr).unwrap();
        write!(
            s,
            "GET /lw/{date14}id_/{url} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.0.addr
        )
        .unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        let at = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a reply head");
        let head = String::from_utf8_lossy(&raw[..at]).into_owned();
        let status = head[9..12].parse().unwrap();
        Reply {
            status,
            head,
            body: raw[at + 4..].to_vec(),
        }
    }
}

/// Every CDX file in `sealed`, one after another.
fn cdx_text(sealed: &Path) -> String {
    fs::read_dir(sealed)
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "cdx"))
        .map(|e| fs::read_to_string(e.path()).unwrap())
        .collect()
}

#[test]
fn pywb_replays_arc_files_from_liveweb_s_own_cdx() {
    replays(&[]);
}

#[test]
fn pywb_replays_warc_files_from_liveweb_s_own_cdx() {
    replays(&["--format", "warc"]);
}

/// One replay at a time: pywb gets a port from `free_addr`, which another test of this file
/// binding port 0 meanwhile (its origin, its liveweb) could take; pywb then fails to bind
/// and the port answers for the other test (seen once: "URL not found in this collection").
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn replays(format: &[&str]) {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let origin = Origin::start();
    let page = b"<html><body><img src=\"/logo.png\"><a href=\"/old\">x</a></body></html>";
    origin.ok("/index.html", "text/html", page);
    let image = incompressible(5000, 3);
    origin.ok("/logo.png", "image/png", &image);
    let location = origin.url("/index.html");
    origin.route(
        "/old",
        Behavior::Send(
            format!(
                "HTTP/1.1 301 Moved Permanently\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n"
            )
            .into_bytes(),
        ),
    );
    origin.route(
        "/missing",
        Behavior::Send(b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\r\nnot here\n".to_vec()),
    );
    let mut args = vec!["--workers", "1"];
    args.extend_from_slice(format);
    let proxy = Proxy::start(&args);
    for (path, status) in [
        ("/index.html", 200),
        ("/logo.png", 200),
        ("/old", 301),
        ("/missing", 404),
    ] {
        assert_eq!(get(proxy.addr, &origin.url(path), "").status, status);
    }
    let data = proxy.data_dir.clone();
    let _keep = proxy.finish();
    let sealed = data.join("sealed");
    // Each URL's capture date, from liveweb's CDX.
    let cdx = cdx_text(&sealed);
    let date_of = |url: &str| {
        cdx.lines()
            .find(|l| l.split(' ').nth(2) == Some(url))
            .and_then(|l| l.split(' ').nth(1))
            .unwrap_or_else(|| panic!("{url} not in the CDX:\n{cdx}"))
            .to_string()
    };
    let work = tempfile::tempdir().unwrap();
    let wayback = Wayback::start(&sealed, work.path());

    let url = origin.url("/index.html");
    let r = wayback.replay(&date_of(&url), &url);
    assert_eq!(
        (r.status, r.body.as_slice()),
        (200, &page[..]),
        "{}",
        r.head
    );

    let url = origin.url("/logo.png");
    let r = wayback.replay(&date_of(&url), &url);
    assert_eq!(r.status, 200, "{}", r.head);
    assert!(r.body == image, "the image's bytes");
    assert_eq!(r.header("content-type").as_deref(), Some("image/png"));

    let url = origin.url("/old");
    let r = wayback.replay(&date_of(&url), &url);
    assert_eq!(r.status, 301, "{}", r.head);
    assert!(
        r.header("location").is_some_and(|l| l.ends_with(&location)),
        "{}",
        r.head
    );

    let url = origin.url("/missing");
    let r = wayback.replay(&date_of(&url), &url);
    assert_eq!(
        (r.status, r.body.as_slice()),
        (404, &b"not here\n"[..]),
        "{}",
        r.head
    );
}

/// A forward-mode revalidation the origin answers `304` is archived as a WARC `revisit`
/// (server-not-modified) naming the stored response, indexed as `warc/revisit`: pywb replays
/// the stored page for it, not an empty 304. In ARC it adds no record: the stored response
/// stays the only capture.
#[test]
fn a_revalidated_page_replays_as_its_stored_response() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let origin = FnOrigin::start(|head| {
        if header_in(head, "if-none-match").as_deref() == Some("\"v1\"") {
            return response(
                "304 Not Modified",
                "ETag: \"v1\"\r\nCache-Control: max-age=0\r\n",
                "",
            );
        }
        response(
            "200 OK",
            "ETag: \"v1\"\r\nCache-Control: max-age=0\r\nContent-Type: text/html\r\n",
            "<p>stored body</p>",
        )
    });
    for format in ["warc", "arc"] {
        let proxy = Proxy::start(&["--workers", "1", "--mode", "forward", "--format", format]);
        let url = origin.url(&format!("/page-{format}"));
        assert_eq!(cache(&fwd(&proxy, &url, "")), "MISS");
        wait_stored(&proxy, &url, "X-Liveweb-Mode: liveweb\r\n");
        // The revisit must fall in a later second than the capture (CDX dates are seconds).
        let second =
            |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let first = second(std::time::SystemTime::now());
        while second(std::time::SystemTime::now()) == first {
            std::thread::yield_now();
        }
        let r = fwd(&proxy, &url, "");
        assert_eq!(
            (cache(&r).as_str(), &r.body[..]),
            ("REVALIDATED", &b"<p>stored body</p>"[..]),
            "{format}: {}",
            r.head
        );
        let data = proxy.data_dir.clone();
        let _keep = proxy.finish();
        let sealed = data.join("sealed");
        let cdx = cdx_text(&sealed);
        let lines: Vec<&str> = cdx
            .lines()
            .filter(|l| l.split(' ').nth(2) == Some(url.as_str()))
            .collect();
        if format == "arc" {
            assert_eq!(lines.len(), 1, "{cdx}");
            continue;
        }
        assert_eq!(lines.len(), 2, "{cdx}");
        let revisit = lines
            .iter()
            .find(|l| l.split(' ').nth(3) == Some("warc/revisit"))
            .unwrap_or_else(|| panic!("a revisit line:\n{cdx}"));
        let original = lines.iter().find(|l| *l != revisit).unwrap();
        let field = |l: &str, i| l.split(' ').nth(i).unwrap().to_string();
        assert_eq!(
            field(revisit, 5),
            field(original, 5),
            "the stored response's digest"
        );
        let work = tempfile::tempdir().unwrap();
        let wayback = Wayback::start(&sealed, work.path());
        let r = wayback.replay(&field(revisit, 1), &url);
        assert_eq!(
            (r.status, r.body.as_slice()),
            (200, &b"<p>stored body</p>"[..]),
            "{}",
            r.head
        );
        assert_warcio_clean(&data);
    }
}

/// A payload a crawler fetches again at another URL is archived as an identical-payload
/// `revisit` naming the first capture (`--dedup`): pywb, reading liveweb's own CDX, replays
/// the revisit with that capture's body.
#[test]
fn a_deduplicated_page_replays_with_the_first_capture_s_body() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let origin = FnOrigin::start(|_| {
        response(
            "200 OK",
            "Cache-Control: max-age=600\r\nContent-Type: text/html\r\n",
            "<p>one payload, two URLs</p>",
        )
    });
    let proxy = Proxy::start(&["--mode", "forward", "--format", "warc"]);
    let (first, again) = (origin.url("/first"), origin.url("/again"));
    fwd(&proxy, &first, "");
    wait_stored(&proxy, &first, "");
    assert_eq!(
        &fwd(&proxy, &again, "Warcprox-Meta: {}\r\n").body[..],
        b"<p>one payload, two URLs</p>"
    );
    let data = proxy.data_dir.clone();
    let _keep = proxy.finish();
    let sealed = data.join("sealed");
    let cdx = cdx_text(&sealed);
    let line = cdx
        .lines()
        .find(|l| l.split(' ').nth(2) == Some(again.as_str()))
        .unwrap_or_else(|| panic!("{cdx}"));
    assert_eq!(line.split(' ').nth(3), Some("warc/revisit"), "{line}");
    let work = tempfile::tempdir().unwrap();
    let wayback = Wayback::start(&sealed, work.path());
    let date14 = line.split(' ').nth(1).unwrap();
    let r = wayback.replay(date14, &again);
    assert_eq!(
        (r.status, r.body.as_slice()),
        (200, &b"<p>one payload, two URLs</p>"[..]),
        "{}",
        r.head
    );
}

/// pywb with liveweb's CDX query endpoint as its index (`cdx+http://.../_liveweb/cdx`) and
/// the sealed files as its archive replays the captures; the endpoint answers pywb's CDX
/// server API (match types, time bounds, sorts, JSON), refuses a bad query in words, and
/// is an admin endpoint (the admin ranges apply).
#[test]
fn pywb_replays_through_the_cdx_query_endpoint() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let origin = FnOrigin::start(|head| {
        let path = head.split(' ').nth(1).unwrap_or("/").to_string();
        response(
            "200 OK",
            "Content-Type: text/html\r\n",
            &format!("<p>page {path}</p>"),
        )
    });
    let proxy = Proxy::start(&["--format", "warc"]);
    for path in ["/a", "/a/b", "/c"] {
        assert_eq!(get(proxy.addr, &origin.url(path), "").status, 200);
    }
    // Records of files still open are listed within a second (their lines are flushed at
    // least that often), named from the sealed directory.
    let host = format!("/_liveweb/cdx?url={}&matchType=host", origin.url("/"));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let open = loop {
        let body = String::from_utf8_lossy(&get(proxy.addr, &host, "").body).into_owned();
        if body.lines().count() == 3 || std::time::Instant::now() > deadline {
            break body;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(open.lines().count(), 3, "{open}");
    assert!(open.contains("\"filename\":\"../"), "{open}");
    let data = proxy.data_dir.clone();
    let _keep = proxy.finish();
    // A node with sealed files, serving queries; only loopback may ask (the default admin
    // range), as for the status page.
    let proxy = Proxy::start_in(&data, &["--format", "warc"]);
    let query = |q: &str| get(proxy.addr, &format!("/_liveweb/cdx?{q}"), "");
    let a = origin.url("/a");
    let r = query(&format!("url={a}"));
    assert_eq!(r.status, 200, "{}", r.head);
    let body = String::from_utf8_lossy(&r.body).into_owned();
    assert_eq!(body.lines().count(), 1, "{body}");
    assert!(body.contains(&format!("\"url\":\"{a}\"")), "{body}");
    let lines = |q: &str| String::from_utf8_lossy(&query(q).body).lines().count();
    assert_eq!(lines(&format!("url={a}&matchType=prefix")), 2);
    assert_eq!(lines(&format!("url={a}*")), 2);
    assert_eq!(lines(&format!("url={}&matchType=host", origin.url("/"))), 3);
    assert_eq!(lines(&format!("url={a}&from=2000&to=2001")), 0);
    let json = String::from_utf8_lossy(&query(&format!("url={a}&output=json")).body).into_owned();
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(v["url"], a.as_str());
    assert!(v["filename"].as_str().unwrap().ends_with(".warc.gz"));
    let bad = query("matchType=exact");
    assert_eq!(bad.status, 400);
    assert!(String::from_utf8_lossy(&bad.body).contains("url is required"));

    let work = tempfile::tempdir().unwrap();
    fs::write(
        work.path().join("config.yaml"),
        format!(
            "collections:\n  lw:\n    index: cdx+http://{}/_liveweb/cdx\n    archive_paths: {}/\n",
            proxy.addr,
            data.join("sealed").display()
        ),
    )
    .unwrap();
    let addr = free_addr();
    let mut command = Command::new("wayback");
    command
        .args(["-p", &addr.port().to_string(), "-b", "127.0.0.1", "-t", "2"])
        .current_dir(work.path());
    let wayback = Wayback(Service::start(command, addr, "pywb's wayback"));
    let date14 = v["timestamp"].as_str().unwrap().to_string();
    for path in ["/a", "/a/b", "/c"] {
        let r = wayback.replay(&date14, &origin.url(path));
        assert_eq!(
            (r.status, String::from_utf8_lossy(&r.body).into_owned()),
            (200, format!("<p>page {path}</p>")),
            "{}",
            r.head
        );
    }
}
