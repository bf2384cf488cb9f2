//! Per-worker keep-alive pools of upstream connections (plain or TLS), keyed by scheme, host
//! and port. A connection
//! goes back only after a complete response that let it stay open; one idle too long is
//! dropped when next looked at.

use std::cell::RefCell;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::origin_conn::OriginConn;
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

/// One worker's idle upstream connections.
#[derive(Default)]
pub struct UpstreamPool {
    idle: RefCell<hashbrown::HashMap<(Scheme, String, u16), Vec<Idle>>>,
    count: std::cell::Cell<usize>,
}

impl UpstreamPool {
    pub fn new() -> Self {
        Self::default()
    }

    /// The most recently used idle connection to `scheme://host:port`, if any is young
    /// enough.
    pub fn checkout(&self, scheme: Scheme, host: &str, port: u16) -> Option<(OriginConn, IpAddr)> {
        let mut idle = self.idle.borrow_mut();
        let list = idle.get_mut(&(scheme, host.to_string(), port))?;
        while let Some(c) = list.pop() {
            self.count.set(self.count.get() - 1);
            if c.since.elapsed() < MAX_IDLE_AGE {
                return Some((c.stream, c.ip));
            }
        }
        None
    }

    /// Returns a connection after a clean, complete response.
    pub fn checkin(&self, scheme: Scheme, host: &str, port: u16, stream: OriginConn, ip: IpAddr) {
        if self.count.get() >= MAX_IDLE {
            return;
        }
        let mut idle = self.idle.borrow_mut();
        let list = idle.entry((scheme, host.to_string(), port)).or_default();
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
