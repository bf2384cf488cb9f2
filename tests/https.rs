//! `https://` origins: fetched over TLS in both reply shapes, archived under the https URL,
//! pooled (the origin counts handshakes), and every certificate or handshake failure answered
//! with its own E-code and archived as a failure record.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::Ordering;

use common::tls::{valid_origin, TestCa, TlsOrigin};
use common::{assert_warcio_clean, get, Proxy};

/// A plain HTTP server that answers whatever arrives with a 400 and closes.
fn plain_http_origin() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut buf = [0u8; 1024];
            let _ = conn.read(&mut buf);
            let _ = conn.write_all(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    });
    addr
}

/// A TCP listener that accepts and then says nothing (a TLS handshake never completes).
fn silent_origin() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            held.push(conn);
        }
    });
    addr
}

/// liveweb trusting `ca` (`--upstream-ca`) with `extra` flags, and the directory holding the
/// CA file.
fn proxy_trusting(ca: &TestCa, extra: &[&str]) -> (Proxy, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let ca_file = ca.write(dir.path());
    let mut args = vec!["--upstream-ca", ca_file.to_str().unwrap()];
    args.extend_from_slice(extra);
    (Proxy::start(&args), dir)
}

#[test]
fn https_urls_are_fetched_over_tls_archived_and_served_again_in_both_shapes() {
    let ca = TestCa::new("liveweb test CA");
    let origin = valid_origin(&ca);
    let (proxy, _dir) = proxy_trusting(&ca, &["--workers", "1"]);

    let url = origin.url("localhost", "/page");
    let first = get(proxy.addr, &url, "");
    assert_eq!(first.status, 200, "{}", first.head);
    assert_eq!(first.header("x-cache").as_deref(), Some("MISS"));
    let (header, payload) = first.record();
    assert!(header.starts_with(&format!("{url} 127.0.0.1 ")), "{header}");
    let payload = String::from_utf8_lossy(&payload).to_string();
    assert!(payload.starts_with("HTTP/1.1 200 OK\r\n"), "{payload}");
    assert!(payload.ends_with("\r\n\r\nbody of /page"), "{payload}");
    let again = get(proxy.addr, &url, "");
    assert_eq!(again.header("x-cache").as_deref(), Some("HIT"));
    assert_eq!(again.body, first.body);

    // Forward mode: the origin's own response, from the same record.
    let forward = get(proxy.addr, &url, "X-Liveweb-Mode: forward\r\n");
    assert_eq!(forward.status, 200);
    assert_eq!(forward.body, b"body of /page");
    assert_eq!(forward.header("x-cache").as_deref(), Some("HIT"));
    let fresh = get(
        proxy.addr,
        &origin.url("127.0.0.1", "/by-ip"),
        "X-Liveweb-Mode: forward\r\n",
    );
    assert_eq!(fresh.status, 200, "{}", fresh.head);
    assert_eq!(fresh.body, b"body of /by-ip");
    assert_eq!(origin.requests_for("/page"), 1);
    for path in ["/a", "/b", "/c"] {
        assert_eq!(
            get(proxy.addr, &origin.url("localhost", path), "").status,
            200
        );
    }

    // An http URL with the same host, port and path is another key: not this record.
    let plain = get(
        proxy.addr,
        &format!("http://localhost:{}/page", origin.addr.port()),
        "",
    );
    assert_ne!(plain.header("x-cache").as_deref(), Some("HIT"));
    assert_ne!(plain.status, 200);

    // Five fetches over two host names, one worker: one TLS connection per name, kept alive
    // between fetches.
    assert_eq!(origin.handshakes.load(Ordering::SeqCst), 2);
    let dir = proxy.finish().expect("data dir");
    assert_warcio_clean(dir.path());
}

#[test]
fn requests_other_than_get_pass_through_over_tls() {
    let ca = TestCa::new("liveweb test CA");
    let origin = valid_origin(&ca);
    let (proxy, _dir) = proxy_trusting(&ca, &[]);
    let url = origin.url("localhost", "/submit");
    let reply = common::send_raw(
        proxy.addr,
        format!(
            "POST {url} HTTP/1.1\r\nHost: x\r\nX-Liveweb-Mode: forward\r\nContent-Length: 11\r\nConnection: close\r\n\r\nhello world"
        )
        .as_bytes(),
    );
    assert_eq!(reply.status, 200, "{}", reply.head);
    assert_eq!(reply.body, b"hello world");
    assert_eq!(origin.requests_for("/submit"), 1);
}

/// The liveweb-mode reply to `url`: its status, its code and the archived failure's payload.
fn failure(proxy: &Proxy, url: &str) -> (u16, String, String) {
    let reply = get(proxy.addr, url, "");
    let code = reply.header("x-liveweb-error").unwrap_or_default();
    let (_, payload) = reply.record();
    (
        reply.status,
        code,
        String::from_utf8_lossy(&payload).to_string(),
    )
}

