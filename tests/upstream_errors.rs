//! Upstream failures: each maps to its code and status, and in liveweb mode the reply body is
//! an archived ARC record of the failure.

mod common;

use common::*;
use std::net::TcpListener;

fn free_port() -> u16 {
    // Bind and drop: nothing listens there afterwards.
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn assert_failure_record(r: &Reply, status: u16, code: &str, ip: &str) {
    assert_eq!(r.status, status, "{}", r.head);
    assert_eq!(r.header("x-liveweb-error").as_deref(), Some(code));
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/arc-gz")
    );
    let (header, payload) = r.record();
    assert_eq!(header.split(' ').nth(1), Some(ip), "{header}");
    let text = String::from_utf8_lossy(&payload);
    assert!(text.starts_with(&format!("HTTP/1.1 {status} ")), "{text}");
    assert!(text.contains(code), "{text}");
}

#[test]
fn refused_port_is_502_e30_and_cached() {
    let proxy = Proxy::start(&[]);
    let url = format!("http://127.0.0.1:{}/x", free_port());
    let r = get(proxy.addr, &url, "");
    assert_failure_record(&r, 502, "E30 connection refused", "127.0.0.1");
    assert_eq!(r.header("x-cache").as_deref(), Some("MISS"));
    let again = get(proxy.addr, &url, "");
    assert_eq!(
        again.header("x-cache").as_deref(),
        Some("HIT"),
        "failures are cached for --error-ttl"
    );
    assert_eq!(again.body, r.body);
    proxy.finish();
}

#[test]
fn error_ttl_expires_failures() {
    let proxy = Proxy::start(&["--error-ttl", "200ms"]);
    let url = format!("http://127.0.0.1:{}/x", free_port());
    get(proxy.addr, &url, "");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(
        get(proxy.addr, &url, "").header("x-cache").as_deref(),
        Some("MISS")
    );
    proxy.finish();
}

#[test]
fn unresolvable_name_is_502_e20() {
    let proxy = Proxy::start(&[]);
    let r = get(proxy.addr, "http://no-such-host.invalid/", "");
    assert_failure_record(&r, 502, "E20 DNS failure", "0.0.0.0");
    proxy.finish();
}

#[test]
fn stalled_origin_is_504_first_byte_then_read_timeout() {
    let origin = Origin::start();
    origin.route("/silent", Behavior::SendThenStall(Vec::new()));
    origin.route(
        "/half",
        Behavior::SendThenStall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial".to_vec()),
    );
    let proxy = Proxy::start(&[]);
    let r = get(proxy.addr, &origin.url("/silent"), "");
    assert_failure_record(&r, 504, "E32 first-byte timeout", "127.0.0.1");
    let r = get(proxy.addr, &origin.url("/half"), "");
    assert_failure_record(&r, 504, "E33 read timeout", "127.0.0.1");
    proxy.finish();
}

#[test]
fn too_big_and_truncated_responses() {
    let origin = Origin::start();
    origin.ok("/big", "text/plain", &vec![b'x'; 4096]);
    let mut chunked_big = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..3 {
        chunked_big.extend_from_slice(b"800\r\n");
        chunked_big.extend_from_slice(&[b'y'; 0x800]);
        chunked_big.extend_from_slice(b"\r\n");
    }
    chunked_big.extend_from_slice(b"0\r\n\r\n");
    origin.route("/chunked-big", Behavior::Send(chunked_big));
    origin.route(
        "/short",
        Behavior::Send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this".to_vec()),
    );
    origin.route("/garbage", Behavior::Send(b"SMTP ready\r\n\r\n".to_vec()));
    let proxy = Proxy::start(&["--max-body", "2KB"]);
    for (path, code) in [
        ("/big", "E40 too big"),
        ("/chunked-big", "E40 too big"),
        ("/short", "E34 connection dropped"),
        ("/garbage", "E35 invalid response"),
    ] {
        assert_failure_record(
            &get(proxy.addr, &origin.url(path), ""),
            502,
            code,
            "127.0.0.1",
        );
    }
    proxy.finish();
}

