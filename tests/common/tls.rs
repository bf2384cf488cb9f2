//! TLS for tests: a test certificate authority and a blocking TLS origin that counts
//! handshakes and records request heads.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rcgen::{CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};

/// A test certificate authority and the leaves it signs.
pub struct TestCa {
    key: KeyPair,
    params: CertificateParams,
    pem: String,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let pem = params.clone().self_signed(&key).unwrap().pem();
        TestCa { key, params, pem }
    }

    /// A leaf for `names` valid from `days_from_now.0` to `.1` days from now.
    pub fn leaf(&self, names: &[&str], days: (i64, i64)) -> (String, String) {
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

    /// The CA's own certificate and key, for an origin that (wrongly) serves them.
    pub fn own(&self) -> (String, String) {
        (self.pem.clone(), self.key.serialize_pem())
    }

    pub fn write(&self, dir: &Path) -> PathBuf {
        let path = dir.join("ca.pem");
        std::fs::write(&path, &self.pem).unwrap();
        path
    }
}

/// A blocking TLS origin on 127.0.0.1:0: keep-alive, one thread per connection; answers
/// every GET with `body of <path>` (`/big/N`: N incompressible bytes; POST: the request body
/// echoed; a path set with `ok`: that), counts handshakes and records request heads.
pub struct TlsOrigin {
    pub addr: SocketAddr,
    pub handshakes: Arc<AtomicUsize>,
    pub requests: Arc<Mutex<Vec<String>>>,
    routes: Routes,
}

/// Path -> (content type, body).
type Routes = Arc<Mutex<HashMap<String, (String, Vec<u8>)>>>;

impl TlsOrigin {
    pub fn start(cert_pem: &str, key_pem: &str) -> TlsOrigin {
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
        let routes = Routes::default();
        let (count, seen, paths) = (handshakes.clone(), requests.clone(), routes.clone());
        std::thread::spawn(move || {
            for tcp in listener.incoming().flatten() {
                let (config, count, seen) = (config.clone(), count.clone(), seen.clone());
                let paths = paths.clone();
                std::thread::spawn(move || serve_tls(tcp, config, count, seen, paths));
            }
        });
        TlsOrigin {
            addr,
            handshakes,
            requests,
            routes,
        }
    }

    /// Answers GET `path` with `body` of type `content_type` (cacheable for an hour).
    pub fn ok(&self, path: &str, content_type: &str, body: &[u8]) {
        self.routes
            .lock()
            .unwrap()
            .insert(path.to_string(), (content_type.to_string(), body.to_vec()));
    }

    pub fn url(&self, host: &str, path: &str) -> String {
        format!("https://{host}:{}{path}", self.addr.port())
    }

    pub fn requests_for(&self, path: &str) -> usize {
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
    routes: Routes,
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
        let route = routes.lock().unwrap().get(&path).cloned();
        if let Some((content_type, body)) = route {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nCache-Control: max-age=3600\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            if tls.write_all(head.as_bytes()).is_err() || tls.write_all(&body).is_err() {
                return;
            }
            let _ = tls.flush();
            continue;
        }
        let big = path
            .strip_prefix("/big/")
            .and_then(|n| n.parse::<usize>().ok());
        let body = if head.starts_with("POST ") {
            sent
        } else if let Some(len) = big {
            super::incompressible(len, len as u64)
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

/// An origin with a leaf from `ca` for `localhost` and `127.0.0.1`.
pub fn valid_origin(ca: &TestCa) -> TlsOrigin {
    let (cert, key) = ca.leaf(&["localhost", "127.0.0.1"], (-1, 30));
    TlsOrigin::start(&cert, &key)
}

/// A forward-mode liveweb intercepting CONNECTs to `origin` (trusting `ca` upstream), and
/// liveweb's own CA certificate (made with `liveweb ca init`).
pub fn intercepting_proxy(
    ca: &TestCa,
    origin: &TlsOrigin,
    extra: &[&str],
) -> (super::Proxy, PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("mitm");
    let made = std::process::Command::new(env!("CARGO_BIN_EXE_liveweb"))
        .args(["ca", "init"])
        .arg(&ca_dir)
        .output()
        .unwrap();
    assert!(made.status.success());
    let mitm_cert = ca_dir.join("liveweb-ca.pem");
    let mitm_key = ca_dir.join("liveweb-ca-key.pem");
    let upstream_ca = ca.write(dir.path());
    let port = origin.addr.port().to_string();
    let mut args = vec![
        "--mode",
        "forward",
        "--upstream-ca",
        upstream_ca.to_str().unwrap(),
        "--mitm-ca",
        mitm_cert.to_str().unwrap(),
        "--mitm-key",
        mitm_key.to_str().unwrap(),
        "--connect-ports",
    ];
    args.push(&port);
    args.extend_from_slice(extra);
    let proxy = super::Proxy::start(&args);
    (proxy, mitm_cert, dir)
}
