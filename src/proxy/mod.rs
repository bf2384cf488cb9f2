//! Where index, fetch and archive meet: decide how one request is answered (hit, miss,
//! coalesced, error) and build the reply. The connection loop only writes what this returns.

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
pub mod router;
pub mod send;
pub mod store;
mod stored_head;
pub mod stored_reply;
pub mod tunnel;
pub mod write_record;

use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

pub use context::{Shared, WorkerCtx};
pub use router::Route;

use crate::archive::ArcFile;
use crate::error::{Error, LogLine};
use crate::fetch::{Tap, TapReader};
use crate::http::cache::Reuse;
use crate::http::reply::{record_head, text_reply, ConnState};
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

/// A text reply for an error that produced no record; logs liveweb's own failures (storage,
/// internal). Upstream failures are logged with their URL where the fetch failed.
pub fn error_response(e: &Error, conn: ConnState, head_only: bool) -> Response {
    if matches!(
        e.side(),
        crate::error::Side::Storage | crate::error::Side::Internal
    ) {
        log::error!("{}", LogLine(e));
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

/// Shapes a record into a reply: the record itself (liveweb mode) or the response it holds
/// (forward mode; an archived failure becomes a plain error reply, and a conditional request
/// the record satisfies gets `304`).
#[allow(clippy::too_many_arguments)]
fn reply_for(
    ctx: &WorkerCtx,
    record: &Arc<StoredRecord>,
    reuse: Option<&Reuse>,
    member: Option<Bytes>,
    file: Option<Arc<ArcFile>>,
    state: RequestState,
    req: &RequestHead,
    to: ReplyTo,
) -> Response {
    // Records in files from another run may be of the other kind than this run writes.
    let gzip = file
        .as_ref()
        .map_or(ctx.shared.config.archive.arc_gzip, |f| f.gzip);
    // A hit contacted no origin (Squid logs `HIER_NONE` for it too).
    let upstream = match state {
        RequestState::Hit => None,
        _ => reuse.and_then(|r| r.fetched_from),
    };
    if to.forward {
        if let Some(code) = record.status.error {
            let s = &record.status;
            let extra = format!("X-Liveweb-Error: {code}\r\nX-Cache: {}\r\n", state.as_str());
            return Response {
                head: text_reply(s.code, &s.reason, &extra, code, to.conn, to.head_only),
                body: Body::None,
                state,
                error: Some(code),
                detail: None,
                upstream,
            };
        }
        // A decoded copy kept from an earlier forward hit skips inflating again.
        let decoded = if gzip {
            ctx.hot.borrow().get_decoded(&record.loc)
        } else {
            None
        };
        let age = matches!(state, RequestState::Hit | RequestState::Revalidated)
            .then(|| record.age(Instant::now()));
        if let Some(head) = not_modified(record, reuse, req, state, age, to) {
            return Response {
                head,
                body: Body::None,
                state,
                error: None,
                detail: None,
                upstream,
            };
        }
        let update = with_capture_metadata(record.updated_fields.clone(), to, || {
            captured_at(record, ctx.shared.config.cache.ttl, state)
        });
        let range = requested_range(req, reuse);
        // The prepared heads are the stored response's own, whole: a record a 304 updated,
        // or a range of one, is shaped from its head as it goes.
        let decoded = decoded.filter(|_| update.is_none() && range.is_none());
        let mut client = client_side(to, state, age, None, update);
        client.range = range;
        let (source, gzip) = match decoded {
            // Stored uncompressed: the head from the template, the body from the file.
            Some(d) if d.spans.is_some() => {
                if let Some((head, body)) = spans_reply(&d, &client, file.as_ref()) {
                    return Response {
                        head,
                        body,
                        state,
                        error: None,
                        detail: None,
                        upstream,
                    };
                }
                (forward_source(record, member, file), gzip)
            }
            Some(d) => {
                // Prepared: the head from the template, the body a slice of the decoded copy.
                let prepared = d
                    .template
                    .as_ref()
                    .and_then(|t| Some((t, t.head_for(&client)?)));
                if let Some((t, f)) = prepared {
                    let body = match f.plan {
                        crate::http::client_head::BodyPlan::None => Body::None,
                        _ => Body::Memory(d.plain.slice(t.body.clone())),
                    };
                    return Response {
                        head: f.head,
                        body,
                        state,
                        error: None,
                        detail: None,
                        upstream,
                    };
                }
                (stored_reply::MemberSource::Memory(d.plain), false)
            }
            None => (forward_source(record, member, file), gzip),
        };
        return Response {
            head: Vec::new(),
            body: Body::Forward {
                source,
                client,
                gzip,
                loc: record.loc,
            },
            state,
            error: None,
            detail: None,
            upstream,
        };
    }
    let content_type = match &file {
        Some(f) => f.content_type,
        None => ctx.shared.config.reply_content_type(),
    };
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
    Response {
        head,
        body,
        state,
        error: record.status.error,
        detail: None,
        upstream,
    }
}

/// A forward-mode miss: the reply streams from the fetch as it arrives.
fn live_response(tap: Rc<Tap>, to: ReplyTo, max_body: u64) -> Response {
    let update = with_capture_metadata(None, to, std::time::SystemTime::now);
    let client = client_side(to, RequestState::Miss, None, Some(max_body), update);
    Response {
        head: Vec::new(),
        body: Body::Live {
            reader: TapReader(tap),
            client,
        },
        state: RequestState::Miss,
        error: None,
        detail: None,
        upstream: None,
    }
}

/// The header fields a forward-mode reply's head takes over the stored ones (`updated`, from
/// 304s), plus warcprox's `Warcprox-Meta: {"capture-metadata":{"timestamp":...}}` when the
/// client asked for it (the time the response was captured, to the second, UTC; asked of
/// `captured` only then).
fn with_capture_metadata(
    updated: Option<Arc<[u8]>>,
    to: ReplyTo,
    captured: impl FnOnce() -> std::time::SystemTime,
) -> Option<Arc<[u8]>> {
    if !to.capture_metadata {
        return updated;
    }
    let at = captured()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let t = crate::clock::UtcTime::from_unix_millis(at);
    let mut fields = updated.map(|u| u.to_vec()).unwrap_or_default();
    fields.extend_from_slice(
        format!(
            "Warcprox-Meta: {{\"capture-metadata\":{{\"timestamp\":\"{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z\"}}}}\r\n",
            t.year, t.month, t.day, t.hour, t.minute, t.second
        )
        .as_bytes(),
    );
    Some(fields.into())
}

/// When a stored record was captured (or last revalidated): its expiry less `--ttl`, for a
/// record that was not just fetched.
fn captured_at(
    record: &StoredRecord,
    ttl: std::time::Duration,
    state: RequestState,
) -> std::time::SystemTime {
    let now = std::time::SystemTime::now();
    if state == RequestState::Miss || state == RequestState::Coalesced {
        return now;
    }
    let left = record.expires_at.saturating_duration_since(Instant::now());
    now.checked_sub(ttl.saturating_sub(left)).unwrap_or(now)
}

/// How a forward-mode reply is shaped for this client.
fn client_side(
    to: ReplyTo,
    state: RequestState,
    age: Option<u64>,
    archive_limit: Option<u64>,
    update: Option<Arc<[u8]>>,
) -> crate::http::client_head::ClientSide {
    crate::http::client_head::ClientSide {
        version: to.conn.version,
        keep_alive: to.conn.keep_alive,
        head_only: to.head_only,
        cache: state.as_str(),
        age,
        archive_limit,
        update,
        range: None,
    }
}

/// The byte range a GET asks of a stored response, if it is to be honoured
/// (`http::range::honoured`).
fn requested_range(
    req: &RequestHead,
    reuse: Option<&Reuse>,
) -> Option<crate::http::range::ByteRange> {
    if req.method != Method::Get {
        return None;
    }
    crate::http::range::honoured(
        req.header("range")?,
        req.header("if-range"),
        reuse.and_then(|r| r.etag.as_deref()),
        reuse.and_then(|r| r.last_modified.as_deref()),
    )
}

/// Where a forward-mode hit reads its record from: memory if at hand, else its file.
/// A forward hit on a record kept as file spans (stored uncompressed): the prepared head and
/// the body as ranges of the ARC file; `None` when the reply cannot be prepared (then the
/// record is decoded from the file as it goes).
fn spans_reply(
    d: &hot::Decoded,
    client: &crate::http::client_head::ClientSide,
    file: Option<&Arc<ArcFile>>,
) -> Option<(Vec<u8>, Body)> {
    let (template, spans, file) = (d.template.as_ref()?, d.spans.as_ref()?, file?);
    let f = template.head_for(client)?;
    let body = match f.plan {
        crate::http::client_head::BodyPlan::None => Body::None,
        _ => {
            let range = template.body.start as u64..template.body.end as u64;
            Body::FileRanges {
                file: file.clone(),
                ranges: crate::archive::stored::file_ranges(spans, range)?,
            }
        }
    };
    Some((f.head, body))
}

fn forward_source(
    record: &StoredRecord,
    member: Option<Bytes>,
    file: Option<Arc<ArcFile>>,
) -> stored_reply::MemberSource {
    match (member, file) {
        (Some(m), _) => stored_reply::MemberSource::Memory(m),
        (None, Some(file)) => stored_reply::MemberSource::File {
            file,
            offset: record.loc.offset,
            len: record.loc.len,
        },
        (None, None) => stored_reply::MemberSource::Memory(Bytes::new()),
    }
}

/// A `304 Not Modified` head when the client's conditional request is satisfied by a stored
/// successful response (RFC 9110 13.2.2), carrying its validators.
fn not_modified(
    record: &StoredRecord,
    reuse: Option<&Reuse>,
    req: &RequestHead,
    state: RequestState,
    age: Option<u64>,
    to: ReplyTo,
) -> Option<Vec<u8>> {
    let reuse = reuse?;
    if !(200..300).contains(&record.status.code) || !reuse.not_modified_for(&req.headers) {
        return None;
    }
    let mut head = format!(
        "HTTP/1.1 304 Not Modified\r\nDate: {}\r\n",
        httpdate::fmt_http_date(std::time::SystemTime::now())
    );
    if let Some(etag) = &reuse.etag {
        head.push_str(&format!("ETag: {etag}\r\n"));
    }
    if let Some(lm) = &reuse.last_modified {
        head.push_str(&format!("Last-Modified: {lm}\r\n"));
    }
    head.push_str(crate::http::via::via_line());
    if let Some(age) = age {
        head.push_str(&format!("Age: {age}\r\n"));
    }
    head.push_str(&format!(
        "X-Cache: {}\r\n{}\r\n",
        state.as_str(),
        to.conn.header()
    ));
    Some(head.into_bytes())
}
