//! What a request handler can reach: state shared by all workers, and the worker's own.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use super::hot::HotShard;
use crate::archive::{ArcWriter, FileTable};
use crate::config::Config;
use crate::fetch::{DnsCache, FetchLimits, UpstreamPool};
use crate::http::request::Limits;
use crate::index::Index;
use crate::policy::{ClientAccess, ProxyAuth, TableError, UpstreamRules};
use arc_swap::{ArcSwap, ArcSwapOption};
use std::io;

use crate::admin::WorkerCounters;
use crate::blocking::Pool;
use crossbeam_utils::CachePadded;

/// DNS lookups waiting for a thread at most; beyond that a lookup fails as a DNS timeout.
const DNS_QUEUE: usize = 1024;

/// Read-mostly state shared by every worker.
pub struct Shared {
    pub config: Config,
    /// Client and admin ranges; replaced whole on reload.
    pub access: ArcSwap<ClientAccess>,
    /// `--proxy-auth` users; replaced whole on reload.
    pub proxy_auth: ArcSwapOption<ProxyAuth>,
    /// Where DNS lookups run (`--dns-threads`).
    pub dns_pool: Arc<Pool>,
    pub index: Index,
    pub files: Arc<FileTable>,
    pub upstream_rules: UpstreamRules,
    pub request_limits: Limits,
    pub fetch_limits: FetchLimits,
    /// User-Agent sent upstream when the client sent none.
    pub user_agent: String,
    /// TLS to `https` origins (`--upstream-ca`, `--insecure-upstream`).
    pub upstream_tls: Arc<rustls::ClientConfig>,
    /// Origins that just could not be reached (`--bad-host-ttl`).
    pub bad_hosts: crate::fetch::BadHosts,
    /// Fetch slots and the fair queue for them.
    pub sched: Arc<crate::sched::Scheduler>,
    /// Interception of CONNECT tunnels (`--mitm-ca`), when on.
    pub mitm: Option<Arc<crate::mitm::Interceptor>>,
    /// Each worker's counters, by worker id.
    pub counters: Box<[CachePadded<WorkerCounters>]>,
    /// `--access-log`, when on.
    pub access_log: Option<crate::admin::access_log::AccessLog>,
    /// Each worker's request count every `RATE_SAMPLE`, the last minute of them (per-worker
    /// request rates on the status page).
    pub rate_samples: std::sync::Mutex<std::collections::VecDeque<(std::time::Instant, Vec<u64>)>>,
    /// Records and bytes archived so far, every `RATE_SAMPLE`, the last 15 minutes of them
    /// (warcprox's `rates_1min`, `_5min`, `_15min`).
    pub archive_samples:
        std::sync::Mutex<std::collections::VecDeque<(std::time::Instant, u64, u64)>>,
    /// What the archive did (status page, metrics).
    pub archive_stats: Arc<crate::archive::stats::ArchiveStats>,
    /// The last errors answered (status page).
    pub recent_errors: crate::admin::RecentErrors,
    pub started: std::time::Instant,
    /// The address the listeners are bound to, once they are: requests to it are loops.
    pub own_listen: std::sync::OnceLock<std::net::SocketAddr>,
    /// Response bodies in memory, all workers together (`--transfer-memory`).
    pub transfer_budget: Arc<crate::fetch::spill::TransferBudget>,
    /// The payload-digest store, when captures are deduplicated (`--dedup`, WARC).
    pub dedup: Option<Arc<crate::dedup::DedupStore>>,
    /// `--crawl-log-dir`'s log, started once the listeners are bound (its file names carry
    /// the port).
    pub crawl_log: std::sync::OnceLock<crate::crawl_log::CrawlLog>,
    /// warcprox's per-bucket statistics and limits (`DATA/crawl-stats.json`).
    pub crawl_stats: Arc<crate::crawl_stats::CrawlStats>,
}

