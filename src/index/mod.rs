//! The shared index: a lock-free map (papaya, in shards) from normalized URL to either an in-flight
//! fetch or a stored record. Insert-if-absent elects the single fetcher across all workers;
//! everyone else waits on the same `Flight` and is woken, on whatever thread, when it lands.

mod flight;
mod restore;
mod vary;

pub use restore::Restorer;

use std::hash::BuildHasher;
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::archive::RecordLoc;
use crate::http::cache::Reuse;
use crate::http::reply::RecordStatus;
use crate::http::request::Header;

pub use flight::{Delivery, Flight, FlightGuard, Outcome};
use vary::VaryLists;

/// What the index knows about a record on disk.
#[derive(Debug)]
pub struct StoredRecord {
    pub loc: RecordLoc,
    /// What the reply's status line and error header say.
    pub status: RecordStatus,
    /// When this record stops answering requests (`--ttl` or `--error-ttl` after the fetch).
    pub expires_at: Instant,
    /// When it was stored (or last revalidated), for its age.
    pub stored_at: Instant,
    /// RFC 9111 reuse rules worked out when it was fetched; `None` for a record restored from
    /// disk at start (its response head is not read then), which forward mode fetches again.
    pub reuse: Option<Box<Reuse>>,
    /// 0 once the record may answer anyone. A record offered or settled by a fetch holds
    /// its URL's invalidation epoch plus one until the fetch has checked, after storing it,
    /// that no invalidation came in between; until then it answers only while that epoch
    /// lasts, so an invalidation racing the store never lets it answer afterwards.
    pub unconfirmed: AtomicU64,
}

/// A copy to store under another key: confirmation belongs to each stored entry, so the
/// copy starts confirmed (storing it sets its own).
impl Clone for StoredRecord {
    fn clone(&self) -> Self {
        StoredRecord {
            loc: self.loc,
            status: self.status.clone(),
            expires_at: self.expires_at,
            stored_at: self.stored_at,
            reuse: self.reuse.clone(),
            unconfirmed: AtomicU64::new(0),
        }
    }
}

impl StoredRecord {
    /// What `unconfirmed` holds for a record stored under `epoch` (never 0).
    fn pending(epoch: u32) -> u64 {
        u64::from(epoch) + 1
    }

    /// Marks the record as stored under `epoch` and not yet confirmed.
    fn mark_unconfirmed(&self, epoch: u32) {
        self.unconfirmed
            .store(Self::pending(epoch), Ordering::SeqCst);
    }

    /// Within `--ttl` (or `--error-ttl`): the liveweb-mode rule, and the longest any record
    /// answers in either mode.
    pub fn is_fresh(&self, now: Instant) -> bool {
        now < self.expires_at
    }

    /// Whether the request that fetched it carried Authorization or Cookie (unknown for a
    /// restored record: `false`; private ones are never restored).
    pub fn is_credentialed(&self) -> bool {
        self.reuse.as_ref().is_some_and(|r| r.credentialed)
    }

    /// Whether it was a forward-mode response meant for its client alone.
    pub fn is_forward_private(&self) -> bool {
        self.reuse.as_ref().is_some_and(|r| r.forward_private)
    }
}

/// An index value.
#[derive(Debug, Clone)]
pub enum Entry {
    /// One worker is fetching this URL; wait on the flight.
    Fetching(Arc<Flight>),
    /// A record is stored.
    Stored(Arc<StoredRecord>),
}

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
    /// The record the claim replaced, if any (a stale one may be revalidated).
    pub previous: Option<Arc<StoredRecord>>,
}

/// Key -> entry, shared by all workers. A key is the normalized URL, or for forward-mode
/// variants of a URL whose response had `Vary`, the URL plus the values of the varying
/// request headers.
#[derive(Debug)]
pub struct Index {
    /// The entries, split by key hash into `SHARDS` maps: every operation touches one key,
    /// and a table that doubles copies only its shard (docs/performance.md, "Growth").
    shards: Box<[Shard]>,
    vary: VaryLists,
    /// Invalidations so far, per bucket of URLs (by hash): a fetch that started before its
    /// URL was invalidated must not offer its (older) response afterwards. A bucket is shared
    /// by many URLs, so an invalidation may cost another URL's offer (a later miss), never
    /// the reverse.
    epochs: Box<[AtomicU32]>,
    /// Picks a key's shard and a URL's epoch bucket (randomly seeded). Not for HashDoS
    /// resistance (papaya hashes keys with SipHash inside each shard): keys crowded into one
    /// shard only make it grow like the whole map, URLs crowded into one bucket only cost
    /// each other offers.
    hasher: hashbrown::DefaultHashBuilder,
}

