//! The shared-cache decision for one request: answer from a stored record, wait for a fetch
//! in flight, revalidate a stale record, or fetch. Forward mode follows RFC 9111 for reuse
//! (who may get a stored response, for how long, which variant); liveweb mode keeps its
//! fixed `--ttl`, except that credentialed requests keep their exchanges to themselves.

use std::cell::Cell;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use super::cache_view::{CacheView, Plan};
use super::fetcher::{fetch_and_store, FetchJob, Settle};
use super::reply::{live_response, reply_for};
use super::{stored_head, ReplyTo, RequestState, Response, WorkerCtx};
use crate::error::{Error, LogLine};
use crate::fetch::Tap;
use crate::http::cache::Reuse;
use crate::http::reply::text_reply;
use crate::http::request::RequestHead;
use crate::http::url::TargetUrl;
use crate::index::{Flight, FlightGuard, Lookup, Outcome, StoredRecord};
use crate::warcprox::Capture;

/// Hit, coalesce, revalidate or become the fetcher. Bounded: a claim can only lose to a
/// concurrent change, which resolves on the next look.
pub(super) async fn lookup_or_fetch(
    ctx: &Rc<WorkerCtx>,
    req: &RequestHead,
    url: TargetUrl,
    to: ReplyTo,
    client: IpAddr,
    capture: Capture,
) -> Result<Response, Error> {
    let index = &ctx.shared.index;
    let view = CacheView::of(req, to.forward, ctx.shared.config.cache.isolate_credentials);
    let key = if to.forward {
        index.variant_key(&url.normalized, &req.headers)
    } else {
        None
    }
    .unwrap_or_else(|| url.normalized.clone());
    let respond_async = match view.plan() {
        Plan::NotCached => return Err(Error::NotCached),
        Plan::Alone { offer } => {
            check_archiving(ctx)?;
            let settle = match offer {
                true => Settle::Offer(key),
                false => Settle::Alone,
            };
            return fetch_alone(ctx, req, url, to, client, settle, capture, None).await;
        }
        Plan::Shared { respond_async } => respond_async,
    };
    // A record whose ARC file was handed off and deleted is fetched again like a stale one.
    let gone = Cell::new(false);
    // Nor is it revalidated: a 304 would confirm a response nobody can read any more (and a
    // stale record refreshed that way would fail every request for its URL).
    let readable = |r: &StoredRecord| {
        ctx.shared.files.get(r.loc.file_id).is_some() || ctx.hot.borrow().get(&r.loc).is_some()
    };
    let usable = |r: &StoredRecord| !gone.get() && view.usable(r, Instant::now());
    for _ in 0..8 {
        let found = index.lookup(&key, usable);
        // A record restored from disk answers forward requests once its facts are read.
        if matches!(found, Lookup::Absent) && to.forward && learn_restored_facts(ctx, &key).await {
            continue;
        }
        let lookup = match found {
            Lookup::Absent if req.only_if_cached => return Err(Error::NotCached),
            Lookup::Absent => {
                check_archiving(ctx)?;
                match index.claim(&key, usable) {
                    Ok(claim) => {
                        let revalidate = claim.previous.filter(|p| {
                            !gone.get() && view.revalidates(p, Instant::now()) && readable(p)
                        });
                        let claimed = Claimed {
                            flight: claim.flight,
                            settle: Settle::Claimed(key),
                            revalidate,
                        };
                        if respond_async {
                            let job = JobFor {
                                client,
                                forward: to.forward,
                                capture,
                            };
                            start_fetch(ctx, req, url, claimed, None, job);
                            return Ok(accepted(ctx, to));
                        }
                        return fetch(ctx, req, url, to, client, claimed, capture).await;
                    }
                    Err(other) => other,
                }
            }
            found => found,
        };
        match lookup {
            Lookup::Hit(record) => {
                match stored(ctx, record, None, RequestState::Hit, req, to).await {
                    Some(resp) => return Ok(resp),
                    None => gone.set(true),
                }
            }
            Lookup::Wait(_) if respond_async => return Ok(accepted(ctx, to)),
            Lookup::Wait(flight) => {
                match flight.wait().await {
                    // The response is not for this request (private, another variant, or
                    // to be validated before any reuse): fetch its own.
                    Ok(d) if !view.accepts_delivery(&d) => {
                        if req.only_if_cached {
                            return Err(Error::NotCached);
                        }
                        // A record to be validated before each reuse (or fresh for no time)
                        // is validated again for this request, with a conditional request,
                        // not fetched whole: requests arriving together for such a page
                        // would each fetch, and archive, all of it.
                        let revalidate = Some(d.record.clone()).filter(|r| {
                            !d.revisit
                                && view.revalidates(r, Instant::now())
                                && readable(r)
                                && d.reuse.as_ref().map_or(!r.facts.varies(), |reuse| {
                                    reuse.shareable && reuse.matches_variant(&req.headers)
                                })
                        });
                        let settle = Settle::Alone;
                        return fetch_alone(ctx, req, url, to, client, settle, capture, revalidate)
                            .await;
                    }
                    outcome => {
                        match delivered(ctx, outcome, RequestState::Coalesced, req, to).await {
                            // The record a 304 confirmed went away meanwhile (handed off and
                            // deleted): look again, and fetch it whole.
                            Err(Error::Internal(REVALIDATED_FILE_GONE)) => gone.set(true),
                            answered => return answered,
                        }
                    }
                }
            }
            Lookup::Absent => continue,
        }
    }
    Err(Error::Internal("index kept changing under the request"))
}

