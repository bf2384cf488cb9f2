//! Rolling, sealing with CDX, the on-seal hook, crash recovery and shutdown, on the real
//! binary.

mod common;

use common::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn sealed_arcs(data: &Path) -> Vec<PathBuf> {
    files_ending(&data.join("sealed"), ".arc.gz")
}

fn open_arcs(data: &Path) -> Vec<PathBuf> {
    let mut all = Vec::new();
    collect_arcs(data, &mut all);
    all.retain(|p| !p.starts_with(data.join("sealed")));
    all
}

fn cdx_of(arc: &Path) -> PathBuf {
    let name = arc
        .file_name()
        .unwrap()
        .to_string_lossy()
        .replace(".arc.gz", ".cdx");
    arc.with_file_name(name)
}

/// Every CDX line points exactly at a gzip member holding that URL; returns the URLs.
fn check_cdx(arc: &Path) -> Vec<String> {
    let data = fs::read(arc).unwrap();
    let cdx = fs::read_to_string(cdx_of(arc)).unwrap();
    let mut lines = cdx.lines();
    assert_eq!(lines.next(), Some(" CDX N b a m s k r M S V g"));
    let mut urls = Vec::new();
    let mut prev = String::new();
    for line in lines {
        assert!(line >= prev.as_str(), "CDX sorted");
        prev = line.to_string();
        let f: Vec<&str> = line.split(' ').collect();
        assert_eq!(f.len(), 11, "{line}");
        let (len, off): (usize, usize) = (f[8].parse().unwrap(), f[9].parse().unwrap());
        assert_eq!(f[10], arc.file_name().unwrap().to_string_lossy());
        let (header, payload) = split_record(&gunzip_one_member(&data[off..off + len]));
        assert!(
            header.starts_with(&format!("{} ", f[2])),
            "{header} vs {line}"
        );
        assert_eq!(
            f[4],
            &String::from_utf8_lossy(&payload[9..12]),
            "status field"
        );
        assert_eq!(f[5].len(), 32, "base32 sha1");
        urls.push(f[2].to_string());
    }
    urls
}

#[test]
fn rolls_by_size_and_cdx_points_at_records() {
    let origin = Origin::start();
    // Incompressible bodies, so ~1.5 KB members: a few per 4 KB file.
    for i in 0..12 {
        let body = incompressible(1500, i as u64);
        origin.ok(&format!("/r{i}"), "application/octet-stream", &body);
    }
    let proxy = Proxy::start(&["--workers", "1", "--arc-max-size", "4KB"]);
    for i in 0..12 {
        assert_eq!(
            get(proxy.addr, &origin.url(&format!("/r{i}")), "").status,
            200
        );
    }
    let data = proxy.data_dir.clone();
    let _keep = proxy.finish();
    let arcs = sealed_arcs(&data);
    assert!(arcs.len() >= 4, "rolled into {} files", arcs.len());
    assert!(open_arcs(&data).is_empty(), "shutdown sealed everything");
    let mut urls: Vec<String> = arcs.iter().flat_map(|a| check_cdx(a)).collect();
    urls.sort();
    let mut expected: Vec<String> = (0..12).map(|i| origin.url(&format!("/r{i}"))).collect();
    expected.sort();
    assert_eq!(urls, expected, "each record in exactly one file");
    for a in &arcs {
        let size = fs::metadata(a).unwrap().len();
        let records = fs::read_to_string(cdx_of(a)).unwrap().lines().count() - 1;
        assert!(
            size <= 4096 || records == 1,
            "{} is {size} bytes with {records} records",
            a.display()
        );
    }
}

#[test]
fn rolls_by_idle_time_while_running() {
    let origin = Origin::start();
    origin.ok("/idle", "text/plain", b"idle");
    let proxy = Proxy::start(&["--workers", "1", "--arc-max-idle", "300ms"]);
    get(proxy.addr, &origin.url("/idle"), "");
    let deadline = Instant::now() + Duration::from_secs(5);
    while sealed_arcs(&proxy.data_dir).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let arcs = sealed_arcs(&proxy.data_dir);
    assert_eq!(arcs.len(), 1, "sealed after idling");
    assert_eq!(check_cdx(&arcs[0]), vec![origin.url("/idle")]);
    // Still a hit after sealing, and the next miss opens a new file lazily.
    assert_eq!(
        get(proxy.addr, &origin.url("/idle"), "")
            .header("x-cache")
            .as_deref(),
        Some("HIT")
    );
    assert!(
        open_arcs(&proxy.data_dir).is_empty(),
        "no empty file opened"
    );
    proxy.finish();
}

