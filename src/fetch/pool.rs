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

struct Idle {
    stream: OriginConn,
    ip: IpAddr,
    since: Instant,
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
        while let Some(c) = list.pop() {
            self.count.set(self.count.get() - 1);
            if c.since.elapsed() < MAX_IDLE_AGE && c.stream.is_quiet() {
                return Some((c.stream, c.ip));
            }
        }
        None
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
            return;
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
