//! The shared index: key -> stored record or in-flight fetch, for every worker. Stored
//! records are compact fixed-size slots (`slot`) in open-addressing tables (`table`), one
//! per shard behind a mutex held for a probe; a memory budget bounds the tables, and at it
//! the entries closest to expiry leave first. Claiming a key elects the single fetcher
//! across all workers; everyone else waits on the same `Flight`.

mod flight;
mod record;
mod restore;
mod shard;
mod slot;
mod slots;
mod table;
mod vary;

pub use flight::{Archived, Delivery, Flight, FlightGuard, Outcome};
pub use record::StoredRecord;
pub use restore::Restorer;
pub use slot::{ticks, Facts};

use std::hash::BuildHasher;
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use crate::http::request::Header;
use shard::{Keyer, Shard, Spread};
use slot::{Id, Slot, UNCONFIRMED};
use table::SlotTable;
use vary::VaryLists;

/// What a request should do about its URL.
#[derive(Debug)]
pub enum Lookup {
    /// Serve this stored record.
    Hit(Arc<StoredRecord>),
    /// Someone else is fetching: wait on this flight.
    Wait(Arc<Flight>),
    /// Nothing usable is stored.
    Absent,
}

/// A won claim: the caller fetches and must settle the flight.
#[derive(Debug)]
pub struct Claim {
    pub flight: Arc<Flight>,
    /// The record the claim hides, if any (a stale one may be revalidated).
    pub previous: Option<Arc<StoredRecord>>,
}

/// The index's size, for the status page and the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexMemory {
    pub entries: usize,
    /// Bytes the slot tables take (the budget bounds these).
    pub table_bytes: usize,
    /// `--index-memory`.
    pub budget: usize,
    /// Entries that left to keep within the budget, since start.
    pub evictions: u64,
    /// URLs whose `Vary` list is remembered (for `--ttl`, outside the budget).
    pub vary_lists: usize,
}

/// Key -> entry, shared by all workers. A key is the normalized URL, or for forward-mode
/// variants of a URL whose response had `Vary`, the URL plus the values of the varying
/// request headers.
#[derive(Debug)]
pub struct Index {
    shards: Box<[CachePadded<Mutex<Shard>>]>,
    keyer: Keyer,
    /// Slots one shard's table may have (`--index-memory` split over the shards).
    shard_slots: usize,
    budget: usize,
    evictions: AtomicU64,
    vary: VaryLists,
    /// Invalidations so far, per bucket of URLs (by hash): a fetch that started before its
    /// URL was invalidated must not offer its (older) response afterwards. A bucket is shared
    /// by many URLs, so an invalidation may cost another URL's offer (a later miss), never
    /// the reverse.
    epochs: Box<[AtomicU32]>,
    /// Picks a URL's epoch bucket.
    hasher: hashbrown::DefaultHashBuilder,
}

/// Buckets of `Index::epochs`.
const EPOCH_BUCKETS: usize = 1024;

/// Shards: a growth step copies one shard's table, so many small ones keep every step short
/// (`cargo bench --bench index_growth`).
const SHARDS: usize = 256;

/// The URL a key stands for: a variant key is the URL, then `\u{1}` and the varying values
/// (`Index::variant_key`).
fn url_of_key(key: &str) -> &str {
    key.split('\u{1}').next().unwrap_or(key)
}

/// Whether `key` is a variant key (it carries the values of the headers its URL varies on).
fn is_variant_key(key: &str) -> bool {
    key.contains('\u{1}')
}

impl Default for Index {
    fn default() -> Self {
        Self::new()
    }
}

impl Index {
    /// An index without a memory budget (tests and tools).
    pub fn new() -> Self {
        Self::with_budget(usize::MAX)
    }

    /// An index whose tables stay within `budget` bytes (`--index-memory`).
    pub fn with_budget(budget: usize) -> Self {
        Self::build(budget, Spread::Even)
    }

    /// Benches: an index that puts every key in one shard (`cargo bench --bench
    /// index_memory` shows one shard at the size a hundred million URLs give each).
    pub fn one_shard() -> Self {
        Self::build(usize::MAX, Spread::OneShard)
    }

