//! Nothing answered is lost, and nothing of liveweb's leaks: `--on-seal` hooks inherit only
//! stdin, stdout and stderr, even while traffic runs, and a liveweb killed while a hook runs
//! starts again on the same address at once and serves.

mod common;

use std::fs;
use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

/// Waits until `path` has at least `n` lines; returns them.
fn wait_lines(path: &Path, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(Instant::now() < deadline, "{}: {text:?}", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A hook that lists its own descriptors, run for every seal while clients hold connections
/// open and fetches keep sealing small files: it never sees one of liveweb's.
#[test]
fn on_seal_hooks_inherit_only_the_standard_streams() {
    let origin = Origin::start();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("fds.log");
    let script = dir.path().join("hook.sh");
    // `ls` lists the hook shell's descriptors (its parent's, so none of its own), one
    // hook's listing per line.
    fs::write(
        &script,
        format!(
            "#!/bin/sh\nls -l /proc/$$/fd > {log}.$$\nawk '/->/ {{printf \"%s=%s \", $(NF-2), $NF}} END {{print \"\"}}' {log}.$$ >> {log}\n",
            log = log.display()
        ),
    )
    .unwrap();
    let hook = format!("sh {}", script.display());
    let proxy = Proxy::start(&["--arc-max-size", "4KB", "--on-seal", &hook]);
    // Connections held open through the whole run, on both workers.
    let mut held: Vec<TcpStream> = (0..16)
        .map(|_| TcpStream::connect(proxy.addr).unwrap())
        .collect();
    for (i, conn) in held.iter_mut().enumerate() {
        conn.write_all(
            format!(
                "GET {} HTTP/1.1\r\nHost: x\r\n\r\n",
                origin.url(&format!("/echo/held{i}"))
            )
            .as_bytes(),
        )
        .unwrap();
    }
    // Misses that seal a file every few records, each seal running the hook.
    let mut i = 0;
    while fs::read_to_string(&log).unwrap_or_default().lines().count() < 10 {
        assert_eq!(
            get(proxy.addr, &origin.url(&format!("/echo/{i}")), "").status,
            200
        );
        i += 1;
        assert!(i < 5000, "the hook never ran");
    }
    let data = proxy.data_dir.to_string_lossy().into_owned();
    for line in wait_lines(&log, 10) {
        for fd in line.split_whitespace() {
            let (number, target) = fd.split_once('=').unwrap();
            if ["0", "1", "2"].contains(&number) {
                continue;
            }
            // Beyond the standard streams only what the shell opens itself (its script,
            // saved copies of its streams), never a socket, a pipe, a ring or a file of
            // liveweb's.
            let leaked = ["socket:", "pipe:", "anon_inode:"]
                .iter()
                .any(|kind| target.starts_with(kind))
                || target.starts_with(&data);
            assert!(!leaked, "the hook inherited {fd}: {line}");
        }
    }
    drop(held);
    proxy.finish();
}

/// liveweb killed (kill -9) while a slow hook runs (an upload takes minutes): started again
/// on the same address and data directory at once, it starts (waiting out the dead
/// process's sockets) and serves every connection.
#[test]
fn a_restart_after_kill_9_while_a_hook_runs_serves() {
    let origin = Origin::start();
    origin.ok("/a", "text/plain", b"a");
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let script = dir.path().join("slow.sh");
    fs::write(
        &script,
        format!(
            "#!/bin/sh\nsleep 60 &\necho $! >> {pids}\necho $$ >> {pids}\nwait\n",
            pids = pids.display()
        ),
    )
    .unwrap();
    let hook = format!("sh {}", script.display());
    let data = dir.path().join("data");
    let listen = free_addr();
    let args = [
        "--workers",
        "2",
        "--arc-max-idle",
        "100ms",
        "--on-seal",
        hook.as_str(),
    ];
    let proxy = Proxy::start_at(listen, &data, &args);
    // Connections open while the hook starts.
    let held: Vec<TcpStream> = (0..8)
        .map(|_| TcpStream::connect(listen).unwrap())
        .collect();
    assert_eq!(get(listen, &origin.url("/a"), "").status, 200);
    wait_lines(&pids, 2);
    proxy.kill9();
    drop(held);

    let again = Proxy::start_at(listen, &data, &args);
    for _ in 0..20 {
        let r = send_raw(
            listen,
            b"GET /_liveweb/health HTTP/1.1\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(r.status, 200);
    }
    assert_eq!(
        get(listen, &origin.url("/a"), "")
            .header("x-cache")
            .as_deref(),
        Some("HIT"),
        "the record answered before the crash is still there"
    );
    again.kill9();
    // The hooks' processes (from both runs) are ours to end.
    for pid in fs::read_to_string(&pids).unwrap().lines() {
        if let Ok(pid) = pid.trim().parse::<i32>() {
            // SAFETY: signalling processes this test's hook started, by PID.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// The URLs a data directory's sealed CDX files list.
fn sealed_urls(data: &Path) -> Vec<String> {
    files_ending(&data.join("sealed"), ".cdx")
        .iter()
        .flat_map(|p| {
            fs::read_to_string(p)
                .unwrap()
                .lines()
                .skip(1)
                .filter_map(|l| l.split(' ').nth(2).map(str::to_string))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// SIGTERM right after forward-mode replies (a big body, whose record is still being
/// compressed when the client has it all, and many small ones): every reply's record is in
/// the sealed files when the process has exited.
#[test]
fn sigterm_right_after_forward_replies_loses_no_record() {
    let origin = Origin::start();
    let big = incompressible(24 << 20, 7);
    origin.ok("/big", "application/octet-stream", &big);
    for i in 0..40 {
        origin.ok(
            &format!("/small{i}"),
            "application/octet-stream",
            &incompressible(256 << 10, i),
        );
    }
    let mut proxy = Proxy::start(&["--mode", "forward", "--max-body", "64MB"]);
    let r = get(proxy.addr, &origin.url("/big"), "");
    assert_eq!((r.status, r.body.len()), (200, big.len()));
    proxy.signal_term();
    assert!(proxy.wait_exit().success(), "{}", proxy.log_text());
    let urls = sealed_urls(&proxy.data_dir);
    assert!(
        urls.contains(&origin.url("/big")),
        "{urls:?}\n{}",
        proxy.log_text()
    );

    let mut proxy = Proxy::start(&["--mode", "forward"]);
    let replies: Vec<std::thread::JoinHandle<()>> = (0..40)
        .map(|i| {
            let (addr, url) = (proxy.addr, origin.url(&format!("/small{i}")));
            std::thread::spawn(move || assert_eq!(get(addr, &url, "").status, 200))
        })
        .collect();
    for r in replies {
        r.join().unwrap();
    }
    proxy.signal_term();
    assert!(proxy.wait_exit().success());
    let urls = sealed_urls(&proxy.data_dir);
    for i in 0..40 {
        assert!(
            urls.contains(&origin.url(&format!("/small{i}"))),
            "small{i}: {urls:?}"
        );
    }
}

/// kill -9 right after forward-mode replies: every URL whose reply completed is recovered,
/// since a reply's last bytes leave only once its record is written. Checked in liveweb mode
/// (`only-if-cached`) after the restart.
#[test]
fn kill_9_right_after_forward_replies_loses_no_record() {
    let origin = Origin::start();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let proxy = Proxy::start_in(&data, &["--mode", "forward"]);
    let addr = proxy.addr;
    let answered: Vec<String> = (0..4)
        .map(|t| {
            let url = origin.url(&format!("/echo/t{t}-"));
            std::thread::spawn(move || {
                (0..50)
                    .map(|i| {
                        let url = format!("{url}{i}");
                        let r = get(addr, &url, "");
                        assert_eq!(r.status, 200);
                        url
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    // A big one last, whose record takes longest to write.
    let big = incompressible(8 << 20, 3);
    origin.ok("/big", "application/octet-stream", &big);
    assert_eq!(get(addr, &origin.url("/big"), "").body.len(), big.len());
    proxy.kill9();

    let again = Proxy::start_in(&data, &[]);
    for url in answered.iter().chain([&origin.url("/big")]) {
        let r = get(again.addr, url, "Cache-Control: only-if-cached\r\n");
        assert_eq!(
            r.status,
            200,
            "{url} was answered, then lost: {}",
            again.log_text()
        );
    }
    again.finish();
}
