//! Threads and runtimes: one pinned OS thread per worker, each with its own monoio runtime
//! (io_uring, epoll fallback), listener, ARC writer and hot shard; plus shutdown.

mod conn;
mod listener;
mod worker;

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use futures_channel::oneshot;

use crate::config::Config;
use crate::proxy::Shared;

/// Which I/O driver the runtimes use.
pub fn driver_name() -> &'static str {
    if monoio::utils::detect_uring() {
        "io_uring"
    } else {
        "epoll"
    }
}

/// A running server.
pub struct Server {
    local_addr: SocketAddr,
    workers: Vec<JoinHandle<()>>,
    /// One stop signal per worker; taken on shutdown.
    stops: Mutex<Vec<oneshot::Sender<()>>>,
    shared: Arc<Shared>,
}

impl Server {
    /// Binds, creates the data directories and starts the workers.
    pub fn start(config: Config) -> io::Result<Server> {
        let workers = config.worker_count();
        for w in 0..workers {
            std::fs::create_dir_all(config.data_dir.join(w.to_string()))?;
        }
        let (listeners, local_addr) = listener::bind_all(config.listen, workers)?;
        let shared = Arc::new(Shared::new(config));
        let cores = core_affinity::get_core_ids().unwrap_or_default();
        let pool = monoio::blocking::DefaultThreadPool::new(4);
        let mut handles = Vec::with_capacity(workers);
        let mut stops = Vec::with_capacity(workers);
        for (id, std_listener) in listeners.into_iter().enumerate() {
            let (stop_tx, stop_rx) = oneshot::channel();
            stops.push(stop_tx);
            let core = (!cores.is_empty()).then(|| cores[id % cores.len()]);
            let setup = worker::WorkerSetup {
                id,
                core,
                listener: std_listener,
                shared: shared.clone(),
                pool: pool.clone(),
                stop: stop_rx,
            };
            let handle = std::thread::Builder::new()
                .name(format!("liveweb-w{id}"))
                .spawn(move || worker::run(setup))?;
            handles.push(handle);
        }
        Ok(Server {
            local_addr,
            workers: handles,
            stops: Mutex::new(stops),
            shared,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Asks every worker to stop accepting, drain, and close its ARC file.
    pub fn shutdown(&self) {
        let stops = std::mem::take(&mut *self.stops.lock().unwrap_or_else(|p| p.into_inner()));
        for stop in stops {
            let _ = stop.send(());
        }
    }

    /// Waits for every worker thread to finish.
    pub fn join(self) {
        for w in self.workers {
            let _ = w.join();
        }
    }
}

/// Runs until SIGINT or SIGTERM, then shuts down cleanly.
pub fn run(config: Config) -> io::Result<()> {
    let data_dir = config.data_dir.clone();
    let workers = config.worker_count();
    let server = Arc::new(Server::start(config)?);
    eprintln!(
        "liveweb: listening on {}, {} workers, driver {}, data dir {}",
        server.local_addr(),
        workers,
        driver_name(),
        data_dir.display()
    );
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])?;
    let for_signals = server.clone();
    std::thread::Builder::new()
        .name("liveweb-signals".into())
        .spawn(move || {
            if signals.forever().next().is_some() {
                eprintln!("liveweb: shutting down");
                for_signals.shutdown();
            }
            // A second signal ends the process at once.
            if signals.forever().next().is_some() {
                std::process::exit(130);
            }
        })?;
    match Arc::try_unwrap(server) {
        Ok(server) => server.join(),
        Err(shared) => {
            // The signal thread holds a reference; wait on the workers through it.
            wait_workers(&shared);
        }
    }
    Ok(())
}

fn wait_workers(server: &Server) {
    for w in &server.workers {
        while !w.is_finished() {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}
