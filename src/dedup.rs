//! The payload-digest store behind identical-payload revisits: for each payload digest, in
//! each dedup bucket, the response record that last stored that payload whole. It lives on
//! disk in fjall, an LSM tree (`DATA_DIR/dedup/`), so it survives restarts, with a bounded
//! block cache and write buffer; lookups run on the blocking pool, and one thread writes the
//! entries (an append to the tree's journal each), made durable every second. A crash
//! loses at most the last second of entries: those payloads are then stored whole once more.
//! A Bloom filter of the digests held (8 MiB, built from the table in the background at
//! start) lets a payload never stored before skip the lookup altogether, and the entries
//! last stored or found stay in a small in-memory cache, so a payload a crawl meets again
//! and again (a site's scripts and images) is resolved on the worker, without I/O.

use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use crate::lock;

/// The keyspace: key `DIGEST|BUCKET` (warcprox's own key shape), value `Original::encode`.
const TABLE: &str = "payload_digests";
/// The tree's block cache and its in-memory write buffer: what the store keeps in memory,
/// whatever its size on disk.
pub const CACHE_BYTES: u64 = 32 << 20;
pub const WRITE_BUFFER_BYTES: u64 = 32 << 20;
/// Entries written since the last durable commit are made durable at least this often.
const DURABLE_EVERY: Duration = Duration::from_secs(1);
/// Entries waiting for the writer thread; past this, new ones are dropped (and counted).
const QUEUE: usize = 64 * 1024;
/// Entries written in one transaction at most.
const BATCH: usize = 4096;
/// The filter's size in bits (8 MiB), and the digest count it is tuned for: past that its
/// false positives grow (each one costs a lookup that finds nothing, never a wrong answer).
const FILTER_BITS: usize = 64 << 20;
const FILTER_ITEMS: usize = 5_000_000;

/// Entries kept in memory (the last stored or found).
const RECENT: usize = 16 * 1024;

/// What the store can say without I/O.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Quick {
    /// No entry for the digest in any bucket.
    Absent,
    Found(Original),
    /// Ask the store (`lookup`, on the blocking pool).
    Unknown,
}

/// The digests the store may hold: no false negatives once `ready`.
struct Filter {
    bits: fastbloom::AtomicBloomFilter,
    /// The digests already in the table when it was opened are all in `bits`.
    ready: std::sync::atomic::AtomicBool,
}

/// The response record a revisit refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Original {
    /// Its `WARC-Target-URI`.
    pub url: String,
    /// Its `WARC-Date`.
    pub warc_date: String,
    /// Its `WARC-Record-ID` (`<urn:uuid:...>`).
    pub record_id: String,
    /// When it was stored, in seconds since the Unix epoch (for `--dedup-ttl`).
    pub stored_at: u64,
}

impl Original {
    /// Space-separated: none of the first three fields holds a space, and the URL comes last.
    fn encode(&self) -> String {
        format!(
            "{} {} {} {}",
            self.stored_at, self.warc_date, self.record_id, self.url
        )
    }

    fn decode(value: &str) -> Option<Original> {
        let mut fields = value.splitn(4, ' ');
        let stored_at = fields.next()?.parse().ok()?;
        let warc_date = fields.next()?.to_string();
        let record_id = fields.next()?.to_string();
        let url = fields.next()?.to_string();
        Some(Original {
            url,
            warc_date,
            record_id,
            stored_at,
        })
    }
}

/// The name warcprox gives the bucket of a request that names none.
pub const DEFAULT_BUCKET: &str = "";

/// The entry `value` names, unless it is older than `max_age` at `now`.
fn fresh(value: &str, max_age: Option<Duration>, now: u64) -> Option<Original> {
    let original = Original::decode(value)?;
    max_age
        .is_none_or(|age| now.saturating_sub(original.stored_at) <= age.as_secs())
        .then_some(original)
}

fn key(digest: &str, bucket: &str) -> String {
    format!("{digest}|{bucket}")
}

enum Msg {
    Put(String, String),
    /// Make everything durable and stop.
    Close,
}

/// The digest store; shared by every worker.
pub struct DedupStore {
    table: Keyspace,
    filter: Arc<Filter>,
    /// Key -> value of the entries last stored or found.
    recent: quick_cache::sync::Cache<String, Arc<str>>,
    /// Entries queued and not yet committed, so a lookup right after a `put` finds them.
    pending: Arc<Mutex<HashMap<String, String>>>,
    queue: Sender<Msg>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Entries dropped because the writer thread fell behind.
    pub dropped: std::sync::atomic::AtomicU64,
}

