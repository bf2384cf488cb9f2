//! Origins that just failed to resolve, connect or complete a TLS handshake, remembered for
//! `--bad-host-ttl`, so the next fetches to them fail at once with the same error instead of
//! waiting on the network again. Shared by every worker; a connection that succeeds forgets
//! the origin.

use std::time::{Duration, Instant};

use super::client::FetchError;
use crate::error::Error;

/// Origins remembered at most; past it the memory starts over.
const MAX_REMEMBERED: usize = 100_000;

pub struct BadHosts {
    ttl: Duration,
    failed: papaya::HashMap<String, (FetchError, Instant)>,
}

impl BadHosts {
    /// `ttl` zero remembers nothing.
    pub fn new(ttl: Duration) -> BadHosts {
        BadHosts {
            ttl,
            failed: papaya::HashMap::new(),
        }
    }

    /// The key an origin is remembered under: `scheme://host:port`.
    pub fn key(url: &crate::http::url::TargetUrl) -> String {
        format!("{}://{}:{}", url.scheme.as_str(), url.host, url.port)
    }

    /// The failure remembered for `origin` (`BadHosts::key`), if it is recent.
    pub fn recent(&self, origin: &str) -> Option<FetchError> {
        if self.ttl.is_zero() {
            return None;
        }
        let failed = self.failed.pin();
        let (error, until) = failed.get(origin)?;
        (Instant::now() < *until).then(|| error.clone())
    }

    /// Remembers `fe` for `origin` when it is a failure to reach it at all.
    pub fn remember(&self, origin: &str, fe: &FetchError) {
        if self.ttl.is_zero() || !is_unreachable(&fe.error) {
            return;
        }
        let failed = self.failed.pin();
        if failed.len() >= MAX_REMEMBERED {
            failed.clear();
        }
        failed.insert(origin.to_string(), (fe.clone(), Instant::now() + self.ttl));
    }

    /// `origin` answered: forget any failure remembered for it.
    pub fn forget(&self, origin: &str) {
        // A lookup, not a write, on the common path: most origins were never bad.
        if self.ttl.is_zero() || self.failed.is_empty() {
            return;
        }
        let failed = self.failed.pin();
        if failed.contains_key(origin) {
            failed.remove(origin);
        }
    }
}

/// Failures that say the origin cannot be reached now (name, address, TLS), as opposed to
/// one response that went wrong.
fn is_unreachable(e: &Error) -> bool {
    matches!(
        e,
        // Not DnsTimeout: it is also what a full lookup queue says, liveweb's load rather
        // than the origin's state.
        Error::Dns(_)
            | Error::Refused(_)
            | Error::ConnectTimeout
            | Error::TlsHandshake(_)
            | Error::TlsCertificate(_)
            | Error::TlsTimeout
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused() -> FetchError {
        FetchError {
            error: Error::Refused("127.0.0.1:9: connection refused".into()),
            ip: Some([127, 0, 0, 1].into()),
        }
    }

    #[test]
    fn unreachable_origins_are_remembered_until_they_answer_or_the_ttl_passes() {
        let bad = BadHosts::new(Duration::from_secs(30));
        let origin = "http://a.example:80";
        assert!(bad.recent(origin).is_none());
        bad.remember(origin, &refused());
        assert_eq!(bad.recent(origin).map(|f| f.error), Some(refused().error));
        assert!(bad.recent("https://a.example:80").is_none(), "per scheme");
        bad.forget(origin);
        assert!(bad.recent(origin).is_none());

        // One bad response is not an unreachable origin.
        let dropped = FetchError {
            error: Error::Dropped("cut".into()),
            ip: None,
        };
        bad.remember(origin, &dropped);
        assert!(bad.recent(origin).is_none());

        let expired = BadHosts::new(Duration::from_nanos(1));
        expired.remember(origin, &refused());
        std::thread::sleep(Duration::from_millis(1));
        assert!(expired.recent(origin).is_none());
        let off = BadHosts::new(Duration::ZERO);
        off.remember(origin, &refused());
        assert!(off.recent(origin).is_none());
    }
}
