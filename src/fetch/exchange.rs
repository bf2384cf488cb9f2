//! One request on one upstream connection: send it, then read the response exactly to the
//! end of its framing (handing bytes to a tap as they arrive), and say whether the
//! connection may carry another request.

use std::rc::Rc;
use std::time::Instant;

use super::client::FetchLimits;
use super::origin_conn::OriginConn;
use super::spill::{Held, Spill, SpillTo};
use super::tap::Tap;
use crate::error::Error;
use crate::http::response::{Framing, ResponseHead, ResponseTracker};
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};

/// Size of each read from an origin.
const READ_CHUNK: usize = 64 * 1024;

/// Read buffers kept per worker thread for reuse.
const SPARE_READ_BUFS: usize = 64;

thread_local! {
    /// Spare read buffers: a fresh 64 KiB allocation per fetch, freed right after, made the
    /// allocator fault in (and zero) new pages on every miss (16-19% of the miss-path CPU
    /// in `perf`, all in `clear_page_erms` under this function).
    static READ_BUFS: std::cell::RefCell<Vec<Vec<u8>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A read buffer borrowed from the thread's spares; goes back when dropped.
struct ReadBuf(Vec<u8>);

impl ReadBuf {
    fn take() -> ReadBuf {
        let spare = READ_BUFS.with(|bufs| bufs.borrow_mut().pop());
        ReadBuf(spare.unwrap_or_else(|| Vec::with_capacity(READ_CHUNK)))
    }
}

impl Drop for ReadBuf {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.0);
        if buf.capacity() == READ_CHUNK {
            READ_BUFS.with(|bufs| {
                let mut bufs = bufs.borrow_mut();
                if bufs.len() < SPARE_READ_BUFS {
                    bufs.push(buf);
                }
            });
        }
    }
}

/// What one request on one connection gave.
pub(super) struct Exchanged {
    /// The response as received; when it spilled, only its heads (the rest is in `spill`).
    pub(super) raw: Vec<u8>,
    /// The whole response, on disk, when it outgrew `SpillTo::threshold`.
    pub(super) spill: Option<Spill>,
    /// What `raw` holds of the shared transfer budget.
    pub(super) held: Held,
    pub(super) head: ResponseHead,
    /// Where the body starts in `raw` (after the final head and any interim 1xx responses).
    pub(super) body_start: usize,
    pub(super) archivable: bool,
    /// The connection, if it may carry another request.
    pub(super) reusable: Option<OriginConn>,
}

/// Sends the request and reads the response. On failure, whether the failure is final (if
/// not, the request can be sent again on a fresh connection: a pooled connection the origin
/// had closed gives back nothing, and one that gave an answer out of turn gave nothing the
/// client has seen yet).
///
/// `reused` says the connection carried an earlier exchange. There, a response followed by
/// more bytes in the same read is not trusted: the origin sent more responses than it was
/// asked for, and the one read first may not be this request's (it may be a late answer to
/// the earlier request, arriving after the pool's readiness check). On a fresh connection
/// the first response can only be this request's, and stray bytes after it (old servers'
/// extra CRLF) only stop the connection from being reused.
pub(super) async fn exchange(
    mut stream: OriginConn,
    request: bytes::Bytes,
    limits: &FetchLimits,
    deadline: Instant,
    tap: Option<&Rc<Tap>>,
    reused: bool,
    spill_to: Option<&SpillTo>,
) -> Result<Exchanged, (Error, bool)> {
    let write = monoio::time::timeout(limits.read_timeout, stream.write_all(request)).await;
    match write {
        Err(_) => return Err((Error::ReadTimeout("sending request"), true)),
        Ok((Err(e), _)) => return Err((Error::Dropped(format!("sending request: {e}")), false)),
        Ok((Ok(_), _)) => {}
    }
    let mut started = false;
    let read = read_response(
        &mut stream,
        limits,
        deadline,
        tap,
        reused,
        spill_to,
        &mut started,
    );
    let got = read.await.map_err(|e| (e, started))?;
    let (head, body_start) = got.head;
    let reusable =
        (got.clean_end && head.keep_alive && head.framing != Framing::UntilClose).then_some(stream);
    Ok(Exchanged {
        raw: got.raw,
        held: got.held,
        spill: got.spill,
        archivable: got.archivable,
        head,
        body_start,
        reusable,
    })
}

/// A response read to its end.
struct Received {
    raw: Vec<u8>,
    /// What `raw` holds of the shared transfer budget.
    held: Held,
    spill: Option<Spill>,
    head: (ResponseHead, usize),
    archivable: bool,
    /// Nothing came after the response in its last read.
    clean_end: bool,
}

