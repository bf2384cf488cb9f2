//! Per-worker keep-alive pools of upstream connections, keyed by host and port. A connection
//! goes back only after a complete response that let it stay open; one idle too long is
//! dropped when next looked at.

use std::cell::RefCell;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use monoio::net::TcpStream;

/// Idle connections kept per host and port.
const MAX_IDLE_PER_KEY: usize = 64;
/// Idle connections kept per worker in all.
const MAX_IDLE: usize = 1024;
/// An idle connection older than this is not reused (origins close idle ones; nginx after
/// 75 s by default).
const MAX_IDLE_AGE: Duration = Duration::from_secs(30);

struct Idle {
    stream: TcpStream,
    ip: IpAddr,
    since: Instant,
}

/// One worker's idle upstream connections.
#[derive(Default)]
pub struct UpstreamPool {
    idle: RefCell<hashbrown::HashMap<(String, u16), Vec<Idle>>>,
    count: std::cell::Cell<usize>,
}

impl UpstreamPool {
    pub fn new() -> Self {
        Self::default()
    }

    /// The most recently used idle connection to `host:port`, if any is young enough.
    pub fn checkout(&self, host: &str, port: u16) -> Option<(TcpStream, IpAddr)> {
        let mut idle = self.idle.borrow_mut();
        let list = idle.get_mut(&(host.to_string(), port))?;
        while let Some(c) = list.pop() {
            self.count.set(self.count.get() - 1);
            if c.since.elapsed() < MAX_IDLE_AGE {
                return Some((c.stream, c.ip));
            }
        }
        None
    }

    /// Returns a connection after a clean, complete response.
    pub fn checkin(&self, host: &str, port: u16, stream: TcpStream, ip: IpAddr) {
        if self.count.get() >= MAX_IDLE {
            return;
        }
        let mut idle = self.idle.borrow_mut();
        let list = idle.entry((host.to_string(), port)).or_default();
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
