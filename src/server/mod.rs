//! Threads and runtimes: recovery of the data directory, then one OS thread per worker
//! (placed or pinned as --cpu-affinity says), each with its own monoio runtime (io_uring, epoll fallback), listener, ARC writer
//! and hot shard; the on-seal hand-off thread; and shutdown.

mod accounting;
mod conn;
mod drain;
mod gate;
mod intercept;
mod limits;
mod listener;
mod lock;
pub mod proxy_protocol;
mod request_body;
mod sweeper;
mod worker;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use futures_channel::oneshot;

use crate::archive::handoff::Handoff;
use crate::archive::recover::{recover, Recovered};
use crate::config::{Config, CpuAffinity};
use crate::proxy::Shared;

/// How long start-up waits for its address when a liveweb that held it (on this data
/// directory) just died: see `lock::check_address_free`.
const ADDRESS_RELEASE_WAIT: Duration = Duration::from_secs(5);

/// Which I/O driver the runtimes use.
pub fn driver_name() -> &'static str {
    if monoio::utils::detect_uring() {
        "io_uring"
    } else {
        "epoll"
    }
}

/// The CPU each worker is pinned to (None: not pinned), as `affinity` asks. A listed CPU
/// this process may not run on is an error rather than a silently unpinned worker.
fn worker_cpus(
    affinity: &CpuAffinity,
    workers: usize,
) -> io::Result<Vec<Option<core_affinity::CoreId>>> {
    let allowed = core_affinity::get_core_ids().unwrap_or_default();
    let chosen: Vec<core_affinity::CoreId> = match affinity {
        CpuAffinity::Off => Vec::new(),
        CpuAffinity::Each => allowed,
        CpuAffinity::Cpus(list) => {
            let mut chosen = Vec::with_capacity(list.len());
            for &id in list {
                match allowed.iter().find(|c| c.id == id) {
                    Some(core) => chosen.push(*core),
                    None => {
                        let ids: Vec<String> = allowed.iter().map(|c| c.id.to_string()).collect();
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidInput,
                            format!(
                                "--cpu-affinity: CPU {id} is not available to this process (available: {})",
                                ids.join(",")
                            ),
                        ));
                    }
                }
            }
            chosen
        }
    };
    Ok((0..workers)
        .map(|w| (!chosen.is_empty()).then(|| chosen[w % chosen.len()]))
        .collect())
}

/// A running server.
pub struct Server {
    local_addr: SocketAddr,
    workers: Mutex<Vec<JoinHandle<()>>>,
    /// One stop signal per worker; taken on shutdown.
    stops: Mutex<Vec<oneshot::Sender<()>>>,
    shared: Arc<Shared>,
    handoff: Mutex<Option<Arc<Handoff>>>,
    /// What start-up recovery found.
    pub recovered: Recovered,
    /// Keeps a second liveweb off this data directory while we run.
    _lock: lock::DataDirLock,
    /// The index sweeper thread and its stop flag.
    sweeper: Mutex<Option<(Arc<AtomicBool>, JoinHandle<()>)>>,
}

