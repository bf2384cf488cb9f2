//! warcprox's `WARCPROX_WRITE_RECORD` method: a crawler hands over a record to archive (a
//! screenshot, a thumbnail, crawl metadata) as `WARCPROX_WRITE_RECORD <uri> HTTP/1.1` with
//! `WARC-Type`, `Content-Type` and `Content-Length`; it is written as that WARC record,
//! indexed, and answered `204`. WARC only: an ARC file has no record type to hold it.

use std::rc::Rc;

use bytes::Bytes;

use super::context::WorkerCtx;
use super::{Body, ReplyTo, RequestState, Response};
use crate::archive::cdx::{base32_sha1, surt, CdxEntry};
use crate::archive::format::Format;
use crate::archive::{warc, AppendRecord, ArcWriter};
use crate::clock::UtcTime;
use crate::error::Error;
use crate::http::request::RequestHead;

/// The method's name.
pub const METHOD: &str = "WARCPROX_WRITE_RECORD";

/// The largest record taken (also at most `--max-body`): it is held in memory whole, unlike
/// fetched bodies, and what crawlers send this way (screenshots, thumbnails) is far smaller.
pub const MAX_BODY: u64 = 32 << 20;

/// Writes the record `req` carries (`body`: its content, read whole by the connection).
pub async fn write_record(
    ctx: &Rc<WorkerCtx>,
    writer: &ArcWriter,
    req: &RequestHead,
    body: Option<Vec<u8>>,
    to: ReplyTo,
) -> Result<Response, Error> {
    if ctx.shared.config.archive.format != Format::Warc {
        return Err(Error::WriteRecordNeedsWarc);
    }
    let needs =
        Error::WriteRecordNeeds("WARC-Type, Content-Type and Content-Length request headers");
    let text = |name| {
        req.header(name)
            .and_then(|v| std::str::from_utf8(v).ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let (Some(kind), Some(content_type), Some(block)) =
        (text("warc-type"), text("content-type"), body)
    else {
        return Err(needs);
    };
    if !kind.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(Error::WriteRecordNeeds("a WARC-Type that is one word"));
    }
    let date = UtcTime::now();
    let warcinfo = writer.warcinfo_id();
    let target = warc::Target {
        url: &req.target,
        ip: None,
        date: &date,
        warcinfo: &warcinfo,
    };
    let record = warc::client_record(&target, kind, content_type, &block);
    let member = ctx.shared.config.archive.codec().encode_parts(
        record.head.as_bytes(),
        &block,
        warc::RECORD_END,
    );
    let cdx = CdxEntry {
        urlkey: surt(&req.target),
        date14: date.arc14(),
        url: req.target.clone(),
        mime: content_type
            .split(';')
            .next()
            .unwrap_or(content_type)
            .trim()
            .to_owned(),
        status: 0,
        digest: base32_sha1(&block),
        length: 0,
        offset: 0,
        private: false,
        failure: false,
    };
    writer
        .append(AppendRecord {
            member: Bytes::from(member),
            trailer_len: 0,
            cdx,
        })
        .await?;
    Ok(Response {
        head: format!(
            "HTTP/1.1 204 No Content\r\n{}X-Cache: {}\r\n{}\r\n",
            crate::http::via::via_line(),
            RequestState::Miss.as_str(),
            to.conn.header()
        )
        .into_bytes(),
        body: Body::None,
        state: RequestState::Miss,
        error: None,
        detail: None,
        upstream: None,
    })
}
