//! Fills the index from what start-up recovery finds on disk: records younger than `--ttl`
//! answer again; possible archived failures (502, 504) do not, as they lived for
//! `--error-ttl` only.

use std::time::Duration;

use super::{ticks, Index};
use crate::archive::recover::{FoundRecord, RecordSink};
use crate::clock::unix_now;

/// The index as recovery's sink.
pub struct Restorer<'a> {
    index: &'a Index,
    ttl: Duration,
    /// Now, in ticks and in Unix seconds (taken once: millions of records come through).
    now: i64,
    now_unix: i64,
}

impl<'a> Restorer<'a> {
    pub fn new(index: &'a Index, ttl: Duration) -> Self {
        Restorer {
            index,
            ttl,
            now: ticks::now(),
            now_unix: unix_now(),
        }
    }

    /// The expiry and origin time (ticks) of a found record, if it may still answer. A
    /// restored reply carries the standard reason phrase for its status; its age counts
    /// from when it was archived.
    fn times(&self, found: &FoundRecord<'_>) -> Option<(i64, i64)> {
        if matches!(found.status, 502 | 504) {
            return None;
        }
        let age = self.now_unix.saturating_sub(found.archived_at).max(0) as u64;
        let left = self.ttl.checked_sub(Duration::from_secs(age))?;
        let age = i64::try_from(age).unwrap_or(i64::MAX);
        Some((
            self.now.saturating_add(ticks::span(left)),
            self.now
                .saturating_sub(age.saturating_mul(ticks::PER_SECOND)),
        ))
    }
}

impl RecordSink for Restorer<'_> {
    fn reserve(&self, n: usize) {
        self.index.reserve(n);
    }

    fn kept_from(&self) -> Option<i64> {
        let ttl = i64::try_from(self.ttl.as_secs()).ok()?;
        Some(self.now_unix.saturating_sub(ttl))
    }

    fn found(&self, found: FoundRecord<'_>) -> bool {
        let Some((expires, born)) = self.times(&found) else {
            return false;
        };
        self.index
            .restore(found.url, found.loc, found.status, expires, born);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::RecordLoc;
    use crate::index::Lookup;
    use std::time::Instant;

    #[test]
    fn fresh_records_answer_again_old_ones_and_failures_do_not() {
        let index = Index::new();
        let sink = Restorer::new(&index, Duration::from_secs(3600));
        let loc = RecordLoc {
            file_id: 1,
            offset: 10,
            len: 20,
        };
        let found = |url, status, age: i64| FoundRecord {
            url,
            loc,
            status,
            archived_at: unix_now() - age,
        };
        assert!(sink.found(found("http://a/", 200, 60)));
        assert!(!sink.found(found("http://old/", 200, 7200)));
        assert!(!sink.found(found("http://fail/", 502, 0)));
        assert!(!sink.found(found("http://slow/", 504, 0)));
        let now = Instant::now();
        let Lookup::Hit(r) = index.lookup("http://a/", |r| r.is_fresh(now)) else {
            panic!("restored")
        };
        assert_eq!((r.loc, r.status.code), (loc, 200));
        assert_eq!(&*r.status.reason, "OK");
        assert!(r.expires_at > now + Duration::from_secs(3400));
        for url in ["http://old/", "http://fail/", "http://slow/"] {
            assert!(matches!(
                index.lookup(url, |r| r.is_fresh(now)),
                Lookup::Absent
            ));
        }
    }
}
