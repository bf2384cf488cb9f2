//! The fetcher's task: one fetch run to its end whoever waits for it (the slot, the
//! fetch, storing the result or archiving the failure, closing the streaming client's tap),
//! then the index settled and the waiters woken.

use std::net::IpAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use super::{store, stored_head, WorkerCtx};
use crate::clock::UtcTime;
use crate::error::LogLine;
use crate::fetch::Tap;
use crate::http::request::Header;
use crate::http::url::TargetUrl;
use crate::index::{FlightGuard, StoredRecord};
use crate::warcprox::Capture;

/// What a fetch does with its result in the index.
pub(super) enum Settle {
    /// It claimed this key: the result replaces the flight there.
    Claimed(String),
    /// Fetched outside the index: a result shareable with everyone is stored under this key.
    Offer(String),
    /// Fetched for this request alone.
    Alone,
}

/// What one fetch task does.
pub(super) struct FetchJob {
    pub(super) url: TargetUrl,
    /// Who asked (the fair queue's key).
    pub(super) client: IpAddr,
    /// The requesting client's headers (what goes upstream, and whose response it is).
    pub(super) headers: Vec<Header>,
    pub(super) settle: Settle,
    /// Fetched for a forward-mode request: its failures are reported, not archived as
    /// records, and a response it may not share is its client's alone.
    pub(super) forward: bool,
    /// Hands the response on as it arrives (a forward-mode miss).
    pub(super) tap: Option<Rc<Tap>>,
    /// The stored record being revalidated (its validators are sent).
    pub(super) revalidate: Option<Arc<StoredRecord>>,
    /// The URL's invalidation epoch when the fetch started (`Index::epoch`).
    pub(super) epoch: u32,
    /// What the request's `Warcprox-Meta` asked of the capture (its dedup buckets).
    pub(super) capture: Capture,
}

/// The fetcher's task: runs to the end even if the requesting client goes away, so the
/// waiters and the index are always settled.
pub(super) async fn fetch_and_store(ctx: Rc<WorkerCtx>, guard: FlightGuard, job: FetchJob) {
    let FetchJob {
        url,
        client,
        headers,
        settle,
        forward,
        tap,
        revalidate,
        epoch,
        capture,
    } = job;
    // The stored response's validators are in its head, not in the index.
    let revalidate = match revalidate {
        Some(old) => match stored_head::read_stored(&ctx, &old).await {
            Ok(head) => {
                let ttl = ctx.shared.config.cache.ttl;
                let full = stored_head::reuse_of(&old, &head.facts, &headers, ttl);
                Some(store::Revalidating {
                    record: old,
                    full,
                    refers: head.refers,
                })
            }
            Err(e) => {
                log::warn!("{} revalidation: {}", url.normalized, LogLine(&e));
                None
            }
        },
        None => None,
    };
    let validators = revalidate
        .as_ref()
        .map(|r| r.full.validators())
        .unwrap_or_default();
    let tap_for_end = tap.clone();
    let origin = format!("{}:{}", url.host, url.port);
    // An origin that just could not be reached fails at once, without waiting for a slot.
    let remembered = ctx
        .shared
        .bad_hosts
        .recent(&crate::fetch::BadHosts::key(&url));
    let permit = match remembered {
        // No connection is made this time: the record names no address.
        Some(fe) => Err(crate::fetch::FetchError {
            error: fe.error,
            ip: None,
        }),
        None => ctx
            .shared
            .sched
            .acquire(client, &origin)
            .await
            .map_err(|e| crate::fetch::FetchError { error: e, ip: None }),
    };
    let began = UtcTime::now();
    let mut took = std::time::Duration::ZERO;
    let fetched = match permit {
        Ok(_slot) => {
            let started = Instant::now();
            let fetched =
                crate::fetch::fetch(ctx.upstream(), &url, &headers, &validators, tap).await;
            took = started.elapsed();
            ctx.counters().fetch(took.as_micros() as u64);
            fetched
        }
        Err(fe) => {
            if let Some(tap) = &tap {
                tap.close(Err(fe.error.clone()));
            }
            Err(fe)
        }
    };
    // Records go to the capture's warc-prefix files, if it named one.
    let writer = ctx.writer_for(capture.warc_prefix.as_deref());
    let fetched_status = fetched.as_ref().ok().map(|f| f.head.status);
    // Bytes received from the origin, heads included (warcprox's wire_bytes).
    let wire_bytes = fetched.as_ref().ok().map_or(0, |f| {
        f.spill.as_ref().map_or(f.raw.len() as u64, |s| s.len())
    });
    let outcome = match (fetched, &revalidate) {
        (Ok(f), Some(old)) if f.head.status == 304 => {
            store::store_revalidation(&ctx, &writer, &url, f, &headers, old, forward).await
        }
        (Ok(f), _) => {
            let asked = store::Asked {
                request: &headers,
                forward,
                streamed: tap_for_end.is_some(),
                capture: &capture,
                writer: &writer,
            };
            store::store_response(&ctx, &url, f, asked).await
        }
        (Err(fe), _) if !forward && fe.error.is_archived_failure() => {
            log::warn!("{} {} (archived)", url.normalized, LogLine(&fe.error));
            store::store_failure(&ctx, &writer, &url, fe).await
        }
        (Err(fe), _) => {
            // Logged once here, whoever waited on the fetch; refusals of liveweb's own
            // (busy) are counted, not logged.
            if fe.error.side() == crate::error::Side::Upstream {
                log::warn!("{} {}", url.normalized, LogLine(&fe.error));
            }
            Err(fe.error)
        }
    };
    // Counted before the reply completes, so the next request sees it against its limits.
    if capture.tallied {
        use crate::crawl_stats::Kind;
        let kind = match &outcome {
            Ok(d) if d.revisit => Kind::Revisit,
            Ok(d) if d.archived.is_some() => Kind::New,
            _ => Kind::Other,
        };
        let buckets = capture.stats_buckets_for(&url);
        ctx.shared.crawl_stats.tally(&buckets, kind, wire_bytes);
    }
    if let Some(log) = ctx.shared.crawl_log.get() {
        let fetch = FetchFacts {
            url: &url,
            headers: &headers,
            capture: &capture,
            status: fetched_status,
            began,
            took,
        };
        log_capture(&ctx, log, &fetch, &outcome);
    }
    // The streaming client gets its last bytes only now that the record is written (and
    // durable under --fsync always): a reply that completed is never lost, even to kill -9.
    if let Some(tap) = &tap_for_end {
        tap.close(match &outcome {
            Ok(_) => Ok(()),
            Err(e) => Err(e.clone()),
        });
    }
    // A revisit holds no body: nothing of it is indexed.
    let record = outcome
        .as_ref()
        .ok()
        .filter(|d| !d.revisit)
        .map(|d| d.record.clone());
    let index = &ctx.shared.index;
    let shareable = record.as_ref().filter(|r| r.facts.shareable()).cloned();
    let key = match settle {
        Settle::Claimed(key) => {
            index.settle_unless_invalidated(&key, &guard.0, record, &url.normalized, epoch);
            Some(key)
        }
        Settle::Offer(key) => {
            if let Some(record) = &shareable {
                index.offer_unless_invalidated(&key, &url.normalized, epoch, record.clone());
            }
            Some(key)
        }
        Settle::Alone => None,
    };
    // The URL's Vary names are learnt only now that the record is settled: learnt earlier,
    // a repeat would look under its variant key, miss this fetch still in flight, and fetch
    // again.
    let vary = outcome
        .as_ref()
        .ok()
        .and_then(|d| d.reuse.as_ref()?.vary.as_ref());
    if let Some(vary) = vary {
        let names: Vec<&str> = vary.iter().map(|(name, _)| &**name).collect();
        index.learn_vary(&url.normalized, &names);
    }
    // A response that says Vary, fetched before the URL's Vary was known, is also stored
    // under its own variant's key, so the next request like this one is a hit.
    let varies = |r: &Arc<StoredRecord>| r.facts.varies();
    if let (Some(key), Some(record)) = (key, shareable.filter(varies)) {
        if let Some(variant) = index.variant_key(&url.normalized, &headers) {
            if variant != key {
                // A copy: each stored entry is confirmed on its own, and the record already
                // answers under `key`.
                let copy = Arc::new(StoredRecord::clone(&record));
                index.offer_unless_invalidated(&variant, &url.normalized, epoch, copy);
            }
        }
    }
    guard.0.complete(outcome);
}

