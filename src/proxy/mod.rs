//! Where index, fetch and archive meet: decide how one request is answered (hit, miss,
//! coalesced, error) and build the reply. The connection loop only writes what this returns.

pub mod context;
pub mod forward;
pub mod hot;
pub mod passthrough;
pub mod send;
pub mod store;
pub mod tunnel;

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

pub use context::{Shared, WorkerCtx};

use crate::archive::ArcFile;
use crate::config::Mode;
use crate::error::{Error, LogLine};
use crate::fetch::{Tap, TapReader};
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
    /// Forward mode, a miss: the origin's response as it arrives from the fetch.
    Live {
        reader: TapReader,
        client: crate::http::forward::ClientSide,
    },
    /// Forward mode: the stored response itself, decoded from its record as it is sent (the
    /// head is built then too, so `Response::head` is empty).
    Forward {
        source: forward::MemberSource,
        client: crate::http::forward::ClientSide,
        /// The record is a gzip member (else plain, and its body can be sent from disk).
        gzip: bool,
        /// Where the record is, to keep its decoded form in the hot shard.
        loc: crate::archive::RecordLoc,
    },
}

/// A reply ready to write.
pub struct Response {
    pub head: Vec<u8>,
    pub body: Body,
    pub state: RequestState,
}

/// How the reply is to be shaped.
#[derive(Debug, Clone, Copy)]
pub struct ReplyTo {
    pub conn: ConnState,
    /// The request was HEAD.
    pub head_only: bool,
    /// Forward mode (the origin's response) rather than liveweb mode (the ARC record).
    pub forward: bool,
}

/// Answers one request; `forward` is `forward_requested` for it (the connection loop has
/// already worked it out to route CONNECT and other methods).
pub async fn handle(
    ctx: &Rc<WorkerCtx>,
    req: &RequestHead,
    forward: Result<bool, Error>,
) -> Response {
    let conn = ConnState {
        keep_alive: req.keep_alive,
        version: req.version,
    };
    let head_only = req.method == Method::Head;
    let to = match forward {
        Ok(forward) => ReplyTo {
            conn,
            head_only,
            forward,
        },
        Err(e) => return error_response(&e, conn, head_only),
    };
    match route(ctx, req, to).await {
        Ok(resp) => resp,
        Err(e) => error_response(&e, conn, head_only),
    }
}

