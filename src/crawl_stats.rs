//! warcprox's crawl statistics and the limits on them (`Warcprox-Meta` `stats`, `limits`,
//! `soft-limits`): per bucket, URLs and wire bytes of every capture (`total`), of those
//! stored whole (`new`) and of those archived as revisits (`revisit`). Tallied when a
//! capture is archived and checked before the next request is fetched, so a limit holds at
//! once (warcprox checks its batch-written numbers, 30-60 s late). Kept in memory for every
//! worker and saved to `DATA/crawl-stats.json` at least every second and at shutdown;
//! after kill -9 the last second of tallies is lost. A bucket name longer than
//! `MAX_BUCKET_NAME` is kept under a shortened name (`stored_name`).

use std::borrow::Cow;
use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::lock;

/// The bucket every capture is tallied in.
pub const ALL: &str = "__all__";
/// The bucket of a capture whose `Warcprox-Meta` names none.
pub const UNSPECIFIED: &str = "__unspecified__";
/// Buckets tallied at most; a capture's new buckets past this are not tallied (logged).
pub const MAX_BUCKETS: usize = 100_000;
/// Longest bucket name kept as is, in bytes; a longer one is kept as its first bytes, `#`
/// and the base32 SHA-1 of the whole name (`stored_name`).
pub const MAX_BUCKET_NAME: usize = 256;
const SAVE_EVERY: Duration = Duration::from_secs(1);

/// One sub-bucket's numbers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    pub urls: u64,
    pub wire_bytes: u64,
}

/// A bucket's numbers, as warcprox reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketStats {
    pub bucket: String,
    pub total: Tally,
    pub new: Tally,
    pub revisit: Tally,
}

impl BucketStats {
    /// `sub/statistic` (`total/urls`, `new/wire_bytes`, ...); `None` for another name.
    fn value(&self, sub: &str, stat: &str) -> Option<u64> {
        let tally = match sub {
            "total" => &self.total,
            "new" => &self.new,
            "revisit" => &self.revisit,
            _ => return None,
        };
        match stat {
            "urls" => Some(tally.urls),
            "wire_bytes" => Some(tally.wire_bytes),
            _ => None,
        }
    }
}

/// How a capture ended, for its tally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Stored whole.
    New,
    /// Archived as a revisit.
    Revisit,
    /// Nothing written (a failure, a 304 whose stored record answers).
    Other,
}

/// A limit reached: what to answer with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reached {
    pub soft: bool,
    pub key: String,
    pub limit: u64,
    /// The `Warcprox-Meta` response header's value: the bucket's numbers and the limit.
    pub header: String,
}

/// The statistics of every bucket.
pub struct CrawlStats {
    buckets: Mutex<HashMap<String, BucketStats>>,
    dirty: std::sync::atomic::AtomicBool,
    path: PathBuf,
    saver: Mutex<Option<(JoinHandle<()>, std::sync::mpsc::Sender<()>)>>,
}

