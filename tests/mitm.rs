//! Archiving HTTPS through CONNECT (`--mitm-ca`): the client's TLS ends at liveweb with a
//! leaf signed by liveweb's CA, and the requests inside are served as forward-mode requests
//! for the tunnel's `https` origin: fetched over TLS, archived, served again from the store.

mod common;

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::tls::{intercepting_proxy, valid_origin, TestCa};
use common::{get, read_reply, Reply};

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// Sends `CONNECT target` and reads the answer's head byte by byte (nothing after it).
fn connect(proxy: SocketAddr, target: &str) -> (TcpStream, String) {
    let mut tcp = TcpStream::connect(proxy).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match tcp.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    (tcp, String::from_utf8_lossy(&head).to_string())
}

/// A TLS client over `tcp` trusting only the certificates in `roots`, handshaken for `name`
/// (an IP address sends no SNI).
fn tls_over(tcp: TcpStream, roots: &Path, name: &str) -> Result<BufReader<Tls>, std::io::Error> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    let mut store = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(roots).unwrap() {
        store.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(store)
    .with_no_client_auth();
    let name = ServerName::try_from(name.to_string()).unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    Ok(BufReader::new(tls))
}

/// A tunnel through liveweb to `target`, TLS to liveweb trusting `roots`.
fn tunnel(proxy: SocketAddr, target: &str, roots: &Path, name: &str) -> BufReader<Tls> {
    let (tcp, head) = connect(proxy, target);
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    tls_over(tcp, roots, name).expect("TLS to liveweb")
}

/// Answered without a fetch of its own: stored, or the miss just before it still being
/// archived.
fn from_store(reply: &Reply) -> bool {
    matches!(
        reply.header("x-cache").as_deref(),
        Some("HIT" | "COALESCED")
    )
}

fn request(tls: &mut BufReader<Tls>, raw: &str) -> Reply {
    tls.get_mut().write_all(raw.as_bytes()).unwrap();
    tls.get_mut().flush().unwrap();
    read_reply(tls, raw.starts_with("HEAD "))
}

#[test]
fn https_through_connect_is_fetched_archived_and_served_from_the_store() {
    let ca = TestCa::new("liveweb test CA");
    let origin = valid_origin(&ca);
    let (proxy, mitm_ca, _dir) = intercepting_proxy(&ca, &origin, &["--workers", "1"]);
    let port = origin.addr.port();
    let target = format!("127.0.0.1:{port}");

    // curl --proxy ... https://127.0.0.1:PORT/file: no SNI for an IP, a leaf for the IP.
    let mut tls = tunnel(proxy.addr, &target, &mitm_ca, "127.0.0.1");
    let get_file = format!("GET /file HTTP/1.1\r\nHost: {target}\r\n\r\n");
    let first = request(&mut tls, &get_file);
    assert_eq!(first.status, 200, "{}", first.head);
    assert_eq!(first.body, b"body of /file");
    assert_eq!(first.header("x-cache").as_deref(), Some("MISS"));
    let again = request(&mut tls, &get_file);
    assert!(from_store(&again), "{}", again.head);
    assert_eq!(again.body, b"body of /file");

    // A new tunnel (by name, with SNI) and a new connection: from the store, origin not asked.
    let mut by_name = tunnel(
        proxy.addr,
        &format!("localhost:{port}"),
        &mitm_ca,
        "localhost",
    );
    let named = request(
        &mut by_name,
        &format!("GET /named HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n"),
    );
    assert_eq!(named.body, b"body of /named");
    let mut later = tunnel(proxy.addr, &target, &mitm_ca, "127.0.0.1");
    let hit = request(&mut later, &get_file);
    assert!(from_store(&hit), "{}", hit.head);
    assert_eq!(hit.body, b"body of /file");
    assert_eq!(origin.requests_for("/file"), 1);

    // Archived under the https URL: the same record answers a plain-proxy request for it.
    let url = origin.url("127.0.0.1", "/file");
    let record = get(proxy.addr, &url, "X-Liveweb-Mode: liveweb\r\n");
    assert_eq!(record.header("x-cache").as_deref(), Some("HIT"));
    let (header, payload) = record.record();
    assert!(header.starts_with(&format!("{url} 127.0.0.1 ")), "{header}");
    assert!(payload.ends_with(b"\r\n\r\nbody of /file"));

    // Bodies past what is kept in memory, sent over TLS from the file (no sendfile there).
    for len in [300_000usize, 3_000_000] {
        let path = format!("/big/{len}");
        let raw = format!("GET {path} HTTP/1.1\r\nHost: {target}\r\n\r\n");
        let want = common::incompressible(len, len as u64);
        for round in 0..3 {
            let reply = request(&mut later, &raw);
            let cache = reply.header("x-cache").unwrap_or_default();
            assert_eq!(round == 0, cache == "MISS", "{path}: {cache}");
            assert!(reply.body == want, "{path} body differs ({cache})");
        }
        assert_eq!(origin.requests_for(&path), 1);
    }

    // Other methods pass through inside the tunnel.
    let post = request(
        &mut later,
        &format!("POST /submit HTTP/1.1\r\nHost: {target}\r\nContent-Length: 5\r\n\r\nhello"),
    );
    assert_eq!(post.status, 200, "{}", post.head);
    assert_eq!(post.body, b"hello");
    drop((tls, by_name, later));
    proxy.finish().expect("data dir");
}

