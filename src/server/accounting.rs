//! Counting each answered request: the worker's counters, the recent errors (an error code)
//! and, with `--access-log`, its line.

use std::net::IpAddr;
use std::time::Instant;

use crate::admin::{access_log, RequestState};
use crate::http::request::RequestHead;
use crate::proxy::client_conn::ClientConn;
use crate::proxy::WorkerCtx;

/// One answered request as the counters see it.
pub(super) struct Answered<'a> {
    pub outcome: RequestState,
    /// Its error code line, and what liveweb's reply said, if it made one.
    pub error: Option<(&'static str, Option<&'a str>)>,
    /// When its head was read.
    pub since: Instant,
    /// The origin address the response came from, when an origin was contacted for it.
    pub upstream: Option<IpAddr>,
}

/// Counts one answered request from `peer`: how it ended, its code, the bytes written for it
/// and how long it took; an error also goes to the recent errors, and with `--access-log`
/// the request gets its line.
pub(super) fn count(
    ctx: &WorkerCtx,
    stream: &mut ClientConn,
    a: Answered<'_>,
    peer: IpAddr,
    req: &RequestHead,
) {
    let elapsed = a.since.elapsed();
    let counters = ctx.counters();
    let code = a.error.map(|(code, _)| code);
    let bytes = stream.take_written();
    let status = stream.take_status();
    counters.request(a.outcome, code, bytes, Some(elapsed.as_micros() as u64));
    counters.read_bytes(stream.take_read());
    counters.set_hot_bytes(ctx.hot.borrow().used_bytes() as u64);
    if let Some((code, detail)) = a.error {
        let message = detail.unwrap_or(code);
        ctx.shared
            .recent_errors
            .push(peer, &req.target, code, message);
    }
    if let Some(log) = &ctx.shared.access_log {
        let entry = access_log::Entry {
            at: std::time::SystemTime::now(),
            elapsed,
            client: peer,
            outcome: a.outcome.as_str(),
            status,
            bytes,
            method: req.method.as_str(),
            url: &req.target,
            code,
            upstream: a.upstream,
        };
        ctx.access.push(log, &entry);
    }
}