impl Shared {
    /// Builds the shared state; the client table and the htpasswd file are read here, and a
    /// bad one is an error naming its line.
    pub fn new(config: Config) -> io::Result<Self> {
        let invalid = |e: TableError| io::Error::new(io::ErrorKind::InvalidInput, e.to_string());
        let access = ClientAccess::load(&config.clients.access()).map_err(invalid)?;
        let proxy_auth = match &config.clients.proxy_auth {
            Some(path) => Some(Arc::new(ProxyAuth::load(path).map_err(invalid)?)),
            None => None,
        };
        let fetch_limits = FetchLimits {
            connect_timeout: config.fetch.connect_timeout,
            read_timeout: config.fetch.read_timeout,
            fetch_timeout: config.fetch.fetch_timeout,
            max_body: config.fetch.max_body,
        };
        let upstream_tls = Arc::new(crate::fetch::tls::client_config(
            &config.tls.upstream_ca,
            config.tls.insecure_upstream,
        )?);
        let mitm = match (&config.tls.mitm_ca, &config.tls.mitm_key) {
            (Some(cert), Some(key)) => Some(Arc::new(crate::mitm::Interceptor::load(
                cert,
                key,
                &config.tls.mitm_bypass,
            )?)),
            _ => None,
        };
        let dns_pool = Pool::start("dns", usize::from(config.ops.dns_threads), DNS_QUEUE)?;
        let dedup = match config.archive.dedup_enabled() {
            true => Some(Arc::new(crate::dedup::DedupStore::open(
                &config.archive.data_dir.join(DEDUP_FILE),
            )?)),
            false => None,
        };
        let crawl_stats =
            crate::crawl_stats::CrawlStats::open(&config.archive.data_dir.join(CRAWL_STATS_FILE))?;
        Ok(Shared {
            crawl_stats,
            dedup,
            crawl_log: std::sync::OnceLock::new(),
            dns_pool: Arc::new(dns_pool),
            access: ArcSwap::from_pointee(access),
            proxy_auth: ArcSwapOption::new(proxy_auth),
            index: Index::with_budget(
                usize::try_from(config.cache.index_memory()).unwrap_or(usize::MAX),
            ),
            files: Arc::new(FileTable::new()),
            upstream_rules: UpstreamRules::new(&config.fetch.allow_upstream),
            request_limits: Limits::default(),
            fetch_limits,
            user_agent: config.fetch.user_agent(),
            upstream_tls,
            bad_hosts: crate::fetch::BadHosts::new(config.fetch.bad_host_ttl),
            sched: Arc::new(crate::sched::Scheduler::new(
                config.sched.limits(config.ops.worker_count()),
                config.sched.queue_timeout,
            )),
            mitm,
            counters: (0..config.ops.worker_count().max(1))
                .map(|_| CachePadded::new(WorkerCounters::default()))
                .collect(),
            recent_errors: crate::admin::RecentErrors::default(),
            archive_stats: Arc::default(),
            rate_samples: Default::default(),
            archive_samples: Default::default(),
            access_log: match &config.ops.access_log {
                Some(target) => Some(crate::admin::access_log::AccessLog::start(target)?),
                None => None,
            },
            started: std::time::Instant::now(),
            own_listen: std::sync::OnceLock::new(),
            transfer_budget: crate::fetch::spill::TransferBudget::new(config.ops.transfer_memory()),
            config,
        })
    }

    /// Reads the client table and the htpasswd file again and swaps them in whole; on any
    /// error the tables in force stay and the error (with its line) is returned.
    pub fn reload(&self) -> Result<String, TableError> {
        let access = ClientAccess::load(&self.config.clients.access())?;
        let auth = match &self.config.clients.proxy_auth {
            Some(path) => Some(Arc::new(ProxyAuth::load(path)?)),
            None => None,
        };
        let summary = format!(
            "client table: {} ranges; proxy users: {}",
            access.table_ranges(),
            auth.as_ref().map_or(0, |a| a.user_count())
        );
        self.access.store(Arc::new(access));
        self.proxy_auth.store(auth);
        Ok(summary)
    }
}