#[test]
fn a_tunnel_serves_its_own_origin_only() {
    let ca = TestCa::new("liveweb test CA");
    let origin = valid_origin(&ca);
    let (proxy, mitm_ca, _dir) = intercepting_proxy(&ca, &origin, &[]);
    let port = origin.addr.port();
    let target = format!("127.0.0.1:{port}");
    for smuggled in [
        "GET /x HTTP/1.1\r\nHost: other.example\r\n\r\n".to_string(),
        "GET https://other.example/x HTTP/1.1\r\nHost: other.example\r\n\r\n".to_string(),
        format!("GET http://{target}/x HTTP/1.1\r\nHost: {target}\r\n\r\n"),
        format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n"),
    ] {
        let mut tls = tunnel(proxy.addr, &target, &mitm_ca, "127.0.0.1");
        let reply = request(&mut tls, &smuggled);
        assert_eq!(reply.status, 400, "{smuggled:?}: {}", reply.head);
    }
    assert_eq!(origin.requests.lock().unwrap().len(), 0);
}

#[test]
fn a_client_rejecting_the_certificate_is_logged_once_per_host() {
    let ca = TestCa::new("liveweb test CA");
    let origin = valid_origin(&ca);
    let (proxy, mitm_ca, dir) = intercepting_proxy(&ca, &origin, &["--workers", "1"]);
    let target = format!("127.0.0.1:{}", origin.addr.port());
    // The client trusts the origin's CA, not liveweb's.
    let other_roots = ca.write(dir.path());
    for _ in 0..3 {
        let (tcp, head) = connect(proxy.addr, &target);
        assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
        assert!(tls_over(tcp, &other_roots, "127.0.0.1").is_err());
    }
    // A client that trusts liveweb's CA, served after the rejections on the one worker.
    let mut tls = tunnel(proxy.addr, &target, &mitm_ca, "127.0.0.1");
    let ok = request(
        &mut tls,
        &format!("GET /ok HTTP/1.1\r\nHost: {target}\r\n\r\n"),
    );
    assert_eq!(ok.body, b"body of /ok");
    // The log is read by a thread of the test: wait for the line to arrive.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !proxy.log_text().contains("rejected liveweb's certificate") {
        assert!(Instant::now() < deadline, "{}", proxy.log_text());
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = proxy.log_text();
    assert_eq!(
        log.matches("rejected liveweb's certificate").count(),
        1,
        "{log}"
    );
    assert!(log.contains("for 127.0.0.1"), "{log}");
    assert_eq!(origin.handshakes.load(Ordering::SeqCst), 1);
}

