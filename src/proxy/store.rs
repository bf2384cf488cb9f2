//! Turns a fetch result into an archived record: draft it (encoded by `super::encode`, large
//! ones on the blocking pool so a worker is not stalled compressing), append it with its CDX
//! line, index it, deliver it.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

use super::context::WorkerCtx;
use super::dedup_capture::{archive_identical, revisit_delivery, Dedup};
use super::encode::{encode, encode_spilled, with_request, Draft};
use crate::archive::cdx::{
    payload_content_type, payload_status, surt, warc_mime, CdxEntry, FAILURE_MIME, REVISIT_MIME,
};
use crate::archive::format::Format;
use crate::archive::payload_digest::body_of;
use crate::archive::record::header_line;
use crate::archive::warc;
use crate::archive::writer::AppendFileRecord;
use crate::archive::{AppendRecord, ArcWriter};
use crate::clock::UtcTime;
use crate::error::Error;
use crate::fetch::{FetchError, Fetched};
use crate::http::cache::{response_facts, reuse_for, ResponseFacts, Reuse};
use crate::http::reply::RecordStatus;
use crate::http::request::Header;
use crate::http::response::arc_mime;
use crate::http::url::TargetUrl;
use crate::index::{Archived, Delivery, Outcome, StoredRecord};
use crate::warcprox::Capture;

/// Who a response was fetched for.
pub struct Asked<'a> {
    /// The request's headers: they decide who may reuse the response.
    pub request: &'a [Header],
    /// A forward-mode request.
    pub forward: bool,
    /// Its client streamed the response as it arrived (a forward-mode miss's tap).
    pub streamed: bool,
    /// What its `Warcprox-Meta` asked of the capture.
    pub capture: &'a Capture,
    /// Where its records go (`WorkerCtx::writer_for` its `warc-prefix`).
    pub writer: &'a ArcWriter,
}

/// Archives a complete origin response.
pub async fn store_response(
    ctx: &Rc<WorkerCtx>,
    url: &TargetUrl,
    fetched: Fetched,
    asked: Asked<'_>,
) -> Outcome {
    let facts = response_facts(fetched.final_head());
    archive_response(ctx, url, fetched, &facts, asked).await
}

