//! One in-flight fetch and the requests waiting for it, on any worker. Completion wakes every
//! waiter through a oneshot channel (monoio's `sync` feature makes cross-thread wakes work).

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_channel::oneshot;

use super::StoredRecord;
use crate::error::Error;
use crate::http::cache::Reuse;

/// A finished fetch as waiters receive it: the record and its gzip member bytes, so no waiter
/// has to read the disk.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub record: Arc<StoredRecord>,
    /// The reuse rules a fetch just worked out, in full (Vary values, validators, origin
    /// address), which the index keeps only in summary; `None` for a stored record.
    pub reuse: Option<Arc<Reuse>>,
    /// `None` when the fetch revalidated a stored record that is not in memory: waiters read
    /// it like a hit.
    pub member: Option<Bytes>,
    /// Archived as an identical-payload `revisit`: `record` is the revisit, which holds no
    /// body, and `member` (when there is one) the response as fetched, never written. Only
    /// the request that fetched it is answered from it; nothing is reused or indexed.
    pub revisit: bool,
    /// What the record written for this fetch holds, for the crawl log and warcprox's
    /// tallies; `None` when none was written (a 304's stored record answers) or neither
    /// asks (not worked out on every miss).
    pub archived: Option<Arc<Archived>>,
}

/// What a record just written holds, as a crawl log reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archived {
    /// `sha1:...` of the payload.
    pub digest: String,
    pub mime: String,
    /// Payload bytes.
    pub payload_len: u64,
}

/// What a flight ends with. An error here was not archived (the record of an archived
/// failure arrives as a `Delivery`).
pub type Outcome = Result<Delivery, Error>;

#[derive(Debug)]
enum State {
    Pending(Vec<oneshot::Sender<Outcome>>),
    Done(Outcome),
}

/// The rendezvous for one fetch. The mutex is held only to push a waiter or to take the
/// list, never across an await.
#[derive(Debug)]
pub struct Flight {
    state: Mutex<State>,
}

impl Default for Flight {
    fn default() -> Self {
        Self::new()
    }
}

impl Flight {
    pub fn new() -> Self {
        Flight {
            state: Mutex::new(State::Pending(Vec::new())),
        }
    }

    /// Waits for the outcome (immediately if already done).
    pub async fn wait(&self) -> Outcome {
        let rx = {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            match &mut *state {
                State::Done(outcome) => return outcome.clone(),
                State::Pending(waiters) => {
                    let (tx, rx) = oneshot::channel();
                    waiters.push(tx);
                    rx
                }
            }
        };
        rx.await.unwrap_or(Err(Error::Internal("fetch abandoned")))
    }

    /// Publishes the outcome and wakes every waiter. Only the first call counts.
    pub fn complete(&self, outcome: Outcome) {
        let waiters = {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            match std::mem::replace(&mut *state, State::Done(outcome.clone())) {
                State::Pending(w) => w,
                done @ State::Done(_) => {
                    *state = done;
                    return;
                }
            }
        };
        for w in waiters {
            let _ = w.send(outcome.clone());
        }
    }
}

/// Completes a flight with an internal error if its fetch task ends without completing it
/// (a bug or a runtime shutdown), so no waiter hangs.
pub struct FlightGuard(pub Arc<Flight>);

impl Drop for FlightGuard {
    fn drop(&mut self) {
        self.0.complete(Err(Error::Internal("fetch abandoned")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiters_on_other_threads_are_woken() {
        let flight = Arc::new(Flight::new());
        let mut handles = Vec::new();
        for _ in 0..4 {
            let f = flight.clone();
            handles.push(std::thread::spawn(move || {
                futures_executor_block_on(async move { f.wait().await })
            }));
        }
        // Let at least some register before completion; late ones see Done.
        std::thread::sleep(std::time::Duration::from_millis(20));
        flight.complete(Err(Error::NotCached));
        flight.complete(Err(Error::UriTooLong)); // ignored
        for h in handles {
            assert_eq!(h.join().unwrap().unwrap_err(), Error::NotCached);
        }
    }

    #[test]
    fn guard_completes_abandoned_flight() {
        let flight = Arc::new(Flight::new());
        drop(FlightGuard(flight.clone()));
        let out = futures_executor_block_on(flight.wait());
        assert_eq!(out.unwrap_err(), Error::Internal("fetch abandoned"));
    }

    /// A minimal single-future executor, so the test needs no runtime.
    fn futures_executor_block_on<F: std::future::Future>(fut: F) -> F::Output {
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .build()
            .expect("runtime");
        rt.block_on(fut)
    }
}