/// Reads until the response is complete by its framing. With a tap, every byte is also
/// handed on as it arrives, and a body over `--max-body` is still read to its end (for the
/// client) but not kept. Returns the raw response, its head with where the body starts, and
/// whether it may be archived.
async fn read_response(
    stream: &mut OriginConn,
    limits: &FetchLimits,
    deadline: Instant,
    tap: Option<&Rc<Tap>>,
    reused: bool,
    spill_to: Option<&SpillTo>,
    started: &mut bool,
) -> Result<Received, Error> {
    // Whether any byte went to the tap: once one has, a failure is final (the client has
    // seen part of this answer).
    let mut handed_on = false;
    // Sized once the head tells the length (see below), so a small response does not hold
    // a 64 KiB allocation on its way to the archive.
    let mut raw: Vec<u8> = Vec::new();
    let mut spill: Option<Spill> = None;
    // What the response in memory takes of the workers' shared budget.
    let mut held = spill_to.map_or_else(Held::default, |to| Held::new(&to.budget));
    // The tap's client reads the response from the spill file, not from memory.
    let mut tap_reads_spill = false;
    let mut tracker = ResponseTracker::new();
    let mut archivable = true;
    let mut spare = ReadBuf::take();
    // Whether nothing came after the response in its last read.
    let clean_end = loop {
        let buf = &mut spare.0;
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::ReadTimeout("total fetch time exceeded"));
        }
        let read = stream.read(std::mem::take(buf).slice_mut(0..READ_CHUNK));
        let (res, slice) = match monoio::time::timeout(limits.read_timeout.min(left), read).await {
            Ok(r) => r,
            Err(_) if !tracker.started() => return Err(Error::FirstByteTimeout),
            Err(_) if left <= limits.read_timeout => {
                return Err(Error::ReadTimeout("total fetch time exceeded"))
            }
            Err(_) => return Err(Error::ReadTimeout("origin went silent")),
        };
        *buf = slice.into_inner();
        let n = match res {
            Ok(0) if tracker.complete_at_close() => break false,
            Ok(0) if !tracker.started() => {
                return Err(Error::Dropped("origin closed without responding".into()))
            }
            Ok(0) if tracker.head().is_none() => {
                return Err(Error::InvalidResponse(
                    "origin closed inside the response head".into(),
                ))
            }
            Ok(0) => {
                return Err(Error::Dropped(
                    "origin closed before the end of the body".into(),
                ))
            }
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(Error::Dropped(
                    "origin closed the TLS connection without close_notify".into(),
                ))
            }
            Err(e) => return Err(Error::Dropped(e.to_string())),
        };
        *started = true;
        let end = tracker.feed(&buf[..n])?;
        let take = end.unwrap_or(n);
        if tracker.head().is_some_and(|h| h.looped) {
            // Our own reply (a 508 from the request-side check): neither passed on nor
            // archived.
            return Err(Error::LoopDetected(format!(
                "the response came back through {} (Via)",
                crate::http::via::pseudonym()
            )));
        }
        if reused && end.is_some_and(|end| end < n) {
            // A response followed by more in the same read, on a reused connection: see
            // `exchange`. Refused before any more of it is handed on.
            *started = handed_on;
            return Err(Error::InvalidResponse(
                "the origin answered more than once to one request on a reused connection".into(),
            ));
        }
        let last = end.is_some();
        // Once the response spills, its client reads it from the spill file (below).
        if let (Some(tap), false) = (tap, tap_reads_spill) {
            tap.push(&buf[..take], last).await;
            handed_on = true;
        }
        if archivable {
            let head_len = tracker.head_len();
            let outgrows = |threshold: u64| (raw.len() + take) as u64 > threshold;
            // Past the threshold, or with the workers' shared budget spent: to disk.
            let to_disk =
                |to: &SpillTo, held: &mut Held| outgrows(to.threshold) || !held.take(take as u64);
            match (&mut spill, spill_to, head_len) {
                (None, Some(to), Some(head_len)) if to_disk(to, &mut held) => {
                    held.release();
                    to.budget.count_spill();
                    // Too big for memory: everything so far, and the rest as it comes, goes
                    // to disk; only the heads stay (the store reads the response's facts
                    // from them).
                    let mut s = Spill::create(&to.dir).await.map_err(storage)?;
                    let (written, mut kept) = s.append(std::mem::take(&mut raw), usize::MAX).await;
                    written.map_err(storage)?;
                    kept.truncate(head_len);
                    kept.shrink_to_fit();
                    raw = kept;
                    let (written, back) = s.append(std::mem::take(buf), take).await;
                    *buf = back;
                    written.map_err(storage)?;
                    if let Some(tap) = tap {
                        // What it has is in memory; the rest it reads from the file.
                        let file = s.reader().and_then(monoio::fs::File::from_std);
                        tap.spill_to(file.map_err(storage)?, s.len());
                        tap_reads_spill = true;
                    }
                    spill = Some(s);
                }
                (Some(s), _, _) => {
                    let (written, back) = s.append(std::mem::take(buf), take).await;
                    *buf = back;
                    written.map_err(storage)?;
                    if let (Some(tap), true) = (tap, tap_reads_spill) {
                        tap.spilled(take as u64, last);
                        handed_on = true;
                    }
                }
                _ => {
                    if raw.capacity() == 0 {
                        reserve_for_length(&mut raw, &tracker, limits.max_body);
                    }
                    raw.extend_from_slice(&buf[..take]);
                }
            }
        }
        if tracker.head().is_some() && tracker.body_len() > limits.max_body {
            if tap.is_none() {
                return Err(Error::TooBig(limits.max_body));
            }
            // The client still gets it whole; the archive does not.
            archivable = false;
            raw = Vec::new();
            held.release();
            spill = None;
            if let (Some(tap), true) = (tap, tap_reads_spill) {
                // The client reads what the file has, then gets the rest from memory.
                tap.unspill();
                tap_reads_spill = false;
            }
        }
        if let Some(end) = end {
            // Bytes past the end mean the origin misbehaved: do not reuse the connection.
            break end == n;
        }
    };
    Ok(Received {
        raw,
        held,
        spill,
        head: final_head(&mut tracker)?,
        archivable,
        clean_end,
    })
}