#[test]
fn certificate_failures_have_their_own_code_and_say_which_check_failed() {
    let ca = TestCa::new("liveweb test CA");
    let (proxy, _dir) = proxy_trusting(&ca, &["--connect-timeout", "1s"]);
    let expired = {
        let (cert, key) = ca.leaf(&["localhost"], (-30, -1));
        TlsOrigin::start(&cert, &key)
    };
    let wrong_host = {
        let (cert, key) = ca.leaf(&["other.test"], (-1, 30));
        TlsOrigin::start(&cert, &key)
    };
    let unknown_issuer = {
        let stranger = TestCa::new("someone else");
        let (cert, key) = stranger.leaf(&["localhost"], (-1, 30));
        TlsOrigin::start(&cert, &key)
    };
    let ca_as_leaf = {
        let (cert, key) = ca.own();
        TlsOrigin::start(&cert, &key)
    };
    let cases = [
        (expired.url("localhost", "/x"), "expired"),
        (
            ca_as_leaf.url("localhost", "/x"),
            "E37 certificate invalid: the server presented a CA certificate as its own",
        ),
        (
            wrong_host.url("localhost", "/x"),
            "not valid for this host name",
        ),
        (unknown_issuer.url("localhost", "/x"), "unknown issuer"),
    ];
    for (url, why) in cases {
        let (status, code, body) = failure(&proxy, &url);
        assert_eq!(status, 502, "{url}: {body}");
        assert_eq!(code, "E37 certificate invalid", "{url}");
        assert!(body.contains(why), "{url}: {body}");
        // Archived and shared for --error-ttl, like the other upstream failures.
        let again = get(proxy.addr, &url, "");
        assert_eq!(again.header("x-cache").as_deref(), Some("HIT"), "{url}");
    }
    // Forward mode reports the same code (and archives nothing for it).
    let forward = get(
        proxy.addr,
        &expired.url("localhost", "/forward"),
        "X-Liveweb-Mode: forward\r\n",
    );
    assert_eq!(forward.status, 502);
    assert_eq!(
        forward.header("x-liveweb-error").as_deref(),
        Some("E37 certificate invalid")
    );
    assert_eq!(expired.requests_for("/x"), 0);

    // Plain HTTP on the https port (answers the ClientHello with a 400, as nginx does):
    // the handshake fails.
    let plain = plain_http_origin();
    let (status, code, _) = failure(&proxy, &format!("https://127.0.0.1:{}/x", plain.port()));
    assert_eq!((status, code.as_str()), (502, "E36 TLS handshake failed"));
    // An origin that accepts and never answers: TLS timeout.
    let silent = silent_origin();
    let (status, code, _) = failure(&proxy, &format!("https://127.0.0.1:{}/x", silent.port()));
    assert_eq!((status, code.as_str()), (504, "E38 TLS timeout"));
    let dir = proxy.finish().expect("data dir");
    assert_warcio_clean(dir.path());
}

#[test]
fn the_bundled_roots_do_not_trust_a_private_ca_and_insecure_upstream_trusts_anything() {
    let ca = TestCa::new("liveweb test CA");
    let origin = valid_origin(&ca);
    let url = origin.url("localhost", "/x");
    let proxy = Proxy::start(&[]);
    let (status, code, body) = failure(&proxy, &url);
    assert_eq!(
        (status, code.as_str()),
        (502, "E37 certificate invalid"),
        "{body}"
    );
    drop(proxy);

    let proxy = Proxy::start(&["--insecure-upstream"]);
    let reply = get(proxy.addr, &url, "X-Liveweb-Mode: forward\r\n");
    assert_eq!(reply.status, 200, "{}", reply.head);
    assert_eq!(reply.body, b"body of /x");
    assert!(proxy.log_text().contains("--insecure-upstream"));
}

#[test]
fn an_unreadable_upstream_ca_file_stops_start_up_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("bogus.pem");
    std::fs::write(&bogus, "no certificate here\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_liveweb"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--upstream-ca")
        .arg(&bogus)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bogus.pem"), "{err}");
}

#[test]
fn a_close_delimited_body_is_whole_only_if_the_origin_said_close_notify() {
    let ca = TestCa::new("liveweb test CA");
    let origin = valid_origin(&ca);
    let (proxy, _dir) = proxy_trusting(&ca, &[]);
    let whole = get(
        proxy.addr,
        &origin.url("localhost", "/until-close-notify"),
        "",
    );
    assert_eq!(whole.status, 200, "{}", whole.head);
    let (_, payload) = whole.record();
    assert!(payload.ends_with(b"\r\n\r\nclose-delimited body"));
    // The same bytes ended by a bare TCP close could be cut short by anyone on the path: not
    // archived as the origin's response.
    let (status, code, _) = failure(&proxy, &origin.url("localhost", "/until-close-cut"));
    assert_eq!((status, code.as_str()), (502, "E34 connection dropped"));
    // Forward mode streams it as it comes, and then closes without the last chunk: the
    // client cannot take it for whole either.
    let url = origin.url("localhost", "/until-close-cut-forward");
    let raw = common::send_until_close(
        proxy.addr,
        format!("GET {url} HTTP/1.1\r\nHost: x\r\nX-Liveweb-Mode: forward\r\n\r\n").as_bytes(),
    );
    let text = String::from_utf8_lossy(&raw);
    assert!(text.contains("close-delimited body"), "{text}");
    assert!(!text.ends_with("0\r\n\r\n"), "{text}");
}

#[test]
fn ca_init_writes_a_private_ca_and_says_how_to_trust_it() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("ca");
    let run = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_liveweb"))
            .args(["ca", "init"])
            .arg(&ca_dir)
            .output()
            .unwrap()
    };
    let out = run();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("--cacert"), "{text}");
    assert!(text.contains("certutil"), "{text}");
    for name in ["liveweb-ca.pem", "liveweb-ca-key.pem"] {
        let mode = std::fs::metadata(ca_dir.join(name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name}");
    }
    // The certificate is a CA a TLS client accepts as a root.
    let roots = ca_dir.join("liveweb-ca.pem");
    let proxy = Proxy::start(&["--upstream-ca", roots.to_str().unwrap()]);
    drop(proxy);
    // Never replaced.
    let again = run();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists"));
}
