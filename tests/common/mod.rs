//! Test harness: a local origin the test controls (counting requests), the real `liveweb`
//! binary on an ephemeral port, raw-byte HTTP clients, ARC/gzip helpers and the warcio check.
#![allow(dead_code)]

pub mod tls;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the origin does for a path.
#[derive(Clone)]
pub enum Behavior {
    /// Send these bytes, then close.
    Send(Vec<u8>),
    /// Wait, then send, then close.
    Delay(Duration, Vec<u8>),
    /// Send these bytes, then hold the connection open without another byte.
    SendThenStall(Vec<u8>),
}

/// A blocking origin server on 127.0.0.1:0; one thread per connection.
pub struct Origin {
    pub addr: SocketAddr,
    routes: Arc<Mutex<HashMap<String, Behavior>>>,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    /// Every request head received, in order.
    pub requests: Arc<Mutex<Vec<String>>>,
    stopped: Arc<std::sync::atomic::AtomicBool>,
}

impl Origin {
    pub fn start() -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind origin");
        let addr = listener.local_addr().expect("origin addr");
        let routes: Arc<Mutex<HashMap<String, Behavior>>> = Arc::default();
        let hits: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let requests: Arc<Mutex<Vec<String>>> = Arc::default();
        let (r, h, q) = (routes.clone(), hits.clone(), requests.clone());
        let stopped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop_flag = stopped.clone();
        listener.set_nonblocking(true).expect("nonblocking origin");
        std::thread::spawn(move || {
            // Polling accept, so `stop` can close the listener (then connects are refused).
            while !stop_flag.load(std::sync::atomic::Ordering::SeqCst) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let _ = conn.set_nonblocking(false);
                        let (r, h, q) = (r.clone(), h.clone(), q.clone());
                        std::thread::spawn(move || serve_origin(conn, r, h, q));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Origin {
            addr,
            routes,
            hits,
            requests,
            stopped,
        }
    }

    /// Closes the listener: from now on connections to the origin are refused.
    pub fn stop(&self) {
        self.stopped
            .store(true, std::sync::atomic::Ordering::SeqCst);
        while TcpStream::connect(self.addr).is_ok() {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn route(&self, path: &str, behavior: Behavior) {
        self.routes
            .lock()
            .unwrap()
            .insert(path.to_string(), behavior);
    }

    /// A 200 response with Content-Length.
    pub fn ok(&self, path: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
        let mut raw = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        raw.extend_from_slice(body);
        self.route(path, Behavior::Send(raw.clone()));
        raw
    }

    /// `count` text/plain routes: `{path}{i}` answers `{body} {i}`.
    pub fn ok_numbered(&self, path: &str, count: usize, body: &str) {
        for i in 0..count {
            self.ok(
                &format!("{path}{i}"),
                "text/plain",
                format!("{body} {i}").as_bytes(),
            );
        }
    }

    pub fn hits(&self, path: &str) -> usize {
        *self.hits.lock().unwrap().get(path).unwrap_or(&0)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

fn serve_origin(
    mut conn: TcpStream,
    routes: Arc<Mutex<HashMap<String, Behavior>>>,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    requests: Arc<Mutex<Vec<String>>>,
) {
    let Some(text) = read_request_head(&mut conn) else {
        return;
    };
    let path = text.split(' ').nth(1).unwrap_or("").to_string();
    requests.lock().unwrap().push(text);
    *hits.lock().unwrap().entry(path.clone()).or_insert(0) += 1;
    let behavior = routes.lock().unwrap().get(&path).cloned();
    match behavior {
        // Paths under /echo/ answer 200 with a body derived from the path (unique content
        // for unique URLs); anything else unknown is 404.
        None if path.starts_with("/echo/") => {
            let body = echo_body(&path);
            let _ = conn.write_all(
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                )
                .as_bytes(),
            );
            let _ = conn.write_all(&body);
        }
        None => {
            let _ = conn.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found");
        }
        Some(Behavior::Send(raw)) => {
            let _ = conn.write_all(&raw);
        }
        Some(Behavior::Delay(d, raw)) => {
            std::thread::sleep(d);
            let _ = conn.write_all(&raw);
        }
        Some(Behavior::SendThenStall(raw)) => {
            let _ = conn.write_all(&raw);
            std::thread::sleep(Duration::from_secs(30));
        }
    }
}

/// An origin whose answer is computed from each request head by `respond` (which sees the
/// whole head, so it can answer conditionals, vary on headers, count, or wait); every
/// request head is recorded. One request per connection, then close.
pub struct FnOrigin {
    pub addr: SocketAddr,
    pub requests: Arc<Mutex<Vec<String>>>,
}

impl FnOrigin {
    pub fn start(respond: impl Fn(&str) -> Vec<u8> + Send + Sync + 'static) -> FnOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind origin");
        let addr = listener.local_addr().expect("origin addr");
        let requests: Arc<Mutex<Vec<String>>> = Arc::default();
        let seen = requests.clone();
        let respond = Arc::new(respond);
        std::thread::spawn(move || {
            for mut conn in listener.incoming().flatten() {
                let (seen, respond) = (seen.clone(), respond.clone());
                std::thread::spawn(move || {
                    let Some(text) = read_request_head(&mut conn) else {
                        return;
                    };
                    seen.lock().unwrap().push(text.clone());
                    let _ = conn.write_all(&respond(&text));
                });
            }
        });
        FnOrigin { addr, requests }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Request heads received for `path`.
    pub fn requests_for(&self, path: &str) -> Vec<String> {
        let prefix = format!("GET {path} ");
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.starts_with(&prefix))
            .cloned()
            .collect()
    }
}

/// A request header's value in a recorded request head (case-insensitive name).
pub fn header_in(head: &str, name: &str) -> Option<String> {
    head.lines().skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

/// An HTTP/1.1 response with Content-Length and the given extra header lines.
pub fn response(status: &str, headers: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// An origin's answer for a page to be validated before every reuse (`ETag: "v1"`,
/// `no-cache`): `304` to a request that sends `If-None-Match`, else the page.
pub fn no_cache_page(head: &str) -> Vec<u8> {
    const FIELDS: &str = "ETag: \"v1\"\r\nCache-Control: no-cache\r\n";
    match header_in(head, "if-none-match") {
        Some(_) => response("304 Not Modified", FIELDS, ""),
        None => response("200 OK", FIELDS, "the page"),
    }
}

/// Reads one request head byte by byte (so nothing after it is consumed); `None` if the
/// connection ends first.
pub fn read_request_head(conn: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match conn.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

/// The body the origin sends for `/echo/...` paths: the path, repeated to about 2 KB.
pub fn echo_body(path: &str) -> Vec<u8> {
    path.as_bytes().iter().copied().cycle().take(2000).collect()
}

/// The real binary, started on 127.0.0.1:0 with its own data directory.
pub struct Proxy {
    pub addr: SocketAddr,
    child: Option<Child>,
    pub data_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    pub log: Arc<Mutex<String>>,
}

impl Proxy {
    /// Starts liveweb with test defaults (2 workers, loopback upstreams allowed, 1s read
    /// timeout) plus `extra` arguments.
    pub fn start(extra: &[&str]) -> Proxy {
        Self::start_raw(&with_defaults(extra))
    }

    /// Starts liveweb with exactly `args` (plus listen address and data dir).
    pub fn start_raw(args: &[&str]) -> Proxy {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data_dir = tmp.path().join("data");
        Self::start_with(data_dir, Some(tmp), args, &[])
    }

    /// Starts liveweb (test defaults plus `extra`) with `env` set for it: fault injection.
    pub fn start_env(extra: &[&str], env: &[(&str, &str)]) -> Proxy {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data_dir = tmp.path().join("data");
        Self::start_with(data_dir, Some(tmp), &with_defaults(extra), env)
    }

    /// Starts liveweb on an existing data directory (test defaults plus `extra`).
    pub fn start_in(data_dir: &Path, extra: &[&str]) -> Proxy {
        Self::start_with(data_dir.to_path_buf(), None, &with_defaults(extra), &[])
    }

    /// Starts liveweb on an existing data directory with `env` set for it.
    pub fn start_in_env(data_dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Proxy {
        Self::start_with(data_dir.to_path_buf(), None, &with_defaults(extra), env)
    }

    /// Starts liveweb on `listen` (a fixed address: a node restarted where a load balancer
    /// expects it) and an existing data directory.
    pub fn start_at(listen: SocketAddr, data_dir: &Path, extra: &[&str]) -> Proxy {
        let listen = listen.to_string();
        Self::spawn(
            &listen,
            data_dir.to_path_buf(),
            None,
            &with_defaults(extra),
            &[],
        )
    }

    fn start_with(
        data_dir: PathBuf,
        tmp: Option<tempfile::TempDir>,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Proxy {
        Self::spawn("127.0.0.1:0", data_dir, tmp, args, env)
    }

    fn spawn(
        listen: &str,
        data_dir: PathBuf,
        tmp: Option<tempfile::TempDir>,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Proxy {
        let mut child = Command::new(env!("CARGO_BIN_EXE_liveweb"))
            .args(["--listen", listen, "--data-dir"])
            .arg(&data_dir)
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start liveweb");
        let stderr = child.stderr.take().expect("stderr");
        let mut lines = BufReader::new(stderr);
        // Recovery reports come first; the address is on the "listening on" line.
        let mut first = String::new();
        loop {
            let mut line = String::new();
            let n = lines.read_line(&mut line).expect("startup line");
            assert!(n > 0, "liveweb exited before listening; stderr:\n{first}");
            first.push_str(&line);
            if line.contains("listening on") {
                break;
            }
        }
        let addr: SocketAddr = first
            .lines()
            .last()
            .unwrap_or("")
            .split_whitespace()
            .find_map(|w| w.trim_end_matches(',').parse().ok())
            .unwrap_or_else(|| panic!("no address in startup line {first:?}"));
        let log = Arc::new(Mutex::new(first));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in lines.lines().map_while(Result::ok) {
                sink.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        Proxy {
            addr,
            child: Some(child),
            data_dir,
            _tmp: tmp,
            log,
        }
    }

    /// SIGTERM, wait for a clean exit, then check every ARC file with warcio. Returns the
    /// data directory's guard, so a test can inspect the files afterwards.
    pub fn finish(mut self) -> Option<tempfile::TempDir> {
        let status = self.terminate();
        assert!(
            status.success(),
            "liveweb exited with {status}; log:\n{}",
            self.log.lock().unwrap()
        );
        assert_warcio_clean(&self.data_dir);
        self._tmp.take()
    }

    /// SIGTERM and wait for the exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        // SAFETY: signalling our own child by PID.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        child.wait().expect("wait")
    }

    /// Sends SIGTERM without waiting.
    pub fn signal_term(&self) {
        let child = self.child.as_ref().expect("running");
        // SAFETY: signalling our own child by PID.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    }

    /// Waits for the process to exit (after `signal_term`, or a fault that kills it).
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        self.child.take().expect("running").wait().expect("wait")
    }

    /// SIGKILL: a crash, nothing flushed or sealed.
    pub fn kill9(mut self) {
        let mut child = self.child.take().expect("running");
        let _ = child.kill();
        let _ = child.wait();
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

/// Test defaults (2 workers, loopback upstreams allowed, 1s read timeout) unless `extra`
/// sets the same flag, then `extra`.
fn with_defaults<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let defaults = [
        ("--workers", "2"),
        ("--allow-upstream", "127.0.0.0/8"),
        ("--read-timeout", "1s"),
    ];
    let mut args = Vec::new();
    for (flag, value) in defaults {
        if !extra.contains(&flag) {
            args.extend([flag, value]);
        }
    }
    args.extend_from_slice(extra);
    args
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Every archive file under `dir` is read by `warcio index` with exit 0 and nothing on stderr;
/// `warcio check` finds every digest of a `.warc.gz` valid.
pub fn assert_warcio_clean(dir: &Path) {
    let mut files = Vec::new();
    collect_arcs(dir, &mut files);
    for f in files {
        let out = Command::new("python3")
            .args(["-m", "warcio.cli", "index"])
            .arg(&f)
            .output()
            .expect("python3 must be installed");
        assert!(
            out.status.success(),
            "warcio failed on {}: {}",
            f.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stderr.is_empty(),
            "warcio warned on {}: {}",
            f.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        if f.to_string_lossy().contains(".warc.gz") {
            // Every block and payload digest checked: warcio's check, except the payload
            // digests of chunked responses, which liveweb computes as WARC 1.1 says (framing
            // off) and warcio with the framing: those are checked by spec_payload_digests.py.
            let out = Command::new("python3")
                .args(["-m", "warcio.cli", "check", "-v"])
                .arg(&f)
                .output()
                .expect("python3 must be installed");
            let report = String::from_utf8_lossy(&out.stdout).into_owned();
            let spec = Command::new("python3")
                .arg(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/tests/common/spec_payload_digests.py"
                ))
                .arg(&f)
                .output()
                .expect("python3 must be installed");
            assert!(
                spec.status.success(),
                "chunked payload digests wrong in {}: {}",
                f.display(),
                String::from_utf8_lossy(&spec.stderr)
            );
            let verified = String::from_utf8_lossy(&spec.stdout).into_owned();
            let mut offset = "";
            for line in report.lines() {
                if let Some(rest) = line.trim().strip_prefix("offset ") {
                    offset = rest.split(' ').next().unwrap_or("");
                } else if line.contains("failed") {
                    let spec_checked = line.contains("payload digest failed")
                        && verified.lines().any(|v| v == offset);
                    assert!(
                        spec_checked,
                        "warcio check failed on {} at {offset}: {report}{}",
                        f.display(),
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
            }
            assert!(
                out.status.success() || report.contains("payload digest failed"),
                "warcio check failed on {}: {report}{}",
                f.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// Every ARC or WARC file under `dir`: sealed ones and those still being written (`.open`).
pub fn collect_arcs(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = p.to_string_lossy();
        let name = name.strip_suffix(".open").unwrap_or(&name);
        if p.is_dir() {
            collect_arcs(&p, out);
        } else if name.ends_with(".arc.gz") || name.ends_with(".arc") || name.ends_with(".warc.gz")
        {
            out.push(p);
        }
    }
}

/// A parsed reply.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }

    /// The record: ARC header line and payload (the content between it and the final `\n`).
    pub fn record(&self) -> (String, Vec<u8>) {
        split_record(&gunzip_one_member(&self.body))
    }
}

/// Reads one reply framed by Content-Length (no body for HEAD).
pub fn read_reply(reader: &mut impl BufRead, head_only: bool) -> Reply {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line).expect("read reply head");
        assert!(n > 0, "connection closed before a reply; got {head:?}");
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let mut reply = Reply {
        status,
        head,
        body: Vec::new(),
    };
    if !head_only {
        let len: usize = reply
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        reply.body = vec![0; len];
        reader.read_exact(&mut reply.body).expect("read reply body");
    }
    reply
}

/// Reads one reply as a browser would: body framed by Content-Length, chunked (decoded), or
/// the connection closing. `raw_body` keeps the body bytes as sent (chunked framing included).
pub fn read_any_reply(reader: &mut impl BufRead, head_only: bool) -> (Reply, Vec<u8>) {
    let mut reply = read_reply(reader, true);
    if head_only || reply.status == 204 || reply.status == 304 {
        return (reply, Vec::new());
    }
    let mut raw = Vec::new();
    if let Some(len) = reply
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        raw = vec![0; len];
        reader.read_exact(&mut raw).expect("read body");
        reply.body = raw.clone();
    } else if reply
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).expect("chunk size");
            raw.extend_from_slice(line.as_bytes());
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .expect("hex size");
            if size == 0 {
                // Trailers up to the blank line.
                loop {
                    let mut t = String::new();
                    reader.read_line(&mut t).expect("trailer");
                    raw.extend_from_slice(t.as_bytes());
                    if t == "\r\n" || t.is_empty() {
                        break;
                    }
                }
                break;
            }
            let mut data = vec![0; size + 2];
            reader.read_exact(&mut data).expect("chunk data");
            raw.extend_from_slice(&data);
            reply.body.extend_from_slice(&data[..size]);
        }
    } else {
        reader.read_to_end(&mut raw).expect("read to close");
        reply.body = raw.clone();
    }
    (reply, raw)
}

pub fn connect(addr: SocketAddr) -> BufReader<TcpStream> {
    let s = TcpStream::connect(addr).expect("connect to liveweb");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    BufReader::new(s)
}

/// Sends raw request bytes on a new connection and reads one reply.
pub fn send_raw(addr: SocketAddr, raw: &[u8]) -> Reply {
    let mut conn = connect(addr);
    conn.get_mut().write_all(raw).expect("send");
    read_reply(&mut conn, raw.starts_with(b"HEAD "))
}

/// Sends raw request bytes on a new connection and reads everything until the server closes
/// it (for replies that end by closing, or are cut short).
pub fn send_until_close(addr: SocketAddr, raw: &[u8]) -> Vec<u8> {
    let mut conn = connect(addr);
    conn.get_mut().write_all(raw).expect("send");
    let mut all = Vec::new();
    let _ = conn.read_to_end(&mut all);
    all
}

/// `GET <url>` through the proxy with extra header lines.
pub fn get(addr: SocketAddr, url: &str, extra_headers: &str) -> Reply {
    send_raw(
        addr,
        format!("GET {url} HTTP/1.1\r\nHost: x\r\n{extra_headers}Connection: close\r\n\r\n")
            .as_bytes(),
    )
}

/// Bytes no deflate implementation can shrink (xorshift64), different per seed.
pub fn incompressible(len: usize, seed: u64) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ seed.wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Inflates every gzip member of `data` (a whole `.arc.gz` file), concatenated.
pub fn gunzip_all(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(data)
        .read_to_end(&mut out)
        .expect("gzip members");
    out
}

/// Inflates `data`, asserting it is exactly one gzip member.
pub fn gunzip_one_member(data: &[u8]) -> Vec<u8> {
    use flate2::bufread::GzDecoder;
    let mut rest: &[u8] = data;
    let mut dec = GzDecoder::new(&mut rest);
    let mut out = Vec::new();
    dec.read_to_end(&mut out).expect("valid gzip member");
    drop(dec);
    assert!(
        rest.is_empty(),
        "{} bytes after the first gzip member",
        rest.len()
    );
    out
}

/// Splits an inflated ARC record into header line and content, checking the declared length
/// and the trailing newline.
pub fn split_record(plain: &[u8]) -> (String, Vec<u8>) {
    let nl = plain.iter().position(|&b| b == b'\n').expect("header line");
    let header = String::from_utf8(plain[..nl].to_vec()).expect("ascii header");
    let len: usize = header
        .rsplit(' ')
        .next()
        .and_then(|s| s.parse().ok())
        .expect("length field");
    let content = &plain[nl + 1..];
    assert_eq!(content.len(), len + 1, "declared length + trailing newline");
    assert_eq!(content[len], b'\n');
    (header, content[..len].to_vec())
}

/// Headless Chromium (Debian's) with a fresh profile and `args`, on `url`, within 60 s; its
/// output, asserted successful.
pub fn chromium(args: &[&str], url: &str) -> std::process::Output {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new("timeout")
        .args([
            "60",
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
        ])
        .args([
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .output()
        .expect("chromium must be installed (scripts/test installs it)");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A server the tests run beside liveweb (HAProxy, pywb, an S3 server), stopped (by PID)
/// when dropped.
pub struct Service {
    child: std::process::Child,
    pub addr: SocketAddr,
}

impl Service {
    /// Starts `command` (its output discarded) and returns once it accepts connections on
    /// `addr`, within 60 s; `what` names it in failures.
    pub fn start(mut command: Command, addr: SocketAddr, what: &str) -> Service {
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{what} must be installed (scripts/test installs it): {e}"));
        let service = Service { child, addr };
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "{what} never listened on {addr}");
            std::thread::sleep(Duration::from_millis(50));
        }
        service
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The peak resident memory of a process (VmHWM), in bytes.
pub fn peak_rss(pid: u32) -> u64 {
    proc_status_bytes(pid, "VmHWM")
}

/// A memory field of `/proc/PID/status` (`VmHWM`, `RssAnon`, ...), in bytes.
pub fn proc_status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"));
    kb * 1024
}

/// A forward-mode GET with extra header lines; the reply read as a browser would.
pub fn fwd(proxy: &Proxy, url: &str, extra: &str) -> Reply {
    let mut conn = connect(proxy.addr);
    conn.get_mut()
        .write_all(
            format!("GET {url} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n").as_bytes(),
        )
        .unwrap();
    read_any_reply(&mut conn, false).0
}

/// Waits until a forward miss for `url` (with the same request headers) has been stored: a
/// cache-only request waits for a fetch in flight.
pub fn wait_stored(proxy: &Proxy, url: &str, extra: &str) {
    fwd(
        proxy,
        url,
        &format!("{extra}Cache-Control: only-if-cached\r\n"),
    );
}

/// A reply's `X-Cache`.
pub fn cache(r: &Reply) -> String {
    r.header("x-cache").unwrap_or_default()
}

/// This node's name in Via (`1.1 liveweb-HOSTNAME`), as liveweb derives it from the host
/// name.
pub fn own_via() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        .collect();
    format!("1.1 liveweb-{host}")
}

/// A free loopback address (bound, then released: the service given it binds it next).
pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

/// The files in `dir` whose names end in `suffix`, sorted.
pub fn files_ending(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.retain(|p| p.to_string_lossy().ends_with(suffix));
    v.sort();
    v
}

/// A CDX file's lines without archived failures (which an indexer of the files lists and
/// liveweb does not), sorted, for comparing liveweb's CDX with an indexer's.
pub fn capture_lines(cdx: &str) -> Vec<String> {
    let mut lines: Vec<String> = cdx
        .lines()
        .filter(|l| !l.contains(" application/x-liveweb-error "))
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

/// nginx serving the files in `root` on a loopback port: a real origin for big bodies.
/// Its configuration and logs live in `root`'s sibling directory `nginx`.
pub fn nginx_serving(root: &Path) -> Service {
    let addr = free_addr();
    let dir = root.parent().expect("root has a parent").join("nginx");
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "daemon off; master_process off; pid {pid}; error_log {err};\n\
             events {{}}\n\
             http {{ access_log off; client_body_temp_path {dir}; proxy_temp_path {dir};\n\
             fastcgi_temp_path {dir}; uwsgi_temp_path {dir}; scgi_temp_path {dir};\n\
             server {{ listen {addr}; root {root}; }} }}\n",
            pid = dir.join("nginx.pid").display(),
            err = dir.join("error.log").display(),
            dir = dir.display(),
            root = root.display(),
        ),
    )
    .unwrap();
    let mut command = Command::new("nginx");
    command.arg("-c").arg(&conf).arg("-p").arg(&dir);
    Service::start(command, addr, "nginx")
}