/// `store_response` with the response's cache facts already read.
async fn archive_response(
    ctx: &Rc<WorkerCtx>,
    url: &TargetUrl,
    mut fetched: Fetched,
    facts: &ResponseFacts,
    asked: Asked<'_>,
) -> Outcome {
    let (request, forward, writer) = (asked.request, asked.forward, asked.writer);
    // What the record holds is told only to the crawl log and warcprox's tallies.
    let want_facts = ctx.shared.crawl_log.get().is_some() || asked.capture.tallied;
    let config = &ctx.shared.config;
    let spill = fetched.spill.take();
    let mut reuse = reuse_for(
        fetched.head.status,
        facts,
        request,
        SystemTime::now(),
        config.cache.ttl,
    );
    reuse.forward_private = forward && !reuse.shareable;
    reuse.fetched_from = Some(fetched.ip);
    // A record fetched with credentials is marked private in the archive itself, so a
    // restart never makes it answer someone else.
    let private = reuse.credentialed || reuse.forward_private;
    let (body_at, _) = body_of(&fetched.raw);
    let dedup = Dedup::of(ctx, &fetched, body_at, spill.as_ref(), &asked, private);
    // The payload's bytes as received (chunk framing included, as warcprox counts them).
    let payload_len = spill.as_ref().map_or(fetched.raw.len() as u64, |s| s.len()) - body_at as u64;
    let content_type = fetched.head.content_type.as_deref();
    // The CDX says what pywb's indexer would: the ARC header's field, or for WARC the
    // response's own Content-Type.
    let (mime, cdx_mime) = match config.archive.format {
        Format::Arc => {
            let mime = arc_mime(content_type);
            (mime.clone(), mime)
        }
        // Read from the bytes as received, as a reindex (and pywb) reads it back.
        Format::Warc => (
            String::new(),
            warc_mime(payload_content_type(&fetched.raw).as_deref()),
        ),
    };
    let date = UtcTime::now();
    let status = RecordStatus::new(fetched.head.status, &fetched.head.reason, None);
    // The CDX says what archive tools read back: the first status line, an interim 1xx's if
    // the origin sent one (the reply and the index entry use the final status).
    let code = payload_status(&fetched.raw);
    let draft = match config.archive.format {
        Format::Arc => Draft::Arc {
            header: header_line(
                &url.normalized,
                Some(fetched.ip),
                &date.arc14(),
                &mime,
                spill
                    .as_ref()
                    .map_or(fetched.raw.len(), |s| s.len() as usize),
            ),
            payload: fetched.raw,
        },
        Format::Warc => Draft::Exchange {
            url: url.normalized.clone(),
            ip: fetched.ip,
            date,
            response: fetched.raw,
            request: fetched.request,
            warcinfo: writer.warcinfo_id().to_string(),
        },
    };
    if let Some(spill) = spill {
        let member = encode_spilled(ctx, draft, spill, private).await?;
        if let Some(dedup) = &dedup {
            if let Some(original) = dedup.lookup(&member.digest).await {
                let revisit = dedup.revisit(url, date, &original, &member.digest, code);
                let loc = archive_identical(ctx, writer, revisit, private).await?;
                let d = revisit_delivery(loc, status, config.cache.ttl, reuse, None);
                let facts = archived(want_facts, &member.digest, &cdx_mime, payload_len);
                return Ok(Delivery {
                    archived: facts,
                    ..d
                });
            }
        }
        let record_id = member.record_id.clone();
        let digest = member.digest.clone();
        let facts = archived(want_facts, &digest, &cdx_mime, payload_len);
        let mut cdx = cdx_entry(url, date.arc14(), cdx_mime, code, member.digest.clone());
        cdx.private = private;
        let stored = append_file(
            writer,
            AppendFileRecord { member, cdx },
            status,
            config.cache.ttl,
            reuse,
        )
        .await?;
        if let Some(dedup) = dedup {
            dedup.record(url, date, record_id, &digest);
        }
        return Ok(Delivery {
            archived: facts,
            ..stored
        });
    }
    let encoded = encode(draft, config.archive.codec(), private).await?;
    if let Some(dedup) = &dedup {
        if let Some(original) = dedup.lookup(&encoded.digest).await {
            let revisit = dedup.revisit(url, date, &original, &encoded.digest, code);
            let loc = archive_identical(ctx, writer, revisit, private).await?;
            // The response as fetched, for this request's reply: never written.
            let whole = encoded.member.len() - encoded.trailer_len;
            let fetched = encoded.member.slice(..whole);
            let d = revisit_delivery(loc, status, config.cache.ttl, reuse, Some(fetched));
            let facts = archived(want_facts, &encoded.digest, &cdx_mime, payload_len);
            return Ok(Delivery {
                archived: facts,
                ..d
            });
        }
    }
    let (record_id, digest) = (encoded.record_id.clone(), encoded.digest.clone());
    let facts = archived(want_facts, &digest, &cdx_mime, payload_len);
    let mut cdx = cdx_entry(url, date.arc14(), cdx_mime, code, encoded.digest);
    cdx.private = private;
    let record = AppendRecord {
        member: encoded.member,
        trailer_len: encoded.trailer_len,
        cdx,
    };
    let stored = append(writer, record, status, config.cache.ttl, reuse).await?;
    if let Some(dedup) = dedup {
        dedup.record(url, date, record_id, &digest);
    }
    Ok(Delivery {
        archived: facts,
        ..stored
    })
}

/// What a record holds (the payload digest given in the CDX's base32), when `wanted`.
fn archived(wanted: bool, digest: &str, mime: &str, payload_len: u64) -> Option<Arc<Archived>> {
    wanted.then(|| {
        Arc::new(Archived {
            digest: format!("sha1:{digest}"),
            mime: mime.to_string(),
            payload_len,
        })
    })
}

/// A stored record being revalidated, with what its head says (read before the conditional
/// request: its validators go in it).
pub struct Revalidating {
    pub record: Arc<StoredRecord>,
    /// Its reuse rules in full.
    pub full: Reuse,
    /// For a WARC record, what a revisit of it names.
    pub refers: Option<crate::archive::warc::RefersTo>,
}

