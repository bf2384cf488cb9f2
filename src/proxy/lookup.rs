//! The shared-cache decision for one request: answer from a stored record, wait for a fetch
//! in flight, revalidate a stale record, or fetch. Forward mode follows RFC 9111 for reuse
//! (who may get a stored response, for how long, which variant); liveweb mode keeps its
//! fixed `--ttl`, except that credentialed requests keep their exchanges to themselves.

use std::cell::Cell;
use std::net::IpAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use super::fetcher::{fetch_and_store, FetchJob, Settle};
use super::{live_response, reply_for, stored_head, ReplyTo, RequestState, Response, WorkerCtx};
use crate::error::{Error, LogLine};
use crate::fetch::Tap;
use crate::http::cache::{
    has_authorization, has_credentials, prefers_async, request_directives, RequestDirectives, Reuse,
};
use crate::http::reply::text_reply;
use crate::http::request::RequestHead;
use crate::http::url::TargetUrl;
use crate::index::{Delivery, Flight, FlightGuard, Lookup, Outcome, StoredRecord};
use crate::warcprox::Capture;

/// What one request may take from the cache.
struct CacheView<'a> {
    req: &'a RequestHead,
    forward: bool,
    /// Forward mode: the request's Cache-Control; liveweb mode: only `no-cache` counts.
    directives: RequestDirectives,
    /// `--isolate-credentials` (liveweb mode).
    isolate_credentials: bool,
}

impl CacheView<'_> {
    /// A request whose exchange nobody else may see: forward mode, one with Authorization
    /// (RFC 9111 3.5; a response it gets that says `public`, `s-maxage` or `must-revalidate`
    /// is still shared); liveweb mode, one with Authorization or Cookie (if isolated).
    fn keeps_to_itself(&self) -> bool {
        if self.forward {
            has_authorization(&self.req.headers)
        } else {
            self.isolate_credentials && has_credentials(&self.req.headers)
        }
    }

    /// Whether a stored record may answer this request now without the origin. (A record
    /// that varies is found only under its variant's key: the index checks that.)
    fn usable(&self, r: &StoredRecord, now: Instant) -> bool {
        if !r.is_fresh(now) || (self.directives.revalidate && !self.forward) {
            return false;
        }
        if !self.forward {
            return self.liveweb_may_use(r);
        }
        is_whole(r) && r.facts.shareable() && r.is_fresh_for(self.directives, now)
    }

    /// Whether a record another request's fetch just produced may answer this one (it is
    /// as fresh as can be, but must be for everyone and for this variant).
    fn accepts_delivery(&self, d: &Delivery) -> bool {
        let r = &d.record;
        if d.revisit {
            return false;
        }
        if !self.forward {
            return self.liveweb_may_use(r);
        }
        is_whole(r)
            && match &d.reuse {
                Some(reuse) => {
                    reuse.shareable
                        && reuse.matches_variant(&self.req.headers)
                        && reuse.lifetime > 0
                        && !reuse.validate_always
                }
                None => {
                    let f = r.facts;
                    f.shareable() && !f.varies() && f.lifetime > 0 && !f.validate_always()
                }
            }
    }

    /// Liveweb mode: any record but a credentialed request's (when isolated) or a forward-mode
    /// response meant for its client alone.
    fn liveweb_may_use(&self, r: &StoredRecord) -> bool {
        !(r.is_forward_private() || (self.isolate_credentials && r.is_credentialed()))
    }

    /// Whether a stored record that cannot answer as it is may be revalidated with the
    /// origin (a conditional request) instead of fetched whole.
    fn revalidates(&self, r: &StoredRecord, now: Instant) -> bool {
        self.forward
            && r.is_fresh(now)
            && is_whole(r)
            && r.facts.shareable()
            && r.facts.has_validators()
    }
}

/// Whether a record holds a whole response: a stored `206` holds only part of one, so forward
/// mode never answers from it, with or without `Range` (which part it holds is not looked at).
fn is_whole(r: &StoredRecord) -> bool {
    r.status.code != 206
}

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
    let view = CacheView {
        req,
        forward: to.forward,
        directives: if to.forward {
            request_directives(&req.headers)
        } else {
            RequestDirectives {
                revalidate: req.no_cache,
                max_age: None,
            }
        },
        isolate_credentials: ctx.shared.config.isolate_credentials,
    };
    let key = if to.forward {
        index.variant_key(&url.normalized, &req.headers)
    } else {
        None
    }
    .unwrap_or_else(|| url.normalized.clone());
    if view.keeps_to_itself() {
        if req.only_if_cached {
            return Err(Error::NotCached);
        }
        check_archiving(ctx)?;
        let settle = if to.forward {
            Settle::Offer(key)
        } else {
            Settle::Alone
        };
        return fetch_alone(ctx, req, url, to, client, settle, capture).await;
    }
    // `Prefer: respond-async` (liveweb mode: every fetch ends in a record, a failure's
    // included, so asking again always gets one; forward mode answers as usual).
    let respond_async = !to.forward && prefers_async(&req.headers);
    // A record whose ARC file was handed off and deleted is fetched again like a stale one.
    let gone = Cell::new(false);
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
                        let revalidate = claim
                            .previous
                            .filter(|p| !gone.get() && view.revalidates(p, Instant::now()));
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
                return match flight.wait().await {
                    // The response is not for this request (private, another variant, or
                    // to be validated before any reuse): fetch its own.
                    Ok(d) if !view.accepts_delivery(&d) => {
                        if req.only_if_cached {
                            return Err(Error::NotCached);
                        }
                        fetch_alone(ctx, req, url, to, client, Settle::Alone, capture).await
                    }
                    outcome => delivered(ctx, outcome, RequestState::Coalesced, req, to).await,
                };
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

/// A fetch outside the index's coalescing (its own flight, nobody else waits on it).
async fn fetch_alone(
    ctx: &Rc<WorkerCtx>,
    req: &RequestHead,
    url: TargetUrl,
    to: ReplyTo,
    client: IpAddr,
    settle: Settle,
    capture: Capture,
) -> Result<Response, Error> {
    let claimed = Claimed {
        flight: Arc::new(Flight::new()),
        settle,
        revalidate: None,
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
    let job = JobFor {
        client,
        forward: to.forward,
        capture,
    };
    start_fetch(ctx, req, url, claimed, tap.clone(), job);
    if let Some(tap) = tap {
        return Ok(live_response(tap, to, ctx.shared.config.max_body));
    }
    let outcome = flight.wait().await;
    let state = match (&revalidate, &outcome) {
        (Some(old), Ok(d)) if d.record.loc == old.loc => RequestState::Revalidated,
        _ => RequestState::Miss,
    };
    delivered(ctx, outcome, state, req, to).await
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
            .ok_or(Error::Internal("revalidated record's file is gone"));
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
            let ttl = ctx.shared.config.ttl;
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
            let ttl = ctx.shared.config.ttl;
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