/// What the crawl log says of a fetch besides its outcome.
struct FetchFacts<'a> {
    url: &'a TargetUrl,
    headers: &'a [Header],
    capture: &'a Capture,
    /// The origin's status, when it answered.
    status: Option<u16>,
    began: UtcTime,
    took: std::time::Duration,
}

/// The crawl-log line of a fetch: what was archived for it, or why it failed.
fn log_capture(
    ctx: &WorkerCtx,
    log: &crate::crawl_log::CrawlLog,
    f: &FetchFacts<'_>,
    outcome: &crate::index::Outcome,
) {
    use crate::crawl_log::{failure_status, line, Entry};
    let referer = f
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("referer"))
        .and_then(|h| std::str::from_utf8(&h.value).ok());
    let url = f.url.normalized.as_str();
    let (hop_path, via) = f.capture.crawl.hop_and_via(url, referer);
    let archived = outcome.as_ref().ok().and_then(|d| d.archived.clone());
    let file = outcome.as_ref().ok().and_then(|d| {
        let path = ctx.shared.files.get(d.record.loc.file_id)?.path.clone();
        let name = path.file_name()?.to_string_lossy().into_owned();
        let name = crate::archive::record::sealed_name(&name).to_string();
        Some((name, d.record.loc.offset))
    });
    let (status, exception) = match outcome {
        Ok(d) => match d.record.status.error {
            // An archived failure (liveweb mode).
            Some(code) => (failure_status(code), Some(code.to_string())),
            None => (i32::from(f.status.unwrap_or(d.record.status.code)), None),
        },
        Err(e) => {
            let code = e.code_line().unwrap_or("E00");
            (failure_status(code), Some(e.message()))
        }
    };
    let entry = Entry {
        status,
        size: archived.as_ref().map_or(0, |a| a.payload_len),
        url,
        hop_path: &hop_path,
        via: &via,
        mime: archived.as_ref().map_or("", |a| a.mime.as_str()),
        began: f.began,
        took_ms: f.took.as_millis() as u64,
        digest: archived.as_ref().map_or("-", |a| a.digest.as_str()),
        seed: f.capture.crawl.seed.as_deref().unwrap_or("-"),
        duplicate: outcome.as_ref().is_ok_and(|d| d.revisit),
        warc: match (&archived, &file) {
            (Some(_), Some((name, offset))) => Some((name.as_str(), *offset)),
            _ => None,
        },
        exception: exception.as_deref(),
    };
    log.log(
        f.capture.warc_prefix.as_deref(),
        line(UtcTime::now(), &entry),
    );
}
