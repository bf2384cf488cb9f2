//! Where index, fetch and archive meet: decide how one request is answered (hit, miss,
//! coalesced, error) and build the reply. The connection loop only writes what this returns.

pub mod context;
pub mod hot;
pub mod send;
pub mod store;

use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

pub use context::{Shared, WorkerCtx};

use crate::archive::ArcFile;
use crate::error::{Error, LogLine};
use crate::http::reply::{record_head, text_reply, ConnState};
use crate::http::request::{Header, Method, RequestHead};
use crate::http::url::{parse_absolute, Scheme, TargetUrl};
use crate::index::{FlightGuard, Lookup, Outcome, StoredRecord};

/// How a request ended; named in the `X-Cache` header, logs and (later) counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestState {
    /// Answered from a stored record.
    Hit,
    /// This request's fetch produced the record.
    Miss,
    /// Another request's fetch produced the record.
    Coalesced,
    /// Answered by liveweb itself (`/_liveweb/...`).
    Admin,
    /// Refused or failed without a record.
    Error,
}

impl RequestState {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Hit => "HIT",
            RequestState::Miss => "MISS",
            RequestState::Coalesced => "COALESCED",
            RequestState::Admin => "ADMIN",
            RequestState::Error => "ERROR",
        }
    }
}

/// Where the reply body comes from.
pub enum Body {
    /// Nothing after the head (HEAD requests, or text replies built into the head).
    None,
    /// Bytes in memory (hot shard or a fresh record).
    Memory(Bytes),
    /// A record region of an ARC file, sent zero-copy when resident.
    File {
        file: Arc<ArcFile>,
        record: Arc<StoredRecord>,
    },
}

/// A reply ready to write.
pub struct Response {
    pub head: Vec<u8>,
    pub body: Body,
    pub state: RequestState,
}

/// Answers one request.
pub async fn handle(ctx: &Rc<WorkerCtx>, req: &RequestHead) -> Response {
    let conn = ConnState {
        keep_alive: req.keep_alive,
        version: req.version,
    };
    let head_only = req.method == Method::Head;
    match route(ctx, req, conn, head_only).await {
        Ok(resp) => resp,
        Err(e) => error_response(&e, conn, head_only),
    }
}

/// A text reply for an error that produced no record; logs non-client failures.
pub fn error_response(e: &Error, conn: ConnState, head_only: bool) -> Response {
    if e.side() != crate::error::Side::Client {
        eprintln!("liveweb: {}", LogLine(e));
    }
    let status = e.status();
    let mut extra = String::new();
    if let Some(code) = e.code_line() {
        extra.push_str(&format!("X-Liveweb-Error: {code}\r\n"));
    }
    if let Some(secs) = e.retry_after() {
        extra.push_str(&format!("Retry-After: {secs}\r\n"));
    }
    Response {
        head: text_reply(
            status.code,
            status.reason,
            &extra,
            &e.message(),
            conn,
            head_only,
        ),
        body: Body::None,
        state: RequestState::Error,
    }
}

async fn route(
    ctx: &Rc<WorkerCtx>,
    req: &RequestHead,
    conn: ConnState,
    head_only: bool,
) -> Result<Response, Error> {
    if req.target.starts_with('/') {
        return admin(req, conn, head_only);
    }
    if !matches!(req.method, Method::Get | Method::Head) {
        return Err(Error::MethodNotAllowed);
    }
    let url = parse_absolute(&req.target)?;
    if url.scheme == Scheme::Https {
        return Err(Error::NotImplemented("https:// URLs are not supported yet"));
    }
    lookup_or_fetch(ctx, req, url, conn, head_only).await
}

fn admin(req: &RequestHead, conn: ConnState, head_only: bool) -> Result<Response, Error> {
    let path = req.target.split('?').next().unwrap_or("");
    if !path.starts_with("/_liveweb/") {
        return Err(Error::AbsoluteUrlRequired);
    }
    if !matches!(req.method, Method::Get | Method::Head) {
        return Err(Error::MethodNotAllowed);
    }
    let (status, reason, body) = match path {
        "/_liveweb/health" => (200, "OK", "ok"),
        _ => (404, "Not Found", "no such liveweb endpoint"),
    };
    Ok(Response {
        head: text_reply(status, reason, "", body, conn, head_only),
        body: Body::None,
        state: RequestState::Admin,
    })
}

