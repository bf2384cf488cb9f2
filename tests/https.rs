//! `https://` origins: fetched over TLS in both reply shapes, archived under the https URL,
//! pooled (the origin counts handshakes), and every certificate or handshake failure answered
//! with its own E-code and archived as a failure record.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{assert_warcio_clean, get, Proxy};
use rcgen::{CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};

/// A test certificate authority and the leaves it signs.
struct TestCa {
    key: KeyPair,
    params: CertificateParams,
    pem: String,
}

impl TestCa {
    fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let pem = params.clone().self_signed(&key).unwrap().pem();
        TestCa { key, params, pem }
    }

    /// A leaf for `names` valid from `days_from_now.0` to `.1` days from now.
    fn leaf(&self, names: &[&str], days: (i64, i64)) -> (String, String) {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        for name in names {
            params.subject_alt_names.push(match name.parse() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*name).try_into().unwrap()),
            });
        }
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now + time::Duration::days(days.0);
        params.not_after = now + time::Duration::days(days.1);
        let key = KeyPair::generate().unwrap();
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn write(&self, dir: &Path) -> PathBuf {
        let path = dir.join("ca.pem");
        std::fs::write(&path, &self.pem).unwrap();
        path
    }
}

/// A blocking TLS origin on 127.0.0.1:0: keep-alive, one thread per connection; answers
/// every GET with `body of <path>` (POST: the request body echoed), counts handshakes and
/// records request heads.
struct TlsOrigin {
    addr: SocketAddr,
    handshakes: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<String>>>,
}

impl TlsOrigin {
    fn start(cert_pem: &str, key_pem: &str) -> TlsOrigin {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs = vec![CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap()];
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let handshakes = Arc::new(AtomicUsize::new(0));
        let requests: Arc<Mutex<Vec<String>>> = Arc::default();
        let (count, seen) = (handshakes.clone(), requests.clone());
        std::thread::spawn(move || {
            for tcp in listener.incoming().flatten() {
                let (config, count, seen) = (config.clone(), count.clone(), seen.clone());
                std::thread::spawn(move || serve_tls(tcp, config, count, seen));
            }
        });
        TlsOrigin {
            addr,
            handshakes,
            requests,
        }
    }

    fn url(&self, host: &str, path: &str) -> String {
        format!("https://{host}:{}{path}", self.addr.port())
    }

    fn requests_for(&self, path: &str) -> usize {
        let prefix = format!(" {path} ");
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.contains(&prefix))
            .count()
    }
}

fn serve_tls(
    tcp: TcpStream,
    config: Arc<rustls::ServerConfig>,
    handshakes: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<String>>>,
) {
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
    let conn = rustls::ServerConnection::new(config).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let mut counted = false;
    let mut reader = Vec::new();
    loop {
        // One request head (and a Content-Length body) at a time.
        let mut buf = [0u8; 4096];
        while !reader.windows(4).any(|w| w == b"\r\n\r\n") {
            match tls.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => reader.extend_from_slice(&buf[..n]),
            }
            if !counted && !tls.conn.is_handshaking() {
                counted = true;
                handshakes.fetch_add(1, Ordering::SeqCst);
            }
        }
        let end = reader.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let head = String::from_utf8_lossy(&reader[..end]).to_string();
        reader.drain(..end);
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        while reader.len() < length {
            match tls.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => reader.extend_from_slice(&buf[..n]),
            }
        }
        let sent: Vec<u8> = reader.drain(..length).collect();
        let path = head.split(' ').nth(1).unwrap_or("").to_string();
        requests.lock().unwrap().push(head.clone());
        if path.starts_with("/until-close") {
            // A close-delimited body, ended with close_notify or by a bare TCP close.
            let _ = tls.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nclose-delimited body");
            if path.contains("notify") {
                tls.conn.send_close_notify();
            }
            let _ = tls.flush();
            let _ = tls.sock.shutdown(std::net::Shutdown::Both);
            return;
        }
        let body = if head.starts_with("POST ") {
            sent
        } else {
            format!("body of {path}").into_bytes()
        };
        let reply = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        if tls.write_all(reply.as_bytes()).is_err() || tls.write_all(&body).is_err() {
            return;
        }
        let _ = tls.flush();
    }
}

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

fn valid_origin(ca: &TestCa) -> TlsOrigin {
    let (cert, key) = ca.leaf(&["localhost", "127.0.0.1"], (-1, 30));
    TlsOrigin::start(&cert, &key)
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
    let cases = [
        (expired.url("localhost", "/x"), "expired"),
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
