//! Where index, fetch and archive meet: decide how one request is answered (hit, miss,
//! coalesced, error) and build the reply (shaped in `reply`). The connection loop only writes
//! what this returns.

mod cache_view;
pub mod client_conn;
pub mod context;
mod dedup_capture;
mod encode;
mod fetcher;
pub mod hot;
mod lookup;
mod own_pages;
pub mod passthrough;
pub mod prefix_writers;
mod reply;
pub mod router;
pub mod send;
pub mod store;
mod stored_head;
pub mod stored_reply;
pub mod tunnel;
pub mod write_record;

use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;

pub use context::{Shared, WorkerCtx};
pub use router::Route;

use crate::archive::ArcFile;
use crate::error::{Error, LogLine};
use crate::fetch::{Tap, TapReader};
use crate::http::reply::{text_reply, ConnState};
use crate::http::request::{Method, RequestHead};
use crate::http::url::parse_absolute;
use crate::index::StoredRecord;

/// How a request ended; named in the `X-Cache` header, logs and counters (the counters'
/// own type, so the two never drift apart).
pub use crate::admin::RequestState;

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
    /// Forward mode, a hit on a record stored uncompressed: the body is these ranges of the
    /// ARC file, sent zero-copy when resident.
    FileRanges {
        file: Arc<ArcFile>,
        ranges: Vec<(u64, u64)>,
    },
    /// Forward mode, a miss: the origin's response as it arrives from the fetch.
    Live {
        reader: TapReader,
        client: crate::http::client_head::ClientSide,
    },
    /// Forward mode: the stored response itself, decoded from its record as it is sent (the
    /// head is built then too, so `Response::head` is empty).
    Forward {
        source: stored_reply::MemberSource,
        client: crate::http::client_head::ClientSide,
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
    /// The liveweb error code line the reply carries (`X-Liveweb-Error`), for the counters.
    pub error: Option<&'static str>,
    /// What an error reply liveweb made says (for the status page's recent errors).
    pub detail: Option<String>,
    /// The origin address the response was fetched from, when one was (not for hits); a
    /// forward-mode miss's is known only once its fetch connects (`Tap::upstream`).
    pub upstream: Option<std::net::IpAddr>,
}

impl Response {
    /// The fetch a forward-mode miss streams from, to ask it the origin's address after the
    /// reply is written.
    pub fn live_tap(&self) -> Option<Rc<Tap>> {
        match &self.body {
            Body::Live { reader, .. } => Some(reader.0.clone()),
            _ => None,
        }
    }
}

/// How the reply is to be shaped.
#[derive(Debug, Clone, Copy)]
pub struct ReplyTo {
    pub conn: ConnState,
    /// The request was HEAD.
    pub head_only: bool,
    /// Forward mode (the origin's response) rather than liveweb mode (the ARC record).
    pub forward: bool,
    /// The request's `Warcprox-Meta` asked for `capture-metadata`: a forward-mode reply
    /// says when its response was captured.
    pub capture_metadata: bool,
}

/// Answers a request from `client` the router sent here: `Admin`, `Cache`, `WriteRecord`
/// (with its `body`) or `Refuse` (the connection loop serves tunnels and pass-throughs
/// itself).
pub async fn handle(
    ctx: &Rc<WorkerCtx>,
    req: &RequestHead,
    route: Route,
    client: std::net::IpAddr,
    body: Option<Vec<u8>>,
) -> Response {
    let conn = ConnState {
        keep_alive: req.keep_alive,
        version: req.version,
    };
    let head_only = req.method == Method::Head;
    let to = |forward, capture_metadata| ReplyTo {
        conn,
        head_only,
        forward,
        capture_metadata,
    };
    let result = match route {
        Route::Admin if own_pages::is_cdx_query(req) => {
            own_pages::cdx_query(ctx, req, to(false, false)).await
        }
        Route::Admin => own_pages::admin(ctx, req, to(false, false)),
        Route::Cache { forward, capture } => {
            let to = to(forward, capture.metadata);
            cache(ctx, req, to, client, capture).await
        }
        Route::WriteRecord { warc_prefix } => {
            let writer = ctx.writer_for(warc_prefix.as_deref());
            write_record::write_record(ctx, &writer, req, body, to(false, false)).await
        }
        Route::Refuse(e) => Err(e),
        Route::Tunnel | Route::PassThrough => Err(Error::Internal("routed to the cache")),
    };
    result.unwrap_or_else(|e| error_response(&e, conn, head_only))
}

thread_local! {
    static STORAGE_FAILURE_LOG: crate::logging::LogLimit =
        const { crate::logging::LogLimit::new() };
}

/// A text reply for an error that produced no record; logs liveweb's own failures (storage,
/// internal). Upstream failures are logged with their URL where the fetch failed.
pub fn error_response(e: &Error, conn: ConnState, head_only: bool) -> Response {
    match e.side() {
        // Storage failures repeat for every request while they last (a full disk refuses
        // every miss): once a second per worker, with how many were not logged.
        crate::error::Side::Storage => {
            crate::logging::log_limited_at(log::Level::Error, &STORAGE_FAILURE_LOG, || {
                LogLine(e).to_string()
            })
        }
        crate::error::Side::Internal => log::error!("{}", LogLine(e)),
        _ => {}
    }
    let status = e.status();
    let mut extra = String::new();
    if let Some(code) = e.code_line() {
        extra.push_str(&format!("X-Liveweb-Error: {code}\r\n"));
    }
    if let Some(secs) = e.retry_after() {
        extra.push_str(&format!("Retry-After: {secs}\r\n"));
    }
    if let Some(header) = e.extra_header() {
        extra.push_str(&header);
    }
    if matches!(e, Error::LoopDetected(_)) {
        // So a liveweb that sent the request knows its own refusal when it comes back.
        extra.push_str(crate::http::via::via_line());
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
        error: e.code_line(),
        detail: e.code_line().map(|_| e.message()),
        upstream: None,
    }
}

/// A GET or HEAD of an absolute URL.
async fn cache(
    ctx: &Rc<WorkerCtx>,
    req: &RequestHead,
    to: ReplyTo,
    client: std::net::IpAddr,
    capture: crate::warcprox::Capture,
) -> Result<Response, Error> {
    let url = parse_absolute(&req.target)?;
    // warcprox's limits hold before anything is fetched (the numbers are tallied as each
    // capture is archived).
    if !capture.limits.is_empty() || !capture.soft_limits.is_empty() {
        let buckets = capture.stats_buckets_for(&url);
        let stats = &ctx.shared.crawl_stats;
        if let Some(reached) = stats.reached(&buckets, &capture.limits, &capture.soft_limits) {
            return Err(Error::ReachedLimit(Box::new(reached)));
        }
    }
    lookup::lookup_or_fetch(ctx, req, url, to, client, capture).await
}
