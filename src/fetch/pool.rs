//! Per-worker keep-alive pools of upstream connections (plain or TLS), keyed by scheme, host,
//! port and the credentials the requests on them carried. A connection goes back only after
//! a complete response that let it stay open; one idle too long, or one the origin wrote to
//! (or closed) while it sat idle, is dropped when next looked at.
//!
//! Why the checks: HTTP/1.1 pairs responses with requests by order alone. Bytes an origin
//! sends while a connection is idle would be read as the answer to the next request sent on
//! it, and every later answer on that connection would be one off: one client's response
//! handed to another. Squid and nginx make the same readiness check before reuse.

use std::cell::RefCell;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::origin_conn::OriginConn;
use crate::http::cache::is_credential;
use crate::http::request::Header;
use crate::http::url::Scheme;

/// Idle connections kept per host and port.
const MAX_IDLE_PER_KEY: usize = 64;
/// Idle connections kept per worker in all.
const MAX_IDLE: usize = 1024;
/// An idle connection older than this is not reused (origins close idle ones; nginx after
/// 75 s by default).
const MAX_IDLE_AGE: Duration = Duration::from_secs(30);
/// How often a worker sweeps its pool (`UpstreamPool::sweep`).
pub const SWEEP_EVERY: Duration = MAX_IDLE_AGE;

struct Idle {
    stream: OriginConn,
    ip: IpAddr,
    since: Instant,
}

impl Idle {
    fn is_reusable(&self) -> bool {
        self.since.elapsed() < MAX_IDLE_AGE && self.stream.is_quiet()
    }
}

/// Where a pooled connection may go: the origin, and who the requests on it were for.
#[derive(PartialEq, Eq, Hash)]
struct PoolKey {
    scheme: Scheme,
    host: String,
    port: u16,
    /// 0 for requests without credentials; otherwise a keyed hash of their values. A
    /// response arriving out of turn (the readiness check cannot see bytes that arrive after
    /// a request was sent) can then only reach a request made with the same credentials.
    identity: u64,
}

/// One worker's idle upstream connections.
#[derive(Default)]
pub struct UpstreamPool {
    idle: RefCell<hashbrown::HashMap<PoolKey, Vec<Idle>>>,
    count: std::cell::Cell<usize>,
    /// Keys the credential hash, so nobody can pick credentials that share a connection
    /// with another user's.
    hasher: RandomState,
}

/// Who a request is for, as far as sharing a connection goes: see `PoolKey::identity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity(u64);

impl UpstreamPool {
    pub fn new() -> Self {
        Self::default()
    }

    /// The identity of a request sending `headers` upstream.
    pub fn identity(&self, headers: &[Header]) -> Identity {
        let mut hasher = None;
        // The credential headers (`is_credential`): connections that carried them are shared
        // only among requests carrying the same values.
        for h in headers.iter().filter(|h| is_credential(h)) {
            let hasher = hasher.get_or_insert_with(|| self.hasher.build_hasher());
            for b in h.name.bytes() {
                hasher.write_u8(b.to_ascii_lowercase());
            }
            hasher.write_u8(0);
            hasher.write(&h.value);
            hasher.write_u8(0);
        }
        // 0 is kept for "no credentials"; a credential hash that happens to be 0 moves.
        Identity(hasher.map_or(0, |h| h.finish().max(1)))
    }

    /// The most recently used idle connection to `scheme://host:port` for `identity`, if
    /// any is young enough and quiet (nothing arrived on it, not even a close, since its
    /// last response ended). Connections that fail the check are closed.
    pub fn checkout(
        &self,
        scheme: Scheme,
        host: &str,
        port: u16,
        identity: Identity,
    ) -> Option<(OriginConn, IpAddr)> {
        let mut idle = self.idle.borrow_mut();
        let key = PoolKey {
            scheme,
            host: host.to_string(),
            port,
            identity: identity.0,
        };
        let list = idle.get_mut(&key)?;
        let mut found = None;
        while let Some(c) = list.pop() {
            self.count.set(self.count.get() - 1);
            if c.is_reusable() {
                found = Some((c.stream, c.ip));
                break;
            }
        }
        if list.is_empty() {
            // A key is a host and a credential hash: keys left empty would pile up with every
            // origin and every Cookie value ever pooled.
            idle.remove(&key);
        }
        found
    }

