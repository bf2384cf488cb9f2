//! A worker thread: pin to a CPU, build the runtime, accept connections until told to stop,
//! then drain connections and close the ARC file.

use std::cell::{Cell, RefCell};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_channel::oneshot;
use monoio::net::TcpListener;

use super::conn;
use super::drain::Drain;
use super::listener::{accept_pending, is_nonblocking};
use crate::archive::handoff::Handoff;
use crate::archive::{ArcWriter, WriterConfig};
use crate::fetch::DnsCache;
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
}

pub(super) fn run(setup: WorkerSetup) {
    if let Some(core) = setup.core {
        if !core_affinity::set_for_current(core) {
            eprintln!(
                "liveweb: worker {} could not be pinned to CPU {}; running unpinned",
                setup.id, core.id
            );
        }
    }
    let runtime = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .attach_thread_pool(Box::new(setup.pool.clone()))
        .build();
    let mut runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!(
                "liveweb: worker {} could not start its runtime: {e}",
                setup.id
            );
            return;
        }
    };
    runtime.block_on(serve(setup));
}

async fn serve(setup: WorkerSetup) {
    let WorkerSetup {
        id,
        listener,
        shared,
        mut stop,
        first_serial,
        handoff,
        ..
    } = setup;
    let listener = match listener
        .set_nonblocking(true)
        .and_then(|()| TcpListener::from_std(listener))
    {
        Ok(l) => l,
        Err(e) => {
            eprintln!("liveweb: worker {id} could not use its listener: {e}");
            return;
        }
    };
    let config = &shared.config;
    let writer = ArcWriter::spawn(
        WriterConfig {
            dir: config.data_dir.join(id.to_string()),
            sealed_dir: config.data_dir.join("sealed"),
            prefix: config.prefix.clone(),
            worker: id,
            codec: config.codec(),
            first_serial,
            max_size: config.arc_max_size,
            max_idle: config.arc_max_idle,
            fsync: config.fsync,
            min_free: config.min_free,
            handoff,
        },
        shared.files.clone(),
    );
    let shard_bytes = (config.mem_cache / config.worker_count().max(1) as u64) as usize;
    let ctx = Rc::new(WorkerCtx {
        id,
        shared: shared.clone(),
        dns: DnsCache::new(),
        pool: crate::fetch::UpstreamPool::new(),
        hot: RefCell::new(HotShard::new(shard_bytes)),
        writer: writer.clone(),
    });
    let active = Rc::new(Cell::new(0usize));
    let drain = Rc::new(Drain::default());

    loop {
        monoio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let nonblocking = is_nonblocking(stream.as_raw_fd());
                    let spawn_conn = |stream| {
                        let ctx = ctx.clone();
                        let active = active.clone();
                        let drain = drain.clone();
                        active.set(active.get() + 1);
                        monoio::spawn(async move {
                            conn::serve(ctx, stream, &drain).await;
                            active.set(active.get() - 1);
                        });
                    };
                    spawn_conn(stream);
                    for stream in accept_pending(listener.as_raw_fd(), nonblocking) {
                        spawn_conn(stream);
                    }
                }
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    eprintln!("liveweb: worker {id} accept failed: {e}");
                    monoio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }
    drop(listener);
    drain.start();
    let deadline = Instant::now() + config.shutdown_timeout;
    while active.get() > 0 && Instant::now() < deadline {
        monoio::time::sleep(Duration::from_millis(10)).await;
    }
    writer.close().await;
}