#[test]
fn loopback_upstream_denied_without_allow() {
    let origin = Origin::start();
    origin.ok("/p", "text/plain", b"x");
    let proxy = Proxy::start_raw(&["--workers", "1"]);
    let r = get(proxy.addr, &origin.url("/p"), "");
    assert_eq!(r.status, 403);
    assert_eq!(
        r.header("x-liveweb-error").as_deref(),
        Some("E11 upstream address not allowed")
    );
    let r = get(proxy.addr, "http://localhost:1/", "");
    assert_eq!(r.status, 403, "a name resolving to loopback is denied too");
    let r = get(proxy.addr, "http://169.254.169.254/latest/meta-data/", "");
    assert_eq!(r.status, 403);
    assert_eq!(origin.hits("/p"), 0);
    proxy.finish();
}

/// Runs liveweb inside a new network namespace with only loopback (no route out, so nothing
/// can leave the machine), asks it for each of `targets` with curl from inside the same
/// namespace, and returns each reply's status and X-Liveweb-Error.
fn in_isolated_netns(extra: &[&str], targets: &[&str]) -> Vec<(String, String)> {
    let dir = tempfile::tempdir().unwrap();
    let script = r#"
        set -eu
        ip link set lo up
        "$LIVEWEB" --listen 127.0.0.1:0 --data-dir "$DIR/data" --workers 1 --connect-timeout 2s "$@" 2> "$DIR/log" &
        pid=$!
        trap 'kill $pid 2>/dev/null' EXIT
        # Wait for the listening line (liveweb prints it once bound).
        for _ in $(seq 400); do grep -q 'listening on' "$DIR/log" && break; sleep 0.025; done
        addr=$(grep -o 'listening on [0-9.:]*' "$DIR/log" | awk '{print $3}')
        while read -r target; do
            curl -s -o /dev/null -D - --max-time 10 -x "http://$addr" "$target" \
              | tr -d '\r' | awk -v t="$target" 'NR==1 {s=$2} tolower($1)=="x-liveweb-error:" {e=$2} END {print t, s, e}'
        done < "$DIR/targets"
    "#;
    std::fs::write(dir.path().join("targets"), targets.join("\n") + "\n").unwrap();
    let out = std::process::Command::new("unshare")
        .args(["-rn", "bash", "-c", script, "netns"])
        .args(extra)
        .env("LIVEWEB", env!("CARGO_BIN_EXE_liveweb"))
        .env("DIR", dir.path())
        .output()
        .expect("unshare (util-linux) must be installed");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "netns run failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<(String, String)> = text
        .lines()
        .map(|l| {
            let mut w = l.split_whitespace().skip(1);
            (
                w.next().unwrap_or("").to_string(),
                w.next().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(lines.len(), targets.len(), "{text}");
    lines
}

/// The default deny list is the special-purpose registries: documentation, benchmarking,
/// IETF protocol and Teredo blocks are refused before any connection (403 E11); with
/// `--allow-upstream` they are tried (and, with no route out of the namespace, fail to
/// connect: E30). Nothing leaves the machine either way.
#[test]
fn special_purpose_ranges_are_refused_unless_allowed() {
    let targets = [
        "http://192.0.0.1/",
        "http://198.18.0.1/",
        "http://192.0.2.1/",
        "http://198.51.100.1/",
        "http://203.0.113.1/",
        "http://[2001::1]/",
        "http://[2001:db8::1]/",
    ];
    for (target, (status, code)) in targets.iter().zip(in_isolated_netns(&[], &targets)) {
        assert_eq!((status.as_str(), code.as_str()), ("403", "E11"), "{target}");
    }
    let allow = [
        "--allow-upstream",
        "192.0.0.0/24",
        "--allow-upstream",
        "198.18.0.0/15",
        "--allow-upstream",
        "192.0.2.0/24",
        "--allow-upstream",
        "198.51.100.0/24",
        "--allow-upstream",
        "203.0.113.0/24",
        "--allow-upstream",
        "2001::/32",
        "--allow-upstream",
        "2001:db8::/32",
    ];
    for (target, (status, code)) in targets.iter().zip(in_isolated_netns(&allow, &targets)) {
        assert_eq!((status.as_str(), code.as_str()), ("502", "E30"), "{target}");
    }
}
