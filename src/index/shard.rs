//! One shard of the index: its table of slots and the side tables a few entries need
//! (fetches in flight, records not yet confirmed, what a slot cannot hold), with what is
//! done to them under the shard's lock: storing, forgetting, making room within the budget,
//! and unpacking a slot into a record. Also how a key becomes an id (`Keyer`).

use std::borrow::Cow;
use std::hash::BuildHasher;
use std::sync::Arc;

use super::flight::Flight;
use super::record::StoredRecord;
use super::slot::{ticks, Id, Slot, EXTRAS, UNCONFIRMED};
use super::table::SlotTable;
use super::SHARDS;
use crate::http::reply::{canonical_reason, RecordStatus};

/// One shard: its table of stored records and the side tables for what few entries need.
#[derive(Debug, Default)]
pub(super) struct Shard {
    pub(super) table: SlotTable,
    /// Fetches in flight; a key here hides its stored record from lookups.
    pub(super) flights: hashbrown::HashMap<Id, Arc<Flight>>,
    /// For entries flagged `UNCONFIRMED`: the invalidation epoch they were stored under.
    /// Until the fetch confirms them they answer only while that epoch lasts, so an
    /// invalidation racing the store never lets them answer afterwards.
    pub(super) pending: hashbrown::HashMap<Id, u32>,
    /// For entries flagged `EXTRAS`: what their slot cannot hold.
    pub(super) extras: hashbrown::HashMap<Id, Extras>,
}

/// The rare parts of a record: a reason phrase that is not the standard one, an archived
/// failure's code line, fields a 304 updated.
#[derive(Debug, Default)]
pub(super) struct Extras {
    reason: Option<Box<str>>,
    error: Option<&'static str>,
    updated_fields: Option<Arc<[u8]>>,
}

impl Extras {
    fn of(record: &StoredRecord) -> Option<Extras> {
        let s = &record.status;
        let reason = (*s.reason != *canonical_reason(s.code)).then(|| Box::from(&*s.reason));
        (reason.is_some() || s.error.is_some() || record.updated_fields.is_some()).then(|| Extras {
            reason,
            error: s.error,
            updated_fields: record.updated_fields.clone(),
        })
    }
}

/// A key's id: two keyed SipHash-1-3 values (std's `RandomState`, seeded at random per
/// process), so ids collide only by chance, never by a request's design.
#[derive(Debug)]
pub(super) struct Keyer {
    pub(super) home: std::hash::RandomState,
    pub(super) pick: std::hash::RandomState,
    pub(super) spread: Spread,
}

/// How keys spread over the shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Spread {
    /// By their hash (always, but in tests and benches).
    Even,
    /// Benches: every key in the first shard, to see one shard at a size the whole index
    /// has only with `SHARDS` times as many keys.
    OneShard,
    /// Tests: every key in one shard at one home (the worst collisions), told apart only by
    /// the rest of its id.
    #[cfg_attr(not(test), allow(dead_code))]
    Crowded,
}

impl Keyer {
    pub(super) fn id(&self, key: &str) -> Id {
        let pick = self.pick.hash_one(key);
        let first_shard = pick & !(SHARDS as u64 - 1);
        match self.spread {
            Spread::Even => Id::new(self.home.hash_one(key), pick),
            Spread::OneShard => Id::new(self.home.hash_one(key), first_shard),
            Spread::Crowded => Id::new(1, first_shard),
        }
    }
}

impl Shard {
    /// The record a slot stands for.
    pub(super) fn record(&self, slot: &Slot) -> StoredRecord {
        let extras = (slot.flags & EXTRAS != 0)
            .then(|| self.extras.get(&slot.id))
            .flatten();
        let code = slot.status();
        let reason = match extras.and_then(|e| e.reason.as_deref()) {
            Some(r) => Cow::Owned(r.to_owned()),
            None => Cow::Borrowed(canonical_reason(code)),
        };
        StoredRecord {
            loc: slot.loc(),
            status: RecordStatus {
                code,
                reason,
                error: extras.and_then(|e| e.error),
                detail: None,
            },
            expires_at: ticks::instant(slot.expires()),
            born: slot.born(),
            facts: slot.facts(),
            updated_fields: extras.and_then(|e| e.updated_fields.clone()),
        }
    }

    /// Stores `record` under `id` (replacing what was there), unconfirmed under `epoch` if
    /// given, making room within `max_slots` first; returns how many entries that evicted.
    /// A record whose place does not fit a slot is not indexed, and the key forgets what it
    /// held.
    pub(super) fn put(
        &mut self,
        id: Id,
        record: &StoredRecord,
        epoch: Option<u32>,
        max_slots: usize,
    ) -> usize {
        let expires = ticks::of(record.expires_at);
        let packed = Slot::pack(
            id,
            record.loc,
            record.status.code,
            expires,
            record.born,
            record.facts,
        );
        let Some(mut slot) = packed else {
            self.forget(id);
            return 0;
        };
        match Extras::of(record) {
            Some(extras) => {
                slot.flags |= EXTRAS;
                self.extras.insert(id, extras);
            }
            None => {
                self.extras.remove(&id);
            }
        }
        match epoch {
            Some(epoch) => {
                slot.flags |= UNCONFIRMED;
                self.pending.insert(id, epoch);
            }
            None => {
                self.pending.remove(&id);
            }
        }
        self.insert(slot, max_slots)
    }

    /// Puts `slot` in the table (replacing its id's), making room within `max_slots` for a
    /// new id; returns how many entries that evicted. The side tables are the caller's.
    pub(super) fn insert(&mut self, slot: Slot, max_slots: usize) -> usize {
        let evicted = match self.table.get(slot.id) {
            Some(_) => 0,
            None => self.make_room(max_slots),
        };
        self.table.insert(slot);
        evicted
    }

    /// Removes the stored record under `id` and what the side tables hold for it.
    pub(super) fn forget(&mut self, id: Id) {
        self.table.remove(id);
        self.pending.remove(&id);
        self.extras.remove(&id);
    }

    /// Room for one more entry: the table grows by a step while within `max_slots`; at it,
    /// the eighth of its entries closest to expiry leave. Returns how many left.
    pub(super) fn make_room(&mut self, max_slots: usize) -> usize {
        if !self.table.is_full() {
            return 0;
        }
        if self.table.capacity() < max_slots {
            let next = self.table.next_capacity(max_slots);
            self.table.resize(next);
            if !self.table.is_full() {
                return 0;
            }
        }
        let mut expiries: Vec<i64> = self.table.iter().map(Slot::expires).collect();
        let leave = (expiries.len() / 8).max(1);
        let (_, &mut cut, _) = expiries.select_nth_unstable(leave - 1);
        let mut left = leave;
        let gone = self.table.retain(|s| {
            let go = left > 0 && s.expires() <= cut;
            left -= usize::from(go);
            !go
        });
        self.drop_side_entries(&gone);
        gone.len()
    }

    /// Forgets what the side tables hold for slots taken out of the table.
    pub(super) fn drop_side_entries(&mut self, gone: &[Slot]) {
        for s in gone {
            self.pending.remove(&s.id);
            self.extras.remove(&s.id);
        }
    }
}
