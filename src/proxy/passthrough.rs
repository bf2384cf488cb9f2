//! Forward mode, methods other than GET/HEAD/CONNECT (POST, PUT, PATCH, DELETE, OPTIONS...):
//! the request body is streamed to the origin (never buffered whole, bounded by
//! `--max-request-body`), the response is streamed back, re-headed and framed for the client.
//! Nothing is archived or cached; a successful unsafe method drops the stored entry for its
//! URL. A response that ends early closes the client connection, so it never looks complete.

use std::io;
use std::time::{Duration, Instant};

use super::client_conn::ClientConn;
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent};

use super::WorkerCtx;
use crate::error::Error;
use crate::fetch::request::{build_request, UpstreamBody};
use crate::fetch::OriginConn;
use crate::http::chunked::ChunkedScanner;
use crate::http::client_body::ResponseStreamer;
use crate::http::client_head::ClientSide;
use crate::http::request::{RequestBody, RequestHead};
use crate::http::url::parse_absolute;

const CHUNK: usize = 64 * 1024;

/// What went wrong, and whether the client may still be answered with an error reply.
pub enum Failure {
    /// Nothing was sent to the client yet: answer with this error.
    Before(Error),
    /// The reply had started (or the client is gone): close the connection.
    After,
}

/// Relays one request. `buf` holds bytes already read behind the head (the body's start,
/// maybe later requests); what follows the body stays in it. Returns whether the connection
/// may carry another request. `origin` is set to the origin's address once connected.
pub async fn relay(
    ctx: &WorkerCtx,
    client: &mut ClientConn,
    req: &RequestHead,
    buf: &mut Vec<u8>,
    idle: Duration,
    origin: &mut Option<std::net::IpAddr>,
) -> Result<bool, Failure> {
    let config = &ctx.shared.config;
    let url = parse_absolute(&req.target).map_err(Failure::Before)?;
    if let RequestBody::Length(n) = req.body {
        if n > config.clients.max_request_body {
            return Err(Failure::Before(Error::RequestBodyTooLarge));
        }
    }
    let limits = &ctx.shared.fetch_limits;
    let deadline = Instant::now() + limits.fetch_timeout;
    let (mut upstream, ip) = crate::fetch::connect_origin(ctx.upstream(), &url, deadline)
        .await
        .map_err(|fe| Failure::Before(fe.error))?;
    *origin = Some(ip);

    let method = req.method.as_str();
    let body = match req.body {
        // A declared empty body stays declared (POST with `Content-Length: 0`: origins may
        // insist on a length).
        RequestBody::None if req.header("content-length").is_some() => UpstreamBody::Length(0),
        RequestBody::None => UpstreamBody::None,
        RequestBody::Length(n) => UpstreamBody::Length(n),
        RequestBody::Chunked => UpstreamBody::Chunked,
    };
    let head = build_request(
        method,
        &url,
        &req.headers,
        &ctx.shared.user_agent,
        body,
        false,
    );
    write(&mut upstream, head, limits.read_timeout)
        .await
        .map_err(|_| Failure::Before(Error::Dropped("origin closed".into())))?;
    if req.expects_continue() && req.body != RequestBody::None {
        write(client, crate::http::request::CONTINUE.to_vec(), idle)
            .await
            .map_err(|_| Failure::After)?;
    }
    match req.body {
        RequestBody::None => {}
        RequestBody::Length(n) => copy_exact(client, &mut upstream, buf, n, idle)
            .await
            .map_err(|_| Failure::After)?,
        RequestBody::Chunked => {
            copy_chunked(
                client,
                &mut upstream,
                buf,
                config.clients.max_request_body,
                idle,
            )
            .await?;
        }
    }

    let side = ClientSide {
        version: req.version,
        keep_alive: req.keep_alive,
        head_only: false,
        cache: "BYPASS",
        age: None,
        archive_limit: None,
        update: None,
        range: None,
    };
    let mut response = ResponseStreamer::new(side, None);
    let mut out = Vec::with_capacity(CHUNK);
    let mut sent_any = false;
    let mut read_buf = Vec::with_capacity(CHUNK);
    let unsafe_method = !matches!(method, "OPTIONS" | "TRACE");
    let mut invalidated = false;
    while !response.is_done() {
        let (res, b) = match monoio::time::timeout(
            limits.read_timeout,
            upstream.read(std::mem::take(&mut read_buf).slice_mut(0..CHUNK)),
        )
        .await
        {
            Ok((res, slice)) => (res, slice.into_inner()),
            Err(_) if !sent_any => {
                return Err(Failure::Before(Error::ReadTimeout("origin went silent")))
            }
            Err(_) => return Err(Failure::After),
        };
        read_buf = b;
        let at_end = matches!(res, Ok(0));
        let step = match res {
            Ok(0) => response.finish(&mut out),
            Ok(n) => response.push(&read_buf[..n], &mut out),
            Err(e) => Err(Error::Dropped(e.to_string())),
        };
        // RFC 9111 4.4: a success to an unsafe method invalidates the URL, before the client
        // sees any of the reply, so its next request (on any worker) cannot get the old entry;
        // also when the rest of the response turns out broken (the change happened).
        if !invalidated && unsafe_method && response.status.is_some_and(|s| (200..400).contains(&s))
        {
            ctx.shared.index.invalidate(&url.normalized);
            invalidated = true;
        }
        if let Err(e) = step {
            return Err(if sent_any || !out.is_empty() {
                Failure::After
            } else {
                Failure::Before(e)
            });
        }
        if !out.is_empty() {
            write(client, std::mem::take(&mut out), idle)
                .await
                .map_err(|_| Failure::After)?;
            sent_any = true;
        }
        if at_end {
            break;
        }
    }
    Ok(req.keep_alive && !response.must_close())
}

