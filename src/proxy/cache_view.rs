//! What one request may take from the shared cache, decided without I/O: whether it may
//! share fetches and stored records at all (`plan`), which stored record may answer it,
//! which delivery of another request's fetch it may take, and when a stale record is
//! revalidated rather than fetched whole. `lookup` acts on these answers.

use std::time::Instant;

use crate::http::cache::{
    has_authorization, has_credentials, prefers_async, request_directives, RequestDirectives,
};
use crate::http::request::RequestHead;
use crate::index::{Delivery, StoredRecord};

/// How a request goes to the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Plan {
    /// It keeps its exchange to itself: a fetch of its own, nobody waiting on it; `offer`:
    /// a response it gets that may be shared is stored for others (forward mode).
    Alone { offer: bool },
    /// It keeps its exchange to itself and asked not to fetch: `504`.
    NotCached,
    /// Looked up, coalesced, fetched once for all; `respond_async`: answered `202` while its
    /// fetch runs (liveweb mode, `Prefer: respond-async`).
    Shared { respond_async: bool },
}

/// What one request may take from the cache.
pub(super) struct CacheView<'a> {
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
    pub(super) fn keeps_to_itself(&self) -> bool {
        if self.forward {
            has_authorization(&self.req.headers)
        } else {
            self.isolate_credentials && has_credentials(&self.req.headers)
        }
    }

    /// Whether a stored record may answer this request now without the origin. (A record
    /// that varies is found only under its variant's key: the index checks that.)
    pub(super) fn usable(&self, r: &StoredRecord, now: Instant) -> bool {
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
    pub(super) fn accepts_delivery(&self, d: &Delivery) -> bool {
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
    pub(super) fn liveweb_may_use(&self, r: &StoredRecord) -> bool {
        !(r.is_forward_private() || (self.isolate_credentials && r.is_credentialed()))
    }

    /// Whether a stored record that cannot answer as it is may be revalidated with the
    /// origin (a conditional request) instead of fetched whole.
    pub(super) fn revalidates(&self, r: &StoredRecord, now: Instant) -> bool {
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

impl<'a> CacheView<'a> {
    /// The view of `req` in forward or liveweb mode, with `--isolate-credentials`.
    pub(super) fn of(req: &'a RequestHead, forward: bool, isolate_credentials: bool) -> Self {
        CacheView {
            req,
            forward,
            // Forward mode: the request's Cache-Control; liveweb mode: only `no-cache`.
            directives: match forward {
                true => request_directives(&req.headers),
                false => RequestDirectives {
                    revalidate: req.no_cache,
                    max_age: None,
                },
            },
            isolate_credentials,
        }
    }

    /// How the request goes to the cache.
    pub(super) fn plan(&self) -> Plan {
        if self.keeps_to_itself() {
            return match self.req.only_if_cached {
                true => Plan::NotCached,
                false => Plan::Alone {
                    offer: self.forward,
                },
            };
        }
        // `Prefer: respond-async` (liveweb mode: every fetch ends in a record, a failure's
        // included, so asking again always gets one; forward mode answers as usual).
        Plan::Shared {
            respond_async: !self.forward && prefers_async(&self.req.headers),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::RecordLoc;
    use crate::http::cache::{response_facts, reuse_for, Reuse};
    use crate::http::reply::RecordStatus;
    use crate::http::request::{parse_request_head, Limits};
    use std::time::{Duration, SystemTime};

    fn request(raw: &str) -> RequestHead {
        parse_request_head(raw.as_bytes(), &Limits::default())
            .unwrap()
            .unwrap()
            .0
    }

    /// The reuse rules of an origin response with `headers`, fetched for `req`.
    fn reuse(status: u16, headers: &str, req: &RequestHead) -> Reuse {
        let head = format!("HTTP/1.1 {status} X\r\n{headers}\r\n");
        let facts = response_facts(head.as_bytes());
        reuse_for(
            status,
            &facts,
            &req.headers,
            SystemTime::now(),
            Duration::from_secs(3600),
        )
    }

    fn record(status: u16, reuse: Option<&Reuse>, now: Instant) -> StoredRecord {
        let loc = RecordLoc {
            file_id: 1,
            offset: 0,
            len: 10,
        };
        let status = RecordStatus::new(status, "X", None);
        StoredRecord::stored(loc, status, now, now + Duration::from_secs(3600), reuse)
    }

    const GET: &str = "GET http://a.example/ HTTP/1.1\r\n";

    #[test]
    fn a_request_with_credentials_keeps_its_exchange_to_itself() {
        let authorized = request(&format!("{GET}Authorization: Basic eA==\r\n\r\n"));
        let with_cookie = request(&format!("{GET}Cookie: s=1\r\n\r\n"));
        let plain = request(&format!("{GET}\r\n"));
        // Forward mode: Authorization (RFC 9111 3.5), not Cookie; its shareable answers are
        // still offered to others.
        assert_eq!(
            CacheView::of(&authorized, true, false).plan(),
            Plan::Alone { offer: true }
        );
        assert_eq!(
            CacheView::of(&with_cookie, true, false).plan(),
            Plan::Shared {
                respond_async: false
            }
        );
        // Liveweb mode: either, only when isolated, and nothing offered.
        assert_eq!(
            CacheView::of(&with_cookie, false, true).plan(),
            Plan::Alone { offer: false }
        );
        assert_eq!(
            CacheView::of(&with_cookie, false, false).plan(),
            Plan::Shared {
                respond_async: false
            }
        );
        let only_cached = request(&format!(
            "{GET}Authorization: Basic eA==\r\nCache-Control: only-if-cached\r\n\r\n"
        ));
        assert_eq!(
            CacheView::of(&only_cached, true, false).plan(),
            Plan::NotCached
        );
        let later = request(&format!("{GET}Prefer: respond-async\r\n\r\n"));
        assert_eq!(
            CacheView::of(&later, false, false).plan(),
            Plan::Shared {
                respond_async: true
            }
        );
        assert_eq!(
            CacheView::of(&later, true, false).plan(),
            Plan::Shared {
                respond_async: false
            },
            "forward mode answers as usual"
        );
        assert!(CacheView::of(&plain, true, true).plan() != Plan::NotCached);
    }

    #[test]
    fn which_stored_record_answers_which_request() {
        let now = Instant::now();
        let plain = request(&format!("{GET}\r\n"));
        let fresh = reuse(200, "Cache-Control: max-age=600\r\n", &plain);
        let private = reuse(200, "Cache-Control: private, max-age=600\r\n", &plain);
        let forward = CacheView::of(&plain, true, false);
        let liveweb = CacheView::of(&plain, false, false);
        assert!(forward.usable(&record(200, Some(&fresh), now), now));
        assert!(!forward.usable(&record(200, Some(&private), now), now));
        // A stored 206 holds part of a response: never a forward-mode answer.
        assert!(!forward.usable(&record(206, Some(&fresh), now), now));
        // Liveweb mode keeps its --ttl, whatever the origin said...
        let stale = reuse(200, "Cache-Control: max-age=0\r\n", &plain);
        assert!(liveweb.usable(&record(200, Some(&stale), now), now));
        assert!(!forward.usable(&record(200, Some(&stale), now), now));
        // ...but no-cache asks the origin again, and a record past --ttl answers no one.
        let no_cache = request(&format!("{GET}Cache-Control: no-cache\r\n\r\n"));
        assert!(
            !CacheView::of(&no_cache, false, false).usable(&record(200, Some(&fresh), now), now)
        );
        let later = now + Duration::from_secs(7200);
        assert!(!liveweb.usable(&record(200, Some(&fresh), now), later));
        // A stale forward-mode record with validators is revalidated, one without is not.
        let validated = reuse(200, "Cache-Control: max-age=0\r\nETag: \"v\"\r\n", &plain);
        assert!(forward.revalidates(&record(200, Some(&validated), now), now));
        assert!(!forward.revalidates(&record(200, Some(&stale), now), now));
        assert!(!liveweb.revalidates(&record(200, Some(&validated), now), now));
    }

    #[test]
    fn a_delivery_is_taken_only_if_it_is_for_everyone_and_this_variant() {
        let now = Instant::now();
        let plain = request(&format!("{GET}\r\n"));
        let delivery = |r: Reuse, revisit: bool| Delivery {
            record: std::sync::Arc::new(record(200, Some(&r), now)),
            reuse: Some(std::sync::Arc::new(r)),
            member: None,
            revisit,
            archived: None,
        };
        let forward = CacheView::of(&plain, true, false);
        let shared = reuse(200, "Cache-Control: max-age=600\r\n", &plain);
        assert!(forward.accepts_delivery(&delivery(shared.clone(), false)));
        // A revisit holds no body: whoever waited fetches their own.
        assert!(!forward.accepts_delivery(&delivery(shared, true)));
        let mut private = reuse(200, "Cache-Control: private, max-age=600\r\n", &plain);
        // Fetched for a forward-mode request, as the store marks it.
        private.forward_private = true;
        assert!(!forward.accepts_delivery(&delivery(private.clone(), false)));
        assert!(
            !CacheView::of(&plain, false, false).accepts_delivery(&delivery(private, false)),
            "nor in liveweb mode: it is its client's alone"
        );
        // Another variant (Vary: Accept-Language) is not this request's.
        let french = request(&format!("{GET}Accept-Language: fr\r\n\r\n"));
        let varied = reuse(
            200,
            "Cache-Control: max-age=600\r\nVary: Accept-Language\r\n",
            &french,
        );
        let german = request(&format!("{GET}Accept-Language: de\r\n\r\n"));
        assert!(
            CacheView::of(&french, true, false).accepts_delivery(&delivery(varied.clone(), false))
        );
        assert!(!CacheView::of(&german, true, false).accepts_delivery(&delivery(varied, false)));
    }
}