/// A `304` answer to a revalidation: the stored record it confirmed answers again, with
/// freshness from the 304 (RFC 9111 4.3.4). In WARC the exchange is archived as a `revisit`
/// record (profile server-not-modified) naming that record, so replay tools show the stored
/// response for it; an ARC file has no such record and gets none: the stored response stays
/// the capture, and the index keeps pointing at it.
pub async fn store_revalidation(
    ctx: &Rc<WorkerCtx>,
    writer: &ArcWriter,
    url: &TargetUrl,
    fetched: Fetched,
    request: &[Header],
    old: &Revalidating,
    forward: bool,
) -> Outcome {
    let confirmed = &old.record;
    let facts = response_facts(fetched.final_head());
    let status = fetched.head.status;
    let fetched_from = Some(fetched.ip);
    let earlier = confirmed.updated_fields.as_deref();
    let updated_fields = crate::http::client_head::update_fields(fetched.final_head(), earlier);
    let private = old.full.credentialed || old.full.forward_private;
    if ctx.shared.config.archive.format == Format::Warc {
        match &old.refers {
            Some(refers) => archive_revisit(ctx, writer, url, fetched, refers, private).await?,
            // A stored record that is not WARC (an older run's ARC file): kept as the
            // exchange it is.
            None => {
                let capture = Capture::default();
                let asked = Asked {
                    request,
                    forward,
                    streamed: false,
                    capture: &capture,
                    writer,
                };
                archive_response(ctx, url, fetched, &facts, asked).await?;
            }
        }
    }
    let ttl = ctx.shared.config.cache.ttl;
    let refreshed = old
        .full
        .refreshed(status, &facts, request, SystemTime::now(), ttl);
    let reuse = Reuse {
        fetched_from,
        updated_fields,
        ..refreshed
    };
    let now = Instant::now();
    let record = StoredRecord::stored(
        confirmed.loc,
        confirmed.status.clone(),
        now,
        now + ttl,
        Some(&reuse),
    );
    let member = ctx.hot.borrow().get(&record.loc);
    Ok(Delivery {
        record: Arc::new(record),
        member,
        reuse: Some(Arc::new(reuse)),
        revisit: false,
        archived: None,
    })
}

/// Archives a `304` answer as a WARC `revisit` record (and the request that got it), indexed
/// as replay tools index revisits: mime `warc/revisit`, the stored response's digest.
async fn archive_revisit(
    ctx: &Rc<WorkerCtx>,
    writer: &ArcWriter,
    url: &TargetUrl,
    fetched: Fetched,
    refers: &crate::archive::warc::RefersTo,
    private: bool,
) -> Result<(), Error> {
    let date = UtcTime::now();
    let warcinfo = writer.warcinfo_id();
    let target = warc::Target {
        url: &url.normalized,
        ip: Some(fetched.ip),
        date: &date,
        warcinfo: &warcinfo,
    };
    let revisit = warc::revisit_not_modified(&target, refers);
    let req = warc::request(&target, &fetched.request, &revisit.id);
    let codec = ctx.shared.config.archive.codec();
    let (member, trailer_len) =
        with_request(codec, private, (&revisit, b""), (&req, &fetched.request));
    let digest = refers
        .payload_digest
        .as_deref()
        .map(|d| d.trim_start_matches("sha1:").to_owned())
        .unwrap_or_else(|| "-".into());
    let mut cdx = cdx_entry(url, date.arc14(), REVISIT_MIME.into(), 304, digest);
    cdx.private = private;
    writer
        .append(AppendRecord {
            member: Bytes::from(member),
            trailer_len,
            cdx,
        })
        .await?;
    Ok(())
}

/// Appends a record whose member is in a file; it is not kept in memory for the reply
/// (replies read it from the archive, as hits do).
async fn append_file(
    writer: &ArcWriter,
    record: AppendFileRecord,
    status: RecordStatus,
    ttl: Duration,
    reuse: Reuse,
) -> Outcome {
    let appended = writer.append_file(record).await?;
    Ok(delivery(appended.loc, status, ttl, reuse, None))
}