/// Buckets of `Index::epochs`.
const EPOCH_BUCKETS: usize = 1024;

type Shard = papaya::HashMap<Box<str>, Entry>;

/// Shards of the map. A blocking resize stalls the inserting worker for a copy of one shard:
/// with one map that was the whole table (`cargo bench --bench index_growth`).
const SHARDS: usize = 8;

/// The URL a key stands for: a variant key is the URL, then `\u{1}` and the varying values
/// (`Index::variant_key`).
fn url_of_key(key: &str) -> &str {
    key.split('\u{1}').next().unwrap_or(key)
}

impl Default for Index {
    fn default() -> Self {
        Self::new()
    }
}

impl Index {
    /// Blocking resizes: with papaya's default incremental resizing, a map grown through
    /// `compute` (how every entry here is written) kept lookups ~4x slower (1.6 us against
    /// 0.47 us for 100k URLs, measured here), as readers search two tables. Blocking resizes
    /// never block readers; a write that triggers one (table doubling) waits for the copy.
    pub fn new() -> Self {
        Index {
            shards: (0..SHARDS)
                .map(|_| {
                    papaya::HashMap::builder()
                        .resize_mode(papaya::ResizeMode::Blocking)
                        .build()
                })
                .collect(),
            vary: VaryLists::default(),
            epochs: (0..EPOCH_BUCKETS).map(|_| AtomicU32::new(0)).collect(),
            hasher: Default::default(),
        }
    }