#[test]
fn bad_input_in_a_tunnel_closes_it_and_bypassed_hosts_stay_blind() {
    let ca = TestCa::new("liveweb test CA");
    let origin = valid_origin(&ca);
    let (proxy, mitm_ca, dir) = intercepting_proxy(
        &ca,
        &origin,
        &[
            "--request-head-timeout",
            "1s",
            "--client-idle-timeout",
            "2s",
            "--mitm-bypass",
            "localhost",
        ],
    );
    let port = origin.addr.port();
    let target = format!("127.0.0.1:{port}");

    // Plain HTTP where TLS was due: the tunnel closes.
    let (mut tcp, head) = connect(proxy.addr, &target);
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut rest = Vec::new();
    let _ = tcp.read_to_end(&mut rest);
    assert!(
        !String::from_utf8_lossy(&rest).contains("HTTP/1.1"),
        "{rest:?}"
    );

    // A client that never finishes its handshake is closed after --request-head-timeout.
    let (mut tcp, _) = connect(proxy.addr, &target);
    let started = Instant::now();
    tcp.write_all(&[0x16, 0x03, 0x01, 0x00, 0x50]).unwrap();
    let mut rest = Vec::new();
    let _ = tcp.read_to_end(&mut rest);
    assert!(started.elapsed() < Duration::from_secs(8));

    // A TLS alert in the middle of the stream ends the tunnel; the proxy serves on.
    let mut tls = tunnel(proxy.addr, &target, &mitm_ca, "127.0.0.1");
    tls.get_mut()
        .sock
        .write_all(&[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28])
        .unwrap();
    let mut rest = Vec::new();
    assert!(tls.read_to_end(&mut rest).map_or(true, |_| rest.is_empty()));

    // A bypassed host: the client's TLS reaches the origin itself (its own certificate).
    let origin_ca = ca.write(dir.path());
    let mut blind = tunnel(
        proxy.addr,
        &format!("localhost:{port}"),
        &origin_ca,
        "localhost",
    );
    let reply = request(
        &mut blind,
        &format!("GET /direct HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n"),
    );
    assert_eq!(reply.body, b"body of /direct");
    assert_eq!(reply.header("x-cache"), None);
    assert_eq!(origin.handshakes.load(Ordering::SeqCst), 1);

    // A head that never completes inside a tunnel: the read that timed out is abandoned and
    // the tunnel closed (no further use of the TLS stream), the process lives on.
    let mut partial = tunnel(proxy.addr, &target, &mitm_ca, "127.0.0.1");
    partial
        .get_mut()
        .write_all(b"GET /partial HTTP/1.1\r\n")
        .unwrap();
    partial.get_mut().flush().unwrap();
    let mut rest = Vec::new();
    let _ = partial.read_to_end(&mut rest);
    // A client that stops reading a big reply: the write times out, the tunnel is closed.
    let mut stalled = tunnel(proxy.addr, &target, &mitm_ca, "127.0.0.1");
    stalled
        .get_mut()
        .write_all(format!("GET /big/16000000 HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .unwrap();
    stalled.get_mut().flush().unwrap();
    // The stall itself: reading nothing for twice --client-idle-timeout.
    std::thread::sleep(Duration::from_secs(4));
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    while let Ok(n @ 1..) = stalled.read(&mut buf) {
        got += n;
    }
    assert!(
        got < 16_000_000,
        "the whole reply arrived: the write never timed out"
    );

    // Still serving intercepted tunnels.
    let mut tls = tunnel(proxy.addr, &target, &mitm_ca, "127.0.0.1");
    let ok = request(
        &mut tls,
        &format!("GET /ok HTTP/1.1\r\nHost: {target}\r\n\r\n"),
    );
    assert_eq!(ok.body, b"body of /ok");
    drop((tls, blind));
    proxy.finish().expect("data dir");
}

#[test]
fn curl_through_an_intercepted_connect_gets_the_origins_bytes_then_a_hit() {
    let ca = TestCa::new("liveweb test CA");
    let origin = valid_origin(&ca);
    let (proxy, mitm_ca, dir) = intercepting_proxy(&ca, &origin, &[]);
    let url = origin.url("127.0.0.1", "/big/70000");
    let curl = |args: &[&str]| {
        let out = std::process::Command::new("curl")
            .args(["-s", "--max-time", "20", "-D", "-"])
            .args(args)
            .arg(&url)
            .output()
            .expect("curl must be installed");
        assert!(out.status.success(), "curl {args:?}: {out:?}");
        // With --proxy, -D shows the CONNECT's answer before the origin's head.
        let mut rest = &out.stdout[..];
        loop {
            let split = rest.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
            let head = String::from_utf8_lossy(&rest[..split]).to_string();
            rest = &rest[split..];
            if !head.contains("Connection Established") {
                return (head, rest.to_vec());
            }
        }
    };
    let direct = curl(&["--cacert", ca.write(dir.path()).to_str().unwrap()]);
    let proxy_arg = format!("http://{}", proxy.addr);
    let through = ["--proxy", &proxy_arg, "--cacert", mitm_ca.to_str().unwrap()];
    let (head, body) = curl(&through);
    assert!(head.contains("200 OK"), "{head}");
    assert!(
        body == direct.1,
        "the body through liveweb differs from the origin's"
    );
    assert_eq!(origin.requests_for("/big/70000"), 2);
    let (head, again) = curl(&through);
    assert!(
        head.contains("X-Cache: HIT") || head.contains("X-Cache: COALESCED"),
        "{head}"
    );
    assert!(again == direct.1);
    assert_eq!(
        origin.requests_for("/big/70000"),
        2,
        "the hit reached the origin"
    );
}
