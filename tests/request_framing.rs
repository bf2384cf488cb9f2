//! What liveweb sends upstream is framed by what it sends: a GET body it discards never
//! leaves its Content-Length behind on a pooled connection (checked against a recording
//! keep-alive origin and a real nginx), framing headers named by `Connection` are refused,
//! malformed chunked request bodies are the client's fault, and origins cannot smuggle odd
//! status codes, transfer codings or our own diagnostic headers to the client.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A keep-alive origin that reads each request by its own framing (as a real server does)
/// and records every request's raw bytes, per connection. Answers `200` with the path as body.
struct KeepAliveOrigin {
    addr: SocketAddr,
    /// Raw requests (head and body) per connection, in arrival order.
    conns: Arc<Mutex<Vec<Vec<Vec<u8>>>>>,
}

impl KeepAliveOrigin {
    fn start() -> KeepAliveOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let conns: Arc<Mutex<Vec<Vec<Vec<u8>>>>> = Arc::default();
        let all = conns.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let index = {
                    let mut all = all.lock().unwrap();
                    all.push(Vec::new());
                    all.len() - 1
                };
                let all = all.clone();
                std::thread::spawn(move || serve_keep_alive(conn, index, all));
            }
        });
        KeepAliveOrigin { addr, conns }
    }

    fn requests(&self) -> Vec<Vec<u8>> {
        self.conns.lock().unwrap().concat()
    }
}

