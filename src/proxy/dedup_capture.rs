//! Deduplicating one forward-mode WARC capture (`--dedup`): its payload digest looked up in
//! the digest store (`crate::dedup`, on the blocking pool) and, on a match, an
//! identical-payload `revisit` appended in place of the whole response; else the whole
//! response's digest recorded once it is stored.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::context::WorkerCtx;
use super::encode::with_request;
use super::store::{cdx_entry, delivery, Asked};
use crate::archive::cdx::REVISIT_MIME;
use crate::archive::warc;
use crate::archive::{AppendRecord, ArcWriter};
use crate::clock::UtcTime;
use crate::dedup::{DedupStore, Original, Quick};
use crate::error::Error;
use crate::fetch::Fetched;
use crate::http::cache::Reuse;
use crate::http::reply::RecordStatus;
use crate::http::url::TargetUrl;
use crate::index::Delivery;
use crate::warcprox::Capture;

/// Deduplication of one WARC capture by payload digest (`--dedup`): where its digest is
/// looked up and recorded, and what a revisit of it carries.
pub(super) struct Dedup<'a> {
    store: &'a Arc<DedupStore>,
    /// Its dedup buckets (`Capture::lookup_buckets`, `record_buckets`).
    capture: &'a Capture,
    max_age: Option<Duration>,
    /// The response's HTTP head(s), the revisit's block.
    http_head: Vec<u8>,
    /// The request as sent, for the revisit's request record.
    sent: Bytes,
    ip: std::net::IpAddr,
    /// The capture may be archived as a revisit (`Dedup::of`).
    revisits: bool,
}

impl<'a> Dedup<'a> {
    /// For a forward-mode WARC capture whose digest is recorded, and which may become a
    /// revisit: not private (a revisit would name a record only its owner may see), a
    /// payload above the size floor, and either in memory or streamed to its client
    /// already (a revisit holds no body to answer from).
    /// `body_at`: where the body starts in `fetched.raw`.
    pub(super) fn of(
        ctx: &'a WorkerCtx,
        fetched: &Fetched,
        body_at: usize,
        spill: Option<&crate::fetch::spill::Spill>,
        asked: &Asked<'a>,
        private: bool,
    ) -> Option<Dedup<'a>> {
        let store = ctx.shared.dedup.as_ref()?;
        let config = &ctx.shared.config;
        if !asked.forward || private || (spill.is_some() && !asked.streamed) {
            return None;
        }
        let payload = match spill {
            Some(s) => s.len().saturating_sub(body_at as u64),
            None => (fetched.raw.len() - body_at) as u64,
        };
        let text = fetched
            .head
            .content_type
            .as_deref()
            .is_some_and(|t| t.trim_start().to_ascii_lowercase().starts_with("text/"));
        let floor = match text {
            true => config.archive.dedup_min_text_size,
            false => config.archive.dedup_min_binary_size,
        };
        if payload <= floor {
            return None;
        }
        // Only a crawler's capture (its request sent `Warcprox-Meta`) may become a revisit.
        // Other clients' captures are what the forward cache answers from, and a revisit
        // holds no body to answer with: as revisits, a page that did not change would be
        // fetched again on every request once its first copy expired. They are recorded all
        // the same, so a crawler's later capture of the payload can name them.
        let revisits = asked.capture.tallied;
        Some(Dedup {
            store,
            capture: asked.capture,
            max_age: config.archive.dedup_max_age(),
            // The revisit's block: copied only for a capture that may become one.
            http_head: match revisits {
                true => fetched.raw[..body_at].to_vec(),
                false => Vec::new(),
            },
            sent: fetched.request.clone(),
            ip: fetched.ip,
            revisits,
        })
    }

    /// The stored response with this payload digest (the CDX's, base32), if any; a store
    /// that cannot be read means no revisit (logged).
    pub(super) async fn lookup(&self, digest: &str) -> Option<Original> {
        if !self.revisits {
            return None;
        }
        let key = format!("sha1:{digest}");
        let max_age = self.max_age;
        let now = unix_now();
        // A payload never stored before (most of a crawl's), or one met again and again (a
        // site's scripts and images): answered here, no thread hop.
        let buckets = self.capture.lookup_buckets();
        match self.store.quick(&key, &buckets, max_age, now) {
            Quick::Absent => return None,
            Quick::Found(original) => return Some(original),
            Quick::Unknown => {}
        }
        let store = self.store.clone();
        let buckets: Vec<String> = buckets.into_iter().map(str::to_owned).collect();
        let found = monoio::spawn_blocking(move || {
            let buckets: Vec<&str> = buckets.iter().map(String::as_str).collect();
            store.lookup(&key, &buckets, max_age, now)
        })
        .await;
        match found {
            Ok(Ok(found)) => found,
            Ok(Err(e)) => {
                log::error!("dedup store lookup failed, payload stored whole: {e}");
                None
            }
            Err(_) => None,
        }
    }

    /// Notes a response stored whole with this payload digest (base32).
    pub(super) fn record(
        &self,
        url: &TargetUrl,
        date: UtcTime,
        record_id: Option<String>,
        digest: &str,
    ) {
        let Some(record_id) = record_id else { return };
        let buckets = self.capture.record_buckets();
        if buckets.is_empty() {
            return;
        }
        let original = Original {
            url: url.normalized.clone(),
            warc_date: date.warc_date(),
            record_id,
            stored_at: unix_now(),
        };
        self.store
            .put(&format!("sha1:{digest}"), &buckets, &original);
    }

    /// What an identical-payload revisit of this capture is made of.
    pub(super) fn revisit<'r>(
        &'r self,
        url: &'r TargetUrl,
        date: UtcTime,
        original: &Original,
        digest: &str,
        code: u16,
    ) -> Revisit<'r> {
        Revisit {
            url,
            date,
            ip: self.ip,
            refers: warc::RefersTo {
                id: Some(original.record_id.clone()),
                target: original.url.clone(),
                date: original.warc_date.clone(),
                payload_digest: Some(format!("sha1:{digest}")),
            },
            http_head: &self.http_head,
            sent: &self.sent,
            digest: digest.to_owned(),
            status: code,
        }
    }
}

