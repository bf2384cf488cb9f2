//! Per-worker DNS cache. Lookups run `getaddrinfo` on the shared blocking pool (never on a
//! worker thread) under a timeout; answers are kept briefly, failures more briefly.

use std::cell::RefCell;
use std::net::{IpAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::error::Error;

/// How long a successful answer is reused.
const POSITIVE_TTL: Duration = Duration::from_secs(60);
/// How long a failed lookup is remembered, so a storm of requests makes one lookup.
const NEGATIVE_TTL: Duration = Duration::from_secs(5);
/// Entries kept before the cache is emptied (a crude bound; names churn slowly).
const MAX_ENTRIES: usize = 10_000;

struct Cached {
    answer: Result<Vec<IpAddr>, Error>,
    expires: Instant,
}

/// One worker's view of DNS.
#[derive(Default)]
pub struct DnsCache {
    entries: RefCell<hashbrown::HashMap<String, Cached>>,
}

impl DnsCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// Resolves `host` (no brackets) to addresses, within `timeout`.
    pub async fn resolve(&self, host: &str, timeout: Duration) -> Result<Vec<IpAddr>, Error> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        // RFC 6761: names under .invalid never resolve; answer at once without asking.
        let lower = host.trim_end_matches('.').to_ascii_lowercase();
        if lower == "invalid" || lower.ends_with(".invalid") {
            return Err(Error::Dns(format!(
                "{host}: name does not exist (.invalid)"
            )));
        }
        let now = Instant::now();
        if let Some(c) = self.entries.borrow().get(&lower) {
            if now < c.expires {
                return c.answer.clone();
            }
        }
        let answer = lookup(lower.clone(), timeout).await;
        // A timeout is not cached: the next request may be luckier.
        if !matches!(answer, Err(Error::DnsTimeout)) {
            let ttl = if answer.is_ok() {
                POSITIVE_TTL
            } else {
                NEGATIVE_TTL
            };
            let mut entries = self.entries.borrow_mut();
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
            entries.insert(
                lower,
                Cached {
                    answer: answer.clone(),
                    expires: now + ttl,
                },
            );
        }
        answer
    }
}

async fn lookup(host: String, timeout: Duration) -> Result<Vec<IpAddr>, Error> {
    let name = host.clone();
    let job = monoio::spawn_blocking(move || {
        (name.as_str(), 0u16)
            .to_socket_addrs()
            .map(|addrs| addrs.map(|a| a.ip()).collect::<Vec<_>>())
    });
    match monoio::time::timeout(timeout, job).await {
        Err(_) => Err(Error::DnsTimeout),
        Ok(Err(_)) => Err(Error::Internal("DNS lookup task was cancelled")),
        Ok(Ok(Err(e))) => Err(Error::Dns(format!("{host}: {e}"))),
        Ok(Ok(Ok(addrs))) if addrs.is_empty() => Err(Error::Dns(format!("{host}: no addresses"))),
        Ok(Ok(Ok(mut addrs))) => {
            addrs.dedup();
            Ok(addrs)
        }
    }
}
