//! One client connection: read request heads (pipelined requests are answered in order),
//! consume any request body, hand each request to the proxy, write the reply, and keep the
//! connection while the client wants it, within the idle timeout, until the worker drains.

use std::net::IpAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use monoio::io::{AsyncReadRent, AsyncWriteRent};
use monoio::net::TcpStream;

use super::accounting::{count, Answered};
use super::drain::Drain;
use super::gate;
use super::intercept::{Origin, Tunnel};
use super::limits::ConnPermit;
use super::request_body::{
    discard, discard_chunked, fill, read_body, send_continue, Fill, MAX_DISCARD_BODY,
};
use crate::admin::RequestState;
use crate::error::{Error, LogLine};
use crate::http::reply::ConnState;
use crate::http::request::RequestHead;
use crate::http::request::{parse_request_head, RequestBody};
use crate::http::url::{parse_authority, unbracketed};
use crate::proxy::client_conn::ClientConn;
use crate::proxy::passthrough::{self, Failure};
use crate::proxy::router::{self, Route};
use crate::proxy::{self, send::write_response, tunnel, WorkerCtx};

/// Who a connection is from: its address, and whether that is a load balancer in
/// `--proxy-protocol-from` (which names the client first).
pub struct Peer {
    pub ip: IpAddr,
    pub balancer: bool,
}

/// Serves one connection `from` a peer, counted by `permit` (which a balancer's connection
/// assigns to the client it names). `stream` comes from a listener whose options it
/// inherited (TCP_NODELAY among them).
pub async fn serve(
    ctx: Rc<WorkerCtx>,
    stream: TcpStream,
    from: Peer,
    drain: &Drain,
    permit: &mut ConnPermit,
) {
    let peer = from.ip;
    ctx.counters().connection_opened();
    let mut stream = ClientConn::plain(stream);
    let config = &ctx.shared.config;
    // A balancer's connection names its client first; a LOCAL header (the balancer's own
    // connection: health checks) names none, and gets no one's rights.
    let (client, early) = if from.balancer {
        match super::proxy_protocol::read(&mut stream, config.clients.request_head_timeout).await {
            Ok((named, early)) => (
                named.unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
                early,
            ),
            Err(why) => {
                super::gate::log_limited(&super::gate::BUSY_LOG, || {
                    format!("closing a connection from {peer} (--proxy-protocol-from): {why}")
                });
                ctx.counters().connection_closed();
                return;
            }
        }
    } else {
        (peer, Vec::new())
    };
    if permit.assign(client).is_err() {
        let idle = config.clients.client_idle_timeout;
        refuse(&ctx, &mut stream, &Error::TooManyConnections, 1, idle).await;
        ctx.counters().connection_closed();
        return;
    }
    let tunnel = serve_conn(ctx.clone(), stream, client, drain, None, early).await;
    if let (Some(tunnel), Some(mitm)) = (tunnel, ctx.shared.mitm.clone()) {
        super::intercept::serve(ctx.clone(), &mitm, tunnel, drain).await;
    }
    ctx.counters().connection_closed();
}

/// How a connection's request loop ended.
enum Next {
    Close,
    /// A CONNECT, not yet answered; `early` holds what the client sent behind its head.
    Connect(RequestHead, Vec<u8>),
}

/// Serves the requests of a connection: a client's own, or (`tunnel` set) those inside an
/// intercepted tunnel to that origin. Returns a CONNECT to intercept, if one ended it.
pub(super) async fn serve_conn(
    ctx: Rc<WorkerCtx>,
    mut stream: ClientConn,
    peer: IpAddr,
    drain: &Drain,
    tunnel: Option<&Origin>,
    early: Vec<u8>,
) -> Option<Tunnel> {
    let idle = ctx.shared.config.clients.client_idle_timeout;
    match serve_requests(&ctx, &mut stream, peer, drain, tunnel, early).await {
        Next::Close => {
            if stream.is_tls() {
                // close_notify, so a reply delimited by the close is seen whole.
                let _ = monoio::time::timeout(TLS_CLOSE_TIME, stream.shutdown()).await;
            }
            None
        }
        Next::Connect(req, early) => connect(&ctx, stream, peer, &req, early, idle).await,
    }
}

/// Longest wait to send close_notify when closing a TLS connection.
const TLS_CLOSE_TIME: Duration = Duration::from_secs(1);

