//! Builds the reply for a request answered from a record (liveweb mode: the record itself;
//! forward mode: the response it holds, or a `304`, a range, a plain error reply) or, for a
//! forward-mode miss, from the live fetch as it arrives.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::{hot, stored_reply, Body, ReplyTo, RequestState, Response, WorkerCtx};
use crate::archive::ArcFile;
use crate::fetch::{Tap, TapReader};
use crate::http::cache::Reuse;
use crate::http::reply::{record_head, text_reply, RecordStatus};
use crate::http::request::{Method, RequestHead};
use crate::index::StoredRecord;

/// Shapes a record into a reply: the record itself (liveweb mode) or the response it holds
/// (forward mode; an archived failure becomes a plain error reply, and a conditional request
/// the record satisfies gets `304`).
#[allow(clippy::too_many_arguments)]
pub(super) fn reply_for(
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
                detail: failure_detail(s, state),
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
        None => ctx.shared.config.archive.reply_content_type(),
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
        detail: record
            .status
            .error
            .and_then(|_| failure_detail(&record.status, state)),
        upstream,
    }
}

/// What the operator's recent errors say of a reply from a stored failure: what went wrong,
/// when this request's fetch (or the one it joined) failed; that it was the stored failure
/// of an earlier fetch, when it is reused.
fn failure_detail(status: &RecordStatus, state: RequestState) -> Option<String> {
    let code = status.error?;
    Some(match (&status.detail, state) {
        (Some(detail), _) => detail.to_string(),
        (None, RequestState::Hit) => {
            format!("{code}: the stored failure of an earlier fetch, reused within --error-ttl")
        }
        (None, _) => code.to_string(),
    })
}

/// A forward-mode miss: the reply streams from the fetch as it arrives.
pub(super) fn live_response(tap: Rc<Tap>, to: ReplyTo, max_body: u64) -> Response {
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

/// Where a forward-mode hit reads its record from: memory if at hand, else its file.
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
