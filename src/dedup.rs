//! The payload-digest store behind identical-payload revisits: for each payload digest, in
//! each dedup bucket, the response record that last stored that payload whole. It lives on
//! disk in redb (`DATA_DIR/dedup.redb`) so it survives restarts, with a bounded page cache;
//! lookups run on the blocking pool, and one thread writes the entries in batches. A crash
//! loses at most the last second of entries: those payloads are then stored whole once more.

use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

/// Key `DIGEST|BUCKET` (warcprox's own key shape), value `Original::encode`.
const TABLE: TableDefinition<&str, &str> = TableDefinition::new("payload_digests");
/// redb's page cache: what the store keeps in memory, whatever its size on disk.
pub const CACHE_BYTES: usize = 64 << 20;
/// Entries written since the last durable commit are made durable at least this often.
const DURABLE_EVERY: Duration = Duration::from_secs(1);
/// Entries waiting for the writer thread; past this, new ones are dropped (and counted).
const QUEUE: usize = 64 * 1024;
/// Entries written in one transaction at most.
const BATCH: usize = 4096;

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
    db: Arc<Database>,
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
    /// Opens (or creates) the store at `path` and starts its writer thread.
    pub fn open(path: &Path) -> io::Result<DedupStore> {
        let failed = |e: redb::Error| storage_error(path, e);
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|e| failed(e.into()))?;
        let txn = db.begin_write().map_err(|e| failed(e.into()))?;
        txn.open_table(TABLE).map_err(|e| failed(e.into()))?;
        txn.commit().map_err(|e| failed(e.into()))?;
        let db = Arc::new(db);
        let (queue, rx) = crossbeam_channel::bounded(QUEUE);
        let pending: Arc<Mutex<HashMap<String, String>>> = Arc::default();
        let (for_writer, committed) = (db.clone(), pending.clone());
        let writer = std::thread::Builder::new()
            .name("liveweb-dedup".into())
            .spawn(move || write_loop(&for_writer, rx, &committed))?;
        Ok(DedupStore {
            db,
            pending,
            queue,
            writer: Mutex::new(Some(writer)),
            dropped: Default::default(),
        })
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
    ) -> Result<Option<Original>, redb::Error> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(TABLE)?;
        for bucket in buckets {
            let key = key(digest, bucket);
            let queued = lock(&self.pending).get(&key).cloned();
            let value = match queued {
                Some(value) => value,
                None => match table.get(key.as_str())? {
                    Some(value) => value.value().to_string(),
                    None => continue,
                },
            };
            let Some(original) = Original::decode(&value) else {
                continue;
            };
            let fresh =
                max_age.is_none_or(|age| now.saturating_sub(original.stored_at) <= age.as_secs());
            if fresh {
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
        for bucket in buckets {
            let key = key(digest, bucket);
            let msg = Msg::Put(key.clone(), value.clone());
            match self.queue.try_send(msg) {
                Ok(()) => {
                    lock(&self.pending).insert(key, value.clone());
                }
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                    self.dropped
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The writer thread: batches of entries, one transaction each, durable at least every
/// `DURABLE_EVERY` and at close; committed entries leave `pending`.
fn write_loop(db: &Database, rx: Receiver<Msg>, pending: &Mutex<HashMap<String, String>>) {
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
            match commit(db, &batch, durable) {
                Ok(()) if durable => dirty_since = None,
                Ok(()) => {
                    dirty_since.get_or_insert_with(Instant::now);
                }
                Err(e) => log::error!("dedup store: {} entries not written: {e}", batch.len()),
            }
            // Committed or lost: either way no longer waiting (a newer value for the same
            // key stays until its own batch).
            let mut waiting = lock(pending);
            for (k, v) in &batch {
                if waiting.get(k) == Some(v) {
                    waiting.remove(k);
                }
            }
        }
        if closing {
            return;
        }
    }
}

fn commit(db: &Database, batch: &[(String, String)], durable: bool) -> Result<(), redb::Error> {
    let mut txn = db.begin_write()?;
    if !durable {
        txn.set_durability(Durability::None)
            .map_err(|e| redb::Error::from(redb::StorageError::from(io::Error::other(e))))?;
    }
    {
        let mut table = txn.open_table(TABLE)?;
        for (k, v) in batch {
            table.insert(k.as_str(), v.as_str())?;
        }
    }
    txn.commit()?;
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
        let path = dir.path().join("dedup.redb");
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
    fn a_value_that_does_not_decode_is_not_a_match() {
        assert_eq!(Original::decode("x 2026 <id> http://a/"), None);
        assert_eq!(Original::decode("12 2026"), None);
        let o = original("http://a/?q=1 2", 7);
        assert_eq!(Original::decode(&o.encode()), Some(o));
    }
}