/// The payload-digest store's directory in the data directory.
pub const DEDUP_FILE: &str = "dedup";
/// The crawl statistics' file in the data directory.
pub const CRAWL_STATS_FILE: &str = "crawl-stats.json";

/// Appends `item` to the ring, dropping its oldest past `cap` items.
fn push_capped<T>(ring: &std::sync::Mutex<std::collections::VecDeque<T>>, cap: usize, item: T) {
    let mut ring = crate::lock(ring);
    if ring.len() == cap {
        ring.pop_front();
    }
    ring.push_back(item);
}

/// How often each worker's request count is sampled, and how many samples make a minute.
pub const RATE_SAMPLE: std::time::Duration = std::time::Duration::from_secs(5);
const RATE_SAMPLES: usize = 13;
/// 15 minutes of samples, and the one before.
const ARCHIVE_SAMPLES: usize = 15 * 12 + 1;

impl Shared {
    /// Records every worker's request count now (called every `RATE_SAMPLE`).
    pub fn sample_rates(&self) {
        let counts = self.worker_requests();
        let now = std::time::Instant::now();
        push_capped(&self.rate_samples, RATE_SAMPLES, (now, counts));
        let a = self.archive_stats.now();
        let sample = (now, a.records_appended, a.bytes_appended);
        push_capped(&self.archive_samples, ARCHIVE_SAMPLES, sample);
    }

    /// Records and bytes archived per second over the last 1, 5 and 15 minutes (or since
    /// start, when younger), as warcprox's `/status` gives them.
    fn archive_rates(&self) -> [crate::admin::ArchiveRate; 3] {
        let now = std::time::Instant::now();
        let a = self.archive_stats.now();
        let ring = crate::lock(&self.archive_samples);
        [1u64, 5, 15].map(|minutes| {
            let window = std::time::Duration::from_secs(minutes * 60);
            // The oldest sample inside the window, else the start.
            let (at, records, bytes) = ring
                .iter()
                .find(|(at, _, _)| now.duration_since(*at) <= window + RATE_SAMPLE)
                .copied()
                .unwrap_or((self.started, 0, 0));
            let elapsed = now.duration_since(at).as_secs_f64().max(0.001);
            crate::admin::ArchiveRate {
                elapsed,
                urls_per_sec: a.records_appended.saturating_sub(records) as f64 / elapsed,
                bytes_per_sec: a.bytes_appended.saturating_sub(bytes) as f64 / elapsed,
            }
        })
    }

    fn worker_requests(&self) -> Vec<u64> {
        self.counters
            .iter()
            .map(|c| {
                let mut own = crate::admin::Totals::default();
                own.add(c);
                own.requests()
            })
            .collect()
    }

    /// Each worker's requests per second over the last minute (or since start).
    fn worker_rates(&self, now_counts: &[u64]) -> Vec<f64> {
        let ring = self.rate_samples.lock().unwrap_or_else(|e| e.into_inner());
        let Some((at, then)) = ring.front() else {
            return vec![0.0; now_counts.len()];
        };
        let secs = at.elapsed().as_secs_f64();
        now_counts
            .iter()
            .zip(then.iter().chain(std::iter::repeat(&0)))
            .map(|(now, then)| {
                if secs < 0.5 {
                    0.0
                } else {
                    now.saturating_sub(*then) as f64 / secs
                }
            })
            .collect()
    }
}

impl WorkerCtx {
    /// This worker's counters.
    pub fn counters(&self) -> &WorkerCounters {
        &self.shared.counters[self.id % self.shared.counters.len()]
    }

