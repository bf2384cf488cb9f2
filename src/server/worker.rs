//! A worker thread: pin to a CPU, build the runtime, accept connections until told to stop,
//! then drain connections and close the ARC file.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_channel::oneshot;
use monoio::net::TcpListener;

use super::conn;
use super::drain::Drain;
use super::gate;
use super::limits::{ConnLimits, Refused};
use super::listener::{accept_pending, is_nonblocking};
use crate::archive::handoff::Handoff;
use crate::archive::{ArcWriter, WriterConfig};
use crate::error::Error;
use crate::fetch::DnsCache;
use crate::proxy::prefix_writers::PrefixWriters;
use crate::proxy::{hot::HotShard, Shared, WorkerCtx};

pub(super) struct WorkerSetup {
    pub id: usize,
    pub core: Option<core_affinity::CoreId>,
    pub listener: std::net::TcpListener,
    pub shared: Arc<Shared>,
    pub pool: monoio::blocking::DefaultThreadPool,
    pub stop: oneshot::Receiver<()>,
    /// First ARC file serial (above every serial already on disk).
    pub first_serial: u64,
    pub handoff: Option<Arc<Handoff>>,
    /// Connection counts shared by all workers.
    pub limits: Arc<ConnLimits>,
}

pub(super) fn run(setup: WorkerSetup) {
    if let Some(core) = setup.core {
        if core_affinity::set_for_current(core) {
            if let Some(counters) = setup.shared.counters.get(setup.id) {
                counters.set_cpu(core.id);
            }
        } else {
            log::warn!(
                "worker {} could not be pinned to CPU {}; running unpinned",
                setup.id,
                core.id
            );
        }
    }
    let build = |ring: io_uring::Builder| {
        monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .uring_builder(ring)
            .enable_timer()
            .attach_thread_pool(Box::new(setup.pool.clone()))
            .build()
    };
    let runtime = build(deferred_task_work_ring()).or_else(|e| {
        log::info!(
            "worker {}: io_uring without deferred task work ({e}; needs Linux 6.1)",
            setup.id
        );
        build(io_uring::IoUring::builder())
    });
    let mut runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            log::error!("worker {} could not start its runtime: {e}", setup.id);
            return;
        }
    };
    runtime.block_on(serve(setup));
}

/// The worker's ring runs completions' task work only when the worker asks for completions
/// (DEFER_TASKRUN, which needs SINGLE_ISSUER: only this thread submits), instead of
/// interrupting the thread as each arrives. A busy worker then takes its completions in
/// batches between tasks, with fewer interrupts and context switches per request
/// (`loadtest/results/ab-20261126T073816Z.txt`, against the default ring). monoio's loop
/// fits it: it waits for completions whenever no task is ready.
fn deferred_task_work_ring() -> io_uring::Builder {
    let mut ring = io_uring::IoUring::builder();
    ring.setup_coop_taskrun()
        .setup_single_issuer()
        .setup_defer_taskrun();
    ring
}

