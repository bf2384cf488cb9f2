//! Origins that misbehave on keep-alive connections: bytes written while a pooled connection
//! sits idle, and answers given out of turn, never hand one request's response to another,
//! in either reply shape, nor get archived or cached under the wrong URL.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;

/// A keep-alive origin whose every connection is handed to `serve` (with its number, from 0),
/// which reads requests and writes what it likes.
struct ScriptedOrigin {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
}

impl ScriptedOrigin {
    fn start(serve: impl Fn(usize, TcpStream) + Send + Sync + 'static) -> ScriptedOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = connections.clone();
        let serve = Arc::new(serve);
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let n = counter.fetch_add(1, Ordering::SeqCst);
                let serve = serve.clone();
                std::thread::spawn(move || serve(n, conn));
            }
        });
        ScriptedOrigin { addr, connections }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

/// One request head (`None` at EOF, or after `wait` without one, when given).
fn next_request(conn: &mut TcpStream, wait: Option<Duration>) -> Option<String> {
    conn.set_read_timeout(wait).unwrap();
    read_request_head(conn)
}

fn path_of(head: &str) -> String {
    head.split(' ').nth(1).unwrap_or("").to_string()
}

/// A keep-alive 200 whose body is `body`.
fn ok(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

const MODES: [&str; 2] = ["liveweb", "forward"];

/// `GET url` through the proxy in `mode`; the response body the origin sent (from the ARC
/// record in liveweb mode), and the X-Cache value.
fn fetch_body(proxy: &Proxy, mode: &str, url: &str, extra: &str) -> (String, String) {
    let r = get(
        proxy.addr,
        url,
        &format!("X-Liveweb-Mode: {mode}\r\n{extra}"),
    );
    let cache = r.header("x-cache").unwrap_or_default();
    if mode == "forward" {
        return (String::from_utf8_lossy(&r.body).into_owned(), cache);
    }
    let (_, response) = r.record();
    let text = String::from_utf8_lossy(&response).into_owned();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (body, cache)
}

/// Every record under `dir` as (URL, response as stored), filedesc records left out.
fn archived(dir: &Path) -> Vec<(String, String)> {
    use flate2::bufread::GzDecoder;
    let mut files = Vec::new();
    collect_arcs(dir, &mut files);
    let mut out = Vec::new();
    for f in files {
        let data = std::fs::read(&f).unwrap();
        let mut rest: &[u8] = &data;
        while !rest.is_empty() {
            let mut plain = Vec::new();
            let mut dec = GzDecoder::new(&mut rest);
            if dec.read_to_end(&mut plain).is_err() {
                break;
            }
            drop(dec);
            let (header, content) = split_record(&plain);
            if !header.starts_with("filedesc:") {
                let url = header.split(' ').next().unwrap().to_string();
                out.push((url, String::from_utf8_lossy(&content).into_owned()));
            }
        }
    }
    out
}

/// Each URL of `expected` has records, each holding that URL's own body; no record holds any
/// of `never` (bodies that belong to no request).
fn assert_archive(dir: &Path, expected: &[(String, &str)], never: &[&str]) {
    let records = archived(dir);
    for (url, body) in expected {
        let mine: Vec<_> = records.iter().filter(|(u, _)| u == url).collect();
        assert!(!mine.is_empty(), "no record of {url}: {records:?}");
        for (_, response) in mine {
            assert!(response.ends_with(body), "{url} archived as {response:?}");
        }
    }
    for (url, response) in &records {
        for stray in never {
            assert!(
                !response.contains(stray),
                "{url} archived with {stray:?}: {response:?}"
            );
        }
    }
}

/// The attack: an origin answers, then writes a second, unsolicited response on the
/// same keep-alive connection while it sits in liveweb's pool. The next requests (one without
/// credentials, one with) each get their own response; the stray one reaches nobody.
#[test]
fn bytes_an_origin_writes_to_an_idle_pooled_connection_reach_nobody() {
    for mode in MODES {
        let (inject_tx, inject_rx) = channel::<()>();
        let (injected_tx, injected_rx) = channel::<()>();
        let inject_rx = Arc::new(Mutex::new(inject_rx));
        let origin = ScriptedOrigin::start(move |_, mut conn| {
            while let Some(head) = next_request(&mut conn, None) {
                let path = path_of(&head);
                match path.as_str() {
                    "/p" => {
                        conn.write_all(&ok("hello")).unwrap();
                        // Idle now, in liveweb's pool: write a response nobody asked for.
                        inject_rx.lock().unwrap().recv().unwrap();
                        conn.write_all(&ok("injected")).unwrap();
                        injected_tx.send(()).unwrap();
                    }
                    "/a" => {
                        assert!(header_in(&head, "authorization").is_some());
                        conn.write_all(&ok("private-for-alice")).unwrap();
                    }
                    other => conn.write_all(&ok(&format!("public{other}"))).unwrap(),
                }
            }
        });
        let proxy = Proxy::start(&["--workers", "1"]);
        assert_eq!(fetch_body(&proxy, mode, &origin.url("/p"), "").0, "hello");
        inject_tx.send(()).unwrap();
        injected_rx.recv().unwrap();

        let (b, _) = fetch_body(&proxy, mode, &origin.url("/b"), "");
        assert_eq!(b, "public/b", "{mode}: the anonymous client");
        let (a, _) = fetch_body(
            &proxy,
            mode,
            &origin.url("/a"),
            "Authorization: Basic YWxpY2U6eA==\r\n",
        );
        assert_eq!(
            a, "private-for-alice",
            "{mode}: the client with credentials"
        );
        let (c, _) = fetch_body(&proxy, mode, &origin.url("/c"), "");
        assert_eq!(c, "public/c", "{mode}");
        // What is stored answers again with the same bytes.
        let (b, cache) = fetch_body(&proxy, mode, &origin.url("/b"), "");
        assert_eq!((b.as_str(), cache.as_str()), ("public/b", "HIT"), "{mode}");

        let dir = proxy.data_dir.clone();
        let _kept = proxy.finish();
        let expected = [
            (origin.url("/p"), "hello"),
            (origin.url("/b"), "public/b"),
            (origin.url("/a"), "private-for-alice"),
            (origin.url("/c"), "public/c"),
        ];
        assert_archive(&dir, &expected, &["injected"]);
    }
}

/// The window the readiness check cannot close: an origin answers a request with credentials
/// out of turn (a stray response first) and sends the real, private answer only once the next
/// request arrives on that connection. That next request is never another client's: a
/// connection that carried credentials is reused only for the same credentials.
#[test]
fn a_late_private_answer_never_reaches_a_request_without_those_credentials() {
    for mode in MODES {
        let origin = ScriptedOrigin::start(move |_, mut conn| {
            while let Some(head) = next_request(&mut conn, None) {
                if path_of(&head) == "/a" {
                    conn.write_all(&ok("stray")).unwrap();
                    // The real answer waits for whoever sends the next request on this
                    // connection (bounded: the proxy may never send one).
                    if next_request(&mut conn, Some(Duration::from_secs(5))).is_none() {
                        return;
                    }
                    conn.write_all(&ok("private-for-alice")).unwrap();
                    continue;
                }
                conn.write_all(&ok(&format!("public{}", path_of(&head))))
                    .unwrap();
            }
        });
        let proxy = Proxy::start(&["--workers", "1"]);
        let alice = "Authorization: Basic YWxpY2U6eA==\r\n";
        // Alice gets what the origin sent first: liveweb cannot tell; the origin answered.
        assert_eq!(
            fetch_body(&proxy, mode, &origin.url("/a"), alice).0,
            "stray"
        );
        let (b, _) = fetch_body(&proxy, mode, &origin.url("/b"), "");
        assert_eq!(
            b, "public/b",
            "{mode}: the anonymous client got someone else's answer"
        );
        let (bob, _) = fetch_body(
            &proxy,
            mode,
            &origin.url("/d"),
            "Authorization: Basic Ym9iOng=\r\n",
        );
        assert_eq!(bob, "public/d", "{mode}: another user got alice's answer");
        let dir = proxy.data_dir.clone();
        let _kept = proxy.finish();
        let expected = [
            (origin.url("/b"), "public/b"),
            (origin.url("/d"), "public/d"),
        ];
        assert_archive(&dir, &expected, &["private-for-alice"]);
    }
}

/// An out-of-turn answer that arrives together with the real one, on a reused connection, as
/// when the late bytes come while the next request is being written: liveweb cannot know
/// which answer is the request's, so it trusts neither and asks again on a fresh connection.
#[test]
fn two_answers_to_one_request_on_a_reused_connection_are_refused_and_asked_again() {
    for mode in MODES {
        let origin = ScriptedOrigin::start(move |_, mut conn| {
            let mut served = 0;
            while let Some(head) = next_request(&mut conn, None) {
                let path = path_of(&head);
                if served > 0 && path == "/second" {
                    let mut both = ok("injected");
                    both.extend_from_slice(&ok("public/second"));
                    conn.write_all(&both).unwrap();
                } else {
                    conn.write_all(&ok(&format!("public{path}"))).unwrap();
                }
                served += 1;
            }
        });
        let proxy = Proxy::start(&["--workers", "1"]);
        assert_eq!(
            fetch_body(&proxy, mode, &origin.url("/first"), "").0,
            "public/first"
        );
        let (second, _) = fetch_body(&proxy, mode, &origin.url("/second"), "");
        assert_eq!(second, "public/second", "{mode}");
        // The retry went on a new connection.
        assert_eq!(origin.connections.load(Ordering::SeqCst), 2, "{mode}");
        let dir = proxy.data_dir.clone();
        let _kept = proxy.finish();
        let expected = [(origin.url("/second"), "public/second")];
        assert_archive(&dir, &expected, &["injected"]);
    }
}

/// Stray bytes after a response on a fresh connection (old servers add a CRLF) do not spoil
/// the response; the connection is just not reused.
#[test]
fn stray_bytes_after_a_first_response_only_stop_reuse() {
    let (seen_tx, seen_rx): (Sender<usize>, Receiver<usize>) = channel();
    let seen_tx = Mutex::new(seen_tx);
    let origin = ScriptedOrigin::start(move |n, mut conn| {
        while let Some(head) = next_request(&mut conn, None) {
            seen_tx.lock().unwrap().send(n).unwrap();
            let mut answer = ok(&format!("public{}", path_of(&head)));
            answer.extend_from_slice(b"\r\n");
            conn.write_all(&answer).unwrap();
        }
    });
    let proxy = Proxy::start(&["--workers", "1"]);
    for (i, mode) in MODES.iter().enumerate() {
        let path = format!("/crlf{i}");
        assert_eq!(
            fetch_body(&proxy, mode, &origin.url(&path), "").0,
            format!("public{path}")
        );
        assert_eq!(
            seen_rx.recv().unwrap(),
            i,
            "each request on a connection of its own"
        );
    }
    drop(proxy.finish());
}

/// What real servers send (as seen in pywb's sample archives): chunked with
/// `Content-Length: -1` is read as chunked, archived as received, served, and its connection
/// not reused; a status line without a reason phrase keeps its code in the CDX.
#[test]
fn real_world_framing_is_served_archived_and_indexed() {
    let (seen_tx, seen_rx) = channel::<usize>();
    let seen_tx = Mutex::new(seen_tx);
    let origin = ScriptedOrigin::start(move |n, mut conn| {
        while let Some(head) = next_request(&mut conn, None) {
            seen_tx.lock().unwrap().send(n).unwrap();
            let answer: &[u8] = match path_of(&head).as_str() {
                "/moved" => b"HTTP/1.0 302\r\nLocation: /there\r\nContent-Length: 0\r\n\r\n",
                _ => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: -1\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            };
            conn.write_all(answer).unwrap();
        }
    });
    let proxy = Proxy::start(&["--workers", "1"]);
    for (i, mode) in MODES.iter().enumerate() {
        let url = origin.url(&format!("/old{i}"));
        let mut conn = connect(proxy.addr);
        let request =
            format!("GET {url} HTTP/1.1\r\nX-Liveweb-Mode: {mode}\r\nConnection: close\r\n\r\n");
        conn.get_mut().write_all(request.as_bytes()).unwrap();
        let (r, _) = read_any_reply(&mut conn, false);
        assert_eq!(r.status, 200, "{mode}: {}", r.head);
        if *mode == "forward" {
            // The chunked framing, the stray length gone.
            assert_eq!(r.header("content-length"), None, "{}", r.head);
            assert_eq!(r.body, b"hello");
        } else {
            let (_, response) = r.record();
            let text = String::from_utf8_lossy(&response);
            assert!(
                text.contains("Content-Length: -1\r\n"),
                "archived as received: {text}"
            );
            assert!(text.ends_with("5\r\nhello\r\n0\r\n\r\n"), "{text}");
        }
        assert_eq!(
            seen_rx.recv().unwrap(),
            i,
            "each on a connection of its own"
        );
    }
    let moved = origin.url("/moved");
    assert_eq!(get(proxy.addr, &moved, "").status, 302);
    let dir = proxy.data_dir.clone();
    let _kept = proxy.finish();
    let cdx: String = files_ending(&dir.join("sealed"), ".cdx")
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    let line = cdx
        .lines()
        .find(|l| l.contains("/moved"))
        .expect("the redirect is indexed");
    assert_eq!(line.split(' ').nth(4), Some("302"), "{line}");
}
