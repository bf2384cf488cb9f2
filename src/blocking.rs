//! Small named thread pools with bounded queues, for blocking work that must not wait behind
//! another kind: DNS lookups get their own (so they never queue behind record compression or
//! sealing on the runtime's pool), and so does bcrypt. A full queue is refused at once
//! instead of growing without bound.

use std::io;

use futures_channel::oneshot;

type Job = Box<dyn FnOnce() + Send>;

/// A pool of `threads` threads taking jobs from one bounded queue.
pub struct Pool {
    queue: crossbeam_channel::Sender<Job>,
}

/// The pool's queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

impl Pool {
    /// Starts `threads` threads named `liveweb-{name}{n}` serving a queue of `queue` jobs.
    pub fn start(name: &str, threads: usize, queue: usize) -> io::Result<Pool> {
        let (tx, rx) = crossbeam_channel::bounded::<Job>(queue);
        for n in 0..threads.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("liveweb-{name}{n}"))
                .spawn(move || {
                    for job in rx {
                        job();
                    }
                })?;
        }
        Ok(Pool { queue: tx })
    }

    /// Queues `work`; its result arrives on the returned receiver (which any runtime can
    /// await). `Full` when the queue is full.
    pub fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<oneshot::Receiver<T>, Full> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(work());
        });
        self.queue.try_send(job).map_err(|_| Full)?;
        Ok(rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn runs_jobs_and_refuses_when_full() {
        let pool = Pool::start("test", 1, 1).unwrap();
        // Block the only thread, fill the one queue slot, then the next job is refused.
        let (release, wait) = mpsc::channel::<()>();
        let blocker = pool.run(move || wait.recv().is_ok()).unwrap();
        // The thread may not have taken the blocker yet: queue until a job is refused.
        let mut queued = Vec::new();
        let refused = loop {
            match pool.run(|| 7) {
                Ok(rx) => queued.push(rx),
                Err(full) => break full,
            }
            assert!(queued.len() <= 2, "a queue of one never takes three");
        };
        assert_eq!(refused, Full);
        release.send(()).unwrap();
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .build()
            .unwrap();
        rt.block_on(async {
            assert_eq!(blocker.await, Ok(true));
            for rx in queued {
                assert_eq!(rx.await, Ok(7));
            }
        });
    }
}