/// An identical-payload revisit about to be written.
pub(super) struct Revisit<'a> {
    url: &'a TargetUrl,
    date: UtcTime,
    ip: std::net::IpAddr,
    refers: warc::RefersTo,
    http_head: &'a [u8],
    sent: &'a Bytes,
    /// The payload digest, base32 (the CDX's).
    digest: String,
    /// The status the CDX gives it: its HTTP head's, as pywb's indexer reads it.
    status: u16,
}

fn unix_now() -> u64 {
    u64::try_from(crate::clock::unix_now()).unwrap_or(0)
}

/// Writes an identical-payload revisit (and the request that got it), indexed as replay
/// tools index revisits (mime `warc/revisit`); its location.
pub(super) async fn archive_identical(
    ctx: &Rc<WorkerCtx>,
    writer: &ArcWriter,
    r: Revisit<'_>,
    private: bool,
) -> Result<crate::archive::RecordLoc, Error> {
    let warcinfo = writer.warcinfo_id();
    let target = warc::Target {
        url: &r.url.normalized,
        ip: Some(r.ip),
        date: &r.date,
        warcinfo: &warcinfo,
    };
    let revisit = warc::revisit_identical_payload(&target, &r.refers, r.http_head);
    let req = warc::request(&target, r.sent, &revisit.id);
    let codec = ctx.shared.config.archive.codec();
    let (member, trailer_len) =
        with_request(codec, private, (&revisit, r.http_head), (&req, r.sent));
    let mut cdx = cdx_entry(
        r.url,
        r.date.arc14(),
        REVISIT_MIME.into(),
        r.status,
        r.digest,
    );
    cdx.private = private;
    ctx.shared.archive_stats.revisit();
    let appended = writer
        .append(AppendRecord {
            member: Bytes::from(member),
            trailer_len,
            cdx,
        })
        .await?;
    Ok(appended.loc)
}

/// What an identical-payload revisit delivers: to the request that fetched it alone.
pub(super) fn revisit_delivery(
    loc: crate::archive::RecordLoc,
    status: RecordStatus,
    ttl: Duration,
    reuse: Reuse,
    fetched: Option<Bytes>,
) -> Delivery {
    Delivery {
        revisit: true,
        ..delivery(loc, status, ttl, reuse, fetched)
    }
}
