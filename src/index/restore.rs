//! Fills the index from what start-up recovery finds on disk: records younger than `--ttl`
//! answer again; possible archived failures (502, 504) do not, as they lived for
//! `--error-ttl` only.

use std::time::{Duration, Instant};

use super::{ticks, Index, StoredRecord};
use crate::archive::recover::{FoundRecord, RecordSink};
use crate::clock::unix_now;
use crate::http::reply::{canonical_reason, RecordStatus};

/// The index as recovery's sink.
pub struct Restorer<'a> {
    index: &'a Index,
    ttl: Duration,
    now: Instant,
    now_unix: i64,
}

impl<'a> Restorer<'a> {
    pub fn new(index: &'a Index, ttl: Duration) -> Self {
        Restorer {
            index,
            ttl,
            now: Instant::now(),
            now_unix: unix_now(),
        }
    }

    /// The index entry for a found record, if it may still answer.
    fn record(&self, found: &FoundRecord<'_>) -> Option<StoredRecord> {
        if matches!(found.status, 502 | 504) {
            return None;
        }
        let age = self.now_unix.saturating_sub(found.archived_at).max(0) as u64;
        let left = self.ttl.checked_sub(Duration::from_secs(age))?;
        let mut record = StoredRecord::stored(
            found.loc,
            // A restored reply carries the standard reason phrase for its status.
            RecordStatus::new(found.status, canonical_reason(found.status), None),
            self.now,
            self.now + left,
            None,
        );
        // Its age counts from when it was archived (forward mode learns its facts later).
        record.born = ticks::of(self.now).saturating_sub(age as i64 * ticks::PER_SECOND);
        Some(record)
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
        let Some(record) = self.record(&found) else {
            return false;
        };
        self.index.restore(found.url, &record);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::RecordLoc;
    use crate::index::Lookup;

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
