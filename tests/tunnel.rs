//! CONNECT tunnels in forward mode: byte-for-byte relay with half-close, refusals, idle
//! timeout, and curl speaking TLS through liveweb to a local TLS server.

mod common;

use common::*;
use std::io::{BufRead, Read, Write};
use std::net::{Shutdown, TcpListener};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Echoes everything until the client half-closes, then closes.
fn echo_server() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut conn = conn;
                let mut buf = vec![0u8; 65536];
                while let Ok(n) = conn.read(&mut buf) {
                    if n == 0 || conn.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

fn connect_through(
    proxy: &Proxy,
    target: &str,
) -> (std::io::BufReader<std::net::TcpStream>, String) {
    let mut c = connect(proxy.addr);
    c.get_mut()
        .write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .unwrap();
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if c.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    (c, head)
}

#[test]
fn relays_bytes_both_ways_with_half_close() {
    let port = echo_server();
    let ports = port.to_string();
    let proxy = Proxy::start(&["--mode", "forward", "--connect-ports", &ports]);
    let (mut c, head) = connect_through(&proxy, &format!("127.0.0.1:{port}"));
    assert!(
        head.starts_with("HTTP/1.1 200 Connection Established"),
        "{head}"
    );
    let payload: Vec<u8> = (0..1_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 19) as u8)
        .collect();
    let mut writer = c.get_ref().try_clone().unwrap();
    let sent = payload.clone();
    let t = std::thread::spawn(move || {
        writer.write_all(&sent).unwrap();
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let mut echoed = Vec::new();
    c.read_to_end(&mut echoed).unwrap();
    t.join().unwrap();
    assert_eq!(echoed.len(), payload.len());
    assert!(echoed == payload, "relayed byte for byte");
    proxy.finish();
}

#[test]
fn refuses_other_ports_denied_addresses_and_liveweb_mode() {
    let port = echo_server();
    let proxy = Proxy::start(&["--mode", "forward"]);
    let (_, head) = connect_through(&proxy, &format!("127.0.0.1:{port}"));
    assert!(
        head.starts_with("HTTP/1.1 403 Forbidden"),
        "port not in --connect-ports: {head}"
    );
    proxy.finish();

    let ports = port.to_string();
    let proxy = Proxy::start_raw(&["--mode", "forward", "--connect-ports", &ports]);
    let (_, head) = connect_through(&proxy, &format!("127.0.0.1:{port}"));
    assert!(
        head.starts_with("HTTP/1.1 403 Forbidden"),
        "loopback denied: {head}"
    );
    assert!(head.contains("E11"), "{head}");
    proxy.finish();

    let proxy = Proxy::start(&["--connect-ports", &ports]);
    let (_, head) = connect_through(&proxy, &format!("127.0.0.1:{port}"));
    assert!(
        head.starts_with("HTTP/1.1 405"),
        "liveweb mode has no tunnels: {head}"
    );
    proxy.finish();
}

#[test]
fn idle_tunnels_are_closed() {
    let port = echo_server();
    let ports = port.to_string();
    let proxy = Proxy::start(&[
        "--mode",
        "forward",
        "--connect-ports",
        &ports,
        "--tunnel-idle-timeout",
        "500ms",
    ]);
    let (mut c, head) = connect_through(&proxy, &format!("127.0.0.1:{port}"));
    assert!(head.starts_with("HTTP/1.1 200"));
    let started = Instant::now();
    let mut rest = Vec::new();
    let _ = c.read_to_end(&mut rest);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(400) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    proxy.finish();
}

#[test]
fn curl_https_through_the_tunnel() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
        .args(["-addext", "subjectAltName=DNS:localhost"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .expect("openssl must be installed");
    assert!(made.success());
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Command::new("openssl")
        .args([
            "s_server",
            "-quiet",
            "-www",
            "-accept",
            &format!("127.0.0.1:{port}"),
        ])
        .arg("-cert")
        .arg(&cert)
        .arg("-key")
        .arg(&key)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "s_server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let ports = port.to_string();
    let proxy = Proxy::start(&["--mode", "forward", "--connect-ports", &ports]);
    let out = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "10",
            "-x",
            &format!("http://{}", proxy.addr),
        ])
        .arg("--cacert")
        .arg(&cert)
        .arg(format!("https://localhost:{port}/"))
        .output()
        .expect("curl must be installed");
    let _ = server.kill();
    let _ = server.wait();
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(body.contains("s_server"), "{body}");
    proxy.finish();
}