/// Hit, coalesce, or become the fetcher. Bounded: a claim can only lose to a concurrent
/// change, which resolves on the next look.
async fn lookup_or_fetch(
    ctx: &Rc<WorkerCtx>,
    req: &RequestHead,
    url: TargetUrl,
    conn: ConnState,
    head_only: bool,
) -> Result<Response, Error> {
    let index = &ctx.shared.index;
    // A record whose ARC file was handed off and deleted is refetched like a stale one.
    let mut refetch = req.no_cache;
    for _ in 0..8 {
        let now = Instant::now();
        let lookup = match index.lookup(&url.normalized, now, refetch) {
            Lookup::Absent if req.only_if_cached => return Err(Error::NotCached),
            Lookup::Absent if ctx.writer.is_paused() => {
                return Err(Error::Storage("disk full, archiving paused".into()))
            }
            Lookup::Absent => match index.claim(&url.normalized, now, refetch) {
                Ok(flight) => {
                    let guard = FlightGuard(flight.clone());
                    monoio::spawn(fetch_and_store(
                        ctx.clone(),
                        url.clone(),
                        req.headers.clone(),
                        guard,
                    ));
                    let outcome = flight.wait().await;
                    return delivered(ctx, outcome, RequestState::Miss, conn, head_only);
                }
                Err(other) => other,
            },
            found => found,
        };
        match lookup {
            Lookup::Hit(record) => match stored(ctx, record, conn, head_only) {
                Some(resp) => return Ok(resp),
                None => refetch = true,
            },
            Lookup::Wait(flight) => {
                let outcome = flight.wait().await;
                return delivered(ctx, outcome, RequestState::Coalesced, conn, head_only);
            }
            Lookup::Absent => continue,
        }
    }
    Err(Error::Internal("index kept changing under the request"))
}

/// The fetcher's task: runs to the end even if the requesting client goes away, so the
/// waiters and the index are always settled.
async fn fetch_and_store(
    ctx: Rc<WorkerCtx>,
    url: TargetUrl,
    headers: Vec<Header>,
    guard: FlightGuard,
) {
    let shared = &ctx.shared;
    let fetched = crate::fetch::fetch(
        &ctx.dns,
        &shared.upstream_rules,
        &shared.fetch_limits,
        &url,
        &headers,
        &shared.user_agent,
    )
    .await;
    let outcome = match fetched {
        Ok(f) => store::store_response(&ctx, &url, f).await,
        Err(fe) if fe.error.is_archived_failure() => {
            eprintln!("liveweb: {} {}", url.normalized, LogLine(&fe.error));
            store::store_failure(&ctx, &url, fe).await
        }
        Err(fe) => Err(fe.error),
    };
    let record = outcome.as_ref().ok().map(|d| d.record.clone());
    shared.index.settle(&url.normalized, &guard.0, record);
    guard.0.complete(outcome);
}

fn delivered(
    ctx: &Rc<WorkerCtx>,
    outcome: Outcome,
    state: RequestState,
    conn: ConnState,
    head_only: bool,
) -> Result<Response, Error> {
    let d = outcome?;
    ctx.hot.borrow_mut().insert(&d.record.loc, d.member.clone());
    Ok(Response {
        head: record_head(&d.record.status, d.record.loc.len, state.as_str(), conn),
        body: if head_only {
            Body::None
        } else {
            Body::Memory(d.member)
        },
        state,
    })
}

/// The reply for a stored record; `None` when its ARC file is gone (handed off).
fn stored(
    ctx: &Rc<WorkerCtx>,
    record: Arc<StoredRecord>,
    conn: ConnState,
    head_only: bool,
) -> Option<Response> {
    let state = RequestState::Hit;
    let head = record_head(&record.status, record.loc.len, state.as_str(), conn);
    let in_memory = ctx.hot.borrow().get(&record.loc);
    let body = match (in_memory, ctx.shared.files.get(record.loc.file_id)) {
        (_, None) => return None,
        _ if head_only => Body::None,
        (Some(member), _) => Body::Memory(member),
        (None, Some(file)) => Body::File { file, record },
    };
    Some(Response { head, body, state })
}
