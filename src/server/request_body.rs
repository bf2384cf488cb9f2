//! A request's body on the client connection: the bytes after its head, read into the
//! connection's buffer as they come, dropped (GET and HEAD bodies are never forwarded) or
//! kept whole (a record to write), always bounded and within the idle timeout.

use std::time::Duration;

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};

use super::drain::Drain;
use crate::error::Error;
use crate::http::chunked::ChunkedScanner;
use crate::proxy::client_conn::ClientConn;

/// Largest request body liveweb reads and discards on a GET/HEAD (it is never forwarded: the
/// fetch is shared by every client asking for the URL); beyond it the request is refused and
/// the connection closed.
pub(super) const MAX_DISCARD_BODY: u64 = 64 * 1024;

/// Outcome of trying to read more bytes.
pub(super) enum Fill {
    Data,
    Closed,
    TimedOut,
}

/// Reads more bytes into `buf`, waiting at most `idle`; a connection idle between requests
/// also stops waiting when the worker starts draining.
pub(super) async fn fill(
    stream: &mut ClientConn,
    buf: &mut Vec<u8>,
    idle: Duration,
    drain: &Drain,
) -> Fill {
    if buf.capacity() - buf.len() < 4096 {
        buf.reserve(8192);
    }
    let owned = std::mem::take(buf);
    let len = owned.len();
    let cap = owned.capacity();
    let read = monoio::time::timeout(idle, stream.read(owned.slice_mut(len..cap)));
    let result = if len == 0 {
        monoio::select! {
            r = read => Some(r),
            _ = drain.wait() => None,
        }
    } else {
        Some(read.await)
    };
    match result {
        Some(Ok((Ok(n), slice))) if n > 0 => {
            *buf = slice.into_inner();
            Fill::Data
        }
        Some(Err(_elapsed)) => Fill::TimedOut,
        _ => Fill::Closed,
    }
}

/// Drops a chunked body of at most `MAX_DISCARD_BODY` payload bytes. `Err(Some(e))`: the
/// body is malformed or too big (answer `e`, then close); `Err(None)`: the client went away.
pub(super) async fn discard_chunked(
    stream: &mut ClientConn,
    buf: &mut Vec<u8>,
    idle: Duration,
    drain: &Drain,
) -> Result<(), Option<Error>> {
    let mut scanner = ChunkedScanner::new();
    loop {
        let end = scanner
            .feed(buf)
            .map_err(|_| Some(Error::BadRequest("malformed chunked request body")))?;
        if scanner.payload_len > MAX_DISCARD_BODY {
            return Err(Some(Error::RequestBodyTooLarge));
        }
        match end {
            Some(end) => {
                buf.drain(..end);
                return Ok(());
            }
            None => buf.clear(),
        }
        if !matches!(fill(stream, buf, idle, drain).await, Fill::Data) {
            return Err(None);
        }
    }
}

/// Writes the interim `100 Continue`; `false` if the client went away.
pub(super) async fn send_continue(stream: &mut ClientConn, idle: Duration) -> bool {
    let write = stream.write_all(crate::http::request::CONTINUE.to_vec());
    matches!(monoio::time::timeout(idle, write).await, Ok((Ok(_), _)))
}

/// Reads `n` body bytes (some may already be in `buf`); `None` if the client went away.
pub(super) async fn read_body(
    stream: &mut ClientConn,
    buf: &mut Vec<u8>,
    n: usize,
    idle: Duration,
    drain: &Drain,
) -> Option<Vec<u8>> {
    let mut body = Vec::with_capacity(n.min(1 << 20));
    loop {
        let take = (n - body.len()).min(buf.len());
        body.extend(buf.drain(..take));
        if body.len() == n {
            return Some(body);
        }
        if !matches!(fill(stream, buf, idle, drain).await, Fill::Data) {
            return None;
        }
    }
}

/// Drops `n` body bytes (some may already be in `buf`). `false` if the client went away.
pub(super) async fn discard(
    stream: &mut ClientConn,
    buf: &mut Vec<u8>,
    n: usize,
    idle: Duration,
    drain: &Drain,
) -> bool {
    let mut left = n;
    loop {
        let take = left.min(buf.len());
        buf.drain(..take);
        left -= take;
        if left == 0 {
            return true;
        }
        if !matches!(fill(stream, buf, idle, drain).await, Fill::Data) {
            return false;
        }
    }
}