    fn build(budget: usize, spread: Spread) -> Self {
        Index {
            shards: (0..SHARDS).map(|_| Default::default()).collect(),
            keyer: Keyer {
                home: Default::default(),
                pick: Default::default(),
                spread,
            },
            shard_slots: (budget / SHARDS / std::mem::size_of::<Slot>()).max(16),
            budget,
            evictions: AtomicU64::new(0),
            // The Vary lists may take an eighth of the budget again, outside it.
            vary: VaryLists::with_limit(budget / 8 / vary::BYTES_PER_LIST),
            epochs: (0..EPOCH_BUCKETS).map(|_| AtomicU32::new(0)).collect(),
            hasher: Default::default(),
        }
    }

    /// Tests: an index whose keys all collide but for their ids.
    #[cfg(test)]
    fn crowded(budget: usize) -> Self {
        Self::build(budget, Spread::Crowded)
    }

    fn shard(&self, id: Id) -> MutexGuard<'_, Shard> {
        self.shards[id.pick() as usize % SHARDS]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn epoch_bucket(&self, url: &str) -> &AtomicU32 {
        &self.epochs[self.hasher.hash_one(url) as usize % EPOCH_BUCKETS]
    }

    /// `url`'s invalidation epoch: taken when a fetch starts, compared before its result is
    /// offered (`invalidated_since`).
    pub fn epoch(&self, url: &str) -> u32 {
        self.epoch_bucket(url).load(Ordering::Acquire)
    }

    /// Whether `url` may have been invalidated since `epoch` was taken.
    fn invalidated_since(&self, url: &str, epoch: u32) -> bool {
        self.epoch(url) != epoch
    }

    /// Whether a stored slot may answer: confirmed, or still within the epoch it was stored
    /// under (see `Shard::pending`).
    fn answers(&self, shard: &Shard, slot: &Slot, key: &str) -> bool {
        slot.flags & UNCONFIRMED == 0
            || shard.pending.get(&slot.id) == Some(&self.epoch(url_of_key(key)))
    }

    fn count_evictions(&self, n: usize) {
        if n > 0 {
            self.evictions.fetch_add(n as u64, Ordering::Relaxed);
        }
    }

    /// The record stored under `key` that may answer, whatever its freshness.
    fn stored(&self, shard: &Shard, id: Id, key: &str) -> Option<StoredRecord> {
        let slot = shard.table.get(id)?;
        // A record that varies is found only under a key carrying the varying values: under
        // the bare URL (its Vary list forgotten) nobody knows whose variant it is.
        if slot.facts().varies() && !is_variant_key(key) {
            return None;
        }
        self.answers(shard, slot, key).then(|| shard.record(slot))
    }

    /// Looks `key` up; a stored record the caller cannot use (`usable` says no: stale, not
    /// for this client...) counts as absent.
    pub fn lookup(&self, key: &str, usable: impl Fn(&StoredRecord) -> bool) -> Lookup {
        let id = self.keyer.id(key);
        let shard = self.shard(id);
        if let Some(f) = shard.flights.get(&id) {
            return Lookup::Wait(f.clone());
        }
        match self.stored(&shard, id, key) {
            Some(r) if usable(&r) => Lookup::Hit(Arc::new(r)),
            _ => Lookup::Absent,
        }
    }

    /// Tries to become the fetcher for `key`: succeeds unless another fetch is in flight or
    /// a usable record appeared meanwhile. On success the caller owns the returned flight and
    /// must complete it.
    pub fn claim(
        &self,
        key: &str,
        usable: impl Fn(&StoredRecord) -> bool,
    ) -> Result<Claim, Lookup> {
        let id = self.keyer.id(key);
        let mut shard = self.shard(id);
        if let Some(f) = shard.flights.get(&id) {
            return Err(Lookup::Wait(f.clone()));
        }
        let previous = match self.stored(&shard, id, key) {
            Some(r) if usable(&r) => return Err(Lookup::Hit(Arc::new(r))),
            r => r.map(Arc::new),
        };
        let flight = Arc::new(Flight::new());
        shard.flights.insert(id, flight.clone());
        Ok(Claim { flight, previous })
    }

