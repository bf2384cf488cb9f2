//! What a lookup hands out about a stored record: unpacked from its slot, with the few
//! answers the cache rules ask of it (fresh? whose? how old?).

use std::sync::Arc;
use std::time::Instant;

use super::slot::{ticks, Facts};
use crate::archive::RecordLoc;
use crate::http::cache::{fresh_for, RequestDirectives, Reuse};
use crate::http::reply::RecordStatus;

/// A stored record as the index knows it.
#[derive(Debug, Clone)]
pub struct StoredRecord {
    pub loc: RecordLoc,
    /// What the reply's status line and error header say.
    pub status: RecordStatus,
    /// When this record stops answering requests (`--ttl` or `--error-ttl` after the fetch).
    pub expires_at: Instant,
    /// Ticks (`ticks::of`) at which the response was as fresh as new: when it was stored,
    /// less its age then (RFC 9111 4.2.3). Ages count from here.
    pub born: i64,
    /// The RFC 9111 facts lookups decide on (unknown for a record restored from disk until
    /// forward mode reads them from its head).
    pub facts: Facts,
    /// Header fields `304` revalidations brought, replacing the stored response's in forward
    /// replies (RFC 9111 4.3.4; `http::client_head::update_fields`).
    pub updated_fields: Option<Arc<[u8]>>,
}

impl StoredRecord {
    /// The entry of a record stored at `now` for `ttl`, whose response was `initial_age`
    /// seconds old then, with the facts of `reuse` (`None`: unknown).
    pub fn stored(
        loc: RecordLoc,
        status: RecordStatus,
        now: Instant,
        expires_at: Instant,
        reuse: Option<&Reuse>,
    ) -> StoredRecord {
        let initial_age = reuse.map_or(0, |r| r.initial_age);
        let age_ticks = i64::try_from(initial_age)
            .unwrap_or(i64::MAX)
            .saturating_mul(ticks::PER_SECOND);
        StoredRecord {
            loc,
            status,
            expires_at,
            born: ticks::of(now).saturating_sub(age_ticks),
            facts: reuse.map_or_else(Facts::unknown, Facts::of),
            updated_fields: reuse.and_then(|r| r.updated_fields.clone()),
        }
    }

    /// Within `--ttl` (or `--error-ttl`): the liveweb-mode rule, and the longest any record
    /// answers in either mode.
    pub fn is_fresh(&self, now: Instant) -> bool {
        now < self.expires_at
    }

    /// Whether the request that fetched it carried Authorization or Cookie (unknown for a
    /// restored record: `false`; private ones are never restored).
    pub fn is_credentialed(&self) -> bool {
        self.facts.credentialed()
    }

    /// Whether it was a forward-mode response meant for its client alone.
    pub fn is_forward_private(&self) -> bool {
        self.facts.forward_private()
    }

    /// Its current age in seconds (RFC 9111 4.2.3).
    pub fn age(&self, now: Instant) -> u64 {
        let ticks = ticks::of(now).saturating_sub(self.born).max(0);
        (ticks / ticks::PER_SECOND) as u64
    }

    /// Whether it may answer a request with these directives without contacting the origin
    /// (forward mode; the facts must be known).
    pub fn is_fresh_for(&self, req: RequestDirectives, now: Instant) -> bool {
        let f = self.facts;
        f.known()
            && fresh_for(
                req,
                self.age(now),
                u64::from(f.lifetime),
                f.validate_always(),
            )
    }
}