/// Our own disk failed while a response spilled to it.
fn storage(e: std::io::Error) -> Error {
    Error::Storage(e.to_string())
}

/// The complete response's final head, and where its body starts.
fn final_head(tracker: &mut ResponseTracker) -> Result<(ResponseHead, usize), Error> {
    let body_start = tracker.head_len();
    match (tracker.take_head(), body_start) {
        (Some(head), Some(body_start)) => Ok((head, body_start)),
        _ => Err(Error::Internal("response without head")),
    }
}

/// Most reserved up front from a declared length: an origin's Content-Length is a claim, and
/// reserving what it claims before the bytes arrive would let it make us hold memory it never
/// sends. Bigger bodies grow from here as they arrive.
const RESERVE_LIMIT: u64 = 1 << 20;

/// Reserves the whole response once the head has declared its length (up to
/// `RESERVE_LIMIT` and within `max_body`), so a typical response is neither reallocated while
/// growing nor over-allocated.
fn reserve_for_length(raw: &mut Vec<u8>, tracker: &ResponseTracker, max_body: u64) {
    let (Some(head), Some(head_len)) = (tracker.head(), tracker.head_len()) else {
        return;
    };
    let Framing::Length(declared) = head.framing else {
        return;
    };
    if declared > max_body {
        return;
    }
    let total = declared.saturating_add(head_len as u64).min(RESERVE_LIMIT);
    if let Ok(total) = usize::try_from(total) {
        raw.reserve_exact(total);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_bytes_are_reserved_once_the_length_is_known() {
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 10000\r\n\r\n";
        let mut tracker = ResponseTracker::new();
        let mut first = head.to_vec();
        first.extend_from_slice(&[b'x'; 100]);
        assert_eq!(tracker.feed(&first).unwrap(), None);
        let mut raw = Vec::new();
        reserve_for_length(&mut raw, &tracker, 1 << 20);
        assert_eq!(raw.capacity(), head.len() + 10_000);

        // A large claim reserves at most RESERVE_LIMIT before the bytes exist.
        let mut claim = ResponseTracker::new();
        claim
            .feed(b"HTTP/1.1 200 OK\r\nContent-Length: 90000000\r\n\r\n")
            .unwrap();
        let mut raw = Vec::new();
        reserve_for_length(&mut raw, &claim, 100 << 20);
        assert_eq!(raw.capacity() as u64, RESERVE_LIMIT);

        // Over --max-body, or not declared: left to grow as bytes arrive.
        let mut raw = Vec::new();
        reserve_for_length(&mut raw, &tracker, 5_000);
        assert_eq!(raw.capacity(), 0);
        let mut chunked = ResponseTracker::new();
        let head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        chunked.feed(head).unwrap();
        reserve_for_length(&mut raw, &chunked, 1 << 20);
        assert_eq!(raw.capacity(), 0);
        // A head still incomplete: nothing known yet.
        let mut partial = ResponseTracker::new();
        partial.feed(b"HTTP/1.1 200 OK\r\nContent-Le").unwrap();
        reserve_for_length(&mut raw, &partial, 1 << 20);
        assert_eq!(raw.capacity(), 0);
    }

    #[test]
    fn read_buffers_are_reused_on_the_same_thread() {
        let first = ReadBuf::take();
        let ptr = first.0.as_ptr();
        drop(first);
        let again = ReadBuf::take();
        assert_eq!(again.0.as_ptr(), ptr);
        assert_eq!(again.0.capacity(), READ_CHUNK);
    }
}