/// The program an `--on-seal` command runs must exist (a path, or a name on PATH): found at
/// start, not at the first seal hours later.
fn check_command(command: &str) -> io::Result<()> {
    // The command runs under `sh -c`: skip leading `NAME=value` assignments.
    let program = command
        .split_whitespace()
        .find(|w| w.split_once('=').is_none_or(|(name, _)| name.contains('/')))
        .unwrap_or("");
    let missing = |why: &str| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("--on-seal {command:?}: {program:?} {why}"),
        )
    };
    if program.is_empty() {
        return Err(missing("is empty"));
    }
    let runnable = |p: &std::path::Path| {
        use std::os::unix::fs::PermissionsExt;
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        return match runnable(std::path::Path::new(program)) {
            true => Ok(()),
            false => Err(missing("is not an executable file")),
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    if std::env::split_paths(&path).any(|dir| runnable(&dir.join(program))) {
        Ok(())
    } else {
        Err(missing("is not on PATH"))
    }
}

impl Server {
    /// Recovers the data directory, then binds and starts the workers; `recovered` is called
    /// between the two. The caller installs its signal handlers before this, so a signal
    /// during recovery is handled, not fatal.
    ///
    /// A start that fails leaves nothing behind: a data directory it created is removed again.
    pub fn start(config: Config, recovered: &dyn Fn()) -> io::Result<Server> {
        let dir = config.archive.data_dir.clone();
        let fresh = !dir.exists();
        let started = Self::start_in(config, recovered);
        if started.is_err() && fresh {
            let _ = std::fs::remove_dir_all(&dir);
        }
        started
    }

    fn start_in(config: Config, recovered: &dyn Fn()) -> io::Result<Server> {
        let workers = config.ops.worker_count();
        let placement = worker_cpus(&config.ops.cpu_affinity, workers)?;
        // Before recovery: recovering a directory another instance writes would cut its
        // open files as torn.
        let data_lock = lock::lock_data_dir(&config.archive.data_dir)?;
        lock::check_address_free(config.clients.listen, ADDRESS_RELEASE_WAIT)?;
        // Every directory liveweb writes, checked now: a worker directory it cannot write
        // would otherwise start, say ok, and fail every miss.
        let sealed = config.archive.data_dir.join("sealed");
        let dirs: Vec<_> = (0..workers)
            .map(|w| config.archive.data_dir.join(w.to_string()))
            .chain([sealed])
            .collect();
        // All looked at before any is made, so a file in the way leaves nothing new behind.
        for dir in &dirs {
            lock::check_not_a_file(dir)?;
        }
        for dir in &dirs {
            std::fs::create_dir_all(dir)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
            lock::check_writable(dir)?;
        }
        if let Some(command) = &config.archive.on_seal {
            check_command(command)?;
        }
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        if workers > cpus {
            log::warn!(
                "--workers {workers} is more than the {cpus} CPUs here: workers will share CPUs"
            );
        }
        // This node's name in Via, before anything is forwarded.
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        crate::http::via::set_node(&host);
        let shared = Arc::new(Shared::new(config)?);
        log::info!(
            "response bodies: up to {} KiB each in memory, {} KiB for all together (--spill-threshold, --transfer-memory); bigger ones go to disk as they arrive",
            shared.config.ops.spill_threshold >> 10,
            shared.config.ops.transfer_memory() >> 10
        );
        log::info!(
            "index: up to {} MiB (--index-memory), about {} URLs; past that the URLs closest to expiry leave the index, their records stay on disk",
            shared.config.cache.index_memory() >> 20,
            shared.config.cache.index_memory() / 49
        );
        // Per-worker request rates for the status page; the thread ends with the process's
        // shared state.
        let weak = Arc::downgrade(&shared);
        std::thread::Builder::new()
            .name("liveweb-rates".into())
            .spawn(move || {
                while let Some(shared) = weak.upgrade() {
                    shared.sample_rates();
                    drop(shared);
                    std::thread::sleep(crate::proxy::context::RATE_SAMPLE);
                }
            })?;
        let config = &shared.config;
        if config.tls.insecure_upstream {
            log::warn!(
                "--insecure-upstream: https origins are NOT authenticated; any certificate is accepted"
            );
        }

        if let Some(ca) = &config.tls.mitm_ca {
            log::info!(
                "archiving HTTPS through CONNECT with the CA {} (bypassed: {})",
                ca.display(),
                if config.tls.mitm_bypass.is_empty() {
                    "none".to_string()
                } else {
                    config.tls.mitm_bypass.join(",")
                }
            );
        }
        let started = Instant::now();
        let restorer = crate::index::Restorer::new(&shared.index, config.cache.ttl);
        let recovered_files = recover(&config.archive.data_dir, &shared.files, &restorer)?;
        recovered();
        let recovered = recovered_files;
        // Sized now if asked to, not step by step while serving.
        let room = config
            .cache
            .expected_urls
            .saturating_sub(shared.index.len());
        if room > 0 {
            shared.index.reserve(room);
        }
        // Bound only once ready to serve: a connection made during a long recovery is refused
        // at once instead of waiting in the backlog.
        let (listeners, local_addr) =
            listener::bind_all(config.clients.listen, workers, config.ops.notsent_lowat)?;
        let _ = shared.own_listen.set(local_addr);
        if let Some(dir) = &config.archive.crawl_log_dir {
            let name = host.trim().split('.').next().unwrap_or_default();
            let name = if name.is_empty() { "localhost" } else { name };
            let log = crate::crawl_log::CrawlLog::start(dir, name, local_addr.port())?;
            let _ = shared.crawl_log.set(log);
        }
        log::info!(
            "recovered {} records in {:.2?} ({} files left open sealed, {} bytes of unfinished records cut, {} CDX rebuilt)",
            recovered.indexed,
            started.elapsed(),
            recovered.repaired,
            recovered.cut_bytes,
            recovered.rebuilt_cdx
        );
        let handoff = match &config.archive.on_seal {
            Some(cmd) => {
                let h = Arc::new(Handoff::start(
                    cmd.clone(),
                    shared.files.clone(),
                    shared.archive_stats.clone(),
                )?);
                // Sealed files still here were not handed off yet (or the hook kept them).
                for (id, path) in &recovered.sealed {
                    h.submit(Some(*id), path.clone());
                }
                Some(h)
            }
            None => None,
        };

        let limits = Arc::new(limits::ConnLimits::new(
            config.clients.connection_limit(),
            config.clients.max_connections_per_client,
        ));
        let pool =
            monoio::blocking::DefaultThreadPool::new(usize::from(config.ops.blocking_threads));
        let mut handles = Vec::with_capacity(workers);
        let mut stops = Vec::with_capacity(workers);
        for (id, std_listener) in listeners.into_iter().enumerate() {
            let (stop_tx, stop_rx) = oneshot::channel();
            stops.push(stop_tx);
            let core = placement.get(id).copied().flatten();
            let setup = worker::WorkerSetup {
                id,
                core,
                listener: std_listener,
                shared: shared.clone(),
                pool: pool.clone(),
                stop: stop_rx,
                first_serial: recovered.next_serial,
                handoff: handoff.clone(),
                limits: limits.clone(),
            };
            let handle = std::thread::Builder::new()
                .name(format!("liveweb-w{id}"))
                .spawn(move || worker::run(setup))?;
            handles.push(handle);
        }
        let sweeper = sweeper::start(shared.clone())?;
        Ok(Server {
            sweeper: Mutex::new(Some(sweeper)),
            local_addr,
            workers: Mutex::new(handles),
            stops: Mutex::new(stops),
            shared,
            handoff: Mutex::new(handoff),
            recovered,
            _lock: data_lock,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Asks every worker to stop accepting, finish in-flight requests, and seal its file.
    pub fn shutdown(&self) {
        let stops = std::mem::take(&mut *self.stops.lock().unwrap_or_else(|p| p.into_inner()));
        for stop in stops {
            let _ = stop.send(());
        }
        let sweeper = self.sweeper.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((stop, handle)) = sweeper.as_ref() {
            stop.store(true, Ordering::Release);
            handle.thread().unpark();
        }
    }

    /// Waits for every worker thread to finish, then gives queued on-seal hooks a last try
    /// within `grace`.
    pub fn wait(&self, grace: Duration) {
        let workers = std::mem::take(&mut *self.workers.lock().unwrap_or_else(|p| p.into_inner()));
        for w in workers {
            let _ = w.join();
        }
        let sweeper = self
            .sweeper
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        // Stopped here too: shutdown() may find the sweeper already taken by this wait.
        if let Some((stop, handle)) = sweeper {
            stop.store(true, Ordering::Release);
            handle.thread().unpark();
            let _ = handle.join();
        }
        let handoff = self
            .handoff
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(h) = handoff {
            match Arc::try_unwrap(h) {
                Ok(h) => h.finish(Instant::now() + grace),
                Err(_) => log::warn!("on-seal hand-off still referenced at exit"),
            }
        }
    }
}

/// Where start-up is, for the signal thread.
enum Startup {
    Recovering,
    /// Recovered; binding and starting the workers. `stop`: a stop signal came meanwhile.
    Binding {
        stop: bool,
    },
    Running(Arc<Server>),
}

fn lock_startup(s: &Mutex<Startup>) -> std::sync::MutexGuard<'_, Startup> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs until SIGINT or SIGTERM, then shuts down cleanly. Signals are handled from the
/// start: a stop signal during start-up recovery exits at once with status 0 (recovery only
/// ever replaces files whole, so it is redone from where it stopped at the next start).
pub fn run(config: Config) -> io::Result<()> {
    if let Some((before, after)) = limits::raise_open_file_limit() {
        log::info!("open-file limit raised from {before} to {after} (the hard limit)");
    }
    let data_dir = config.archive.data_dir.clone();
    let workers = config.ops.worker_count();
    let grace = config.ops.shutdown_timeout;
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ])?;
    // The signal thread holds the lock while it acts on a signal, so a stop signal is either
    // acted on at once (recovering: exit; running: shut down) or left for `run` to act on as
    // soon as the server is up (binding and starting, when exiting would cut what starts).
    let startup = Arc::new(Mutex::new(Startup::Recovering));
    let for_signals = startup.clone();
    std::thread::Builder::new()
        .name("liveweb-signals".into())
        .spawn(move || {
            let mut stopping = false;
            for signal in signals.forever() {
                let mut state = lock_startup(&for_signals);
                let hup = signal == signal_hook::consts::SIGHUP;
                let server = match &mut *state {
                    Startup::Recovering | Startup::Binding { .. } if hup => {
                        log::warn!("SIGHUP ignored: still starting");
                        continue;
                    }
                    Startup::Recovering => {
                        log::info!("stop signal during start-up recovery, exiting");
                        std::process::exit(0);
                    }
                    Startup::Binding { stop } => {
                        *stop = true;
                        continue;
                    }
                    Startup::Running(server) => server.clone(),
                };
                drop(state);
                if hup {
                    // logrotate moves the logs before it signals: write on in new files.
                    if let Some(log) = &server.shared().access_log {
                        log.reopen();
                    }
                    if let Some(log) = server.shared().crawl_log.get() {
                        log.reopen();
                    }
                    // A bad file is reported with its line; the tables in force stay.
                    match server.shared().reload() {
                        Ok(summary) => log::info!("reloaded ({summary})"),
                        Err(e) => log::warn!("reload refused, keeping the old tables: {e}"),
                    }
                } else if stopping {
                    // A second stop signal ends the process at once.
                    log::warn!("second signal, exiting now");
                    std::process::exit(130);
                } else {
                    log::info!("shutting down");
                    stopping = true;
                    server.shutdown();
                }
            }
        })?;
    let binding = || *lock_startup(&startup) = Startup::Binding { stop: false };
    let server = Arc::new(Server::start(config, &binding)?);
    let stop_asked = {
        let mut state = lock_startup(&startup);
        let asked = matches!(*state, Startup::Binding { stop: true });
        *state = Startup::Running(server.clone());
        asked
    };
    crate::logging::always(format_args!(
        "listening on {}, {} workers, driver {}, data dir {}",
        server.local_addr(),
        workers,
        driver_name(),
        data_dir.display()
    ));
    if stop_asked {
        log::info!("stop signal during start-up, shutting down");
        server.shutdown();
    }
    server.wait(grace);
    // Every payload digest recorded so far made durable (they are at most a second behind).
    if let Some(dedup) = &server.shared().dedup {
        dedup.close();
    }
    if let Some(log) = server.shared().crawl_log.get() {
        log.close();
    }
    server.shared().crawl_stats.close();
    // The workers flushed their lines as they stopped: write them before exiting.
    if let Some(log) = &server.shared().access_log {
        log.close(Duration::from_secs(5));
    }
    log::info!("stopped");
    Ok(())
}