/// Misses are refused without contacting the origin while archiving is paused (disk full).
fn check_archiving(ctx: &WorkerCtx) -> Result<(), Error> {
    if ctx.writer.is_paused() {
        return Err(Error::Storage("disk full, archiving paused".into()));
    }
    Ok(())
}

/// A fetch outside the index's coalescing (its own flight, nobody else waits on it), of the
/// whole response or, given a stored record, a revalidation of it.
#[allow(clippy::too_many_arguments)]
async fn fetch_alone(
    ctx: &Rc<WorkerCtx>,
    req: &RequestHead,
    url: TargetUrl,
    to: ReplyTo,
    client: IpAddr,
    settle: Settle,
    capture: Capture,
    revalidate: Option<Arc<StoredRecord>>,
) -> Result<Response, Error> {
    let claimed = Claimed {
        flight: Arc::new(Flight::new()),
        settle,
        revalidate,
    };
    fetch(ctx, req, url, to, client, claimed, capture).await
}

/// The fetch a request is to run: its flight (others may wait on it), what it does with its
/// result, and the stored record it revalidates, if any.
struct Claimed {
    flight: Arc<Flight>,
    settle: Settle,
    revalidate: Option<Arc<StoredRecord>>,
}

/// Starts the fetch as its own task and answers this request from it: streamed as it arrives
/// (a forward-mode GET that is not a revalidation), or once it is stored.
async fn fetch(
    ctx: &Rc<WorkerCtx>,
    req: &RequestHead,
    url: TargetUrl,
    to: ReplyTo,
    client: IpAddr,
    claimed: Claimed,
    capture: Capture,
) -> Result<Response, Error> {
    let Claimed {
        flight,
        settle,
        revalidate,
    } = claimed;
    // A forward-mode GET streams the response while it is being fetched; a revalidation's
    // answer may be a 304 meant for liveweb, so that client waits for the stored record.
    let tap = (to.forward && !to.head_only && revalidate.is_none()).then(Tap::new);
    let claimed = Claimed {
        flight: flight.clone(),
        settle,
        revalidate: revalidate.clone(),
    };
    // A revalidation may confirm a record whose file goes away meanwhile: then it is
    // fetched whole after all.
    let again = revalidate.is_some().then(|| (url.clone(), capture.clone()));
    let job = JobFor {
        client,
        forward: to.forward,
        capture,
    };
    start_fetch(ctx, req, url, claimed, tap.clone(), job);
    if let Some(tap) = tap {
        return Ok(live_response(tap, to, ctx.shared.config.fetch.max_body));
    }
    let outcome = flight.wait().await;
    let state = match (&revalidate, &outcome) {
        (Some(old), Ok(d)) if d.record.loc == old.loc => RequestState::Revalidated,
        _ => RequestState::Miss,
    };
    match (delivered(ctx, outcome, state, req, to).await, again) {
        (Err(Error::Internal(REVALIDATED_FILE_GONE)), Some((url, capture))) => {
            let whole = fetch_alone(ctx, req, url, to, client, Settle::Alone, capture, None);
            Box::pin(whole).await
        }
        (answered, _) => answered,
    }
}

/// Who a fetch is for: the client (the fair queue's key), whether in forward mode (its
/// failures are reported, not archived), and what its `Warcprox-Meta` asked.
struct JobFor {
    client: IpAddr,
    forward: bool,
    capture: Capture,
}