async fn serve(setup: WorkerSetup) {
    let WorkerSetup {
        id,
        listener,
        shared,
        mut stop,
        first_serial,
        handoff,
        limits,
        ..
    } = setup;
    let listener = match listener
        .set_nonblocking(true)
        .and_then(|()| TcpListener::from_std(listener))
    {
        Ok(l) => l,
        Err(e) => {
            log::error!("worker {id} could not use its listener: {e}");
            return;
        }
    };
    let config = &shared.config;
    let writer_config = WriterConfig {
        dir: config.archive.data_dir.join(id.to_string()),
        sealed_dir: config.archive.data_dir.join("sealed"),
        prefix: config.archive.prefix.clone(),
        worker: id,
        codec: config.archive.codec(),
        format: config.archive.format,
        first_serial,
        max_size: config.archive.arc_max_size,
        max_idle: config.archive.arc_max_idle,
        fsync: config.archive.fsync,
        min_free: config.archive.min_free,
        handoff,
        stats: shared.archive_stats.clone(),
    };
    let prefixed = PrefixWriters::new(writer_config.clone(), shared.files.clone());
    let writer = ArcWriter::spawn(writer_config, shared.files.clone());
    let shard_bytes = (config.cache.mem_cache / config.ops.worker_count().max(1) as u64) as usize;
    let ctx = Rc::new(WorkerCtx {
        id,
        shared: shared.clone(),
        dns: DnsCache::new(shared.dns_pool.clone()),
        pool: crate::fetch::UpstreamPool::new(),
        hot: RefCell::new(HotShard::new(shard_bytes)),
        writer: writer.clone(),
        prefixed,
        access: Default::default(),
        fetches: Default::default(),
        spill: crate::fetch::spill::SpillTo {
            dir: config.archive.data_dir.join(id.to_string()),
            threshold: config.ops.spill_threshold,
            budget: shared.transfer_budget.clone(),
        },
    });
    // Idle upstream connections to origins nobody asks for again are closed even when no
    // request comes to look at them.
    every(&ctx, crate::fetch::POOL_SWEEP_EVERY, |ctx| ctx.pool.sweep());
    if shared.access_log.is_some() {
        // Lines reach the file within a second even when traffic is light.
        every(&ctx, std::time::Duration::from_secs(1), |ctx| {
            if let Some(log) = &ctx.shared.access_log {
                ctx.access.flush(log);
            }
        });
    }
    let active = Rc::new(Cell::new(0usize));
    let drain = Rc::new(Drain::default());
    let mut accept_errors = AcceptBackoff::default();

    loop {
        monoio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    accept_errors.reset();
                    let nonblocking = is_nonblocking(&stream);
                    let spawn_conn = |stream: monoio::net::TcpStream| {
                        let Ok(peer) = stream.peer_addr() else {
                            return; // already gone
                        };
                        let ip = peer.ip();
                        let ctx = ctx.clone();
                        let active = active.clone();
                        let drain = drain.clone();
                        active.set(active.get() + 1);
                        // Outsiders are refused before they can take a connection slot.
                        let balancer = gate::is_balancer(&ctx, ip);
                        let admitted = if gate::may_connect(&ctx, ip, balancer) {
                            let taken = if balancer {
                                limits.acquire_total()
                            } else {
                                limits.acquire(ip)
                            };
                            taken.map_err(|refused| {
                                let which = match refused {
                                    Refused::Total => "--max-connections",
                                    Refused::PerClient => "--max-connections-per-client",
                                };
                                gate::log_limited(&gate::BUSY_LOG, || {
                                    format!("refusing connections over {which} (latest from {ip})")
                                });
                                Error::TooManyConnections
                            })
                        } else {
                            Err(Error::ClientNotAllowed)
                        };
                        monoio::spawn(async move {
                            match admitted {
                                Ok(mut permit) => {
                                    let from = conn::Peer { ip, balancer };
                                    conn::serve(ctx, stream, from, &drain, &mut permit).await
                                }
                                Err(e) => conn::refuse_at_once(&ctx, stream, &e).await,
                            }
                            active.set(active.get() - 1);
                        });
                    };
                    spawn_conn(stream);
                    for stream in accept_pending(&listener, nonblocking) {
                        spawn_conn(stream);
                    }
                }
                Err(e) => {
                    // EMFILE and friends: the connections already open keep being served
                    // while this worker waits (longer each time) for descriptors to free up;
                    // the log says so once a second, not once per attempt.
                    let wait = accept_errors.failed(id, &e);
                    monoio::time::sleep(wait).await;
                }
            }
        }
    }
    drop(listener);
    drain.start();
    let deadline = Instant::now() + config.ops.shutdown_timeout;
    // Connections finish their requests; fetches finish storing what they fetched (a
    // forward-mode client may have its whole reply while the record is still being
    // compressed and written).
    while (active.get() > 0 || ctx.fetches.running() > 0) && Instant::now() < deadline {
        monoio::time::sleep(Duration::from_millis(10)).await;
    }
    if ctx.fetches.running() > 0 {
        log::warn!(
            "worker {id}: {} fetches still running at the shutdown timeout; their records are lost",
            ctx.fetches.running()
        );
    }
    if let Some(log) = &ctx.shared.access_log {
        ctx.access.flush(log);
    }
    ctx.prefixed.close_all().await;
    writer.close().await;
}

/// Accept failures in a row: how long to wait before the next try and when to log.
#[derive(Default)]
struct AcceptBackoff {
    in_a_row: u32,
    suppressed: u64,
    last_log: Option<Instant>,
}

impl AcceptBackoff {
    /// Records a failure; returns how long to wait (10 ms doubling to 1 s).
    fn failed(&mut self, worker: usize, e: &std::io::Error) -> Duration {
        self.in_a_row = self.in_a_row.saturating_add(1);
        let now = Instant::now();
        if self
            .last_log
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
        {
            log::warn!(
                "worker {worker} accept failed: {e} ({} more since the last report); backing off",
                self.suppressed
            );
            self.last_log = Some(now);
            self.suppressed = 0;
        } else {
            self.suppressed += 1;
        }
        Duration::from_millis(10u64 << self.in_a_row.min(7).saturating_sub(1))
            .min(Duration::from_secs(1))
    }

    fn reset(&mut self) {
        self.in_a_row = 0;
    }
}

/// Runs `tick` every `period` for as long as the worker's context lives. The timer holds the
/// context weakly: a strong hold would keep its writers (and the on-seal hand-off they share)
/// alive past the worker's end, and shutdown waits for them.
fn every(ctx: &Rc<WorkerCtx>, period: std::time::Duration, tick: impl Fn(&WorkerCtx) + 'static) {
    let ctx = Rc::downgrade(ctx);
    monoio::spawn(async move {
        loop {
            monoio::time::sleep(period).await;
            let Some(ctx) = ctx.upgrade() else { break };
            tick(&ctx);
        }
    });
}