fn storage_error(path: &Path, e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("{}: {e}", path.display()))
}

impl DedupStore {
    /// Opens (or creates) the store in the directory `path` and starts its writer thread.
    pub fn open(path: &Path) -> io::Result<DedupStore> {
        let failed = |e: fjall::Error| storage_error(path, e);
        let db = Database::builder(path)
            .cache_size(CACHE_BYTES)
            .worker_threads(1)
            .open()
            .map_err(failed)?;
        let options = || KeyspaceCreateOptions::default().max_memtable_size(WRITE_BUFFER_BYTES);
        let table = db.keyspace(TABLE, options).map_err(failed)?;
        let filter = Arc::new(Filter {
            bits: fastbloom::AtomicBloomFilter::with_num_bits(FILTER_BITS)
                .expected_items(FILTER_ITEMS),
            ready: Default::default(),
        });
        let (for_scan, filling) = (table.clone(), filter.clone());
        std::thread::Builder::new()
            .name("liveweb-dedup-scan".into())
            .spawn(move || match fill_filter(&for_scan, &filling) {
                Ok(n) => log::info!("dedup store: {n} payload digests held"),
                Err(e) => {
                    log::error!("dedup store: digests not read ({e}); every payload is looked up")
                }
            })?;
        let (queue, rx) = crossbeam_channel::bounded(QUEUE);
        let pending: Arc<Mutex<HashMap<String, String>>> = Arc::default();
        let (for_writer, committed) = ((db, table.clone()), pending.clone());
        let writer = std::thread::Builder::new()
            .name("liveweb-dedup".into())
            .spawn(move || write_loop(&for_writer.0, &for_writer.1, rx, &committed))?;
        Ok(DedupStore {
            table,
            filter,
            recent: quick_cache::sync::Cache::new(RECENT),
            pending,
            queue,
            writer: Mutex::new(Some(writer)),
            dropped: Default::default(),
        })
    }

    /// Whether the store may hold `digest` (in any bucket): `false` means a lookup would
    /// find nothing. Cheap, no I/O.
    pub fn may_hold(&self, digest: &str) -> bool {
        !self.filter.ready.load(std::sync::atomic::Ordering::Acquire)
            || self.filter.bits.contains(digest)
    }

    /// What `lookup` would answer, when it is known without I/O (call it on the worker).
    pub fn quick(
        &self,
        digest: &str,
        buckets: &[&str],
        max_age: Option<Duration>,
        now: u64,
    ) -> Quick {
        if !self.may_hold(digest) {
            return Quick::Absent;
        }
        for bucket in buckets {
            let Some(value) = self.recent.get(&key(digest, bucket)) else {
                return Quick::Unknown;
            };
            if let Some(original) = fresh(&value, max_age, now) {
                return Quick::Found(original);
            }
        }
        Quick::Unknown
    }

    /// The record that stored `digest` in the first of `buckets` that has one, unless it was
    /// stored more than `max_age` before `now` (seconds since the epoch). Blocking: call it
    /// from the blocking pool.
    pub fn lookup(
        &self,
        digest: &str,
        buckets: &[&str],
        max_age: Option<Duration>,
        now: u64,
    ) -> Result<Option<Original>, fjall::Error> {
        for bucket in buckets {
            let key = key(digest, bucket);
            let queued = lock(&self.pending).get(&key).cloned();
            let value = match queued {
                Some(value) => value,
                None => match self.table.get(key.as_bytes())? {
                    Some(value) => String::from_utf8_lossy(&value).into_owned(),
                    None => continue,
                },
            };
            let value: Arc<str> = value.into();
            self.recent.insert(key, value.clone());
            if let Some(original) = fresh(&value, max_age, now) {
                return Ok(Some(original));
            }
        }
        Ok(None)
    }