/// `--mode`, unless the request says otherwise with `X-Liveweb-Mode`.
pub fn forward_requested(ctx: &WorkerCtx, req: &RequestHead) -> Result<bool, Error> {
    match req.header("x-liveweb-mode") {
        None => Ok(ctx.shared.config.mode == Mode::Forward),
        Some(v) if v.eq_ignore_ascii_case(b"forward") => Ok(true),
        Some(v) if v.eq_ignore_ascii_case(b"liveweb") => Ok(false),
        Some(_) => Err(Error::BadRequest(
            "X-Liveweb-Mode must be liveweb or forward",
        )),
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

async fn route(ctx: &Rc<WorkerCtx>, req: &RequestHead, to: ReplyTo) -> Result<Response, Error> {
    if req.target.starts_with('/') {
        return admin(req, to);
    }
    if !matches!(req.method, Method::Get | Method::Head) {
        return Err(Error::MethodNotAllowed);
    }
    let url = parse_absolute(&req.target)?;
    if url.scheme == Scheme::Https {
        return Err(Error::NotImplemented("https:// URLs are not supported yet"));
    }
    lookup_or_fetch(ctx, req, url, to).await
}

fn admin(req: &RequestHead, to: ReplyTo) -> Result<Response, Error> {
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
        head: text_reply(status, reason, "", body, to.conn, to.head_only),
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
    to: ReplyTo,
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
                    // Forward-mode clients get their origin's failure, not a record of it.
                    let archive_failures = !to.forward;
                    // A forward-mode GET streams the response while it is being fetched.
                    let tap = (to.forward && !to.head_only).then(Tap::new);
                    let task = fetch_and_store(
                        ctx.clone(),
                        url.clone(),
                        req.headers.clone(),
                        guard,
                        archive_failures,
                        tap.clone(),
                    );
                    monoio::spawn(task);
                    if let Some(tap) = tap {
                        return Ok(live_response(tap, to, ctx.shared.config.max_body));
                    }
                    let outcome = flight.wait().await;
                    return delivered(ctx, outcome, RequestState::Miss, to);
                }
                Err(other) => other,
            },
            found => found,
        };
        match lookup {
            Lookup::Hit(record) => match stored(ctx, record, to) {
                Some(resp) => return Ok(resp),
                None => refetch = true,
            },
            Lookup::Wait(flight) => {
                let outcome = flight.wait().await;
                return delivered(ctx, outcome, RequestState::Coalesced, to);
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
    archive_failures: bool,
    tap: Option<Rc<Tap>>,
) {
    let shared = &ctx.shared;
    let fetched = crate::fetch::fetch(ctx.upstream(), &url, &headers, tap).await;
    let outcome = match fetched {
        Ok(f) => store::store_response(&ctx, &url, f).await,
        Err(fe) if archive_failures && fe.error.is_archived_failure() => {
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
    to: ReplyTo,
) -> Result<Response, Error> {
    let d = outcome?;
    // The fetcher runs on this worker and already kept a miss's record; a coalesced one may
    // come from another worker's fetch.
    if state == RequestState::Coalesced {
        ctx.hot.borrow_mut().insert(&d.record.loc, d.member.clone());
    }
    Ok(reply_for(ctx, &d.record, Some(d.member), None, state, to))
}

/// The reply for a stored record; `None` when its ARC file is gone (handed off).
fn stored(ctx: &Rc<WorkerCtx>, record: Arc<StoredRecord>, to: ReplyTo) -> Option<Response> {
    let file = ctx.shared.files.get(record.loc.file_id)?;
    let in_memory = ctx.hot.borrow().get(&record.loc);
    Some(reply_for(
        ctx,
        &record,
        in_memory,
        Some(file),
        RequestState::Hit,
        to,
    ))
}

/// Shapes a record into a reply: the record itself (liveweb mode) or the response it holds
/// (forward mode; an archived failure becomes a plain error reply).
fn reply_for(
    ctx: &WorkerCtx,
    record: &Arc<StoredRecord>,
    member: Option<Bytes>,
    file: Option<Arc<ArcFile>>,
    state: RequestState,
    to: ReplyTo,
) -> Response {
    // Records in files from another run may be of the other kind than this run writes.
    let gzip = file.as_ref().map_or(ctx.shared.config.arc_gzip, |f| f.gzip);
    if to.forward {
        if let Some(code) = record.status.error {
            let s = &record.status;
            let extra = format!("X-Liveweb-Error: {code}\r\nX-Cache: {}\r\n", state.as_str());
            return Response {
                head: text_reply(s.code, &s.reason, &extra, code, to.conn, to.head_only),
                body: Body::None,
                state,
            };
        }
        // A decoded copy kept from an earlier forward hit skips inflating again.
        let decoded = if gzip {
            ctx.hot.borrow().get_decoded(&record.loc)
        } else {
            None
        };
        let (source, gzip) = match decoded {
            Some(plain) => (forward::MemberSource::Memory(plain), false),
            None => (forward_source(record, member, file), gzip),
        };
        let age = (state == RequestState::Hit).then(|| age_of(record, ctx.shared.config.ttl));
        let client = client_side(to, state, age, None);
        return Response {
            head: Vec::new(),
            body: Body::Forward {
                source,
                client,
                gzip,
                loc: record.loc,
            },
            state,
        };
    }
    let content_type = crate::archive::record::Codec::content_type(gzip);
    let head = record_head(
        &record.status,
        content_type,
        record.loc.len,
        state.as_str(),
        to.conn,
    );
    let body = match (to.head_only, member, file) {
        (true, _, _) => Body::None,
        (false, Some(m), _) => Body::Memory(m),
        (false, None, Some(file)) => Body::File {
            file,
            record: record.clone(),
        },
        (false, None, None) => Body::None,
    };
    Response { head, body, state }
}

/// A forward-mode miss: the reply streams from the fetch as it arrives.
fn live_response(tap: Rc<Tap>, to: ReplyTo, max_body: u64) -> Response {
    let client = client_side(to, RequestState::Miss, None, Some(max_body));
    Response {
        head: Vec::new(),
        body: Body::Live {
            reader: TapReader(tap),
            client,
        },
        state: RequestState::Miss,
    }
}

/// How a forward-mode reply is shaped for this client.
fn client_side(
    to: ReplyTo,
    state: RequestState,
    age: Option<u64>,
    archive_limit: Option<u64>,
) -> crate::http::forward::ClientSide {
    crate::http::forward::ClientSide {
        version: to.conn.version,
        keep_alive: to.conn.keep_alive,
        head_only: to.head_only,
        cache: state.as_str(),
        age,
        archive_limit,
    }
}

/// Where a forward-mode hit reads its record from: memory if at hand, else its file.
fn forward_source(
    record: &StoredRecord,
    member: Option<Bytes>,
    file: Option<Arc<ArcFile>>,
) -> forward::MemberSource {
    match (member, file) {
        (Some(m), _) => forward::MemberSource::Memory(m),
        (None, Some(file)) => forward::MemberSource::File {
            file,
            offset: record.loc.offset,
            len: record.loc.len,
        },
        (None, None) => forward::MemberSource::Memory(Bytes::new()),
    }
}

/// Seconds since the record was fetched (its TTL minus what is left of it).
fn age_of(record: &StoredRecord, ttl: Duration) -> u64 {
    let left = record.expires_at.saturating_duration_since(Instant::now());
    ttl.saturating_sub(left).as_secs()
}
