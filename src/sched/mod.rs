//! Fetch scheduling, shared by every worker: a fetch starts only with a slot (at most
//! `--max-fetches` in all and `--max-fetches-per-host` to one origin); fetches that cannot
//! start wait in one queue per client, served round-robin, so a client with a big backlog
//! cannot starve the others, whichever worker their connections landed on. Waiting is
//! bounded in length (`--max-queue`, `--max-queue-per-client`) and in time
//! (`--queue-timeout`); past either, the request is refused as busy with an estimate of when
//! to come back.

pub mod queue;

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures_channel::oneshot;

pub use queue::{ClientKey, Full, Limits, Queues};

use crate::error::Error;

/// Longest Retry-After a busy reply names.
const MAX_RETRY_AFTER: u64 = 3600;

pub struct Scheduler {
    queues: Mutex<Queues<oneshot::Sender<()>>>,
    queue_timeout: Duration,
    max_running: usize,
    /// Recent mean time a fetch holds its slot, in microseconds (for Retry-After).
    mean_fetch_us: AtomicU64,
}

/// A running fetch's slot; freed (and handed to the next waiting fetch) when dropped.
pub struct Permit {
    sched: Arc<Scheduler>,
    host: Arc<str>,
    started: Instant,
}

impl Scheduler {
    pub fn new(limits: Limits, queue_timeout: Duration) -> Scheduler {
        Scheduler {
            queues: Mutex::new(Queues::new(limits)),
            queue_timeout,
            max_running: limits.max_running,
            mean_fetch_us: AtomicU64::new(100_000),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queues<oneshot::Sender<()>>> {
        // The bookkeeping stays consistent across a panic elsewhere: every change is made
        // whole under the lock.
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// (running, queued) now.
    pub fn load(&self) -> (usize, usize) {
        let q = self.lock();
        (q.running(), q.queued())
    }

    /// A slot for a fetch by `client` from `host` (`host:port`): at once when there is room
    /// and nobody waits, else after the fetches ahead in the fair order. `Error::Busy` when
    /// the queue is full or the wait passes `--queue-timeout`.
    pub async fn acquire(self: &Arc<Self>, client: IpAddr, host: &str) -> Result<Permit, Error> {
        let client = ClientKey::of(client);
        let (id, mut granted) = {
            let mut q = self.lock();
            if let Some(host) = q.try_start(host) {
                return Ok(self.permit(host));
            }
            let (tx, rx) = oneshot::channel();
            let id = match q.enqueue(client, host, tx) {
                Ok(id) => id,
                Err(full) => {
                    // A full queue refuses only fetches that would have to wait: with every
                    // startable waiting fetch started, a slot free for this origin is its.
                    self.dispatch(&mut q);
                    if let Some(host) = q.start_if_room(host) {
                        return Ok(self.permit(host));
                    }
                    let why = match full {
                        Full::Client => "too many fetches queued for this client",
                        Full::All => "too many fetches queued",
                    };
                    return Err(self.busy(why, q.queued()));
                }
            };
            // Room may be free for this one while the ones ahead wait for busy origins.
            self.dispatch(&mut q);
            (id, rx)
        };
        match monoio::time::timeout(self.queue_timeout, &mut granted).await {
            Ok(Ok(())) => Ok(self.permit(Arc::from(host))),
            _ => {
                let mut q = self.lock();
                if q.cancel(client, id) {
                    return Err(self.busy("waited --queue-timeout for a fetch slot", q.queued()));
                }
                // Granted between the timeout and the lock: the slot is this fetch's.
                drop(q);
                match granted.try_recv() {
                    Ok(Some(())) => Ok(self.permit(Arc::from(host))),
                    _ => Err(Error::Internal("fetch slot lost")),
                }
            }
        }
    }

    fn permit(self: &Arc<Self>, host: Arc<str>) -> Permit {
        Permit {
            sched: self.clone(),
            host,
            started: Instant::now(),
        }
    }

    /// Hands free slots to waiting fetches, in the fair order.
    fn dispatch(&self, q: &mut Queues<oneshot::Sender<()>>) {
        while let Some((host, tx)) = q.next_grant() {
            if tx.send(()).is_err() {
                // Its request is gone (the task was dropped): the slot goes to the next.
                q.finish(&host);
            }
        }
    }

    /// A busy refusal with an estimate of when a slot will be free for a request that joins
    /// behind `queued` others.
    fn busy(&self, why: &'static str, queued: usize) -> Error {
        Error::Busy {
            why,
            retry_after: self.seconds_behind(queued),
        }
    }

    /// Seconds until a fetch queued behind `queued` others would likely have run.
    fn seconds_behind(&self, queued: usize) -> u32 {
        let mean = Duration::from_micros(self.mean_fetch_us.load(Ordering::Relaxed));
        let wait = mean.as_secs_f64() * (queued + 1) as f64 / self.max_running.max(1) as f64;
        (wait.ceil() as u64).clamp(1, MAX_RETRY_AFTER) as u32
    }

    /// Seconds until a fetch queued now would likely have run.
    pub fn retry_estimate(&self) -> u32 {
        let queued = self.lock().queued();
        self.seconds_behind(queued)
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let held = self.started.elapsed().as_micros() as u64;
        let mean = &self.sched.mean_fetch_us;
        let old = mean.load(Ordering::Relaxed);
        // A moving mean over roughly the last eight fetches.
        mean.store(old - old / 8 + held / 8, Ordering::Relaxed);
        let mut q = self.sched.lock();
        q.finish(&self.host);
        self.sched.dispatch(&mut q);
    }
}