    /// Records that `original` stored `digest` whole, in each of `buckets` (replacing an
    /// older entry). Queued for the writer thread, never waits: when it is behind, the entry
    /// is dropped and counted (that payload is then stored whole once more).
    pub fn put(&self, digest: &str, buckets: &[&str], original: &Original) {
        let value = original.encode();
        self.filter.bits.insert(digest);
        for bucket in buckets {
            let key = key(digest, bucket);
            self.recent.insert(key.clone(), value.as_str().into());
            if !queue_put(&self.pending, key, value.clone(), |m| {
                self.queue.try_send(m)
            }) {
                self.dropped
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }

    /// Entries waiting for the writer thread.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Makes every queued entry durable and stops the writer thread (at shutdown).
    pub fn close(&self) {
        let writer = lock(&self.writer).take();
        if let Some(writer) = writer {
            let _ = self.queue.send(Msg::Close);
            let _ = writer.join();
        }
    }
}

/// Marks `key` pending and hands it to the writer through `send`; whether it was queued.
fn queue_put(
    pending: &Mutex<HashMap<String, String>>,
    key: String,
    value: String,
    send: impl FnOnce(Msg) -> Result<(), TrySendError<Msg>>,
) -> bool {
    // Pending before it is sent: the writer may commit it and clear `pending` before `send`
    // returns, and an entry marked after that would never be cleared.
    lock(pending).insert(key.clone(), value.clone());
    match send(Msg::Put(key.clone(), value.clone())) {
        Ok(()) => true,
        Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
            let mut waiting = lock(pending);
            if waiting.get(&key) == Some(&value) {
                waiting.remove(&key);
            }
            false
        }
    }
}

/// Takes the entries of a batch committed (or lost) out of `pending`, unless a newer value
/// for the key is still waiting for its own batch.
fn forget_written(pending: &Mutex<HashMap<String, String>>, batch: &[(String, String)]) {
    let mut waiting = lock(pending);
    for (k, v) in batch {
        if waiting.get(k) == Some(v) {
            waiting.remove(k);
        }
    }
}

/// Puts every digest in the table into the filter, then marks it ready; how many entries.
fn fill_filter(table: &Keyspace, filter: &Filter) -> Result<u64, fjall::Error> {
    let mut n = 0;
    for entry in table.iter() {
        let key = entry.key()?;
        let key = String::from_utf8_lossy(&key);
        let digest = key.rsplit_once('|').map_or(&*key, |(d, _)| d);
        filter.bits.insert(digest);
        n += 1;
    }
    filter
        .ready
        .store(true, std::sync::atomic::Ordering::Release);
    Ok(n)
}

/// The writer thread: entries written as they come, durable at least every
/// `DURABLE_EVERY` and at close; written entries leave `pending`.
fn write_loop(
    db: &Database,
    table: &Keyspace,
    rx: Receiver<Msg>,
    pending: &Mutex<HashMap<String, String>>,
) {
    let mut dirty_since: Option<Instant> = None;
    loop {
        let wait = dirty_since.map_or(Duration::from_secs(3600), |t| {
            DURABLE_EVERY.saturating_sub(t.elapsed())
        });
        let mut closing = false;
        let mut batch = Vec::new();
        match rx.recv_timeout(wait) {
            Ok(Msg::Put(k, v)) => batch.push((k, v)),
            Ok(Msg::Close) | Err(RecvTimeoutError::Disconnected) => closing = true,
            Err(RecvTimeoutError::Timeout) => {}
        }
        while !closing && batch.len() < BATCH {
            match rx.try_recv() {
                Ok(Msg::Put(k, v)) => batch.push((k, v)),
                Ok(Msg::Close) => closing = true,
                Err(_) => break,
            }
        }
        let due = dirty_since.is_some_and(|t| t.elapsed() >= DURABLE_EVERY);
        let durable = closing || due;
        if !batch.is_empty() || (durable && dirty_since.is_some()) {
            match commit(db, table, &batch, durable) {
                Ok(()) if durable => dirty_since = None,
                Ok(()) => {
                    dirty_since.get_or_insert_with(Instant::now);
                }
                Err(e) => log::error!("dedup store: {} entries not written: {e}", batch.len()),
            }
            // Committed or lost: either way no longer waiting.
            forget_written(pending, &batch);
        }
        if closing {
            return;
        }
    }
}

fn commit(
    db: &Database,
    table: &Keyspace,
    batch: &[(String, String)],
    durable: bool,
) -> Result<(), fjall::Error> {
    for (k, v) in batch {
        table.insert(k.as_bytes(), v.as_bytes())?;
    }
    if durable {
        db.persist(PersistMode::SyncData)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn original(url: &str, stored_at: u64) -> Original {
        Original {
            url: url.into(),
            warc_date: "2026-12-06T15:00:00Z".into(),
            record_id: "<urn:uuid:0a0b>".into(),
            stored_at,
        }
    }

    #[test]
    fn entries_are_found_by_bucket_and_age_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dedup");
        let store = DedupStore::open(&path).unwrap();
        let first = original("http://a.test/x y", 1000);
        store.put("sha1:AAAA", &[DEFAULT_BUCKET, "job1"], &first);
        store.close();
        drop(store);

        let store = DedupStore::open(&path).unwrap();
        let get = |buckets: &[&str], max_age: Option<u64>, now: u64| {
            store
                .lookup("sha1:AAAA", buckets, max_age.map(Duration::from_secs), now)
                .unwrap()
        };
        assert_eq!(get(&[DEFAULT_BUCKET], None, 5000), Some(first.clone()));
        assert_eq!(get(&["other", "job1"], None, 5000), Some(first.clone()));
        assert_eq!(get(&["other"], None, 5000), None);
        assert_eq!(get(&["job1"], Some(100), 1100), Some(first.clone()));
        assert_eq!(get(&["job1"], Some(100), 1101), None, "older than max_age");
        assert_eq!(
            store
                .lookup("sha1:BBBB", &[DEFAULT_BUCKET], None, 5000)
                .unwrap(),
            None
        );
        // A newer capture of the payload replaces the entry.
        let newer = original("http://b.test/", 2000);
        store.put("sha1:AAAA", &["job1"], &newer);
        store.close();
        drop(store);
        let store = DedupStore::open(&path).unwrap();
        let found = store.lookup("sha1:AAAA", &["job1"], None, 5000).unwrap();
        assert_eq!(found, Some(newer));
        assert_eq!(store.dropped.load(std::sync::atomic::Ordering::Relaxed), 0);
    }

    #[test]
    fn the_filter_knows_the_digests_held_before_and_after_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dedup");
        let ready = |s: &DedupStore| {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !s.filter.ready.load(std::sync::atomic::Ordering::Acquire) {
                assert!(Instant::now() < deadline, "filter never ready");
                std::thread::yield_now();
            }
        };
        let store = DedupStore::open(&path).unwrap();
        ready(&store);
        assert!(!store.may_hold("sha1:AAAA"));
        assert_eq!(store.quick("sha1:AAAA", &["b"], None, 5), Quick::Absent);
        store.put("sha1:AAAA", &["b"], &original("http://a/", 1));
        assert!(store.may_hold("sha1:AAAA"));
        let found = Quick::Found(original("http://a/", 1));
        assert_eq!(store.quick("sha1:AAAA", &["b"], None, 5), found);
        assert_eq!(
            store.quick("sha1:AAAA", &["b"], Some(Duration::from_secs(1)), 5),
            Quick::Unknown,
            "too old here: the store decides"
        );
        assert_eq!(store.quick("sha1:AAAA", &["c"], None, 5), Quick::Unknown);
        store.close();
        drop(store);
        let store = DedupStore::open(&path).unwrap();
        ready(&store);
        assert!(store.may_hold("sha1:AAAA"), "read back from the table");
        assert!(!store.may_hold("sha1:BBBB"));
    }

    #[test]
    fn an_entry_the_writer_commits_before_the_send_returns_leaves_pending() {
        let pending = Mutex::new(HashMap::new());
        // The writer takes the entry, commits it and clears it before `send` returns.
        let queued = queue_put(&pending, "d|b".into(), "v".into(), |msg| {
            if let Msg::Put(k, v) = msg {
                forget_written(&pending, &[(k, v)]);
            }
            Ok(())
        });
        assert!(queued);
        assert!(lock(&pending).is_empty(), "{:?}", lock(&pending));
        // A refused send leaves nothing pending either.
        let full = |msg| Err(TrySendError::Full(msg));
        assert!(!queue_put(&pending, "d|b".into(), "w".into(), full));
        assert!(lock(&pending).is_empty(), "{:?}", lock(&pending));
    }

    #[test]
    fn a_value_that_does_not_decode_is_not_a_match() {
        assert_eq!(Original::decode("x 2026 <id> http://a/"), None);
        assert_eq!(Original::decode("12 2026"), None);
        let o = original("http://a/?q=1 2", 7);
        assert_eq!(Original::decode(&o.encode()), Some(o));
    }
}
