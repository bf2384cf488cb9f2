//! A tap on a fetch in progress: the fetcher pushes the response bytes as they arrive and the
//! client that caused the fetch (on the same worker) takes them to stream its reply, so the
//! first byte reaches it about when the origin's arrives. When the client falls behind, the
//! fetcher waits (bounded buffering in memory); when the client is gone, nothing waits. Once
//! the response spills to disk, the client reads it from the spill file at its own pace and
//! the fetcher never waits for it. The piece that
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
use monoio::buf::IoBufMut;

use crate::error::Error;

/// Most bytes buffered in memory for a slow client before the fetcher waits.
const MAX_BUFFERED: usize = 4 << 20;

/// Bytes read from a spill file per chunk handed to the client.
const FILE_PIECE: usize = 256 << 10;

/// What the client takes next.
pub enum TapItem {
    Chunk(Bytes),
    /// The response is complete (`Ok`) or failed.
    End(Result<(), Error>),
}

/// Bytes waiting for the client, in order.
enum Segment {
    Memory(Bytes),
    /// A stretch of the file the response spilled to: `from..to` is still to be read, of
    /// which the last `held` bytes only once the tap closes (see `Tap::close`). `open`: the
    /// fetcher may still append to it.
    File {
        file: Rc<monoio::fs::File>,
        from: u64,
        to: u64,
        held: u64,
        open: bool,
    },
}

#[derive(Default)]
struct Inner {
    segments: VecDeque<Segment>,
    /// The piece that completed the response, given to the reader only by the close.
    held: Option<Bytes>,
    /// Bytes in memory segments: what a slow client makes the fetcher wait on.
    buffered: usize,
    end: Option<Result<(), Error>>,
    /// The client waiting for bytes.
    reader: Option<Waker>,
    /// The fetcher waiting for room.
    writer: Option<Waker>,
    /// The origin address, once connected.
    upstream: Option<IpAddr>,
}

impl Inner {
    fn wake_reader(&mut self) {
        if let Some(w) = self.reader.take() {
            w.wake();
        }
    }

    /// The open file segment, if the response is spilling.
    fn open_file(&mut self) -> Option<(&mut u64, &mut u64)> {
        match self.segments.back_mut() {
            Some(Segment::File {
                to,
                held,
                open: true,
                ..
            }) => Some((to, held)),
            _ => None,
        }
    }
}

/// What the reader does next, decided under the borrow and done after it.
enum Next {
    Item(TapItem),
    Read(Rc<monoio::fs::File>, u64, usize),
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
    /// has too much unread in memory.
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
                inner.segments.push_back(Segment::Memory(piece));
                inner.wake_reader();
            }
        }
    }

    /// From now on the response's bytes are in `file` (the spill, a descriptor of the
    /// tap's own) from offset `at` on: the fetcher reports them with `spilled` and never
    /// waits for the client, who reads them from the file at its own pace.
    pub fn spill_to(&self, file: monoio::fs::File, at: u64) {
        let mut inner = self.inner.borrow_mut();
        inner.segments.push_back(Segment::File {
            file: Rc::new(file),
            from: at,
            to: at,
            held: 0,
            open: true,
        });
    }

    /// The spill file now holds `n` more bytes (`last`: they complete the response).
    pub fn spilled(&self, n: u64, last: bool) {
        let mut inner = self.inner.borrow_mut();
        if let Some((to, held)) = inner.open_file() {
            *to += n;
            *held = if last { n } else { 0 };
            inner.wake_reader();
        }
    }

    /// The response no longer goes to the spill file (it outgrew `--max-body`): what is in
    /// the file is read, then bytes pushed from now on.
    pub fn unspill(&self) {
        let mut inner = self.inner.borrow_mut();
        if let Some(Segment::File { open, .. }) = inner.segments.back_mut() {
            *open = false;
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
            // An origin's failure leaves the reply incomplete anyway; a record that could not
            // be written must not let it complete.
            let unarchived = end
                .as_ref()
                .is_err_and(|e| e.side() != crate::error::Side::Upstream);
            if let Some(last) = inner.held.take() {
                if unarchived {
                    inner.buffered -= last.len();
                } else {
                    inner.segments.push_back(Segment::Memory(last));
                }
            }
            for segment in inner.segments.iter_mut() {
                if let Segment::File { to, held, open, .. } = segment {
                    if unarchived {
                        *to -= *held;
                    }
                    *held = 0;
                    *open = false;
                }
            }
            inner.end = Some(end);
        }
        inner.wake_reader();
    }

    /// The next chunk, or the end.
    pub async fn next(&self) -> TapItem {
        let next = poll_fn(|cx| {
            let mut inner = self.inner.borrow_mut();
            loop {
                match inner.segments.front_mut() {
                    Some(Segment::Memory(chunk)) => {
                        let chunk = std::mem::take(chunk);
                        inner.segments.pop_front();
                        inner.buffered -= chunk.len();
                        if let Some(w) = inner.writer.take() {
                            w.wake();
                        }
                        return Poll::Ready(Next::Item(TapItem::Chunk(chunk)));
                    }
                    Some(Segment::File {
                        file,
                        from,
                        to,
                        held,
                        open,
                    }) => {
                        let readable = to.saturating_sub(*held);
                        if *from < readable {
                            let n = (readable - *from).min(FILE_PIECE as u64) as usize;
                            let at = *from;
                            *from += n as u64;
                            return Poll::Ready(Next::Read(file.clone(), at, n));
                        }
                        if *open {
                            break;
                        }
                        inner.segments.pop_front();
                    }
                    None => {
                        if let Some(end) = &inner.end {
                            return Poll::Ready(Next::Item(TapItem::End(end.clone())));
                        }
                        break;
                    }
                }
            }
            inner.reader = Some(cx.waker().clone());
            Poll::Pending
        })
        .await;
        match next {
            Next::Item(item) => item,
            Next::Read(file, at, n) => {
                let buf = Vec::with_capacity(n).slice_mut(0..n);
                let (read, buf) = file.read_exact_at(buf, at).await;
                match read {
                    Ok(()) => TapItem::Chunk(Bytes::from(buf.into_inner())),
                    Err(e) => TapItem::End(Err(Error::Storage(format!(
                        "reading the spilled response: {e}"
                    )))),
                }
            }
        }
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
        inner.segments.clear();
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