#[test]
fn on_seal_hook_runs_once_per_file_and_is_retried() {
    let origin = Origin::start();
    origin.ok("/a", "text/plain", b"a");
    origin.ok("/b", "text/plain", b"b");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("hook.log");
    let flag = dir.path().join("failed-once");
    // Fails the first time it sees any file, then logs the path and deletes the file.
    let hook = hook(
        dir.path(),
        &format!(
            "if [ ! -e {flag} ]; then touch {flag}; echo fail \"$1\" >> {log}; exit 1; fi\nrm -f \"$1\"\necho ok \"$1\" >> {log}",
            flag = flag.display(),
            log = log.display()
        ),
    );
    let proxy = Proxy::start(&[
        "--workers",
        "1",
        "--arc-max-idle",
        "200ms",
        "--on-seal",
        &hook,
    ]);
    get(proxy.addr, &origin.url("/a"), "");
    let deadline = Instant::now() + Duration::from_secs(10);
    let done = |log: &Path| {
        fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .any(|l| l.starts_with("ok "))
    };
    while !done(&log) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let text = fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "one failure, one retry: {text}");
    assert!(lines[0].starts_with("fail ") && lines[1].starts_with("ok "));
    let path = lines[1].strip_prefix("ok ").unwrap();
    assert_eq!(
        lines[0].strip_prefix("fail ").unwrap(),
        path,
        "same file retried"
    );
    assert!(
        path.contains("/sealed/") && path.ends_with(".arc.gz"),
        "{path}"
    );
    assert!(!Path::new(path).exists(), "hook deleted it");
    // The record's file is gone: once the hand-off has noticed, it stops being a hit...
    let deadline = Instant::now() + Duration::from_secs(5);
    while get(
        proxy.addr,
        &origin.url("/a"),
        "Cache-Control: only-if-cached\r\n",
    )
    .status
        != 504
    {
        assert!(
            Instant::now() < deadline,
            "record still served after its file was deleted"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // ...and the URL is fetched again.
    assert_eq!(
        get(proxy.addr, &origin.url("/a"), "")
            .header("x-cache")
            .as_deref(),
        Some("MISS")
    );
    assert_eq!(origin.hits("/a"), 2);
    // Shutdown seals the new file and hands it off too.
    get(proxy.addr, &origin.url("/b"), "");
    let mut proxy = proxy;
    assert!(proxy.terminate().success());
    let text = fs::read_to_string(&log).unwrap();
    let oks: Vec<&str> = text.lines().filter(|l| l.starts_with("ok ")).collect();
    assert_eq!(oks.len(), 2, "{text}");
    assert_ne!(oks[0], oks[1]);
}

#[test]
fn sigterm_finishes_in_flight_requests_and_seals() {
    let origin = Origin::start();
    let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow".to_vec();
    for i in 0..4 {
        origin.route(
            &format!("/s{i}"),
            Behavior::Delay(Duration::from_millis(800), raw.clone()),
        );
    }
    let mut proxy = Proxy::start(&[]);
    let addr = proxy.addr;
    let clients: Vec<_> = (0..4)
        .map(|i| {
            let url = origin.url(&format!("/s{i}"));
            std::thread::spawn(move || get(addr, &url, ""))
        })
        .collect();
    // In flight: every fetch has reached the origin (which holds each reply 800 ms).
    let deadline = Instant::now() + Duration::from_secs(10);
    while (0..4).any(|i| origin.hits(&format!("/s{i}")) == 0) {
        assert!(Instant::now() < deadline, "the fetches never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    proxy.signal_term();
    for c in clients {
        let r = c.join().unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.record().1, raw);
    }
    assert!(proxy.wait_exit().success(), "exit code 0");
    let data = proxy.data_dir.clone();
    assert!(open_arcs(&data).is_empty());
    let urls: Vec<String> = sealed_arcs(&data)
        .iter()
        .flat_map(|a| check_cdx(a))
        .collect();
    assert_eq!(urls.len(), 4);
    assert_warcio_clean(&data);
}

#[test]
fn hand_truncated_file_is_cut_to_last_whole_record() {
    let origin = Origin::start();
    origin.ok_numbered("/t", 3, "record");
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let proxy = Proxy::start_in(&data, &["--workers", "1"]);
    let replies: Vec<Reply> = (0..3)
        .map(|i| get(proxy.addr, &origin.url(&format!("/t{i}")), ""))
        .collect();
    proxy.finish();
    // Put the sealed file back as if it were left open by a crash, torn inside the last member.
    let sealed = sealed_arcs(&data).pop().unwrap();
    let bytes = fs::read(&sealed).unwrap();
    let last_len = replies[2].body.len();
    let open = data.join("0").join(sealed.file_name().unwrap());
    fs::write(&open, &bytes[..bytes.len() - last_len / 2]).unwrap();
    fs::remove_file(&sealed).unwrap();
    fs::remove_file(cdx_of(&sealed)).unwrap();

    let proxy = Proxy::start_in(&data, &["--workers", "1"]);
    assert!(
        proxy.log_text().contains(&format!(
            "cut by {} bytes",
            bytes.len() - last_len / 2 - (bytes.len() - last_len)
        )),
        "{}",
        proxy.log_text()
    );
    for (i, r) in replies.iter().enumerate().take(2) {
        let again = get(proxy.addr, &origin.url(&format!("/t{i}")), "");
        assert_eq!(again.header("x-cache").as_deref(), Some("HIT"));
        assert_eq!(again.body, r.body, "byte-identical after recovery");
    }
    let again = get(proxy.addr, &origin.url("/t2"), "");
    assert_eq!(
        again.header("x-cache").as_deref(),
        Some("MISS"),
        "the torn record is gone"
    );
    assert_eq!(again.record().1, replies[2].record().1);
    proxy.finish();
}

#[test]
fn a_second_instance_is_refused_on_the_same_data_dir_or_address() {
    let proxy = Proxy::start(&["--workers", "1"]);
    let other_dir = tempfile::tempdir().expect("tempdir");
    let run = |listen: String, dir: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_liveweb"))
            .args(["--listen", &listen, "--data-dir"])
            .arg(dir)
            .output()
            .expect("run liveweb")
    };
    // Same data dir, another port: recovery must not touch the running instance's files.
    let same_dir = run("127.0.0.1:0".into(), &proxy.data_dir);
    assert!(!same_dir.status.success());
    let err = String::from_utf8_lossy(&same_dir.stderr);
    assert!(err.contains("is in use by another liveweb"), "{err}");
    // Same address, another data dir: SO_REUSEPORT would otherwise share the port silently.
    let same_addr = run(proxy.addr.to_string(), other_dir.path());
    assert!(!same_addr.status.success());
    let err = String::from_utf8_lossy(&same_addr.stderr);
    assert!(err.contains("already in use"), "{err}");
    // The first instance is untouched and still answers.
    let r = send_raw(
        proxy.addr,
        b"GET /_liveweb/health HTTP/1.1\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    let data = proxy.data_dir.clone();
    let _keep = proxy.finish();
    // Once it has stopped, the directory is free again.
    let proxy = Proxy::start_in(&data, &["--workers", "1"]);
    proxy.finish();
}

/// During a long start-up recovery nothing listens (a client is refused at once rather than
/// left in a backlog), and SIGTERM ends the process with status 0; the next start recovers
/// everything.
#[test]
fn during_recovery_connections_are_refused_and_sigterm_exits_cleanly() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let origin = Origin::start();
    let body = origin.ok("/kept", "text/plain", b"kept across a stopped recovery");
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let proxy = Proxy::start_in(&data, &[]);
    let first = get(proxy.addr, &origin.url("/kept"), "");
    assert_eq!(first.status, 200);
    // Left open, so the recovery below has a file to repair.
    proxy.kill9();

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_liveweb"))
        .args(["--listen", &listen, "--data-dir"])
        .arg(&data)
        .args(["--allow-upstream", "127.0.0.0/8"])
        .env("LIVEWEB_FAULT_RECOVERY_DELAY_MS", "60000")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut log = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    while !seen.contains("liveweb: recovering") {
        assert!(
            log.read_line(&mut seen).unwrap() > 0,
            "exited early: {seen}"
        );
    }
    let refused = std::net::TcpStream::connect(&listen).unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    let asked = Instant::now();
    // SAFETY: signalling our own child by PID.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut log, &mut rest);
    assert!(status.success(), "{status}; log:\n{seen}{rest}");
    assert!(
        asked.elapsed() < Duration::from_secs(20),
        "SIGTERM waited for recovery"
    );
    assert!(rest.contains("during start-up recovery"), "{seen}{rest}");

    let proxy = Proxy::start_in(&data, &[]);
    let hit = get(proxy.addr, &origin.url("/kept"), "");
    assert_eq!(
        hit.header("x-cache").as_deref(),
        Some("HIT"),
        "{}",
        proxy.log_text()
    );
    assert_eq!(hit.body, first.body);
    assert!(hit.body.len() > body.len(), "the record holds the response");
    let _keep = proxy.finish();
}

/// The file sealed at shutdown is handed to the hook even with an access log, whose flush
/// timer once kept the hand-off referenced so that shutdown skipped it.
#[test]
fn shutdown_hands_off_the_last_file_with_an_access_log_on() {
    let origin = Origin::start();
    origin.ok("/a", "text/plain", b"a");
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("hook.log");
    let hook = hook(dir.path(), &format!("echo ok \"$1\" >> {}", log.display()));
    let access = dir.path().join("access.log");
    let access = access.to_str().unwrap();
    let mut proxy = Proxy::start(&["--workers", "1", "--access-log", access, "--on-seal", &hook]);
    assert_eq!(get(proxy.addr, &origin.url("/a"), "").status, 200);
    assert!(proxy.terminate().success());
    let text = fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(text.lines().count(), 1, "{text}\n{}", proxy.log_text());
}

/// A forward-mode record to be revalidated whose file the hook has uploaded and deleted is
/// fetched whole again: a 304 for it would confirm a response nobody can read any more.
#[test]
fn a_stale_record_whose_file_was_handed_off_is_fetched_again_not_revalidated() {
    let origin = FnOrigin::start(no_cache_page);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("hook.log");
    let hook = hook(
        dir.path(),
        &format!("rm -f \"$1\"\necho ok \"$1\" >> {}", log.display()),
    );
    let proxy = Proxy::start(&[
        "--workers",
        "1",
        "--mode",
        "forward",
        "--arc-max-idle",
        "200ms",
        "--on-seal",
        &hook,
    ]);
    let url = origin.url("/p");
    assert_eq!(&get(proxy.addr, &url, "").body[..], b"the page");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !fs::read_to_string(&log).is_ok_and(|t| t.contains("ok ")) {
        assert!(Instant::now() < deadline, "the hook never ran");
        std::thread::sleep(Duration::from_millis(20));
    }
    for _ in 0..3 {
        let r = get(proxy.addr, &url, "");
        assert_eq!(
            (r.status, &r.body[..]),
            (200, &b"the page"[..]),
            "{}",
            r.head
        );
    }
    let received = origin.requests_for("/p");
    assert!(
        header_in(&received[1], "if-none-match").is_none(),
        "revalidated a record whose file is gone: {received:?}"
    );
    // Not even tried: under load a 304 for it failed every request for the URL.
    assert!(
        !proxy.log_text().contains("file is gone"),
        "{}",
        proxy.log_text()
    );
    proxy.finish();
}

/// An `--on-seal` command running the shell `body` (the sealed file is `$1`), written to
/// `dir/hook.sh`.
fn hook(dir: &Path, body: &str) -> String {
    let script = dir.join("hook.sh");
    fs::write(&script, format!("#!/bin/sh\n{body}\n")).unwrap();
    format!("sh {}", script.display())
}