fn serve_keep_alive(conn: TcpStream, index: usize, all: Arc<Mutex<Vec<Vec<Vec<u8>>>>>) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut writer = conn;
    loop {
        let mut raw = Vec::new();
        let mut length = 0usize;
        loop {
            let mut line = Vec::new();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            raw.extend_from_slice(&line);
            let text = String::from_utf8_lossy(&line).to_ascii_lowercase();
            if let Some(v) = text.strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
            if line == b"\r\n" {
                break;
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        raw.extend_from_slice(&body);
        let path = String::from_utf8_lossy(&raw)
            .split(' ')
            .nth(1)
            .unwrap_or("")
            .to_string();
        all.lock().unwrap()[index].push(raw);
        let reply = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{path}",
            path.len()
        );
        if writer.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

#[test]
fn a_discarded_get_body_leaves_no_framing_upstream() {
    let origin = KeepAliveOrigin::start();
    let proxy = Proxy::start(&["--workers", "1"]);
    let base = format!("http://{}", origin.addr);
    let mut conn = connect(proxy.addr);
    conn.get_mut()
        .write_all(
            format!(
                "GET {base}/first HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789\
                 GET {base}/second HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n\
                 HEAD {base}/third HTTP/1.1\r\nContent-Length: 4\r\n\r\nbody"
            )
            .as_bytes(),
        )
        .unwrap();
    for path in ["/first", "/second"] {
        let r = read_reply(&mut conn, false);
        assert_eq!(r.status, 200, "{path}: {}", r.head);
        let (_, payload) = r.record();
        assert!(payload.ends_with(path.as_bytes()), "{path}");
    }
    assert_eq!(read_reply(&mut conn, true).status, 200);
    // Every request reached the origin bodiless and unframed, on one pooled connection.
    let seen = origin.requests();
    assert_eq!(seen.len(), 3, "{seen:?}");
    for (raw, path) in seen.iter().zip(["/first", "/second", "/third"]) {
        let text = String::from_utf8_lossy(raw);
        assert!(
            text.starts_with(&format!("GET {path} HTTP/1.1\r\n")),
            "{text}"
        );
        assert!(text.ends_with("\r\n\r\n"), "no body: {text:?}");
        let lower = text.to_ascii_lowercase();
        assert!(
            !lower.contains("content-length") && !lower.contains("transfer-encoding"),
            "{text}"
        );
    }
    assert_eq!(
        origin.conns.lock().unwrap().len(),
        1,
        "one pooled connection"
    );
    proxy.finish();
}

/// A real nginx with keep-alive on a free loopback port, serving `root`.
struct Nginx {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Nginx {
    fn start(files: &[(&str, &str)]) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("www");
        std::fs::create_dir_all(&root).unwrap();
        for (name, body) in files {
            std::fs::write(root.join(name), body).unwrap();
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let conf = dir.path().join("nginx.conf");
        std::fs::write(
            &conf,
            format!(
                // One process (no master and workers), so killing it leaves nothing behind.
                "user root; master_process off; pid {pid}; error_log {log};\n\
                 events {{ worker_connections 64; }}\n\
                 http {{ access_log off; keepalive_requests 1000; keepalive_timeout 60s;\n\
                   client_body_temp_path {tmp}; proxy_temp_path {tmp}; fastcgi_temp_path {tmp};\n\
                   uwsgi_temp_path {tmp}; scgi_temp_path {tmp};\n\
                   server {{ listen 127.0.0.1:{port}; root {root}; }} }}\n",
                pid = dir.path().join("nginx.pid").display(),
                log = dir.path().join("error.log").display(),
                tmp = dir.path().display(),
                root = root.display(),
            ),
        )
        .unwrap();
        let child = Command::new("nginx")
            .args(["-p", &dir.path().display().to_string()])
            .args(["-e", &dir.path().join("error.log").display().to_string()])
            .arg("-c")
            .arg(&conf)
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx must be installed (.ci/run installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nginx did not start: {}",
                log_of(dir.path())
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Nginx {
            child,
            port,
            _dir: dir,
        }
    }
}

fn log_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn get_bodies_do_not_desynchronise_a_pooled_nginx_connection() {
    let nginx = Nginx::start(&[
        ("a.txt", "page a"),
        ("b.txt", "page b"),
        ("c.txt", "page c"),
    ]);
    let proxy = Proxy::start(&["--workers", "1", "--mode", "forward"]);
    let url = |p: &str| format!("http://127.0.0.1:{}/{p}", nginx.port);
    // Sequential requests share one pooled upstream connection; the first carries a body.
    let r = send_raw(
        proxy.addr,
        format!(
            "GET {} HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789",
            url("a.txt")
        )
        .as_bytes(),
    );
    assert_eq!(
        (r.status, r.body.as_slice()),
        (200, &b"page a"[..]),
        "{}",
        r.head
    );
    for (file, body) in [("b.txt", "page b"), ("c.txt", "page c")] {
        let r = get(proxy.addr, &url(file), "");
        assert_eq!(r.status, 200, "{file}: {}", r.head);
        assert_eq!(r.body, body.as_bytes());
    }
    // A forward miss streams before its record lands: wait for b's (a cache-only request
    // waits on a fetch in flight).
    get(
        proxy.addr,
        &url("b.txt"),
        "X-Liveweb-Mode: liveweb\r\nCache-Control: only-if-cached\r\n",
    );
    // Nothing bad was cached: b is still nginx's page, from the store (nginx's files are
    // seconds old, so their heuristic freshness is short and the hit may be a revalidation:
    // a conditional request on the pooled connection, answered 304).
    let r = get(proxy.addr, &url("b.txt"), "");
    assert_eq!(r.status, 200, "{}", r.head);
    let cache = r.header("x-cache").unwrap_or_default();
    assert!(cache == "HIT" || cache == "REVALIDATED", "{}", r.head);
    assert_eq!(r.body, b"page b");
    proxy.finish();
}

#[test]
fn framing_named_by_connection_and_bad_chunked_bodies_are_400() {
    let origin = KeepAliveOrigin::start();
    let proxy = Proxy::start(&["--mode", "forward"]);
    let url = format!("http://{}/post", origin.addr);
    for raw in [
        format!("POST {url} HTTP/1.1\r\nConnection: Content-Length\r\nContent-Length: 5\r\n\r\nhello"),
        format!("POST {url} HTTP/1.1\r\nConnection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
        format!("POST {url} HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"),
        format!("GET {url} HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nXX"),
        format!("POST {url} HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"),
    ] {
        let r = send_raw(proxy.addr, raw.as_bytes());
        assert_eq!(r.status, 400, "{raw:?}: {}", r.head);
        assert_eq!(r.header("x-liveweb-error"), None, "a client error has no E-code");
    }
    // The framing-in-Connection requests and the GET are refused before any fetch; only the
    // malformed chunked POST's head went out, and none of the bodies did.
    let seen = origin.requests();
    assert!(seen.len() <= 1, "{seen:?}");
    assert!(seen.iter().all(|r| !r.windows(5).any(|w| w == b"hello")));
    proxy.finish();
}

#[test]
fn odd_status_codes_and_transfer_codings_are_e35_and_origin_diagnostics_are_dropped() {
    let origin = Origin::start();
    for (path, status) in [("/s000", "000"), ("/s012", "012"), ("/s099", "099")] {
        origin.route(
            path,
            Behavior::Send(
                format!("HTTP/1.1 {status} Odd\r\nContent-Length: 2\r\n\r\nhi").into_bytes(),
            ),
        );
    }
    origin.route(
        "/gzip-chunked",
        Behavior::Send(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
                .to_vec(),
        ),
    );
    origin.route(
        "/spoof",
        Behavior::Send(
            b"HTTP/1.1 200 OK\r\nX-Cache: HIT\r\nX-Liveweb-Error: E99 fake\r\nx-liveweb-archived: yes\r\nContent-Length: 2\r\n\r\nok".to_vec(),
        ),
    );
    let proxy = Proxy::start(&[]);
    for path in ["/s000", "/s012", "/s099", "/gzip-chunked"] {
        let r = get(proxy.addr, &origin.url(path), "");
        assert_eq!(r.status, 502, "{path}: {}", r.head);
        assert_eq!(
            r.header("x-liveweb-error").as_deref(),
            Some("E35 invalid response")
        );
        let r = get(
            proxy.addr,
            &origin.url(path),
            "X-Liveweb-Mode: forward\r\nCache-Control: no-cache\r\n",
        );
        assert_eq!(r.status, 502, "forward {path}: {}", r.head);
        assert_eq!(
            r.header("x-liveweb-error").as_deref(),
            Some("E35 invalid response")
        );
        assert!(
            !r.body.windows(3).any(|w| w == b"abc"),
            "no coded body reaches the client"
        );
    }
    for (extra, cache) in [
        ("", "MISS"),
        ("Cache-Control: no-cache\r\n", "MISS"),
        ("", "HIT"),
    ] {
        let mut conn = connect(proxy.addr);
        conn.get_mut()
            .write_all(
                format!(
                    "GET {} HTTP/1.1\r\nX-Liveweb-Mode: forward\r\n{extra}Connection: close\r\n\r\n",
                    origin.url("/spoof")
                )
                .as_bytes(),
            )
            .unwrap();
        let (r, _) = read_any_reply(&mut conn, false);
        assert_eq!(r.body, b"ok");
        let lower = r.head.to_ascii_lowercase();
        assert_eq!(lower.matches("x-cache:").count(), 1, "{}", r.head);
        assert_eq!(r.header("x-cache").as_deref(), Some(cache), "{}", r.head);
        assert!(!lower.contains("x-liveweb-"), "{}", r.head);
        // A forward miss streams before its record lands: wait for it (a request that finds
        // the fetch in flight waits on it), so the next request is not COALESCED.
        let landed = get(
            proxy.addr,
            &origin.url("/spoof"),
            "Cache-Control: only-if-cached\r\n",
        );
        assert_eq!(landed.status, 200);
    }
    proxy.finish();
}

#[test]
fn an_empty_post_keeps_its_content_length() {
    let origin = KeepAliveOrigin::start();
    let proxy = Proxy::start(&["--mode", "forward"]);
    let url = format!("http://{}/empty", origin.addr);
    let r = send_raw(
        proxy.addr,
        format!("POST {url} HTTP/1.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.head);
    let seen = origin.requests();
    let text = String::from_utf8_lossy(&seen[0]);
    assert!(text.contains("\r\nContent-Length: 0\r\n"), "{text}");
    proxy.finish();
}
