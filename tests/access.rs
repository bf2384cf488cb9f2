//! Who may use the proxy: client and admin ranges (flags and a table file reloaded on
//! SIGHUP), proxy authentication, upstream addresses hidden inside IPv6, slow and greedy
//! clients. Test clients pick their loopback source address (127.0.0.x) to be "someone
//! else"; `--allow-loopback false` stops loopback from being trusted as a whole.

mod common;

use common::*;
use std::io::{BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// A connection to `addr` from the loopback source address `from`.
fn connect_from(from: &str, addr: SocketAddr) -> BufReader<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let source: IpAddr = from.parse().unwrap();
    socket.bind(&SocketAddr::new(source, 0).into()).unwrap();
    socket.connect(&addr.into()).unwrap();
    let stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    BufReader::new(stream)
}

/// One request from `from`; the reply (the connection is closed after it).
fn request_from(from: &str, addr: SocketAddr, raw: &str) -> Reply {
    let mut conn = connect_from(from, addr);
    conn.get_mut().write_all(raw.as_bytes()).unwrap();
    read_reply(&mut conn, false)
}

fn get_raw(url: &str) -> String {
    format!("GET {url} HTTP/1.1\r\nConnection: close\r\n\r\n")
}

/// Waits until the log has `n` lines containing `needle` (the proxy logs as it acts).
fn wait_log(proxy: &Proxy, needle: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while proxy.log_text().matches(needle).count() < n {
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in log:\n{}",
            proxy.log_text()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn sighup(proxy: &Proxy) {
    // SAFETY: signalling our own child by PID.
    unsafe { libc::kill(proxy.pid() as i32, libc::SIGHUP) };
}

#[test]
fn clients_outside_the_ranges_get_403_and_a_log_line() {
    let origin = Origin::start();
    origin.ok("/a", "text/plain", b"a");
    let proxy = Proxy::start(&["--allow-loopback", "false", "--allow-client", "127.0.0.2"]);
    let r = request_from("127.0.0.1", proxy.addr, &get_raw(&origin.url("/a")));
    assert_eq!(r.status, 403, "{}", r.head);
    wait_log(&proxy, "refused client 127.0.0.1", 1);
    assert_eq!(origin.hits("/a"), 0);
    let r = request_from("127.0.0.2", proxy.addr, &get_raw(&origin.url("/a")));
    assert_eq!(r.status, 200, "{}", r.head);
    // Admin endpoints have their own ranges: a client is not an admin (health, which says
    // only "ok", answers anyone let in).
    let r = request_from(
        "127.0.0.2",
        proxy.addr,
        "GET /_liveweb/metrics HTTP/1.1\r\n\r\n",
    );
    assert_eq!(r.status, 403);
    let r = request_from(
        "127.0.0.2",
        proxy.addr,
        "GET /_liveweb/health HTTP/1.1\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    proxy.finish();

    let proxy = Proxy::start(&[
        "--allow-loopback",
        "false",
        "--allow-client",
        "127.0.0.2",
        "--allow-admin",
        "127.0.0.5",
    ]);
    let r = request_from(
        "127.0.0.5",
        proxy.addr,
        "GET /_liveweb/health HTTP/1.1\r\n\r\n",
    );
    assert_eq!((r.status, r.body.as_slice()), (200, &b"ok\n"[..]));
    // The archive's CDX query endpoint is an admin endpoint.
    let cdx = "GET /_liveweb/cdx?url=http://a.example/ HTTP/1.1\r\n\r\n";
    assert_eq!(request_from("127.0.0.5", proxy.addr, cdx).status, 200);
    assert_eq!(request_from("127.0.0.2", proxy.addr, cdx).status, 403);
    // An admin address is not a client.
    let r = request_from("127.0.0.5", proxy.addr, &get_raw(&origin.url("/a")));
    assert_eq!(r.status, 403);
    proxy.finish();
}

#[test]
fn the_client_table_reloads_on_sighup_and_a_bad_file_keeps_the_old_one() {
    let origin = Origin::start();
    origin.ok("/t", "text/plain", b"t");
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("clients.txt");
    std::fs::write(
        &table,
        "# the office\n127.0.0.3   # one host\n127.0.1.0 - 127.0.1.9\n127.2/16 # shorthand\n",
    )
    .unwrap();
    let table_arg = table.display().to_string();
    let proxy = Proxy::start(&["--allow-loopback", "false", "--client-table", &table_arg]);
    let url = origin.url("/t");
    let status = |from: &str| request_from(from, proxy.addr, &get_raw(&url)).status;
    assert_eq!(status("127.0.0.3"), 200);
    assert_eq!(status("127.0.1.9"), 200);
    assert_eq!(status("127.0.1.10"), 403);
    assert_eq!(status("127.0.0.4"), 403);
    assert_eq!(
        status("127.2.200.1"),
        200,
        "the IPv4 shorthand of the flags"
    );
    assert_eq!(status("127.3.0.1"), 403);

    std::fs::write(&table, "127.0.0.4/32\n").unwrap();
    sighup(&proxy);
    wait_log(&proxy, "reloaded", 1);
    assert_eq!(status("127.0.0.4"), 200);
    assert_eq!(status("127.0.0.3"), 403);

    std::fs::write(&table, "127.0.0.4/32\n127.0.0.300\n").unwrap();
    sighup(&proxy);
    wait_log(&proxy, "reload refused", 1);
    assert!(
        proxy.log_text().contains("clients.txt:2:"),
        "{}",
        proxy.log_text()
    );
    assert_eq!(status("127.0.0.4"), 200, "the old table stays");
    proxy.finish();

    // A bad table at start is a start-up error naming the line.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_liveweb"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .args(["--client-table", &table_arg])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("clients.txt:2:"));
}

#[test]
fn proxy_authentication_with_bcrypt_htpasswd() {
    let origin = FnOrigin::start(|_| response("200 OK", "", "secret page"));
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("users");
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    std::fs::write(&htpasswd, format!("# users\nalice:{hash}\n")).unwrap();
    let proxy = Proxy::start(&["--proxy-auth", &htpasswd.display().to_string()]);
    let url = origin.url("/p");
    let basic = |user_pass: &str| {
        format!(
            "Proxy-Authorization: Basic {}\r\n",
            data_encoding::BASE64.encode(user_pass.as_bytes())
        )
    };
    for extra in [
        String::new(),
        basic("alice:wrong"),
        basic("bob:s3cret"),
        "Proxy-Authorization: Bearer x\r\n".into(),
    ] {
        let r = get(proxy.addr, &url, &extra);
        assert_eq!(r.status, 407, "{extra}: {}", r.head);
        assert_eq!(
            r.header("proxy-authenticate").as_deref(),
            Some("Basic realm=\"liveweb\"")
        );
    }
    let r = get(proxy.addr, &url, &basic("alice:s3cret"));
    assert_eq!(r.status, 200, "{}", r.head);
    // Cached verdict: the same credentials again.
    assert_eq!(get(proxy.addr, &url, &basic("alice:s3cret")).status, 200);
    assert_eq!(origin.requests.lock().unwrap().len(), 1);
    let sent = &origin.requests.lock().unwrap()[0];
    assert!(header_in(sent, "proxy-authorization").is_none(), "{sent}");
    // CONNECT needs it too (forward mode).
    let r = send_raw(
        proxy.addr,
        b"CONNECT 127.0.0.1:443 HTTP/1.1\r\nX-Liveweb-Mode: forward\r\n\r\n",
    );
    assert_eq!(r.status, 407);
    // Admin endpoints are governed by the admin ranges, not proxy users.
    assert_eq!(
        send_raw(proxy.addr, b"GET /_liveweb/health HTTP/1.1\r\n\r\n").status,
        200
    );
    proxy.finish();
}

#[test]
fn ipv6_wrapping_a_denied_ipv4_address_is_denied_upstream() {
    let proxy = Proxy::start_raw(&["--workers", "1"]);
    for host in [
        "[::127.0.0.1]",
        "[64:ff9b::7f00:1]",
        "[64:ff9b::a9fe:a9fe]",
        "[2002:7f00:1::1]",
        "[::ffff:127.0.0.1]",
    ] {
        let r = get(proxy.addr, &format!("http://{host}:9/"), "");
        assert_eq!(r.status, 403, "{host}: {}", r.head);
        assert_eq!(
            r.header("x-liveweb-error").as_deref(),
            Some("E11 upstream address not allowed"),
            "{host}"
        );
    }
    proxy.finish();
}

#[test]
fn a_trickled_head_gets_408_at_the_deadline() {
    let proxy = Proxy::start(&["--request-head-timeout", "1s"]);
    let started = Instant::now();
    let mut conn = connect(proxy.addr);
    conn.get_mut()
        .write_all(b"GET http://127.0.0.1:9/ HTTP/1.1\r\n")
        .unwrap();
    // One header byte every 200 ms: each read is well within the idle timeout, the whole
    // head never completes.
    let mut trickle = conn.get_ref().try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        for _ in 0..40 {
            if trickle.write_all(b"X").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let mut all = Vec::new();
    let _ = conn.read_to_end(&mut all);
    let took = started.elapsed();
    assert!(
        all.starts_with(b"HTTP/1.1 408 "),
        "{:?}",
        String::from_utf8_lossy(&all)
    );
    assert!(took < Duration::from_secs(5), "closed after {took:?}");
    let _ = writer.join();
    // A connection that sends nothing is closed at the same deadline, without a reply.
    let mut silent = connect(proxy.addr);
    let mut nothing = Vec::new();
    let _ = silent.read_to_end(&mut nothing);
    assert!(nothing.is_empty());
    proxy.finish();
}

#[test]
fn connections_over_the_per_client_limit_get_503() {
    let proxy = Proxy::start(&[
        "--max-connections-per-client",
        "2",
        "--request-head-timeout",
        "30s",
    ]);
    // Three idle connections from one address: exactly one is refused at once.
    let mut conns: Vec<_> = (0..3)
        .map(|_| connect_from("127.0.0.7", proxy.addr))
        .collect();
    let mut refused = 0;
    for c in &mut conns {
        c.get_ref()
            .set_read_timeout(Some(Duration::from_millis(1500)))
            .unwrap();
        let mut buf = [0u8; 64];
        if let Ok(n) = c.read(&mut buf) {
            if n > 0 {
                assert!(
                    buf.starts_with(b"HTTP/1.1 503 "),
                    "{:?}",
                    String::from_utf8_lossy(&buf[..n])
                );
                refused += 1;
            }
        }
    }
    assert_eq!(refused, 1);
    // Another address is not affected.
    let r = request_from(
        "127.0.0.8",
        proxy.addr,
        "GET /_liveweb/health HTTP/1.1\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    wait_log(&proxy, "--max-connections-per-client", 1);
    drop(conns);
    proxy.finish();

    let proxy = Proxy::start(&["--max-connections", "1", "--request-head-timeout", "30s"]);
    // A served request on a kept-alive connection: it holds the only place now.
    let mut held = connect_from("127.0.0.9", proxy.addr);
    held.get_mut()
        .write_all(b"GET /_liveweb/health HTTP/1.1\r\n\r\n")
        .unwrap();
    assert_eq!(read_reply(&mut held, false).status, 200);
    let r = send_until_close(proxy.addr, b"GET /_liveweb/health HTTP/1.1\r\n\r\n");
    let text = String::from_utf8_lossy(&r);
    assert!(
        text.starts_with("HTTP/1.1 503 ") && text.contains("Retry-After: 1\r\n"),
        "{text}"
    );
    // The held connection is still served.
    held.get_mut()
        .write_all(b"GET /_liveweb/health HTTP/1.1\r\n\r\n")
        .unwrap();
    assert_eq!(read_reply(&mut held, false).status, 200);
    drop(held);
    proxy.finish();
}

#[test]
fn a_balancer_in_proxy_protocol_from_names_the_client_who_is_checked_as_such() {
    let origin = Origin::start();
    origin.ok("/pp", "text/plain", b"behind a balancer");
    let proxy = Proxy::start(&[
        "--allow-loopback",
        "false",
        "--allow-client",
        "192.0.2.9/32,127.0.0.6/32",
        "--proxy-protocol-from",
        "127.0.0.5/32",
    ]);
    let request = get_raw(&origin.url("/pp"));
    // v1 naming an allowed client: served (the connection's own address is not a client).
    let named = |client: &str| format!("PROXY TCP4 {client} 127.0.0.1 40000 8080\r\n{request}");
    let r = request_from("127.0.0.5", proxy.addr, &named("192.0.2.9"));
    assert_eq!(r.status, 200, "{}", r.head);
    // Naming a client outside the ranges: that client is refused.
    assert_eq!(
        request_from("127.0.0.5", proxy.addr, &named("192.0.2.10")).status,
        403
    );
    // v2, binary, naming the allowed client.
    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    v2.extend_from_slice(&[
        0x21, 0x11, 0, 12, 192, 0, 2, 9, 127, 0, 0, 1, 0x9c, 0x40, 0x1f, 0x90,
    ]);
    v2.extend_from_slice(request.as_bytes());
    let mut conn = connect_from("127.0.0.5", proxy.addr);
    conn.get_mut().write_all(&v2).unwrap();
    assert_eq!(read_reply(&mut conn, false).status, 200);
    // A LOCAL header (the balancer's own check) names no one: health only.
    let local = |path: &str| {
        let mut conn = connect_from("127.0.0.5", proxy.addr);
        let mut bytes = b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00".to_vec();
        bytes.extend_from_slice(
            format!("GET {path} HTTP/1.1\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        conn.get_mut().write_all(&bytes).unwrap();
        read_reply(&mut conn, false).status
    };
    assert_eq!(local("/_liveweb/health"), 200);
    assert_eq!(local("/_liveweb/metrics"), 403);
    // From the balancer, no header: closed without a reply.
    let mut conn = connect_from("127.0.0.5", proxy.addr);
    conn.get_mut().write_all(request.as_bytes()).unwrap();
    let mut rest = Vec::new();
    let _ = conn.read_to_end(&mut rest);
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    wait_log(&proxy, "not a PROXY protocol header", 1);
    // Anyone else's PROXY line is not believed: it is a bad request from them (not a 403 for
    // the client it names).
    let other = request_from("127.0.0.6", proxy.addr, &named("192.0.2.10"));
    assert_eq!(other.status, 400, "{}", other.head);
    proxy.finish();

    // The per-client connection cap counts the named client, not the balancer.
    let proxy = Proxy::start(&[
        "--allow-client",
        "192.0.2.0/24",
        "--proxy-protocol-from",
        "127.0.0.5/32",
        "--max-connections-per-client",
        "1",
    ]);
    let keep_alive = |client: &str| {
        format!(
            "PROXY TCP4 {client} 127.0.0.1 40000 8080\r\nGET {} HTTP/1.1\r\n\r\n",
            origin.url("/pp")
        )
    };
    let mut held = connect_from("127.0.0.5", proxy.addr);
    held.get_mut()
        .write_all(keep_alive("192.0.2.9").as_bytes())
        .unwrap();
    assert_eq!(read_reply(&mut held, false).status, 200);
    // The same client again, through another balancer connection: over its cap.
    let r = request_from("127.0.0.5", proxy.addr, &named("192.0.2.9"));
    assert_eq!(r.status, 503, "{}", r.head);
    // Another client through the same balancer: its own count.
    assert_eq!(
        request_from("127.0.0.5", proxy.addr, &named("192.0.2.11")).status,
        200
    );
    proxy.finish();
}

/// A client that may not see `/_liveweb/*` asks liveweb to fetch its own status page: the
/// fetch would arrive from loopback, which is admin. Refused as a loop (508, E12) whatever
/// names the address, through a tunnel too, and when a Via shows the request or the response
/// already passed through this node; nothing of it is archived.
#[test]
fn requests_that_loop_back_to_liveweb_are_refused_and_never_archived() {
    let origin = FnOrigin::start(move |head| {
        if head.starts_with("GET /looped ") {
            // As if the response had come through this node on its way.
            response("200 OK", &format!("Via: {}\r\n", own_via()), "secret")
        } else {
            response("200 OK", "", "fine")
        }
    });
    // A fixed port, so CONNECT may be let through to it.
    let listen = free_addr();
    let port = listen.port().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let proxy = Proxy::start_at(
        listen,
        &tmp.path().join("data"),
        &[
            "--allow-loopback",
            "false",
            "--allow-client",
            "127.0.0.0/8",
            "--allow-admin",
            "127.0.0.1",
            "--connect-ports",
            &port,
        ],
    );
    for mode in ["liveweb", "forward"] {
        for target in [
            format!("http://127.0.0.1:{port}/_liveweb/status.json"),
            format!("http://localhost:{port}/_liveweb/status.json"),
            format!("http://[::ffff:127.0.0.1]:{port}/_liveweb/metrics"),
        ] {
            let r = request_from(
                "127.0.0.2",
                proxy.addr,
                &format!(
                    "GET {target} HTTP/1.1\r\nX-Liveweb-Mode: {mode}\r\nConnection: close\r\n\r\n"
                ),
            );
            assert_eq!(r.status, 508, "{mode} {target}: {}", r.head);
            assert_eq!(
                r.header("x-liveweb-error").as_deref(),
                Some("E12 loop detected")
            );
            assert!(
                !String::from_utf8_lossy(&r.body).contains("uptime"),
                "{target}"
            );
        }
        // A Via naming this node: the request came through here already.
        let r = request_from(
            "127.0.0.2",
            proxy.addr,
            &format!(
                "GET {} HTTP/1.1\r\nVia: 1.0 elsewhere, {}\r\nX-Liveweb-Mode: {mode}\r\nConnection: close\r\n\r\n",
                origin.url("/fine"),
                own_via()
            ),
        );
        assert_eq!(r.status, 508, "{mode}: {}", r.head);
        // A response that came back through this node.
        let r = request_from(
            "127.0.0.2",
            proxy.addr,
            &format!(
                "GET {} HTTP/1.1\r\nX-Liveweb-Mode: {mode}\r\nConnection: close\r\n\r\n",
                origin.url("/looped")
            ),
        );
        assert_eq!(r.status, 508, "{mode}: {}", r.head);
        assert!(!String::from_utf8_lossy(&r.body).contains("secret"));
    }
    // What liveweb forwards names this node.
    let r = request_from("127.0.0.2", proxy.addr, &get_raw(&origin.url("/fine")));
    assert_eq!(r.status, 200);
    let sent = origin.requests_for("/fine");
    assert_eq!(sent.len(), 1, "the looped request never reached the origin");
    assert_eq!(header_in(&sent[0], "via"), Some(own_via()));
    // A tunnel to liveweb itself.
    let r = request_from(
        "127.0.0.2",
        proxy.addr,
        &format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\nX-Liveweb-Mode: forward\r\n\r\n"),
    );
    assert_eq!(r.status, 508, "{}", r.head);

    let dir = proxy.data_dir.clone();
    let _kept = proxy.finish();
    let mut files = Vec::new();
    collect_arcs(&dir, &mut files);
    for f in files {
        let text = String::from_utf8_lossy(&gunzip_all(&std::fs::read(&f).unwrap())).into_owned();
        assert!(!text.contains("_liveweb"), "{}: {text}", f.display());
        assert!(!text.contains("secret"), "{}: {text}", f.display());
    }
}