    /// Closes every idle connection too old or no longer quiet, and forgets keys left with
    /// none: without it a connection to an origin nobody asks for again would hold its
    /// descriptor for good. The worker calls it every `SWEEP_EVERY`.
    pub fn sweep(&self) {
        let mut idle = self.idle.borrow_mut();
        idle.retain(|_, list| {
            list.retain(Idle::is_reusable);
            !list.is_empty()
        });
        // A burst of many keys would otherwise keep its table's memory after they leave.
        if idle.capacity() > 64 && idle.len() < idle.capacity() / 4 {
            idle.shrink_to_fit();
        }
        self.count.set(idle.values().map(Vec::len).sum());
    }

    /// Returns a connection after a clean, complete response.
    pub fn checkin(
        &self,
        scheme: Scheme,
        host: &str,
        port: u16,
        identity: Identity,
        stream: OriginConn,
        ip: IpAddr,
    ) {
        if self.count.get() >= MAX_IDLE {
            // Stale connections may fill the count between sweeps; only live ones refuse.
            self.sweep();
            if self.count.get() >= MAX_IDLE {
                return;
            }
        }
        let mut idle = self.idle.borrow_mut();
        let key = PoolKey {
            scheme,
            host: host.to_string(),
            port,
            identity: identity.0,
        };
        let list = idle.entry(key).or_default();
        if list.len() >= MAX_IDLE_PER_KEY {
            return;
        }
        list.push(Idle {
            stream,
            ip,
            since: Instant::now(),
        });
        self.count.set(self.count.get() + 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, value: &str) -> Header {
        Header {
            name: name.into(),
            value: value.as_bytes().to_vec(),
        }
    }

    fn runtime() -> monoio::Runtime<monoio::LegacyDriver> {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .build()
            .expect("runtime")
    }

    /// A connected pair: the pooled side, and the origin's side to write to or close.
    async fn pair() -> (OriginConn, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let ours = monoio::net::TcpStream::connect(addr)
            .await
            .expect("connect");
        let (theirs, _) = listener.accept().expect("accept");
        (OriginConn::Plain(ours), theirs)
    }

    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn keys_left_empty_are_forgotten_and_closed_connections_are_swept() {
        runtime().block_on(async {
            let pool = UpstreamPool::new();
            let anonymous = Identity(0);
            // One connection per credential value: each its own key.
            let mut origins = Vec::new();
            for n in 0..3u64 {
                let (conn, origin) = pair().await;
                pool.checkin(Scheme::Http, "a.test", 80, Identity(n + 1), conn, LOCAL);
                origins.push(origin);
            }
            assert_eq!(pool.idle.borrow().len(), 3);
            assert!(pool
                .checkout(Scheme::Http, "a.test", 80, Identity(1))
                .is_some());
            assert_eq!(pool.idle.borrow().len(), 2, "the emptied key stays");
            // The origin closes one idle connection: the sweep drops it and its key.
            drop(origins.remove(1));
            pool.sweep();
            assert_eq!(pool.idle.borrow().len(), 1);
            assert_eq!(pool.count.get(), 1);
            // A miss on an unknown key leaves nothing behind either.
            assert!(pool
                .checkout(Scheme::Http, "b.test", 80, anonymous)
                .is_none());
            assert_eq!(pool.idle.borrow().len(), 1);
        });
    }

    #[test]
    fn requests_with_other_credentials_never_share_an_identity() {
        let pool = UpstreamPool::new();
        let anonymous = pool.identity(&[header("Accept", "*/*")]);
        assert_eq!(anonymous, Identity(0));
        assert_eq!(pool.identity(&[]), anonymous);
        let alice = pool.identity(&[header("Authorization", "Basic YWxpY2U6eA==")]);
        let bob = pool.identity(&[header("Authorization", "Basic Ym9iOng=")]);
        let cookie = pool.identity(&[header("Cookie", "Basic YWxpY2U6eA==")]);
        assert_ne!(alice, anonymous);
        assert_ne!(alice, bob);
        // The same value under another name is another identity.
        assert_ne!(alice, cookie);
        // The name's case does not matter; the other headers do not either.
        let again = pool.identity(&[
            header("accept", "text/html"),
            header("AUTHORIZATION", "Basic YWxpY2U6eA=="),
        ]);
        assert_eq!(alice, again);
    }
}