    /// Every worker's numbers and the shared gauges, now.
    pub fn snapshot(&self) -> crate::admin::Snapshot {
        let shared = &self.shared;
        let mut totals = crate::admin::Totals::default();
        let mut per_worker = Vec::with_capacity(shared.counters.len());
        for c in shared.counters.iter() {
            totals.add(c);
            let mut own = crate::admin::Totals::default();
            own.add(c);
            per_worker.push(own);
        }
        let (fetches_running, fetches_queued) = shared.sched.load();
        crate::admin::Snapshot {
            version: env!("CARGO_PKG_VERSION"),
            uptime_secs: shared.started.elapsed().as_secs(),
            workers: shared.counters.len(),
            totals,
            fetches_running,
            fetches_queued,
            index: shared.index.memory(),
            spilled_responses: shared.transfer_budget.spilled(),
            transfer_memory_bytes: shared.transfer_budget.used(),
            archive_rates: shared.archive_rates(),
            settings: shared.config.summary(shared.own_listen.get().copied()),
            per_worker_rate: shared
                .worker_rates(&per_worker.iter().map(|w| w.requests()).collect::<Vec<_>>()),
            per_worker,
            recent: shared.recent_errors.newest_first(),
            archive: {
                let a = shared.archive_stats.now();
                crate::admin::Archive {
                    bytes: a.bytes_appended,
                    records: a.records_appended,
                    files_sealed: a.files_sealed,
                    seal_failures: a.seal_failures,
                    on_seal_failures: a.on_seal_failures,
                    revisits: a.revisits,
                    disk_free: a.free_bytes,
                }
            },
            open_files: shared
                .archive_stats
                .open_files()
                .into_iter()
                .map(|(worker, name, bytes)| crate::admin::OpenFile {
                    worker,
                    name,
                    bytes,
                })
                .collect(),
            access_log_dropped: shared
                .access_log
                .as_ref()
                .map_or(0, |l| l.dropped.load(std::sync::atomic::Ordering::Relaxed)),
        }
    }

    /// What this worker fetches through.
    pub fn upstream(&self) -> crate::fetch::Upstream<'_> {
        crate::fetch::Upstream {
            dns: &self.dns,
            pool: &self.pool,
            rules: &self.shared.upstream_rules,
            limits: &self.shared.fetch_limits,
            user_agent: &self.shared.user_agent,
            tls: &self.shared.upstream_tls,
            bad_hosts: &self.shared.bad_hosts,
            own_listen: self.shared.own_listen.get().copied(),
            spill: Some(&self.spill),
        }
    }
}

/// The fetch tasks a worker runs (each fetches, archives and indexes one response).
#[derive(Default)]
pub struct FetchTasks(Rc<Cell<usize>>);

impl FetchTasks {
    /// Counts one task until the returned ticket is dropped.
    pub fn begin(&self) -> FetchTicket {
        self.0.set(self.0.get() + 1);
        FetchTicket(self.0.clone())
    }

    pub fn running(&self) -> usize {
        self.0.get()
    }
}

/// One running fetch task; dropped when it ends (or is cancelled).
pub struct FetchTicket(Rc<Cell<usize>>);

impl Drop for FetchTicket {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

/// One worker's state; lives in an `Rc` on that worker's thread.
pub struct WorkerCtx {
    pub id: usize,
    pub shared: Arc<Shared>,
    pub dns: DnsCache,
    /// Idle keep-alive connections to origins.
    pub pool: UpstreamPool,
    pub hot: RefCell<HotShard>,
    pub writer: ArcWriter,
    /// Writers of `warc-prefix`es (`Warcprox-Meta`).
    pub prefixed: super::prefix_writers::PrefixWriters,
    /// This worker's access-log lines not yet handed to the log thread.
    pub access: crate::admin::access_log::WorkerBuffer,
    /// Fetch tasks still running (shutdown waits for them).
    pub fetches: FetchTasks,
    /// Where this worker's big responses spill to disk.
    pub spill: crate::fetch::spill::SpillTo,
}

impl WorkerCtx {
    /// The writer for a capture's records: its `warc-prefix`'s, or the default one.
    pub fn writer_for(&self, prefix: Option<&str>) -> ArcWriter {
        match prefix {
            Some(p) if p != self.shared.config.archive.prefix => self.prefixed.get(p),
            _ => self.writer.clone(),
        }
    }
}
