//! A worker-local "stop taking requests" signal: connections idle between requests wake and
//! close at once; busy ones finish their request first.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// Set once when the worker starts shutting down.
#[derive(Default)]
pub struct Drain {
    draining: Cell<bool>,
    next_key: Cell<u64>,
    /// One waker per wait in progress, removed when the wait ends: bounded by the connections
    /// waiting right now (a list that only grew made every wait slower, request after request).
    waiters: RefCell<hashbrown::HashMap<u64, Waker>>,
}

impl Drain {
    pub fn is_draining(&self) -> bool {
        self.draining.get()
    }

    pub fn start(&self) {
        self.draining.set(true);
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        for (_, w) in waiters {
            w.wake();
        }
    }

    /// Resolves once draining has started.
    pub fn wait(&self) -> DrainWait<'_> {
        DrainWait {
            drain: self,
            key: None,
        }
    }

    /// Waits currently registered.
    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.waiters.borrow().len()
    }
}

pub struct DrainWait<'a> {
    drain: &'a Drain,
    key: Option<u64>,
}

impl Future for DrainWait<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let drain = self.drain;
        if drain.draining.get() {
            return Poll::Ready(());
        }
        let key = *self.key.get_or_insert_with(|| {
            let k = drain.next_key.get();
            drain.next_key.set(k + 1);
            k
        });
        drain.waiters.borrow_mut().insert(key, cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for DrainWait<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            self.drain.waiters.borrow_mut().remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Wake;

    struct Flag(std::sync::atomic::AtomicBool);
    impl Wake for Flag {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    #[test]
    fn waits_are_bounded_and_woken() {
        let drain = Drain::default();
        let flag = std::sync::Arc::new(Flag(false.into()));
        let waker = Waker::from(flag.clone());
        let mut cx = Context::from_waker(&waker);
        // Many waits that end without draining leave nothing behind.
        for _ in 0..1000 {
            let mut w = Box::pin(drain.wait());
            assert!(w.as_mut().poll(&mut cx).is_pending());
            assert!(w.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(drain.waiting(), 0);
        let mut w = Box::pin(drain.wait());
        assert!(w.as_mut().poll(&mut cx).is_pending());
        assert_eq!(drain.waiting(), 1);
        drain.start();
        assert!(flag.0.load(std::sync::atomic::Ordering::SeqCst), "woken");
        assert!(w.as_mut().poll(&mut cx).is_ready());
    }
}
