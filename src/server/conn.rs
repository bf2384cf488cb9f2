//! One client connection: read request heads (pipelined requests are answered in order),
//! consume any request body, hand each request to the proxy, write the reply, and keep the
//! connection while the client wants it, within the idle timeout, until the worker drains.

use std::net::IpAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent};
use monoio::net::TcpStream;

use super::drain::Drain;
use super::gate;
use crate::error::Error;
use crate::http::chunked::ChunkedScanner;
use crate::http::reply::ConnState;
use crate::http::request::{parse_request_head, RequestBody};
use crate::proxy::passthrough::{self, Failure};
use crate::proxy::router::{self, Route};
use crate::proxy::{self, send::write_response, tunnel, WorkerCtx};

/// Largest request body liveweb reads and discards on a GET/HEAD (it is never forwarded: the
/// fetch is shared by every client asking for the URL); beyond it the request is refused and
/// the connection closed.
const MAX_DISCARD_BODY: u64 = 64 * 1024;

/// Outcome of trying to read more bytes.
enum Fill {
    Data,
    Closed,
    TimedOut,
}

/// Serves one connection from `peer`. `stream` comes from a listener whose options it
/// inherited (TCP_NODELAY among them).
pub async fn serve(ctx: Rc<WorkerCtx>, mut stream: TcpStream, peer: IpAddr, drain: &Drain) {
    let config = &ctx.shared.config;
    let idle = config.client_idle_timeout;
    let limits = ctx.shared.request_limits;
    let mut buf: Vec<u8> = Vec::with_capacity(8 * 1024);
    // The whole head must arrive within --request-head-timeout of its first byte (of the
    // connection's start, for the first request), however slowly it trickles.
    let mut head_deadline = Some(Instant::now() + config.request_head_timeout);
    loop {
        let (req, used) = match parse_request_head(&buf, &limits) {
            Ok(Some(found)) => found,
            // Shutting down and between requests: close instead of waiting for another.
            Ok(None) if buf.is_empty() && drain.is_draining() => return,
            Ok(None) => {
                if !buf.is_empty() && head_deadline.is_none() {
                    head_deadline = Some(Instant::now() + config.request_head_timeout);
                }
                let wait = head_deadline.map_or(idle, |d| {
                    d.saturating_duration_since(Instant::now()).min(idle)
                });
                // (A read that times out takes the buffer with it.)
                let partial = !buf.is_empty();
                match fill(&mut stream, &mut buf, wait, drain).await {
                    Fill::Data => continue,
                    Fill::TimedOut if partial => {
                        return refuse(&ctx, &mut stream, &Error::RequestTimeout, 1, idle).await
                    }
                    Fill::Closed | Fill::TimedOut => return,
                }
            }
            Err(e) => return refuse(&ctx, &mut stream, &e, 1, idle).await,
        };
        buf.drain(..used);
        head_deadline = None;
        if let Err(e) = gate::admit(&ctx, peer, &req).await {
            return refuse(&ctx, &mut stream, &e, req.version, idle).await;
        }
        let route = router::route(config.mode, &req);
        match route {
            Route::Tunnel => return connect(&ctx, stream, &req, buf, idle).await,
            Route::PassThrough => {
                match passthrough::relay(&ctx, &mut stream, &req, &mut buf, idle).await {
                    Ok(true) if !drain.is_draining() => continue,
                    Ok(_) | Err(Failure::After) => return,
                    // The request body may be unread: answer, then close.
                    Err(Failure::Before(e)) => {
                        return refuse(&ctx, &mut stream, &e, req.version, idle).await
                    }
                }
            }
            Route::Admin | Route::Cache { .. } | Route::Refuse(_) => {}
        }
        let body_error = match req.body {
            RequestBody::None => None,
            RequestBody::Length(n) if n <= MAX_DISCARD_BODY => {
                if !discard(&mut stream, &mut buf, n as usize, idle, drain).await {
                    return;
                }
                None
            }
            RequestBody::Length(_) => Some(Error::RequestBodyTooLarge),
            RequestBody::Chunked => match discard_chunked(&mut stream, &mut buf, idle, drain).await
            {
                Ok(()) => None,
                Err(Some(e)) => Some(e),
                Err(None) => return,
            },
        };
        if let Some(e) = body_error {
            // The body was not consumed, so the connection cannot carry another request.
            return refuse(&ctx, &mut stream, &e, req.version, idle).await;
        }
        let mut req = req;
        // A draining worker answers this request, then closes.
        req.keep_alive &= !drain.is_draining();
        let resp = proxy::handle(&ctx, &req, route).await;
        match write_response(&ctx, &mut stream, resp, idle).await {
            Ok(true) if req.keep_alive => {}
            _ => return,
        }
    }
}