async fn serve_requests(
    ctx: &Rc<WorkerCtx>,
    stream: &mut ClientConn,
    peer: IpAddr,
    drain: &Drain,
    tunnel: Option<&Origin>,
    early: Vec<u8>,
) -> Next {
    let config = &ctx.shared.config;
    let idle = config.clients.client_idle_timeout;
    let limits = ctx.shared.request_limits;
    // Bytes already read behind a PROXY protocol header start the first request.
    let mut buf = early;
    buf.reserve(8 * 1024);
    // The whole head must arrive within --request-head-timeout of its first byte (of the
    // connection's start, for the first request), however slowly it trickles.
    let mut head_deadline = Some(Instant::now() + config.clients.request_head_timeout);
    loop {
        let (mut req, used) = match parse_request_head(&buf, &limits) {
            Ok(Some(found)) => found,
            // Shutting down and between requests: close instead of waiting for another.
            Ok(None) if buf.is_empty() && drain.is_draining() => return Next::Close,
            Ok(None) => {
                if !buf.is_empty() && head_deadline.is_none() {
                    head_deadline = Some(Instant::now() + config.clients.request_head_timeout);
                }
                let wait = head_deadline.map_or(idle, |d| {
                    d.saturating_duration_since(Instant::now()).min(idle)
                });
                // (A read that times out takes the buffer with it.)
                let partial = !buf.is_empty();
                match fill(stream, &mut buf, wait, drain).await {
                    Fill::Data => continue,
                    Fill::TimedOut if partial => {
                        refuse(ctx, stream, &Error::RequestTimeout, 1, idle).await;
                        return Next::Close;
                    }
                    Fill::Closed | Fill::TimedOut => return Next::Close,
                }
            }
            Err(e) => {
                refuse(ctx, stream, &e, 1, idle).await;
                return Next::Close;
            }
        };
        buf.drain(..used);
        head_deadline = None;
        let since = Instant::now();
        let route = match tunnel {
            // Admitted with the CONNECT.
            Some(origin) => super::intercept::route_inner(origin, &mut req),
            None => {
                if let Err(e) = gate::admit(ctx, peer, &req).await {
                    refuse_request(ctx, stream, &e, &req, peer, since).await;
                    return Next::Close;
                }
                router::route(config.clients.mode, &req)
            }
        };
        match route {
            Route::Tunnel => return Next::Connect(req, buf),
            Route::PassThrough => {
                let mut origin = None;
                let relayed =
                    passthrough::relay(ctx, stream, &req, &mut buf, idle, &mut origin).await;
                // Whether the connection may carry another request.
                let reusable = match relayed {
                    Ok(keep) => keep,
                    Err(Failure::After) => false,
                    // The request body may be unread: answer, then close.
                    Err(Failure::Before(e)) => {
                        if e.side() == crate::error::Side::Upstream {
                            log::warn!("{} {} (passed through)", req.target, LogLine(&e));
                        }
                        refuse_request(ctx, stream, &e, &req, peer, since).await;
                        return Next::Close;
                    }
                };
                let bypass = Answered {
                    outcome: RequestState::Bypass,
                    error: None,
                    since,
                    upstream: origin,
                };
                count(ctx, stream, bypass, peer, &req);
                if reusable && !drain.is_draining() {
                    continue;
                }
                return Next::Close;
            }
            Route::Admin | Route::Cache { .. } | Route::WriteRecord { .. } | Route::Refuse(_) => {}
        }
        // A record to write is the one body kept (whole, within --max-body and
        // `write_record::MAX_BODY`).
        let keep_body = matches!(route, Route::WriteRecord { .. });
        // A client that sent `Expect: 100-continue` waits for it before sending the body this
        // loop is about to read (and drop); a body too large is refused at once instead.
        let body_limit = if keep_body {
            config.fetch.max_body.min(proxy::write_record::MAX_BODY)
        } else {
            MAX_DISCARD_BODY
        };
        let body_wanted = match req.body {
            RequestBody::None => false,
            RequestBody::Length(n) => n <= body_limit,
            RequestBody::Chunked => true,
        };
        if body_wanted && req.expects_continue() && !send_continue(stream, idle).await {
            return Next::Close;
        }
        let mut body = None;
        let body_error = match req.body {
            RequestBody::None => None,
            RequestBody::Length(n) if keep_body && n <= body_limit => {
                match read_body(stream, &mut buf, n as usize, idle, drain).await {
                    Some(b) => body = Some(b),
                    None => return Next::Close,
                }
                None
            }
            RequestBody::Chunked if keep_body => Some(Error::WriteRecordNeeds(
                "a Content-Length (a chunked body is not taken)",
            )),
            RequestBody::Length(n) if n <= MAX_DISCARD_BODY => {
                if !discard(stream, &mut buf, n as usize, idle, drain).await {
                    return Next::Close;
                }
                None
            }
            RequestBody::Length(_) => Some(Error::RequestBodyTooLarge),
            RequestBody::Chunked => match discard_chunked(stream, &mut buf, idle, drain).await {
                Ok(()) => None,
                Err(Some(e)) => Some(e),
                Err(None) => return Next::Close,
            },
        };
        if let Some(e) = body_error {
            // The body was not consumed, so the connection cannot carry another request.
            refuse_request(ctx, stream, &e, &req, peer, since).await;
            return Next::Close;
        }
        // A draining worker answers this request, then closes.
        req.keep_alive &= !drain.is_draining();
        let mut resp = proxy::handle(ctx, &req, route, peer, body).await;
        let state = resp.state;
        let mut error = resp.error;
        let mut detail = resp.detail.take();
        let live = resp.live_tap();
        let fetched_from = resp.upstream;
        let written = write_response(ctx, stream, resp, idle).await;
        // A forward-mode miss learns how its fetch ended only while streaming it: a failure
        // is counted, logged and listed like any other error reply.
        if let Some(failed) = live.as_ref().and_then(|tap| tap.failure()) {
            if error.is_none() {
                error = failed.code_line();
                detail = failed.code_line().map(|_| failed.message());
            }
        }
        let answered = Answered {
            outcome: state,
            error: error.map(|code| (code, detail.as_deref())),
            since,
            upstream: fetched_from.or_else(|| live.and_then(|tap| tap.upstream())),
        };
        count(ctx, stream, answered, peer, &req);
        match written {
            Ok(true) if req.keep_alive => {}
            _ => return Next::Close,
        }
    }
}