    /// Stores a record fetched outside a claim (a request that kept its exchange to itself,
    /// whose response turned out shareable), unless a fetch for the key is in flight.
    fn offer(&self, key: &str, record: &StoredRecord, epoch: u32) {
        let id = self.keyer.id(key);
        let mut shard = self.shard(id);
        if !shard.flights.contains_key(&id) {
            let evicted = shard.put(id, record, Some(epoch), self.shard_slots);
            self.count_evictions(evicted);
        }
    }

    /// `offer`, unless `url` was invalidated since `epoch` (the fetch's response may predate
    /// the change): checked before, and again after, so an invalidation racing the offer
    /// either stops it or withdraws it (`invalidate` counts the epoch up first).
    pub fn offer_unless_invalidated(
        &self,
        key: &str,
        url: &str,
        epoch: u32,
        record: Arc<StoredRecord>,
    ) {
        if self.invalidated_since(url, epoch) {
            return;
        }
        self.offer(key, &record, epoch);
        self.confirm_or_withdraw(key, &record, url, epoch);
    }

    /// After storing `record` under `key`: lets it answer everyone if `url` was not
    /// invalidated since `epoch`, else takes it out again (it never answered meanwhile: it
    /// was unconfirmed under `epoch`). The fence pairs with the one in `invalidate`: either
    /// this sees the new epoch, or `invalidate` sees (and removes) the record stored under
    /// the URL itself, or under a variant key the Vary generation it moves on.
    fn confirm_or_withdraw(&self, key: &str, record: &StoredRecord, url: &str, epoch: u32) {
        fence(Ordering::SeqCst);
        let withdraw = self.invalidated_since(url, epoch);
        let id = self.keyer.id(key);
        let mut shard = self.shard(id);
        let Some(slot) = shard.table.get_mut(id) else {
            return;
        };
        // Only the record this fetch stored: another may have replaced it meanwhile.
        if slot.loc() != record.loc || slot.flags & UNCONFIRMED == 0 {
            return;
        }
        if withdraw {
            shard.forget(id);
        } else {
            slot.flags &= !UNCONFIRMED;
            shard.pending.remove(&id);
        }
    }

    /// `settle`, storing nothing if `url` was invalidated since `epoch` (checked before and
    /// after, as for offers): a claim under a variant key is not reached by `invalidate`.
    pub fn settle_unless_invalidated(
        &self,
        key: &str,
        flight: &Arc<Flight>,
        stored: Option<Arc<StoredRecord>>,
        url: &str,
        epoch: u32,
    ) {
        let stored = stored.filter(|_| !self.invalidated_since(url, epoch));
        self.settle_as(key, flight, stored.as_deref(), Some(epoch));
        if let Some(record) = stored {
            self.confirm_or_withdraw(key, &record, url, epoch);
        }
    }

    /// The key for `request`'s variant of `url`: the URL itself until a response for it
    /// said `Vary`, then the URL plus the request's values of the varying headers.
    pub fn variant_key(&self, url: &str, request: &[Header]) -> Option<String> {
        self.vary.variant_key(url, request)
    }

    /// Remembers which request headers `url`'s responses vary on (from its latest response).
    pub fn learn_vary<S: AsRef<str>>(&self, url: &str, names: &[S]) {
        self.vary.learn(url, names);
    }