/// Answers a CONNECT and, once the upstream is connected, becomes the tunnel.
async fn connect(
    ctx: &WorkerCtx,
    mut stream: TcpStream,
    req: &crate::http::request::RequestHead,
    early: Vec<u8>,
    idle: Duration,
) {
    match tunnel::open(ctx, req).await {
        Ok(upstream) => {
            let ok = b"HTTP/1.1 200 Connection Established\r\n\r\n".to_vec();
            if crate::proxy::send::write_all(&mut stream, ok, idle)
                .await
                .is_ok()
            {
                tunnel::relay(
                    stream,
                    upstream,
                    early,
                    ctx.shared.config.tunnel_idle_timeout,
                )
                .await;
            }
        }
        Err(e) => refuse(ctx, &mut stream, &e, req.version, idle).await,
    }
}

/// Answers a connection refused before any request is read (an address outside the client
/// ranges, or over a connection limit) with `e` and closes it at once: one short write, no
/// draining, so a flood of refused connections holds no descriptors for long.
pub async fn refuse_at_once(ctx: &WorkerCtx, mut stream: TcpStream, e: &Error) {
    let close = ConnState {
        keep_alive: false,
        version: 1,
    };
    let resp = proxy::error_response(e, close, false);
    if write_response(ctx, &mut stream, resp, REFUSE_WRITE_TIME)
        .await
        .is_ok()
    {
        linger_for(&mut stream, REFUSE_LINGER).await;
    }
}

/// Longest wait to write a refusal to a connection refused before its request was read.
const REFUSE_WRITE_TIME: Duration = Duration::from_millis(200);
/// How long such a connection is drained before closing: long enough to take the request the
/// client had already sent (closing with it unread would reset the connection and lose the
/// refusal), short enough that a flood holds few descriptors.
const REFUSE_LINGER: Duration = Duration::from_millis(100);

/// Answers with an error reply and `Connection: close`; the caller then drops the connection.
async fn refuse(ctx: &WorkerCtx, stream: &mut TcpStream, e: &Error, version: u8, idle: Duration) {
    let close = ConnState {
        keep_alive: false,
        version,
    };
    let resp = proxy::error_response(e, close, false);
    if write_response(ctx, stream, resp, idle).await.is_ok() {
        linger(stream).await;
    }
}

/// Most time and bytes spent draining a refused client before closing.
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 1 << 20;

/// Closes our side, then reads and drops what the client is still sending (bounded) before
/// the socket is closed: closing with unread bytes makes the kernel send a reset, which can
/// destroy the error reply before the client reads it.
async fn linger(stream: &mut TcpStream) {
    linger_for(stream, LINGER_TIME).await
}

async fn linger_for(stream: &mut TcpStream, time: Duration) {
    if stream.shutdown().await.is_err() {
        return;
    }
    let deadline = Instant::now() + time;
    let mut dropped = 0;
    // Reads fill a Vec's spare capacity: keep it empty.
    let mut buf = Vec::with_capacity(16 * 1024);
    while dropped < LINGER_BYTES {
        let left = deadline.saturating_duration_since(Instant::now());
        match monoio::time::timeout(left, stream.read(buf)).await {
            Ok((Ok(n), mut b)) if n > 0 => {
                dropped += n;
                b.clear();
                buf = b;
            }
            _ => return,
        }
    }
}

/// Reads more bytes into `buf`, waiting at most `idle`; a connection idle between requests
/// also stops waiting when the worker starts draining.
async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>, idle: Duration, drain: &Drain) -> Fill {
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
async fn discard_chunked(
    stream: &mut TcpStream,
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

/// Drops `n` body bytes (some may already be in `buf`). `false` if the client went away.
async fn discard(
    stream: &mut TcpStream,
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
