//! One client connection: read request heads (pipelined requests are answered in order),
//! consume any request body, hand each request to the proxy, write the reply, and keep the
//! connection while the client wants it, within the idle timeout.

use std::rc::Rc;

use monoio::buf::IoBufMut;
use monoio::io::AsyncReadRent;
use monoio::net::TcpStream;

use crate::error::Error;
use crate::http::reply::ConnState;
use crate::http::request::{parse_request_head, RequestBody};
use crate::proxy::{self, send::write_response, WorkerCtx};

/// Largest request body liveweb reads and discards on a GET/HEAD; beyond it the request is
/// refused and the connection closed.
const MAX_DISCARD_BODY: u64 = 64 * 1024;

/// Outcome of trying to read more bytes.
enum Fill {
    Data,
    Closed,
}

pub async fn serve(ctx: Rc<WorkerCtx>, mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let idle = ctx.shared.config.client_idle_timeout;
    let limits = ctx.shared.request_limits;
    let mut buf: Vec<u8> = Vec::with_capacity(8 * 1024);
    loop {
        let parsed = parse_request_head(&buf, &limits);
        let (req, used) = match parsed {
            Ok(Some(found)) => found,
            Ok(None) => match fill(&mut stream, &mut buf, idle).await {
                Fill::Data => continue,
                Fill::Closed => return,
            },
            Err(e) => {
                let close = ConnState {
                    keep_alive: false,
                    version: 1,
                };
                let resp = proxy::error_response(&e, close, false);
                let _ = write_response(&ctx, &mut stream, resp, idle).await;
                return;
            }
        };
        buf.drain(..used);
        let mut keep_alive = req.keep_alive;
        let body_error = match req.body {
            RequestBody::None => None,
            RequestBody::Length(n) if n <= MAX_DISCARD_BODY => {
                if !discard(&mut stream, &mut buf, n as usize, idle).await {
                    return;
                }
                None
            }
            RequestBody::Length(_) => Some(Error::RequestBodyTooLarge),
            RequestBody::Chunked => Some(Error::NotImplemented("chunked request bodies")),
        };
        let resp = match body_error {
            Some(e) => {
                // The body was not consumed, so the connection cannot carry another request.
                keep_alive = false;
                let conn = ConnState {
                    keep_alive,
                    version: req.version,
                };
                proxy::error_response(&e, conn, false)
            }
            None => proxy::handle(&ctx, &req).await,
        };
        if write_response(&ctx, &mut stream, resp, idle).await.is_err() || !keep_alive {
            return;
        }
    }
}

/// Reads more bytes into `buf`, waiting at most `idle`.
async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>, idle: std::time::Duration) -> Fill {
    if buf.capacity() - buf.len() < 4096 {
        buf.reserve(8192);
    }
    let owned = std::mem::take(buf);
    let len = owned.len();
    let cap = owned.capacity();
    match monoio::time::timeout(idle, stream.read(owned.slice_mut(len..cap))).await {
        Ok((Ok(n), slice)) => {
            *buf = slice.into_inner();
            if n == 0 {
                Fill::Closed
            } else {
                Fill::Data
            }
        }
        Ok((Err(_), _)) | Err(_) => Fill::Closed,
    }
}

/// Drops `n` body bytes (some may already be in `buf`). `false` if the client went away.
async fn discard(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    n: usize,
    idle: std::time::Duration,
) -> bool {
    let mut left = n;
    loop {
        let take = left.min(buf.len());
        buf.drain(..take);
        left -= take;
        if left == 0 {
            return true;
        }
        if let Fill::Closed = fill(stream, buf, idle).await {
            return false;
        }
    }
}