    /// Drops every stored record past its `--ttl` (or `--error-ttl`), and Vary name lists not
    /// refreshed for `vary_ttl`: without this the index would keep every URL ever seen.
    /// Fetches in flight are never touched. Returns how many records went.
    pub fn sweep(&self, now: Instant, vary_ttl: Duration) -> usize {
        let at = ticks::of(now);
        let mut removed = 0;
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            let gone = shard.table.retain(|s| s.expires() > at);
            shard.drop_side_entries(&gone);
            removed += gone.len();
        }
        self.vary.sweep(now, vary_ttl);
        removed
    }

    /// Drops the Vary lists learnt longest ago when there are more than their share of the
    /// budget allows; the sweeper calls it between sweeps.
    pub fn trim_vary_lists(&self) {
        self.vary.trim();
    }

    /// Replaces `flight` with its result: the stored record, or nothing (so the next request
    /// fetches again). Leaves the key alone if someone else claimed it meanwhile.
    pub fn settle(&self, key: &str, flight: &Arc<Flight>, stored: Option<Arc<StoredRecord>>) {
        self.settle_as(key, flight, stored.as_deref(), None);
    }

    fn settle_as(
        &self,
        key: &str,
        flight: &Arc<Flight>,
        stored: Option<&StoredRecord>,
        epoch: Option<u32>,
    ) {
        let id = self.keyer.id(key);
        let mut shard = self.shard(id);
        match shard.flights.get(&id) {
            Some(f) if Arc::ptr_eq(f, flight) => {
                shard.flights.remove(&id);
            }
            _ => return,
        }
        match stored {
            Some(record) => {
                let evicted = shard.put(id, record, epoch, self.shard_slots);
                self.count_evictions(evicted);
            }
            None => shard.forget(id),
        }
    }

    /// Indexes a record found on disk at start (its facts unknown), unless one for the URL
    /// that expires later is indexed. Times in ticks.
    pub fn restore(
        &self,
        url: &str,
        loc: crate::archive::RecordLoc,
        status: u16,
        expires: i64,
        born: i64,
    ) {
        let id = self.keyer.id(url);
        let Some(slot) = Slot::pack(id, loc, status, expires, born, Facts::unknown()) else {
            return;
        };
        let mut shard = self.shard(id);
        if shard
            .table
            .get(id)
            .is_some_and(|s| s.expires() >= slot.expires())
        {
            return;
        }
        // Start-up has no fetches in flight and nothing unconfirmed: the side tables are
        // empty unless two files held the URL, so this costs a length check per record.
        if !shard.extras.is_empty() || !shard.pending.is_empty() {
            shard.drop_side_entries(&[slot]);
        }
        let evicted = shard.insert(slot, self.shard_slots);
        self.count_evictions(evicted);
    }

    /// A record stored under `key` whose RFC 9111 facts are not known (restored from disk),
    /// still within `--ttl`: forward mode reads its head, then `learn_facts`.
    pub fn without_facts(&self, key: &str, now: Instant) -> Option<StoredRecord> {
        let id = self.keyer.id(key);
        let shard = self.shard(id);
        if shard.flights.contains_key(&id) {
            return None;
        }
        self.stored(&shard, id, key)
            .filter(|r| !r.facts.known() && r.is_fresh(now))
    }

    /// Sets the facts of the record at `loc` under `key`, read from its head, counting its
    /// age from `born` (ticks).
    pub fn learn_facts(&self, key: &str, loc: crate::archive::RecordLoc, facts: Facts, born: i64) {
        let id = self.keyer.id(key);
        let mut shard = self.shard(id);
        if let Some(slot) = shard.table.get_mut(id).filter(|s| s.loc() == loc) {
            slot.set_facts(facts, born);
        }
    }

    /// Forgets the stored record for `url` and its variants (an unsafe method changed it
    /// upstream), and a fetch of it in flight: that fetch may have been answered before the
    /// change, so its result must not be stored (its `settle` then finds the flight gone, and
    /// the epoch stops it from being offered). Requests already waiting on it still get it.
    pub fn invalidate(&self, url: &str) {
        self.epoch_bucket(url).fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        let id = self.keyer.id(url);
        let mut shard = self.shard(id);
        shard.flights.remove(&id);
        shard.forget(id);
        drop(shard);
        self.vary.invalidate(url);
    }

    /// Makes room for `additional` more entries at once (start-up knows how many are coming;
    /// growing step by step would copy the tables several times), within the budget.
    pub fn reserve(&self, additional: usize) {
        // Keys spread evenly over the shards; a little more each covers the unevenness.
        let each = additional / SHARDS + additional / SHARDS / 16;
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            let want = SlotTable::capacity_for(shard.table.len() + each)
                .min(self.shard_slots.max(shard.table.capacity()));
            if want > shard.table.capacity() {
                shard.table.resize(want);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.memory().entries
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn memory(&self) -> IndexMemory {
        let (mut entries, mut table_bytes) = (0, 0);
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            entries += shard.table.len();
            table_bytes += shard.table.bytes();
        }
        IndexMemory {
            entries,
            table_bytes,
            budget: self.budget,
            evictions: self.evictions.load(Ordering::Relaxed),
            vary_lists: self.vary.len(),
        }
    }
}

#[cfg(test)]
mod tests;