impl CrawlStats {
    /// Loads `path` (if there) and starts saving to it; a file that does not parse is an
    /// error naming it.
    pub fn open(path: &Path) -> io::Result<Arc<CrawlStats>> {
        let buckets: HashMap<String, BucketStats> = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => HashMap::new(),
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
        };
        let stats = Arc::new(CrawlStats {
            buckets: Mutex::new(buckets),
            dirty: Default::default(),
            path: path.to_path_buf(),
            saver: Mutex::new(None),
        });
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let weak = Arc::downgrade(&stats);
        let thread = std::thread::Builder::new()
            .name("liveweb-stats".into())
            .spawn(move || loop {
                let last = matches!(
                    stopped.recv_timeout(SAVE_EVERY),
                    Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected)
                );
                let Some(stats) = weak.upgrade() else { return };
                stats.save_if_dirty();
                if last {
                    return;
                }
            })?;
        *lock(&stats.saver) = Some((thread, stop));
        Ok(stats)
    }

    /// Tallies a capture of `wire_bytes` in `buckets`.
    pub fn tally(&self, buckets: &[String], kind: Kind, wire_bytes: u64) {
        let mut all = lock(&self.buckets);
        for name in buckets {
            // Names come from request headers: shortened, so MAX_BUCKETS bounds the memory.
            let name = stored_name(name);
            if !all.contains_key(&*name) && all.len() >= MAX_BUCKETS {
                log::warn!("crawl stats: {MAX_BUCKETS} buckets already, {name:?} is not tallied");
                continue;
            }
            let b = all.entry(name.to_string()).or_insert_with(|| BucketStats {
                bucket: name.into_owned(),
                ..Default::default()
            });
            let add = |t: &mut Tally| {
                t.urls += 1;
                t.wire_bytes += wire_bytes;
            };
            add(&mut b.total);
            match kind {
                Kind::New => add(&mut b.new),
                Kind::Revisit => add(&mut b.revisit),
                Kind::Other => {}
            }
        }
        self.dirty.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// A bucket's numbers (zero for one never tallied).
    pub fn bucket(&self, name: &str) -> BucketStats {
        let name = stored_name(name);
        lock(&self.buckets)
            .get(&*name)
            .cloned()
            .unwrap_or_else(|| BucketStats {
                bucket: name.into_owned(),
                ..Default::default()
            })
    }

    /// The first limit (hard ones first) that a request tallied in `buckets` has reached.
    /// A limit on a bucket the request is not tallied in does not apply to it (a domain
    /// limit applies to that domain's URLs).
    pub fn reached(
        &self,
        buckets: &[String],
        limits: &[(String, u64)],
        soft_limits: &[(String, u64)],
    ) -> Option<Reached> {
        let all = lock(&self.buckets);
        let hard = limits.iter().map(|l| (false, l));
        let soft = soft_limits.iter().map(|l| (true, l));
        for (soft, (key, limit)) in hard.chain(soft) {
            let mut parts = key.rsplitn(3, '/');
            let (Some(stat), Some(sub), Some(bucket)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if *limit == 0 || !buckets.iter().any(|b| b == bucket) {
                continue;
            }
            let Some(stats) = all.get(&*stored_name(bucket)) else {
                continue;
            };
            if stats.value(sub, stat).is_some_and(|v| v >= *limit) {
                let mut numbers = serde_json::Map::new();
                numbers.insert(
                    bucket.to_string(),
                    serde_json::to_value(stats).unwrap_or_default(),
                );
                let mut reached = serde_json::Map::new();
                reached.insert(key.clone(), (*limit).into());
                let mut meta = serde_json::Map::new();
                meta.insert("stats".into(), numbers.into());
                let name = if soft {
                    "reached-soft-limit"
                } else {
                    "reached-limit"
                };
                meta.insert(name.into(), reached.into());
                return Some(Reached {
                    soft,
                    key: key.clone(),
                    limit: *limit,
                    header: serde_json::Value::Object(meta).to_string(),
                });
            }
        }
        None
    }

    fn save_if_dirty(&self) {
        if !self.dirty.swap(false, std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        // Encoded from a copy: workers take this lock on every request, and encoding
        // every bucket is slower than copying them.
        let snapshot = lock(&self.buckets).clone();
        let text = match serde_json::to_vec(&snapshot) {
            Ok(text) => text,
            Err(e) => {
                log::error!("crawl stats: {e}");
                return;
            }
        };
        let tmp = self.path.with_extension("json.tmp");
        let written = std::fs::write(&tmp, &text).and_then(|()| std::fs::rename(&tmp, &self.path));
        if let Err(e) = written {
            log::error!("crawl stats not saved to {}: {e}", self.path.display());
            self.dirty.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Saves what is tallied and stops the saving thread (at shutdown).
    pub fn close(&self) {
        let saver = lock(&self.saver).take();
        if let Some((thread, stop)) = saver {
            let _ = stop.send(());
            let _ = thread.join();
        }
        self.save_if_dirty();
    }
}

/// The name `name` is tallied under: itself, or if longer than `MAX_BUCKET_NAME` its
/// first bytes, `#` and the base32 SHA-1 of the whole (distinct long names stay apart, and
/// the same name maps to the same bucket after a restart).
fn stored_name(name: &str) -> Cow<'_, str> {
    use sha1::{Digest, Sha1};
    if name.len() <= MAX_BUCKET_NAME {
        return Cow::Borrowed(name);
    }
    let digest = data_encoding::BASE32.encode(&Sha1::digest(name.as_bytes()));
    let mut end = MAX_BUCKET_NAME - digest.len() - 1;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}#{digest}", &name[..end]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn tallies_reach_limits_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("crawl-stats.json");
        let stats = CrawlStats::open(&path).unwrap();
        let job = names(&[ALL, "job"]);
        stats.tally(&job, Kind::New, 100);
        stats.tally(&job, Kind::Revisit, 50);
        stats.tally(&job, Kind::Other, 0);
        let b = stats.bucket("job");
        assert_eq!((b.total.urls, b.total.wire_bytes), (3, 150));
        assert_eq!((b.new.urls, b.revisit.urls), (1, 1));
        let limit = |key: &str, n| vec![(key.to_string(), n)];
        assert_eq!(stats.reached(&job, &limit("job/total/urls", 4), &[]), None);
        let r = stats
            .reached(&job, &limit("job/total/urls", 3), &[])
            .unwrap();
        assert!(!r.soft);
        let meta: serde_json::Value = serde_json::from_str(&r.header).unwrap();
        assert_eq!(meta["reached-limit"]["job/total/urls"], 3);
        assert_eq!(meta["stats"]["job"]["new"]["wire_bytes"], 100);
        let soft = stats
            .reached(&job, &[], &limit("job/new/wire_bytes", 100))
            .unwrap();
        assert!(soft.soft && soft.header.contains("reached-soft-limit"));
        // A limit on a bucket this request is not tallied in does not apply.
        assert_eq!(
            stats.reached(&names(&[ALL, "other"]), &limit("job/total/urls", 1), &[]),
            None
        );
        assert_eq!(stats.reached(&job, &limit("job/total/bogus", 1), &[]), None);
        stats.close();
        drop(stats);
        let again = CrawlStats::open(&path).unwrap();
        assert_eq!(again.bucket("job").total.urls, 3);
        assert_eq!(again.bucket(ALL).total.wire_bytes, 150);
        again.close();
        std::fs::write(&path, "{not json").unwrap();
        let e = CrawlStats::open(&path).err().unwrap();
        assert!(e.to_string().contains("crawl-stats.json"), "{e}");
    }

    #[test]
    fn a_long_bucket_name_is_kept_short_and_apart_and_its_limits_hold() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("crawl-stats.json");
        let stats = CrawlStats::open(&path).unwrap();
        // As long as a request head allows, differing only at the end; multibyte, so the
        // cut must fall on a character boundary.
        let long = |last: &str| format!("{}{last}", "é".repeat(8 * 1024));
        let (a, b) = (long("a"), long("b"));
        stats.tally(&names(&[&a]), Kind::New, 10);
        stats.tally(&names(&[&a, &b]), Kind::New, 10);
        {
            let all = lock(&stats.buckets);
            assert_eq!(all.len(), 2);
            for (key, b) in all.iter() {
                assert!(key.len() <= MAX_BUCKET_NAME && *key == b.bucket, "{key}");
            }
        }
        assert_eq!(stats.bucket(&a).total.urls, 2);
        assert_eq!(stats.bucket(&b).total.urls, 1);
        let limit = vec![(format!("{a}/total/urls"), 2)];
        assert!(stats.reached(&names(&[&a]), &limit, &[]).is_some());
        assert_eq!(stats.bucket("short").bucket, "short");
        stats.close();
        drop(stats);
        let again = CrawlStats::open(&path).unwrap();
        assert_eq!(again.bucket(&a).total.wire_bytes, 20);
        again.close();
    }
}