/// Spawns the fetch task: it runs to the end whoever waits for it.
fn start_fetch(
    ctx: &Rc<WorkerCtx>,
    req: &RequestHead,
    url: TargetUrl,
    claimed: Claimed,
    tap: Option<Rc<Tap>>,
    job_for: JobFor,
) {
    let guard = FlightGuard(claimed.flight);
    let job = FetchJob {
        epoch: ctx.shared.index.epoch(&url.normalized),
        url,
        client: job_for.client,
        headers: req.headers.clone(),
        settle: claimed.settle,
        forward: job_for.forward,
        tap,
        revalidate: claimed.revalidate,
        capture: job_for.capture,
    };
    // Counted until its record is stored: shutdown waits for it, so a response already
    // streamed to its client is archived before the process exits.
    let running = ctx.fetches.begin();
    let ctx = ctx.clone();
    monoio::spawn(async move {
        fetch_and_store(ctx, guard, job).await;
        drop(running);
    });
}

/// `202 Accepted` for `Prefer: respond-async`: the fetch is queued or running; asked again
/// after `Retry-After`, the URL is answered from its record.
fn accepted(ctx: &WorkerCtx, to: ReplyTo) -> Response {
    let retry = ctx.shared.sched.retry_estimate();
    let extra = format!(
        "Retry-After: {retry}\r\nPreference-Applied: respond-async\r\nX-Cache: {}\r\n",
        RequestState::Queued.as_str()
    );
    Response {
        head: text_reply(
            202,
            "Accepted",
            &extra,
            "fetch queued: ask again later",
            to.conn,
            to.head_only,
        ),
        body: super::Body::None,
        state: RequestState::Queued,
        error: None,
        detail: None,
        upstream: None,
    }
}

/// Why a revalidated record could not be answered from: its file went away meanwhile.
const REVALIDATED_FILE_GONE: &str = "revalidated record's file is gone";

async fn delivered(
    ctx: &Rc<WorkerCtx>,
    outcome: Outcome,
    state: RequestState,
    req: &RequestHead,
    to: ReplyTo,
) -> Result<Response, Error> {
    let d = outcome?;
    let Some(member) = d.member else {
        // A revalidated record not in memory: read like a hit.
        return stored(ctx, d.record, d.reuse, state, req, to)
            .await
            .ok_or(Error::Internal(REVALIDATED_FILE_GONE));
    };
    // A record is kept from its second request on (see `hot`): a coalesced request is one,
    // the miss that fetched it is not.
    if state == RequestState::Coalesced {
        ctx.hot.borrow_mut().insert(&d.record.loc, member.clone());
    }
    Ok(reply_for(
        ctx,
        &d.record,
        d.reuse.as_deref(),
        Some(member),
        None,
        state,
        req,
        to,
    ))
}

/// The reply for a stored record; `None` when its ARC file is gone (handed off). A
/// forward-mode conditional request has the record's validators read from its head.
async fn stored(
    ctx: &Rc<WorkerCtx>,
    record: Arc<StoredRecord>,
    reuse: Option<Arc<Reuse>>,
    state: RequestState,
    req: &RequestHead,
    to: ReplyTo,
) -> Option<Response> {
    let file = ctx.shared.files.get(record.loc.file_id)?;
    let reuse = match reuse {
        None if to.forward && stored_head::needs_validators(req) => {
            // Unreadable, the request is answered in full, as if nothing matched.
            let head = stored_head::read_facts(ctx, &record).await.ok();
            let ttl = ctx.shared.config.cache.ttl;
            head.map(|h| Arc::new(stored_head::reuse_of(&record, &h, &req.headers, ttl)))
        }
        reuse => reuse,
    };
    let in_memory = ctx.hot.borrow().get(&record.loc);
    Some(reply_for(
        ctx,
        &record,
        reuse.as_deref(),
        in_memory,
        Some(file),
        state,
        req,
        to,
    ))
}

/// For a record restored from disk under `key` (its facts unknown): reads them from its
/// head into the index. Whether it learnt any (then the lookup is worth repeating).
async fn learn_restored_facts(ctx: &Rc<WorkerCtx>, key: &str) -> bool {
    let index = &ctx.shared.index;
    let Some(record) = index.without_facts(key, Instant::now()) else {
        return false;
    };
    match stored_head::read_facts(ctx, &record).await {
        Ok(head) => {
            let ttl = ctx.shared.config.cache.ttl;
            let (facts, born) = stored_head::restored_facts(&record, &head, ttl);
            index.learn_facts(key, record.loc, facts, born);
            true
        }
        Err(e) => {
            log::warn!(
                "{key}: restored record unreadable, fetching again: {}",
                LogLine(&e)
            );
            false
        }
    }
}
