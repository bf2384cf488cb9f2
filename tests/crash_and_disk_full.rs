//! Crash safety and a full disk, on the real binary: kill -9 under load and restart, again
//! and again; a data directory on a tiny tmpfs the test mounts (CI runs as root).

mod common;

use common::*;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// (URL, reply body) pairs.
type Answered = Vec<(String, Vec<u8>)>;

#[test]
fn kill9_under_load_loses_nothing_that_was_answered() {
    let origin = Origin::start();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // Every (url, reply body) a client received completely, across all cycles.
    let answered: Arc<Mutex<Answered>> = Arc::default();
    for cycle in 0..5 {
        let proxy = Proxy::start_in(&data, &[]);
        verify_hits(&proxy, &answered.lock().unwrap());
        let stop_at = Instant::now() + Duration::from_millis(400);
        let clients: Vec<_> = (0..8)
            .map(|t| {
                let (addr, url_base, answered) =
                    (proxy.addr, origin.url("/echo/"), answered.clone());
                std::thread::spawn(move || {
                    let mut n = 0;
                    while Instant::now() < stop_at + Duration::from_millis(200) {
                        let url = format!("{url_base}c{cycle}-t{t}-n{n}");
                        n += 1;
                        // Replies cut by the kill are not "answered"; the reader fails on them.
                        let reply = std::panic::catch_unwind(|| get(addr, &url, ""));
                        match reply {
                            Ok(r) if r.status == 200 => {
                                answered.lock().unwrap().push((url, r.body))
                            }
                            _ => break,
                        }
                    }
                })
            })
            .collect();
        while Instant::now() < stop_at {
            std::thread::sleep(Duration::from_millis(20));
        }
        proxy.kill9();
        for c in clients {
            c.join().unwrap();
        }
    }
    let total = answered.lock().unwrap().len();
    assert!(
        total > 100,
        "the load produced only {total} answered misses"
    );
    let proxy = Proxy::start_in(&data, &[]);
    verify_hits(&proxy, &answered.lock().unwrap());
    let _keep = proxy.finish();
}

/// Every answered URL is a hit whose record is byte-identical to the first reply.
fn verify_hits(proxy: &Proxy, answered: &[(String, Vec<u8>)]) {
    let mut conn = connect(proxy.addr);
    for (url, body) in answered {
        use std::io::Write;
        conn.get_mut()
            .write_all(
                format!("GET {url} HTTP/1.1\r\nCache-Control: only-if-cached\r\n\r\n").as_bytes(),
            )
            .unwrap();
        let r = read_reply(&mut conn, false);
        assert_eq!(
            r.status,
            200,
            "{url} lost after a crash; log:\n{}",
            proxy.log_text()
        );
        assert_eq!(r.header("x-cache").as_deref(), Some("HIT"));
        assert_eq!(&r.body, body, "{url} changed after a crash");
    }
}

/// A tmpfs mounted for the test, unmounted on drop.
struct TmpfsMount {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl TmpfsMount {
    fn new(size: &str) -> TmpfsMount {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mnt");
        std::fs::create_dir(&path).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(
            ok,
            "mounting a tmpfs failed: this test needs root (CI runs as root)"
        );
        TmpfsMount { path, _dir: dir }
    }