async fn write(
    stream: &mut impl AsyncWriteRent,
    data: Vec<u8>,
    timeout: Duration,
) -> io::Result<()> {
    super::send::write_all(stream, data, timeout)
        .await
        .map(drop)
}

/// Reads more client bytes into `buf` (appending); `Ok(0)` at end of stream.
async fn read_more(
    client: &mut ClientConn,
    buf: &mut Vec<u8>,
    idle: Duration,
) -> io::Result<usize> {
    buf.reserve(CHUNK);
    let len = buf.len();
    let cap = buf.capacity();
    let owned = std::mem::take(buf);
    match monoio::time::timeout(idle, client.read(owned.slice_mut(len..cap))).await {
        Ok((res, slice)) => {
            *buf = slice.into_inner();
            res
        }
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "client went silent",
        )),
    }
}

/// Sends exactly `n` body bytes: those already in `buf`, then from the client.
async fn copy_exact(
    client: &mut ClientConn,
    upstream: &mut OriginConn,
    buf: &mut Vec<u8>,
    n: u64,
    idle: Duration,
) -> io::Result<()> {
    let mut left = n;
    loop {
        let take = (left as usize).min(buf.len());
        if take > 0 {
            let piece: Vec<u8> = buf.drain(..take).collect();
            write(upstream, piece, idle).await?;
            left -= take as u64;
        }
        if left == 0 {
            return Ok(());
        }
        if read_more(client, buf, idle).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "client body cut short",
            ));
        }
    }
}

/// Sends a chunked body as received, up to its last chunk and trailers.
async fn copy_chunked(
    client: &mut ClientConn,
    upstream: &mut OriginConn,
    buf: &mut Vec<u8>,
    max: u64,
    idle: Duration,
) -> Result<(), Failure> {
    let mut scanner = ChunkedScanner::new();
    loop {
        if !buf.is_empty() {
            // The client's framing is at fault here, not the origin's.
            let end = scanner.feed(buf).map_err(|_| {
                Failure::Before(Error::BadRequest("malformed chunked request body"))
            })?;
            if scanner.payload_len > max {
                return Err(Failure::Before(Error::RequestBodyTooLarge));
            }
            let take = end.unwrap_or(buf.len());
            let piece: Vec<u8> = buf.drain(..take).collect();
            write(upstream, piece, idle)
                .await
                .map_err(|_| Failure::After)?;
            if end.is_some() {
                return Ok(());
            }
        }
        match read_more(client, buf, idle).await {
            Ok(0) | Err(_) => return Err(Failure::After),
            Ok(_) => {}
        }
    }
}