/// Archives an upstream failure as a record whose payload is the 502/504 we answer with.
pub async fn store_failure(
    ctx: &Rc<WorkerCtx>,
    writer: &ArcWriter,
    url: &TargetUrl,
    failure: FetchError,
) -> Outcome {
    let status = failure.error.status();
    let code = failure.error.code_line().unwrap_or("E00 upstream failure");
    let payload = failure_payload(status.code, status.reason, code, &failure.error.message());
    let date = UtcTime::now();
    let config = &ctx.shared.config;
    let draft = match config.archive.format {
        Format::Arc => Draft::Arc {
            header: header_line(
                &url.normalized,
                failure.ip,
                &date.arc14(),
                FAILURE_MIME,
                payload.len(),
            ),
            payload,
        },
        Format::Warc => Draft::Failure {
            url: url.normalized.clone(),
            ip: failure.ip,
            date,
            warcinfo: writer.warcinfo_id().to_string(),
            fields: warc::failure_fields(
                code,
                status.code,
                status.reason,
                &failure.error.message(),
            ),
            code,
        },
    };
    let encoded = encode(draft, config.archive.codec(), false).await?;
    let mut cdx = cdx_entry(
        url,
        date.arc14(),
        FAILURE_MIME.into(),
        status.code,
        encoded.digest,
    );
    cdx.failure = true;
    let mut status = RecordStatus::new(status.code, status.reason, Some(code));
    status.detail = Some(failure.error.message().into());
    let error_ttl = ctx.shared.config.cache.error_ttl;
    // Not the origin's answer: shared by everyone asking for the URL within --error-ttl.
    let reuse = Reuse {
        shareable: true,
        credentialed: false,
        forward_private: false,
        lifetime: error_ttl.as_secs(),
        heuristic: false,
        initial_age: 0,
        validate_always: false,
        etag: None,
        last_modified: None,
        vary: None,
        fetched_from: failure.ip,
        updated_fields: None,
    };
    let record = AppendRecord {
        member: encoded.member,
        trailer_len: encoded.trailer_len,
        cdx,
    };
    append(writer, record, status, error_ttl, reuse).await
}

/// The minimal HTTP response archived for a failure.
pub fn failure_payload(status: u16, reason: &str, code: &str, message: &str) -> Vec<u8> {
    let body = format!("{message}\n");
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nX-Liveweb-Error: {code}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The index line, less offset and length (the writer knows those).
pub(super) fn cdx_entry(
    url: &TargetUrl,
    date14: String,
    mime: String,
    status: u16,
    digest: String,
) -> CdxEntry {
    CdxEntry {
        urlkey: surt(&url.normalized),
        date14,
        url: url.normalized.clone(),
        mime,
        status,
        digest,
        length: 0,
        offset: 0,
        private: false,
        failure: false,
    }
}

async fn append(
    writer: &ArcWriter,
    record: AppendRecord,
    status: RecordStatus,
    ttl: Duration,
    reuse: Reuse,
) -> Outcome {
    let member = record.member.clone();
    let appended = writer.append(record).await?;
    let (loc, member) = (appended.loc, appended.padded.unwrap_or(member));
    // The record alone, without the records written after it. It is not kept in the hot
    // shard yet: only a second request for it puts it there (docs/architecture.md, "Hits").
    let member = member.slice(..(loc.len as usize).min(member.len()));
    Ok(delivery(loc, status, ttl, reuse, Some(member)))
}

/// What a fetch delivers for a record just written at `loc`: its index entry, with its reuse
/// rules in full for the requests that waited on it.
pub(super) fn delivery(
    loc: crate::archive::RecordLoc,
    status: RecordStatus,
    ttl: Duration,
    reuse: Reuse,
    member: Option<Bytes>,
) -> Delivery {
    let now = Instant::now();
    let record = StoredRecord::stored(loc, status, now, now + ttl, Some(&reuse));
    Delivery {
        record: Arc::new(record),
        member,
        reuse: Some(Arc::new(reuse)),
        revisit: false,
        archived: None,
    }
}