/// Answers a CONNECT: intercepted (returned to the caller) when `--mitm-ca` is set and the
/// host is not bypassed; otherwise, once the upstream is connected, becomes a blind tunnel.
async fn connect(
    ctx: &WorkerCtx,
    stream: ClientConn,
    peer: IpAddr,
    req: &RequestHead,
    early: Vec<u8>,
    idle: Duration,
) -> Option<Tunnel> {
    // A CONNECT inside an intercepted tunnel is refused by `route_inner`; never reached.
    let mut stream = stream.into_plain()?;
    if let Some(mitm) = &ctx.shared.mitm {
        let checked = parse_authority(&req.target).and_then(|(host, port)| {
            if ctx.shared.config.fetch.connect_ports.contains(&port) {
                Ok((host, port))
            } else {
                Err(Error::ConnectPortNotAllowed(port))
            }
        });
        match checked {
            Ok((host, port)) if !mitm.bypasses(unbracketed(&host)) => {
                return Some(Tunnel {
                    socket: stream,
                    early,
                    origin: Origin { host, port },
                    peer,
                })
            }
            Ok(_) => {}
            Err(e) => {
                refuse(ctx, &mut ClientConn::plain(stream), &e, req.version, idle).await;
                return None;
            }
        }
    }
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
                    ctx.shared.config.fetch.tunnel_idle_timeout,
                )
                .await;
            }
        }
        Err(e) => refuse(ctx, &mut ClientConn::plain(stream), &e, req.version, idle).await,
    }
    None
}

/// Answers a connection refused before any request is read (an address outside the client
/// ranges, or over a connection limit) with `e` and closes it at once: one short write, no
/// draining, so a flood of refused connections holds no descriptors for long.
pub async fn refuse_at_once(ctx: &WorkerCtx, stream: TcpStream, e: &Error) {
    let mut stream = ClientConn::plain(stream);
    if write_refusal(ctx, &mut stream, e, 1, REFUSE_WRITE_TIME).await {
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
async fn refuse(ctx: &WorkerCtx, stream: &mut ClientConn, e: &Error, version: u8, idle: Duration) {
    if write_refusal(ctx, stream, e, version, idle).await {
        linger(stream).await;
    }
}

/// Writes the error reply (`Connection: close`) for a request refused before its head was
/// whole, and counts it (no duration: there was no request to time). Whether it was written.
async fn write_refusal(
    ctx: &WorkerCtx,
    stream: &mut ClientConn,
    e: &Error,
    version: u8,
    timeout: Duration,
) -> bool {
    let written = write_error(ctx, stream, e, version, timeout).await;
    ctx.counters().request(
        RequestState::Error,
        e.code_line(),
        stream.take_written(),
        None,
    );
    written
}

/// Writes `e`'s error reply with `Connection: close`; whether it was written.
async fn write_error(
    ctx: &WorkerCtx,
    stream: &mut ClientConn,
    e: &Error,
    version: u8,
    timeout: Duration,
) -> bool {
    let close = ConnState {
        keep_alive: false,
        version,
    };
    let resp = proxy::error_response(e, close, false);
    write_response(ctx, stream, resp, timeout).await.is_ok()
}

/// `refuse` for a request whose head was read: also counted with it (access log, recent
/// errors), like any answered request.
async fn refuse_request(
    ctx: &WorkerCtx,
    stream: &mut ClientConn,
    e: &Error,
    req: &RequestHead,
    peer: IpAddr,
    since: Instant,
) {
    let idle = ctx.shared.config.clients.client_idle_timeout;
    let written = write_error(ctx, stream, e, req.version, idle).await;
    let message = e.message();
    let answered = Answered {
        outcome: RequestState::Error,
        error: e.code_line().map(|code| (code, Some(message.as_str()))),
        since,
        upstream: None,
    };
    count(ctx, stream, answered, peer, req);
    if written {
        linger(stream).await;
    }
}

/// Most time and bytes spent draining a refused client before closing.
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 1 << 20;

/// Closes our side, then reads and drops what the client is still sending (bounded) before
/// the socket is closed: closing with unread bytes makes the kernel send a reset, which can
/// destroy the error reply before the client reads it.
async fn linger(stream: &mut ClientConn) {
    linger_for(stream, LINGER_TIME).await
}

async fn linger_for(stream: &mut ClientConn, time: Duration) {
    // Over TLS the shutdown writes close_notify, which a client that reads nothing would hold.
    match monoio::time::timeout(time, stream.shutdown()).await {
        Ok(Ok(())) => {}
        _ => return,
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
