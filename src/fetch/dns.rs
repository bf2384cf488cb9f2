//! Per-worker DNS cache. Lookups run `getaddrinfo` on the DNS pool (never on a worker thread,
//! never queued behind compression or sealing) under a timeout; answers are kept briefly,
//! failures more briefly.

use std::cell::RefCell;
use std::net::{IpAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::blocking::Pool;
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
pub struct DnsCache {
    entries: RefCell<hashbrown::HashMap<String, Cached>>,
    /// Where lookups run (`--dns-threads`).
    pool: Arc<Pool>,
}

impl DnsCache {
    pub fn new(pool: Arc<Pool>) -> Self {
        DnsCache {
            entries: RefCell::default(),
            pool,
        }
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
        let answer = lookup(&self.pool, lower.clone(), timeout).await;
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

    /// `ip` of `host`'s addresses answered a connect: try it first from now on.
    pub fn prefer(&self, host: &str, ip: IpAddr) {
        let lower = host.trim_end_matches('.').to_ascii_lowercase();
        if let Some(Cached {
            answer: Ok(addrs), ..
        }) = self.entries.borrow_mut().get_mut(&lower)
        {
            if let Some(at) = addrs.iter().position(|a| *a == ip) {
                addrs[..=at].rotate_right(1);
            }
        }
    }
}

async fn lookup(pool: &Pool, host: String, timeout: Duration) -> Result<Vec<IpAddr>, Error> {
    #[cfg(debug_assertions)]
    if let Some(addrs) = test_hosts(&host) {
        return Ok(addrs);
    }
    let name = host.clone();
    let job = pool
        .run(move || {
            (name.as_str(), 0u16)
                .to_socket_addrs()
                .map(|addrs| addrs.map(|a| a.ip()).collect::<Vec<_>>())
        })
        // As many lookups waiting as the queue holds: this one would wait too long anyway.
        .map_err(|_| Error::DnsTimeout)?;
    match monoio::time::timeout(timeout, job).await {
        Err(_) => Err(Error::DnsTimeout),
        Ok(Err(_)) => Err(Error::Internal("DNS lookup was dropped")),
        Ok(Ok(Err(e))) => Err(Error::Dns(format!("{host}: {e}"))),
        Ok(Ok(Ok(addrs))) if addrs.is_empty() => Err(Error::Dns(format!("{host}: no addresses"))),
        Ok(Ok(Ok(mut addrs))) => {
            addrs.dedup();
            Ok(addrs)
        }
    }
}

/// Debug builds only (the test binary; release builds have no such hook):
/// `LIVEWEB_TEST_HOSTS=name=ip,ip;name2=ip` answers those names with those addresses, in
/// that order, as a resolver would, so tests can give a name several addresses.
#[cfg(debug_assertions)]
fn test_hosts(host: &str) -> Option<Vec<IpAddr>> {
    let table = std::env::var("LIVEWEB_TEST_HOSTS").ok()?;
    table.split(';').find_map(|entry| {
        let (name, addrs) = entry.split_once('=')?;
        name.eq_ignore_ascii_case(host)
            .then(|| addrs.split(',').filter_map(|a| a.parse().ok()).collect())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_that_answered_is_tried_first() {
        let pool = Arc::new(Pool::start("dns-test", 1, 4).unwrap());
        let cache = DnsCache::new(pool);
        let (a, b, c): (IpAddr, IpAddr, IpAddr) = (
            "192.0.2.1".parse().unwrap(),
            "192.0.2.2".parse().unwrap(),
            "192.0.2.3".parse().unwrap(),
        );
        cache.entries.borrow_mut().insert(
            "multi.example".into(),
            Cached {
                answer: Ok(vec![a, b, c]),
                expires: Instant::now() + Duration::from_secs(60),
            },
        );
        cache.prefer("Multi.Example.", c);
        let order = |cache: &DnsCache| match &cache.entries.borrow()["multi.example"].answer {
            Ok(addrs) => addrs.clone(),
            Err(_) => Vec::new(),
        };
        assert_eq!(order(&cache), vec![c, a, b]);
        cache.prefer("multi.example", c);
        cache.prefer("other.example", a);
        assert_eq!(order(&cache), vec![c, a, b]);
    }
}
