//! Archiving HTTPS through CONNECT: which tunnels are intercepted (all but `--mitm-bypass`),
//! the TLS server configuration that presents a leaf for the requested host (the SNI name,
//! else the CONNECT host), and noting once per host that a client rejected our certificate.

mod authority;

use std::collections::HashSet;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rustls::server::{ClientHello, ResolvesServerCert, ServerSessionMemoryCache};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

pub use authority::{init_ca, Authority, CA_CERT_FILE, CA_KEY_FILE};

/// Sessions kept for resumption by returning clients (shared by every intercepted tunnel).
const SESSION_CACHE: usize = 4096;
/// Hosts remembered as "a client rejected our certificate"; past it the memory starts over.
const MAX_REJECTED_HOSTS: usize = 10_000;

/// What `--mitm-ca`, `--mitm-key` and `--mitm-bypass` set up; shared by every worker.
pub struct Interceptor {
    authority: Arc<Authority>,
    /// Everything but the certificate choice, which depends on the tunnel's host.
    base: Arc<ServerConfig>,
    /// Lowercase host names, without a leading dot.
    bypass: Vec<String>,
    rejected: Mutex<HashSet<String>>,
}

impl Interceptor {
    /// Loads the CA (errors name the file) and prepares the TLS configuration.
    pub fn load(cert: &Path, key: &Path, bypass: &[String]) -> io::Result<Interceptor> {
        let authority = Arc::new(Authority::load(cert, key)?);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut base = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(io::Error::other)?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(LeafResolver {
                authority: authority.clone(),
                fallback: String::new(),
            }));
        // HTTP/1.1 only: the requests inside are served by the HTTP/1.1 connection loop.
        base.alpn_protocols = vec![b"http/1.1".to_vec()];
        base.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE);
        let bypass = bypass
            .iter()
            .map(|h| {
                let h = h.trim().trim_matches('.');
                let h = h
                    .strip_prefix('[')
                    .and_then(|h| h.strip_suffix(']'))
                    .unwrap_or(h);
                h.to_ascii_lowercase()
            })
            .filter(|h| !h.is_empty())
            .collect();
        Ok(Interceptor {
            authority,
            base: Arc::new(base),
            bypass,
            rejected: Mutex::new(HashSet::new()),
        })
    }

    /// Whether a CONNECT to `host` stays a blind tunnel: `host` is a `--mitm-bypass` entry
    /// or below one (`bank.example` covers `www.bank.example`).
    pub fn bypasses(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.');
        self.bypass.iter().any(|entry| {
            host.len() >= entry.len()
                && host[host.len() - entry.len()..].eq_ignore_ascii_case(entry)
                && (host.len() == entry.len()
                    || host.as_bytes()[host.len() - entry.len() - 1] == b'.')
        })
    }

    /// The TLS configuration for a tunnel to `connect_host` (unbracketed): the leaf is for
    /// the client's SNI name, or for `connect_host` when it sent none (IP targets).
    /// Resumption state is shared with every other tunnel.
    pub fn server_config(&self, connect_host: &str) -> Arc<ServerConfig> {
        let mut config = (*self.base).clone();
        config.cert_resolver = Arc::new(LeafResolver {
            authority: self.authority.clone(),
            fallback: connect_host.to_string(),
        });
        Arc::new(config)
    }

    /// True the first time a client is seen rejecting our certificate for `host` (so it is
    /// logged once per host, not per connection).
    pub fn first_rejection(&self, host: &str) -> bool {
        let Ok(mut seen) = self.rejected.lock() else {
            return false;
        };
        if seen.len() >= MAX_REJECTED_HOSTS {
            seen.clear();
        }
        seen.insert(host.to_ascii_lowercase())
    }
}

/// Picks the leaf for the name the client asked for.
struct LeafResolver {
    authority: Arc<Authority>,
    fallback: String,
}

impl std::fmt::Debug for LeafResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LeafResolver(fallback {:?})", self.fallback)
    }
}

impl ResolvesServerCert for LeafResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let host = hello.server_name().unwrap_or(&self.fallback);
        if host.is_empty() {
            return None;
        }
        self.authority.leaf_for(host).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interceptor(bypass: &[&str]) -> Interceptor {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = init_ca(dir.path()).unwrap();
        let bypass: Vec<String> = bypass.iter().map(|s| s.to_string()).collect();
        Interceptor::load(&cert, &key, &bypass).unwrap()
    }

    #[test]
    fn bypass_covers_a_host_and_the_names_below_it_only() {
        let i = interceptor(&[
            "Bank.Example",
            ".pinned.test",
            " ",
            "trailing.test.",
            "[::1]",
        ]);
        for host in [
            "bank.example",
            "www.BANK.example",
            "bank.example.",
            "a.pinned.test",
            "trailing.test",
            "::1",
        ] {
            assert!(i.bypasses(host), "{host}");
        }
        for host in [
            "notbank.example",
            "bank.example.org",
            "example",
            "pinned.tes",
        ] {
            assert!(!i.bypasses(host), "{host}");
        }
        assert!(!interceptor(&[]).bypasses("bank.example"));
    }

    #[test]
    fn a_rejecting_host_is_reported_once() {
        let i = interceptor(&[]);
        assert!(i.first_rejection("a.example"));
        assert!(!i.first_rejection("A.example"));
        assert!(i.first_rejection("b.example"));
    }
}