    /// The map holding `key`.
    fn map(&self, key: &str) -> &Shard {
        &self.shards[self.hasher.hash_one(key) as usize % SHARDS]
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

    /// Whether a record stored under `key` may answer: confirmed, or still within the
    /// epoch it was stored under (see `StoredRecord::unconfirmed`).
    fn answers(&self, key: &str, record: &StoredRecord) -> bool {
        match record.unconfirmed.load(Ordering::SeqCst) {
            0 => true,
            pending => StoredRecord::pending(self.epoch(url_of_key(key))) == pending,
        }
    }

    /// Looks `key` up; a stored record the caller cannot use (`usable` says no: stale, not
    /// for this client...) counts as absent.
    pub fn lookup(&self, key: &str, usable: impl Fn(&StoredRecord) -> bool) -> Lookup {
        match self.map(key).pin().get(key) {
            Some(Entry::Fetching(f)) => Lookup::Wait(f.clone()),
            Some(Entry::Stored(r)) if self.answers(key, r) && usable(r) => Lookup::Hit(r.clone()),
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
        let flight = Arc::new(Flight::new());
        let mut previous = None;
        let map = self.map(key).pin();
        let result = map.compute(Box::from(key), |current| match current {
            Some((_, Entry::Fetching(f))) => papaya::Operation::Abort(Lookup::Wait(f.clone())),
            Some((_, Entry::Stored(r))) if self.answers(key, r) && usable(r) => {
                papaya::Operation::Abort(Lookup::Hit(r.clone()))
            }
            current => {
                previous = match current {
                    // An invalidated record is not revalidated either.
                    Some((_, Entry::Stored(r))) if self.answers(key, r) => Some(r.clone()),
                    _ => None,
                };
                papaya::Operation::Insert(Entry::Fetching(flight.clone()))
            }
        });
        match result {
            papaya::Compute::Inserted(..) | papaya::Compute::Updated { .. } => {
                Ok(Claim { flight, previous })
            }
            papaya::Compute::Aborted(lookup) => Err(lookup),
            papaya::Compute::Removed(..) => Err(Lookup::Absent),
        }
    }

    /// Stores a record fetched outside a claim (a request that kept its exchange to itself,
    /// whose response turned out shareable), unless a fetch for the key is in flight.
    fn offer(&self, key: &str, record: Arc<StoredRecord>) {
        let map = self.map(key).pin();
        map.compute(Box::from(key), |current| match current {
            Some((_, Entry::Fetching(_))) => papaya::Operation::Abort(()),
            _ => papaya::Operation::Insert(Entry::Stored(record.clone())),
        });
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
        record.mark_unconfirmed(epoch);
        self.offer(key, record.clone());
        self.confirm_or_withdraw(key, &record, url, epoch);
    }

    /// After storing `record` under `key`: lets it answer everyone if `url` was not
    /// invalidated since `epoch`, else takes it out again (it never answered meanwhile: it
    /// was unconfirmed under `epoch`). The fence pairs with the one in `invalidate`: either
    /// this sees the new epoch, or `invalidate` sees (and removes) the record stored under
    /// the URL itself, or under a variant key the Vary generation it moves on.
    fn confirm_or_withdraw(&self, key: &str, record: &Arc<StoredRecord>, url: &str, epoch: u32) {
        fence(Ordering::SeqCst);
        if self.invalidated_since(url, epoch) {
            self.withdraw(key, record);
        } else {
            record.unconfirmed.store(0, Ordering::SeqCst);
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
        if let Some(record) = &stored {
            record.mark_unconfirmed(epoch);
        }
        self.settle(key, flight, stored.clone());
        if let Some(record) = stored {
            self.confirm_or_withdraw(key, &record, url, epoch);
        }
    }

    /// Removes `record` from `key`, if it is still what the key holds.
    fn withdraw(&self, key: &str, record: &Arc<StoredRecord>) {
        self.map(key)
            .pin()
            .compute(Box::from(key), |current| match current {
                Some((_, Entry::Stored(r))) if Arc::ptr_eq(r, record) => papaya::Operation::Remove,
                _ => papaya::Operation::Abort(()),
            });
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
    /// refreshed for `vary_ttl`: without this the map would keep every URL ever seen. Fetches
    /// in flight are never touched; a record replaced meanwhile is judged afresh. Returns how
    /// many records went.
    pub fn sweep(&self, now: Instant, vary_ttl: Duration) -> usize {
        let mut removed = 0;
        for shard in self.shards.iter() {
            shard.pin().retain(|_, entry| match entry {
                Entry::Stored(r) if !r.is_fresh(now) => {
                    removed += 1;
                    false
                }
                _ => true,
            });
        }
        self.vary.sweep(now, vary_ttl);
        removed
    }

    /// Replaces `flight` with its result: the stored record, or nothing (so the next request
    /// fetches again). Leaves the entry alone if someone else replaced it meanwhile.
    pub fn settle(&self, url: &str, flight: &Arc<Flight>, stored: Option<Arc<StoredRecord>>) {
        let map = self.map(url).pin();
        map.compute(Box::from(url), |current| match current {
            Some((_, Entry::Fetching(f))) if Arc::ptr_eq(f, flight) => match &stored {
                Some(r) => papaya::Operation::Insert(Entry::Stored(r.clone())),
                None => papaya::Operation::Remove,
            },
            _ => papaya::Operation::Abort(()),
        });
    }

    /// Indexes a record found on disk at start, unless a newer one for the URL is indexed.
    pub fn restore(&self, url: &str, record: Arc<StoredRecord>) {
        let map = self.map(url).pin();
        map.compute(Box::from(url), |current| match current {
            Some((_, Entry::Stored(r))) if r.expires_at >= record.expires_at => {
                papaya::Operation::Abort(())
            }
            _ => papaya::Operation::Insert(Entry::Stored(record.clone())),
        });
    }

    /// Forgets the stored record for `url` and its variants (an unsafe method changed it
    /// upstream), and a fetch of it in flight: that fetch may have been answered before the
    /// change, so its result must not be stored (its `settle` then finds the entry gone, and
    /// the epoch stops it from being offered). Requests already waiting on it still get it.
    pub fn invalidate(&self, url: &str) {
        self.epoch_bucket(url).fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        let map = self.map(url).pin();
        map.compute(Box::from(url), |current| match current {
            Some(_) => papaya::Operation::Remove,
            None => papaya::Operation::Abort(()),
        });
        self.vary.invalidate(url);
    }

    /// Makes room for `additional` more entries at once (start-up knows how many are coming;
    /// growing step by step would rehash the map several times).
    pub fn reserve(&self, additional: usize) {
        // Keys spread evenly over the shards; a little more each covers the unevenness.
        let each = additional / SHARDS + additional / SHARDS / 16;
        for shard in self.shards.iter() {
            shard.pin().reserve(each);
        }
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|shard| shard.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests;
