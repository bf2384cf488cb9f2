//! A tap on a fetch in progress: the fetcher pushes the response bytes as they arrive and the
//! client that caused the fetch (on the same worker) takes them to stream its reply, so the
//! first byte reaches it about when the origin's arrives. When the client falls behind, the
//! fetcher waits (bounded buffering); when the client is gone, nothing waits. The piece that
//! completes the response is held back until the tap is closed: the fetcher closes it once
//! the record is written, so a reply never completes before its record exists (and never
//! completes at all if the record could not be written). A small response, whole in one
//! read, thus reaches its client in one write, as a liveweb-mode reply does.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::poll_fn;
use std::net::IpAddr;
use std::rc::Rc;
use std::task::{Poll, Waker};

use bytes::Bytes;

use crate::error::Error;

/// Most bytes buffered for a slow client before the fetcher waits.
const MAX_BUFFERED: usize = 4 << 20;

/// What the client takes next.
pub enum TapItem {
    Chunk(Bytes),
    /// The response is complete (`Ok`) or failed.
    End(Result<(), Error>),
}

#[derive(Default)]
struct Inner {
    chunks: VecDeque<Bytes>,
    /// The piece that completed the response, given to the reader only by the close.
    held: Option<Bytes>,
    buffered: usize,
    end: Option<Result<(), Error>>,
    /// The client waiting for bytes.
    reader: Option<Waker>,
    /// The fetcher waiting for room.
    writer: Option<Waker>,
    /// The origin address, once connected.
    upstream: Option<IpAddr>,
}

/// Shared by the fetch task and one client on the same worker.
#[derive(Default)]
pub struct Tap {
    inner: RefCell<Inner>,
}

impl Tap {
    pub fn new() -> Rc<Tap> {
        Rc::new(Tap::default())
    }

    /// Adds response bytes (`last`: they complete the response); waits while a live client
    /// has too much unread.
    pub async fn push(self: &Rc<Self>, data: &[u8], last: bool) {
        if data.is_empty() {
            return;
        }
        poll_fn(|cx| {
            let mut inner = self.inner.borrow_mut();
            // Only the fetcher holds the tap once the client is gone: never wait then.
            if inner.buffered < MAX_BUFFERED || Rc::strong_count(self) == 1 {
                Poll::Ready(())
            } else {
                inner.writer = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await;
        let mut inner = self.inner.borrow_mut();
        if Rc::strong_count(self) > 1 {
            inner.buffered += data.len();
            let piece = Bytes::copy_from_slice(data);
            if last {
                inner.held = Some(piece);
            } else {
                inner.chunks.push_back(piece);
                if let Some(w) = inner.reader.take() {
                    w.wake();
                }
            }
        }
    }

    /// Notes the origin address the response comes from.
    pub fn set_upstream(&self, ip: IpAddr) {
        self.inner.borrow_mut().upstream = Some(ip);
    }

    /// The origin address, if the fetch got as far as connecting.
    pub fn upstream(&self) -> Option<IpAddr> {
        self.inner.borrow().upstream
    }

    /// Why the fetch failed, once it has (for the counters and the access log of the client
    /// that streamed it).
    pub fn failure(&self) -> Option<Error> {
        match &self.inner.borrow().end {
            Some(Err(e)) => Some(e.clone()),
            _ => None,
        }
    }

    /// Ends the stream.
    pub fn close(&self, end: Result<(), Error>) {
        let mut inner = self.inner.borrow_mut();
        if inner.end.is_none() {
            if let Some(last) = inner.held.take() {
                // An origin's failure leaves the reply incomplete anyway; a record that could
                // not be written must not let it complete.
                let unarchived = end
                    .as_ref()
                    .is_err_and(|e| e.side() != crate::error::Side::Upstream);
                if unarchived {
                    inner.buffered -= last.len();
                } else {
                    inner.chunks.push_back(last);
                }
            }
            inner.end = Some(end);
        }
        if let Some(w) = inner.reader.take() {
            w.wake();
        }
    }

    /// The next chunk, or the end.
    pub async fn next(&self) -> TapItem {
        poll_fn(|cx| {
            let mut inner = self.inner.borrow_mut();
            if let Some(chunk) = inner.chunks.pop_front() {
                inner.buffered -= chunk.len();
                if let Some(w) = inner.writer.take() {
                    w.wake();
                }
                return Poll::Ready(TapItem::Chunk(chunk));
            }
            if let Some(end) = &inner.end {
                return Poll::Ready(TapItem::End(end.clone()));
            }
            inner.reader = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }
}

/// The client's end of a tap; dropping it (client gone) lets a waiting fetcher go on.
pub struct TapReader(pub Rc<Tap>);

impl TapReader {
    pub async fn next(&self) -> TapItem {
        self.0.next().await
    }
}

impl Drop for TapReader {
    fn drop(&mut self) {
        let mut inner = self.0.inner.borrow_mut();
        inner.chunks.clear();
        inner.held = None;
        inner.buffered = 0;
        if let Some(w) = inner.writer.take() {
            w.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    fn chunk(item: Option<TapItem>) -> Option<Vec<u8>> {
        match item {
            Some(TapItem::Chunk(b)) => Some(b.to_vec()),
            _ => None,
        }
    }

    #[test]
    fn the_last_piece_waits_for_the_close() {
        let tap = Tap::new();
        let reader = TapReader(tap.clone());
        tap.push(b"head", false).now_or_never().unwrap();
        assert_eq!(chunk(reader.next().now_or_never()), Some(b"head".to_vec()));
        tap.push(b"end", true).now_or_never().unwrap();
        assert!(
            reader.next().now_or_never().is_none(),
            "the last piece is held"
        );
        tap.close(Ok(()));
        assert_eq!(chunk(reader.next().now_or_never()), Some(b"end".to_vec()));
        assert!(matches!(
            reader.next().now_or_never(),
            Some(TapItem::End(Ok(())))
        ));
        assert_eq!(tap.inner.borrow().buffered, 0);

        // The origin failed after its response: what it sent goes on.
        let tap = Tap::new();
        let reader = TapReader(tap.clone());
        tap.push(b"ab", true).now_or_never().unwrap();
        tap.close(Err(Error::Dropped("cut".into())));
        assert_eq!(chunk(reader.next().now_or_never()), Some(b"ab".to_vec()));
        assert!(matches!(
            reader.next().now_or_never(),
            Some(TapItem::End(Err(_)))
        ));

        // The record could not be written: the last piece never reaches the client.
        let tap = Tap::new();
        let reader = TapReader(tap.clone());
        tap.push(b"a", false).now_or_never().unwrap();
        tap.push(b"b", true).now_or_never().unwrap();
        tap.close(Err(Error::Storage("disk".into())));
        assert_eq!(chunk(reader.next().now_or_never()), Some(b"a".to_vec()));
        assert!(matches!(
            reader.next().now_or_never(),
            Some(TapItem::End(Err(_)))
        ));
        assert_eq!(tap.inner.borrow().buffered, 0);
    }
}