    fn resize(&self, size: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.path)
            .status()
            .unwrap()
            .success();
        assert!(ok, "remount failed");
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

/// Requests `url` (or, with `fresh`, a new URL under it each time, so an earlier success
/// does not turn into a hit) until the status is `status` or 5 s pass.
fn wait_for_status(proxy: &Proxy, url: &str, status: u16, fresh: bool) -> Reply {
    let deadline = Instant::now() + Duration::from_secs(5);
    for n in 0.. {
        let target = if fresh {
            format!("{url}{n}")
        } else {
            url.to_string()
        };
        let r = get(proxy.addr, &target, "");
        if r.status == status || Instant::now() > deadline {
            return r;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    unreachable!()
}

#[test]
fn full_disk_pauses_archiving_keeps_hits_and_recovers() {
    let origin = Origin::start();
    for i in 0..40 {
        origin.ok(
            &format!("/big{i}"),
            "application/octet-stream",
            &incompressible(150_000, i),
        );
    }
    let mnt = TmpfsMount::new("1m");
    let data = mnt.path.join("data");
    let proxy = Proxy::start_in(&data, &["--workers", "1", "--min-free", "0"]);
    let mut stored = Vec::new();
    let mut refused = None;
    for i in 0..40 {
        let url = origin.url(&format!("/big{i}"));
        let r = get(proxy.addr, &url, "");
        match r.status {
            200 => stored.push((url, r.body)),
            _ => {
                refused = Some(r);
                break;
            }
        }
    }
    let refused = refused.expect("a 1 MB disk fills up");
    assert_eq!(refused.status, 503, "{}", refused.head);
    assert_eq!(
        refused.header("x-liveweb-error").as_deref(),
        Some("E50 storage failure")
    );
    assert_eq!(refused.header("retry-after").as_deref(), Some("30"));
    assert!(!stored.is_empty());
    // Hits are still served, byte-identical.
    for (url, body) in &stored {
        let r = get(proxy.addr, url, "");
        assert_eq!(r.status, 200);
        assert_eq!(&r.body, body);
    }
    // While paused, a miss is refused without fetching.
    let fresh = origin.url("/big39");
    assert_eq!(get(proxy.addr, &fresh, "").status, 503);
    assert_eq!(
        origin.hits("/big39"),
        0,
        "no fetch while archiving is paused"
    );
    // Space comes back, less than 4 MiB of it but more than the failed write: archiving
    // resumes by itself (--min-free 0 plus one write).
    mnt.resize("2m");
    let r = wait_for_status(&proxy, &fresh, 200, false);
    assert_eq!(
        r.status,
        200,
        "archiving resumed; log:\n{}",
        proxy.log_text()
    );
    assert!(proxy.log_text().contains("archiving resumed"));
    let _keep = proxy.finish();
    assert_warcio_clean(&data);
}

#[test]
fn min_free_pauses_archiving_before_the_disk_is_full() {
    let origin = Origin::start();
    let mnt = TmpfsMount::new("1m");
    let data = mnt.path.join("data");
    let started = std::time::Instant::now();
    let proxy = Proxy::start_in(&data, &["--workers", "1", "--min-free", "2MB"]);
    let r = wait_for_status(&proxy, &origin.url("/echo/before-"), 503, true);
    assert_eq!(r.status, 503);
    assert_eq!(
        r.header("x-liveweb-error").as_deref(),
        Some("E50 storage failure")
    );
    // Every miss is refused while paused; the log says so about once a second, not once
    // per request.
    for i in 0..60 {
        let r = get(proxy.addr, &origin.url(&format!("/echo/flood-{i}")), "");
        assert_eq!(r.status, 503);
    }
    let logged = proxy.log_text().matches("E50 storage failure").count();
    let seconds = started.elapsed().as_secs() as usize;
    assert!(
        logged <= seconds + 2,
        "{logged} E50 lines in {seconds} s:\n{}",
        proxy.log_text()
    );
    mnt.resize("8m");
    let r = wait_for_status(&proxy, &origin.url("/echo/after-"), 200, true);
    assert_eq!(r.status, 200);
    let _keep = proxy.finish();
}

#[test]
fn a_failed_first_write_still_leaves_a_file_that_starts_with_filedesc() {
    let origin = Origin::start();
    origin.ok(
        "/huge",
        "application/octet-stream",
        &incompressible(1_500_000, 1),
    );
    origin.ok("/small", "text/plain", b"small");
    let mnt = TmpfsMount::new("1m");
    let data = mnt.path.join("data");
    let proxy = Proxy::start_in(&data, &["--workers", "1", "--min-free", "0"]);
    // The first write of the file (filedesc + this record) does not fit.
    assert_eq!(get(proxy.addr, &origin.url("/huge"), "").status, 503);
    mnt.resize("8m");
    let r = wait_for_status(&proxy, &origin.url("/small"), 200, false);
    assert_eq!(r.status, 200);
    let _keep = proxy.finish();
    let mut arcs = Vec::new();
    collect_arcs(&data, &mut arcs);
    assert_eq!(arcs.len(), 1);
    let first = gunzip_first_member(&std::fs::read(&arcs[0]).unwrap());
    assert!(
        first.starts_with(b"filedesc://"),
        "{:?}",
        String::from_utf8_lossy(&first[..40.min(first.len())])
    );
}

fn gunzip_first_member(data: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[test]
fn a_failed_fdatasync_under_fsync_always_is_never_acknowledged() {
    let origin = Origin::start();
    origin.ok_numbered("/s", 3, "synced");
    // The first fdatasync succeeds, every later one fails with EIO (debug-build hook).
    let proxy = Proxy::start_env(
        &["--workers", "1", "--fsync", "always"],
        &[("LIVEWEB_FAULT_FDATASYNC_AFTER", "1")],
    );
    let ok = get(proxy.addr, &origin.url("/s0"), "");
    assert_eq!(ok.status, 200);
    for path in ["/s1", "/s2"] {
        let r = get(proxy.addr, &origin.url(path), "");
        assert_eq!(r.status, 503, "{path}: {}", r.head);
        assert_eq!(
            r.header("x-liveweb-error").as_deref(),
            Some("E50 storage failure")
        );
        // Nothing was indexed for it.
        let cached = get(
            proxy.addr,
            &origin.url(path),
            "Cache-Control: only-if-cached\r\n",
        );
        assert_eq!(cached.status, 504);
    }
    assert_eq!(
        get(proxy.addr, &origin.url("/s0"), "")
            .header("x-cache")
            .as_deref(),
        Some("HIT")
    );
    assert!(
        proxy
            .log_text()
            .contains("poisoned by the failed fdatasync"),
        "{}",
        proxy.log_text()
    );
    let data = proxy.data_dir.clone();
    let _keep = proxy.finish();
    // The poisoned file was cut back to its acknowledged record and sealed; the unacknowledged
    // records are in no ARC file.
    let mut arcs = Vec::new();
    collect_arcs(&data, &mut arcs);
    let mut urls = Vec::new();
    for arc in &arcs {
        let bytes = std::fs::read(arc).unwrap();
        let mut rest: &[u8] = &bytes;
        while !rest.is_empty() {
            let mut dec = flate2::bufread::GzDecoder::new(rest);
            let mut plain = Vec::new();
            std::io::Read::read_to_end(&mut dec, &mut plain).unwrap();
            let used = rest.len() - dec.into_inner().len();
            rest = &rest[used..];
            urls.push(
                String::from_utf8_lossy(&plain[..plain.iter().position(|&b| b == b' ').unwrap()])
                    .into_owned(),
            );
        }
    }
    assert!(urls.iter().any(|u| u.ends_with("/s0")), "{urls:?}");
    assert!(
        !urls
            .iter()
            .any(|u| u.ends_with("/s1") || u.ends_with("/s2")),
        "{urls:?}"
    );
}

/// A power cut in the middle of a write, on a device that garbles every sector the cut
/// interrupts: under `--fsync always` no acknowledged byte shares a block with a later write,
/// so every answered record survives, byte-identical (gzip and plain records).
#[test]
fn a_garbled_write_under_fsync_always_loses_no_acknowledged_record() {
    let origin = Origin::start();
    origin.ok_numbered("/g", 4, "small enough to share a block");
    for gzip in ["true", "false"] {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let args = ["--workers", "1", "--fsync", "always", "--arc-gzip", gzip];
        // Three writes land (the first carries the filedesc record); the fourth is garbled
        // and the process dies before answering (debug-build hook).
        let mut proxy =
            Proxy::start_in_env(&data, &args, &[("LIVEWEB_FAULT_GARBLE_WRITE_AFTER", "3")]);
        let mut answered = Vec::new();
        for i in 0..3 {
            let url = origin.url(&format!("/g{i}"));
            let r = get(proxy.addr, &url, "");
            assert_eq!(r.status, 200, "{}", r.head);
            answered.push((url, r.body));
        }
        let cut = send_until_close(
            proxy.addr,
            format!("GET {} HTTP/1.1\r\nHost: x\r\n\r\n", origin.url("/g3")).as_bytes(),
        );
        assert!(cut.is_empty(), "the garbled write was answered");
        assert!(!proxy.wait_exit().success());
        assert!(proxy.log_text().contains("garbled"), "{}", proxy.log_text());
        let proxy = Proxy::start_in(&data, &args);
        verify_hits(&proxy, &answered);
        let lost = get(
            proxy.addr,
            &origin.url("/g3"),
            "Cache-Control: only-if-cached\r\n",
        );
        assert_eq!(lost.status, 504);
        let _keep = proxy.finish();
    }
}
