//! Turns a fetch result into an archived record: encode the ARC member (large ones on the
//! blocking pool so a worker is not stalled compressing), append it, index it, deliver it.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::context::WorkerCtx;
use crate::archive::record::{encode_member, header_line};
use crate::clock::UtcTime;
use crate::error::Error;
use crate::fetch::{FetchError, Fetched};
use crate::http::reply::RecordStatus;
use crate::http::response::arc_mime;
use crate::http::url::TargetUrl;
use crate::index::{Delivery, Outcome, StoredRecord};

/// Payloads above this are compressed on the blocking pool.
const INLINE_GZIP_LIMIT: usize = 256 * 1024;

/// Archives a complete origin response.
pub async fn store_response(ctx: &Rc<WorkerCtx>, url: &TargetUrl, fetched: Fetched) -> Outcome {
    let mime = arc_mime(fetched.head.content_type.as_deref());
    let header = header_line(
        &url.normalized,
        Some(fetched.ip),
        &UtcTime::now().arc14(),
        &mime,
        fetched.raw.len(),
    );
    let member = encode(header, fetched.raw, ctx.shared.config.gzip_level).await?;
    let status = RecordStatus::new(fetched.head.status, &fetched.head.reason, None);
    append(ctx, member, status, ctx.shared.config.ttl).await
}

/// Archives an upstream failure as a record whose payload is the 502/504 we answer with.
pub async fn store_failure(ctx: &Rc<WorkerCtx>, url: &TargetUrl, failure: FetchError) -> Outcome {
    let status = failure.error.status();
    let code = failure.error.code_line().unwrap_or("E00 upstream failure");
    let payload = failure_payload(status.code, status.reason, code, &failure.error.message());
    let header = header_line(
        &url.normalized,
        failure.ip,
        &UtcTime::now().arc14(),
        "text/plain",
        payload.len(),
    );
    let member = encode(header, payload, ctx.shared.config.gzip_level).await?;
    let status = RecordStatus::new(status.code, status.reason, Some(code));
    append(ctx, member, status, ctx.shared.config.error_ttl).await
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

async fn encode(header: String, payload: Vec<u8>, level: u32) -> Result<Bytes, Error> {
    if payload.len() <= INLINE_GZIP_LIMIT {
        return Ok(Bytes::from(encode_member(&header, &payload, level)));
    }
    monoio::spawn_blocking(move || encode_member(&header, &payload, level))
        .await
        .map(Bytes::from)
        .map_err(|_| Error::Internal("compression task was cancelled"))
}

async fn append(
    ctx: &Rc<WorkerCtx>,
    member: Bytes,
    status: RecordStatus,
    ttl: Duration,
) -> Outcome {
    let loc = ctx.writer.append(member.clone()).await?;
    ctx.hot.borrow_mut().insert(&loc, member.clone());
    let record = Arc::new(StoredRecord {
        loc,
        status,
        expires_at: Instant::now() + ttl,
    });
    Ok(Delivery { record, member })
}
