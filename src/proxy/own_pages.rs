//! liveweb's own pages, framed as replies: the admin pages `admin::serve` routes (`/`,
//! health, metrics, status and its JSON) and the CDX query endpoint, which reads the
//! archive on the blocking pool.

use bytes::Bytes;

use super::{Body, ReplyTo, RequestState, Response, WorkerCtx};
use crate::error::Error;
use crate::http::reply::text_reply;
use crate::http::request::{Method, RequestHead};

/// A `200` page, never cached.
fn page(content_type: &str, body: String, to: ReplyTo) -> Response {
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n{}\r\n",
        body.len(),
        to.conn.header()
    );
    Response {
        head: head.into_bytes(),
        body: match to.head_only {
            true => Body::None,
            false => Body::Memory(Bytes::from(body)),
        },
        state: RequestState::Admin,
        error: None,
        detail: None,
        upstream: None,
    }
}

/// `GET /_liveweb/cdx?...`: the archive's index, in pywb's CDX server API.
pub(super) fn is_cdx_query(req: &RequestHead) -> bool {
    let path = req.target.split('?').next().unwrap_or("");
    path == "/_liveweb/cdx" && matches!(req.method, Method::Get | Method::Head)
}

/// Answers a CDX query over the sealed CDX files (read on the blocking pool: positioned reads
/// of the lines that match, never whole files). A bad query is a `400` that says why.
pub(super) async fn cdx_query(
    ctx: &WorkerCtx,
    req: &RequestHead,
    to: ReplyTo,
) -> Result<Response, Error> {
    use crate::archive::cdx_query::{render, search, Query};
    let query = req.target.split_once('?').map_or("", |(_, q)| q);
    let query = Query::parse(query).map_err(Error::BadCdxQuery)?;
    let sealed = ctx.shared.config.archive.data_dir.join("sealed");
    let open = ctx.shared.archive_stats.open_cdx();
    let output = query.output;
    let found = monoio::spawn_blocking(move || search(&sealed, &open, &query))
        .await
        .map_err(|_| Error::Internal("CDX query task was cancelled"))?
        .map_err(|e| Error::Storage(format!("CDX query: {e}")))?;
    let body = render(&found, output);
    let content_type = match output {
        crate::archive::cdx_query::Output::Json => "application/x-ndjson",
        crate::archive::cdx_query::Output::Cdxj => "text/x-cdxj",
    };
    Ok(page(content_type, body, to))
}

pub(super) fn admin(ctx: &WorkerCtx, req: &RequestHead, to: ReplyTo) -> Result<Response, Error> {
    let path = req.target.split('?').next().unwrap_or("");
    let get = matches!(req.method, Method::Get | Method::Head);
    let for_liveweb = path.starts_with("/_liveweb/") || (path == "/" && get);
    if !for_liveweb {
        return Err(Error::AbsoluteUrlRequired);
    }
    if !get {
        return Err(Error::MethodNotAllowed);
    }
    let (status, reason, body) = match crate::admin::serve(path, || ctx.snapshot()) {
        crate::admin::AdminReply::Page { content_type, body } => {
            return Ok(page(content_type, body, to))
        }
        crate::admin::AdminReply::Text {
            status,
            reason,
            body,
        } => (status, reason, body),
    };
    Ok(Response {
        head: text_reply(status, reason, "", body, to.conn, to.head_only),
        body: Body::None,
        state: RequestState::Admin,
        error: None,
        detail: None,
        upstream: None,
    })
}
