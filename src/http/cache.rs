//! RFC 9111 for a shared cache: whether a stored response may be reused for another client,
//! for how long it stays fresh, which request headers choose its variant (`Vary`), and when a
//! client's conditional request can be answered `304`. Pure: no I/O, no clocks of its own
//! (callers pass the times).

use std::time::{Duration, SystemTime};

use super::request::{tokens, Header};

/// Statuses a cache may give a heuristic freshness when the origin set none
/// (RFC 9110 15.1).
const HEURISTIC_STATUSES: &[u16] = &[200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501];

/// Fraction of the time since Last-Modified used as heuristic freshness (RFC 9111 4.2.2
/// suggests at most 10%).
const HEURISTIC_FRACTION: u64 = 10;

/// The response `Cache-Control` directives a shared cache acts on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResponseDirectives {
    pub no_store: bool,
    pub no_cache: bool,
    pub private: bool,
    pub public: bool,
    pub must_revalidate: bool,
    pub max_age: Option<u64>,
    pub s_maxage: Option<u64>,
}

/// What a response head says about caching, read once when it is stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseFacts {
    pub directives: ResponseDirectives,
    pub date: Option<SystemTime>,
    /// `Expires`, or `Some(UNIX_EPOCH)` when present but invalid (it then means "already
    /// expired", RFC 9111 5.3).
    pub expires: Option<SystemTime>,
    pub age: Option<u64>,
    pub last_modified: Option<String>,
    pub etag: Option<String>,
    /// `Vary` field names, lowercased; `None` without Vary.
    pub vary: Option<Vec<String>>,
    /// `Vary: *`: no request can be known to match.
    pub vary_any: bool,
    pub set_cookie: bool,
}

/// Reads the caching facts from a response head (status line to blank line).
pub fn response_facts(raw_head: &[u8]) -> ResponseFacts {
    let mut storage = [httparse::EMPTY_HEADER; super::response::MAX_RESPONSE_HEADERS];
    let mut parsed = httparse::Response::new(&mut storage);
    // The head was parsed (and bounded) when it arrived; a head that fails here yields no
    // facts, which means "not reusable" below.
    if parsed.parse(raw_head).is_err() {
        return ResponseFacts {
            directives: ResponseDirectives {
                no_store: true,
                ..Default::default()
            },
            ..Default::default()
        };
    }
    facts_from(parsed.headers.iter().map(|h| (h.name, h.value)))
}

fn facts_from<'a>(headers: impl Iterator<Item = (&'a str, &'a [u8])>) -> ResponseFacts {
    let mut f = ResponseFacts::default();
    for (name, value) in headers {
        let text = || std::str::from_utf8(value).unwrap_or("").trim();
        if name.eq_ignore_ascii_case("cache-control") {
            // Directives that cannot be read could have said `private` or `no-store`: take
            // the safe reading.
            if std::str::from_utf8(value).is_err() {
                f.directives.no_store = true;
            }
            read_response_directives(value, &mut f.directives);
        } else if name.eq_ignore_ascii_case("date") {
            f.date = httpdate::parse_http_date(text()).ok();
        } else if name.eq_ignore_ascii_case("expires") {
            f.expires = Some(httpdate::parse_http_date(text()).unwrap_or(SystemTime::UNIX_EPOCH));
        } else if name.eq_ignore_ascii_case("age") {
            f.age = text().parse().ok();
        } else if name.eq_ignore_ascii_case("last-modified") {
            f.last_modified = Some(text().to_string()).filter(|s| !s.is_empty());
        } else if name.eq_ignore_ascii_case("etag") {
            f.etag = Some(text().to_string()).filter(|s| !s.is_empty());
        } else if name.eq_ignore_ascii_case("vary") {
            // An unreadable Vary could name any header: as `*`, nobody else matches.
            f.vary_any |= std::str::from_utf8(value).is_err();
            for t in tokens(value) {
                if t == "*" {
                    f.vary_any = true;
                } else {
                    f.vary
                        .get_or_insert_with(Vec::new)
                        .push(t.to_ascii_lowercase());
                }
            }
        } else if name.eq_ignore_ascii_case("set-cookie") {
            f.set_cookie = true;
        }
    }
    if let Some(names) = &mut f.vary {
        names.sort_unstable();
        names.dedup();
    }
    f
}

/// Directive name and optional argument (quotes removed), for each comma-separated item.
fn directives(value: &[u8]) -> impl Iterator<Item = (&str, Option<&str>)> {
    std::str::from_utf8(value)
        .unwrap_or("")
        .split(',')
        .map(|item| match item.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim().trim_matches('"'))),
            None => (item.trim(), None),
        })
        .filter(|(k, _)| !k.is_empty())
}

/// delta-seconds; an invalid value makes the directive count as 0 (stale), the safe reading.
fn delta_seconds(arg: Option<&str>) -> u64 {
    arg.and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

fn read_response_directives(value: &[u8], d: &mut ResponseDirectives) {
    for (name, arg) in directives(value) {
        match name.to_ascii_lowercase().as_str() {
            "no-store" => d.no_store = true,
            // With or without field names: the qualified forms are treated as unqualified,
            // which RFC 9111 5.2.2.4 and 5.2.2.7 allow.
            "no-cache" => d.no_cache = true,
            "private" => d.private = true,
            "public" => d.public = true,
            "must-revalidate" | "proxy-revalidate" => d.must_revalidate = true,
            "max-age" => d.max_age = Some(delta_seconds(arg)),
            "s-maxage" => d.s_maxage = Some(delta_seconds(arg)),
            _ => {}
        }
    }
}

/// The request directives a shared cache acts on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestDirectives {
    /// `no-cache`, `max-age=0` or `Pragma: no-cache`: validate with the origin first.
    pub revalidate: bool,
    /// `max-age=N`: the client accepts nothing older.
    pub max_age: Option<u64>,
}

/// Reads the request's `Cache-Control` (and `Pragma`).
pub fn request_directives(headers: &[Header]) -> RequestDirectives {
    let mut r = RequestDirectives::default();
    for h in headers {
        if h.name.eq_ignore_ascii_case("cache-control") {
            for (name, arg) in directives(&h.value) {
                if name.eq_ignore_ascii_case("no-cache") {
                    r.revalidate = true;
                } else if name.eq_ignore_ascii_case("max-age") {
                    let n = delta_seconds(arg);
                    r.max_age = Some(r.max_age.map_or(n, |m| m.min(n)));
                }
            }
        } else if h.name.eq_ignore_ascii_case("pragma") {
            r.revalidate |= tokens(&h.value).any(|t| t.eq_ignore_ascii_case("no-cache"));
        }
    }
    r.revalidate |= r.max_age == Some(0);
    r
}

/// Whether the request carries credentials: its response is the client's own.
pub fn has_authorization(headers: &[Header]) -> bool {
    headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("authorization"))
}

/// Whether the request says `Prefer: respond-async` (RFC 7240): answer `202` now rather than
/// wait for the fetch.
pub fn prefers_async(headers: &[Header]) -> bool {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("prefer"))
        .flat_map(|h| h.value.split(|&b| b == b','))
        .any(|p| {
            let token = p.split(|&b| b == b';').next().unwrap_or(&[]);
            token.trim_ascii().eq_ignore_ascii_case(b"respond-async")
        })
}

/// Whether the request carries `Authorization` or `Cookie`.
pub fn has_credentials(headers: &[Header]) -> bool {
    headers.iter().any(is_credential)
}

/// Whether a request header is one that makes the response someone's own: `Authorization`
/// or `Cookie`.
pub fn is_credential(h: &Header) -> bool {
    h.name.eq_ignore_ascii_case("authorization") || h.name.eq_ignore_ascii_case("cookie")
}

/// Request headers never sent on a fetch liveweb stores: the stored response must be the
/// whole, unconditional one (a client's `304` or `206` stored as the URL's record would be
/// served to everyone). liveweb answers conditional requests itself, and `Prefer` too
/// (`respond-async` is liveweb's own `202`; an origin honouring it would have its `202`
/// archived as the page).
pub fn is_withheld_on_fetch(name: &str) -> bool {
    [
        "if-match",
        "if-none-match",
        "if-modified-since",
        "if-unmodified-since",
        "if-range",
        "range",
        "prefer",
    ]
    .iter()
    .any(|h| name.eq_ignore_ascii_case(h))
}

/// How a stored response may be reused, decided when it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reuse {
    /// May answer requests other than the one that fetched it (RFC 9111 3 and 3.5).
    pub shareable: bool,
    /// The fetching request carried Authorization or Cookie.
    pub credentialed: bool,
    /// Fetched in forward mode and not shareable there (private, no-store, Set-Cookie...):
    /// the response was meant for that client alone, so no other request gets it in either
    /// mode, and it is marked private in the archive.
    pub forward_private: bool,
    /// Freshness lifetime in seconds (already capped by `--ttl`).
    pub lifetime: u64,
    /// `lifetime` is heuristic (RFC 9111 4.2.2: the origin gave none, and the status allows
    /// one), so a `304` without freshness of its own works it out again from its `Date`.
    pub heuristic: bool,
    /// Age when stored, in seconds (RFC 9111 4.2.3 `corrected_initial_age`).
    pub initial_age: u64,
    /// The response said `no-cache`: validate before every reuse.
    pub validate_always: bool,
    pub etag: Option<Box<str>>,
    pub last_modified: Option<Box<str>>,
    /// For a response with `Vary`: each listed request header and the value the fetching
    /// request had (`None`: absent). Another request matches only with the same values.
    pub vary: Option<Box<[VaryValue]>>,
    /// The origin address the response came from, when known (set by whoever stored it; for
    /// the access log).
    pub fetched_from: Option<std::net::IpAddr>,
    /// Header fields `304` revalidations brought, replacing the stored response's in forward
    /// replies (RFC 9111 4.3.4; `http::client_head::update_fields`).
    pub updated_fields: Option<std::sync::Arc<[u8]>>,
}

/// A header `Vary` names and the value the fetching request had for it (`None`: absent).
pub type VaryValue = (Box<str>, Option<Box<[u8]>>);

/// Works out the reuse rules for a response fetched at `now` for a request with `request`
/// headers. `ttl` caps every freshness lifetime.
pub fn reuse_for(
    status: u16,
    facts: &ResponseFacts,
    request: &[Header],
    now: SystemTime,
    ttl: Duration,
) -> Reuse {
    let d = &facts.directives;
    let authorized = has_authorization(request);
    let with_cookie = request
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("cookie"));
    // A response to a request with cookies is shared only if the origin gave it a lifetime
    // (or said public): a logged-in page without cache headers stays its user's, however
    // long the heuristic would keep it.
    let explicit_lifetime = d.s_maxage.is_some() || d.max_age.is_some() || facts.expires.is_some();
    let shareable = !d.no_store
        && !d.private
        && !facts.vary_any
        && (!authorized || d.public || d.s_maxage.is_some() || d.must_revalidate)
        && (!with_cookie || d.public || explicit_lifetime)
        && (!facts.set_cookie || d.public);
    let secs =
        |t: SystemTime, since: SystemTime| t.duration_since(since).map_or(0, |d| d.as_secs());
    let date = facts.date.unwrap_or(now);
    let explicit = d
        .s_maxage
        .or(d.max_age)
        .or_else(|| facts.expires.map(|e| secs(e, date)));
    let heuristic = explicit.is_none() && (HEURISTIC_STATUSES.contains(&status) || d.public);
    let lifetime = match explicit {
        Some(lifetime) => lifetime,
        None if heuristic => heuristic_lifetime(facts.last_modified.as_deref(), date),
        None => 0,
    }
    .min(ttl.as_secs());
    let apparent_age = facts.date.map_or(0, |date| secs(now, date));
    let initial_age = apparent_age.max(facts.age.unwrap_or(0));
    let vary = facts.vary.as_ref().map(|names| {
        names
            .iter()
            .map(|name| {
                let value = request_value(request, name);
                (Box::from(name.as_str()), value.map(Box::from))
            })
            .collect()
    });
    Reuse {
        shareable,
        credentialed: has_credentials(request),
        forward_private: false,
        lifetime,
        heuristic,
        initial_age,
        validate_always: d.no_cache,
        etag: facts.etag.as_deref().map(Box::from),
        last_modified: facts.last_modified.as_deref().map(Box::from),
        vary,
        fetched_from: None,
        updated_fields: None,
    }
}

/// The request's value for a header that `Vary` names: all its fields joined with `, `
/// (RFC 9111 4.1 compares the combined value), whitespace around each trimmed.
fn request_value(request: &[Header], name: &str) -> Option<Vec<u8>> {
    let mut out: Option<Vec<u8>> = None;
    for h in request.iter().filter(|h| h.name.eq_ignore_ascii_case(name)) {
        let v = out.get_or_insert_with(Vec::new);
        if !v.is_empty() {
            v.extend_from_slice(b", ");
        }
        v.extend_from_slice(h.value.trim_ascii());
    }
    out
}

/// A heuristic freshness lifetime for a response dated `date`. No Last-Modified at all: the
/// operator's --ttl is the heuristic (as Varnish's default_ttl; the caller caps it); with
/// one, a tenth of how long it had not changed.
fn heuristic_lifetime(last_modified: Option<&str>, date: SystemTime) -> u64 {
    match last_modified.map(httpdate::parse_http_date) {
        Some(Ok(modified)) => date
            .duration_since(modified)
            .map_or(0, |d| d.as_secs() / HEURISTIC_FRACTION),
        Some(Err(_)) | None => u64::MAX,
    }
}

/// Whether a stored response `age` seconds old, fresh for `lifetime`, may answer a request
/// with these directives without contacting the origin (RFC 9111 4.2, 5.2.1).
pub fn fresh_for(req: RequestDirectives, age: u64, lifetime: u64, validate_always: bool) -> bool {
    !validate_always
        && !req.revalidate
        && age < lifetime
        && req.max_age.is_none_or(|max| age <= max)
}

impl Reuse {
    /// Current age in seconds, `resident` after it was stored (RFC 9111 4.2.3).
    pub fn age(&self, resident: Duration) -> u64 {
        self.initial_age.saturating_add(resident.as_secs())
    }

    /// Whether it may answer this request without contacting the origin, `resident` after
    /// it was stored.
    pub fn is_fresh_for(&self, req: RequestDirectives, resident: Duration) -> bool {
        fresh_for(req, self.age(resident), self.lifetime, self.validate_always)
    }

    /// Whether `request` selects the same variant as the request that fetched it.
    pub fn matches_variant(&self, request: &[Header]) -> bool {
        let Some(vary) = &self.vary else {
            return true;
        };
        vary.iter()
            .all(|(name, stored)| request_value(request, name).as_deref() == stored.as_deref())
    }

    /// The conditional request headers that validate this response with its origin.
    pub fn validators(&self) -> Vec<Header> {
        let mut out = Vec::new();
        if let Some(etag) = &self.etag {
            out.push(Header {
                name: "If-None-Match".into(),
                value: etag.as_bytes().to_vec(),
            });
        }
        if let Some(lm) = &self.last_modified {
            out.push(Header {
                name: "If-Modified-Since".into(),
                value: lm.as_bytes().to_vec(),
            });
        }
        out
    }

    /// A `304 Not Modified` from the origin refreshes a stored response: its freshness comes
    /// from the 304's headers where they give any (RFC 9111 4.3.4).
    pub fn refreshed(
        &self,
        status: u16,
        facts: &ResponseFacts,
        request: &[Header],
        now: SystemTime,
        ttl: Duration,
    ) -> Reuse {
        let fresh = reuse_for(status, facts, request, now, ttl);
        let has_freshness = facts.directives.max_age.is_some()
            || facts.directives.s_maxage.is_some()
            || facts.expires.is_some();
        let last_modified = fresh.last_modified.or_else(|| self.last_modified.clone());
        let lifetime = if has_freshness {
            fresh.lifetime
        } else if self.heuristic {
            // The stored fields, updated by the 304's, are dated now: a heuristic kept from
            // the first fetch would stay as short as the resource was young then, and every
            // later request would have to be validated again.
            let date = facts.date.unwrap_or(now);
            heuristic_lifetime(last_modified.as_deref(), date).min(ttl.as_secs())
        } else {
            self.lifetime
        };
        Reuse {
            shareable: self.shareable && fresh.shareable,
            credentialed: self.credentialed,
            forward_private: self.forward_private,
            lifetime,
            heuristic: self.heuristic && !has_freshness,
            initial_age: fresh.initial_age,
            validate_always: self.validate_always || fresh.validate_always,
            etag: fresh.etag.or_else(|| self.etag.clone()),
            last_modified,
            // A 304 that says Vary re-keys the response (its variant is the revalidating
            // request's); one that does not keeps the stored list.
            vary: fresh.vary.or_else(|| self.vary.clone()),
            fetched_from: self.fetched_from,
            updated_fields: self.updated_fields.clone(),
        }
    }

    /// Whether a client's conditional request is satisfied by this (fresh) response, so it
    /// is answered `304` (RFC 9110 13.2.2: If-None-Match first, If-Modified-Since only
    /// without it; weak comparison for If-None-Match).
    pub fn not_modified_for(&self, request: &[Header]) -> bool {
        let find = |n: &str| request.iter().find(|h| h.name.eq_ignore_ascii_case(n));
        if let Some(inm) = find("if-none-match") {
            let Some(etag) = &self.etag else {
                return false;
            };
            let ours = weak(etag);
            return std::str::from_utf8(&inm.value)
                .unwrap_or("")
                .split(',')
                .map(str::trim)
                .any(|t| t == "*" || weak(t) == ours);
        }
        let (Some(ims), Some(lm)) = (find("if-modified-since"), &self.last_modified) else {
            return false;
        };
        let since = std::str::from_utf8(&ims.value).ok().map(str::trim);
        match (
            since.map(httpdate::parse_http_date),
            httpdate::parse_http_date(lm),
        ) {
            (Some(Ok(since)), Ok(modified)) => modified <= since,
            _ => false,
        }
    }
}

/// An entity tag without its weakness prefix.
fn weak(tag: &str) -> &str {
    tag.strip_prefix("W/").unwrap_or(tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(name: &str, value: &str) -> Header {
        Header {
            name: name.into(),
            value: value.as_bytes().to_vec(),
        }
    }

    fn facts(head: &str) -> ResponseFacts {
        response_facts(format!("HTTP/1.1 200 OK\r\n{head}\r\n").as_bytes())
    }

    const TTL: Duration = Duration::from_secs(3600);

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    fn date(secs: u64) -> String {
        httpdate::fmt_http_date(at(secs))
    }

    fn reuse(head: &str, request: &[Header]) -> Reuse {
        reuse_for(200, &facts(head), request, at(0), TTL)
    }

    #[test]
    fn what_is_not_shareable() {
        for head in [
            "Cache-Control: no-store\r\n",
            "Cache-Control: private\r\n",
            "Cache-Control: private=\"x\", max-age=60\r\n",
            "Set-Cookie: sid=1\r\n",
            "Vary: *\r\n",
            "Vary: Accept, *\r\n",
        ] {
            assert!(!reuse(head, &[]).shareable, "{head}");
        }
        assert!(reuse("Set-Cookie: sid=1\r\nCache-Control: public\r\n", &[]).shareable);
        assert!(reuse("Cache-Control: max-age=60\r\n", &[]).shareable);
        let auth = [h("Authorization", "Bearer alice")];
        assert!(!reuse("Cache-Control: max-age=60\r\n", &auth).shareable);
        assert!(reuse("", &auth).credentialed);
        for allowed in ["public", "s-maxage=60", "must-revalidate, max-age=9"] {
            assert!(
                reuse(&format!("Cache-Control: {allowed}\r\n"), &auth).shareable,
                "{allowed}"
            );
        }
        assert!(reuse("", &[h("cookie", "a=b")]).credentialed);
        assert!(!reuse("", &[h("Accept", "*/*")]).credentialed);
    }

    #[test]
    fn unreadable_cache_control_and_vary_are_taken_safely() {
        let raw = b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60, x=\"\xe9\"\r\n\r\n";
        assert!(!reuse_for(200, &response_facts(raw), &[], at(0), TTL).shareable);
        let raw = b"HTTP/1.1 200 OK\r\nVary: Cookie, X-\xe9\r\n\r\n";
        assert!(!reuse_for(200, &response_facts(raw), &[], at(0), TTL).shareable);
    }

    #[test]
    fn freshness_lifetime_in_rfc_order() {
        let d = date(0);
        assert_eq!(
            reuse("Cache-Control: max-age=60, s-maxage=30\r\n", &[]).lifetime,
            30
        );
        assert_eq!(reuse("Cache-Control: max-age=60\r\n", &[]).lifetime, 60);
        let expires = format!("Date: {d}\r\nExpires: {}\r\n", date(120));
        assert_eq!(reuse(&expires, &[]).lifetime, 120);
        let both = format!("Cache-Control: max-age=5\r\n{expires}");
        assert_eq!(reuse(&both, &[]).lifetime, 5, "max-age beats Expires");
        assert_eq!(
            reuse("Expires: 0\r\n", &[]).lifetime,
            0,
            "invalid = expired"
        );
        assert_eq!(reuse("Cache-Control: max-age=abc\r\n", &[]).lifetime, 0);
        // Heuristic: a tenth of the Last-Modified age, or --ttl without Last-Modified.
        let lm = format!(
            "Date: {d}\r\nLast-Modified: {}\r\n",
            httpdate::fmt_http_date(at(0) - Duration::from_secs(1000))
        );
        assert_eq!(reuse(&lm, &[]).lifetime, 100);
        assert_eq!(reuse("", &[]).lifetime, 3600);
        // Capped by --ttl; statuses without heuristic freshness get none.
        assert_eq!(
            reuse("Cache-Control: max-age=99999\r\n", &[]).lifetime,
            3600
        );
        assert_eq!(reuse_for(302, &facts(""), &[], at(0), TTL).lifetime, 0);
        assert_eq!(reuse_for(500, &facts(""), &[], at(0), TTL).lifetime, 0);
        assert_eq!(
            reuse_for(302, &facts("Cache-Control: max-age=7\r\n"), &[], at(0), TTL).lifetime,
            7
        );
    }

    #[test]
    fn age_and_fresh_for_a_request() {
        let d = date(0);
        let r = reuse_for(
            200,
            &facts(&format!(
                "Date: {d}\r\nAge: 10\r\nCache-Control: max-age=60\r\n"
            )),
            &[],
            at(30),
            TTL,
        );
        assert_eq!(r.initial_age, 30, "apparent age beats the Age header");
        assert_eq!(r.age(Duration::from_secs(5)), 35);
        let any = RequestDirectives::default();
        assert!(r.is_fresh_for(any, Duration::from_secs(29)));
        assert!(!r.is_fresh_for(any, Duration::from_secs(30)));
        let max10 = request_directives(&[h("Cache-Control", "max-age=40")]);
        assert!(r.is_fresh_for(max10, Duration::from_secs(10)));
        assert!(!r.is_fresh_for(max10, Duration::from_secs(11)));
        for revalidate in [
            h("Cache-Control", "no-cache"),
            h("Cache-Control", "max-age=0"),
            h("Pragma", "no-cache"),
        ] {
            let req = request_directives(std::slice::from_ref(&revalidate));
            assert!(req.revalidate, "{revalidate:?}");
            assert!(!r.is_fresh_for(req, Duration::ZERO));
        }
        let no_cache = reuse("Cache-Control: no-cache, max-age=600\r\n", &[]);
        assert!(no_cache.shareable && !no_cache.is_fresh_for(any, Duration::ZERO));
        assert!(!reuse("Cache-Control: max-age=0\r\n", &[]).is_fresh_for(any, Duration::ZERO));
    }

    #[test]
    fn vary_selects_variants() {
        let gzip = [h("Accept-Encoding", "gzip"), h("Accept", "a")];
        let r = reuse("Vary: accept-encoding, Accept-Language\r\n", &gzip);
        assert!(r.matches_variant(&[h("accept-encoding", " gzip ")]));
        assert!(!r.matches_variant(&[h("Accept-Encoding", "br")]));
        assert!(!r.matches_variant(&[]));
        assert!(!r.matches_variant(&[h("Accept-Encoding", "gzip"), h("Accept-Language", "en")]));
        let absent = reuse("Vary: Cookie\r\n", &[]);
        assert!(absent.matches_variant(&[]));
        assert!(!absent.matches_variant(&[h("Cookie", "a=1")]));
        assert!(reuse("", &gzip).matches_variant(&[]));
    }

    #[test]
    fn conditional_requests_and_validators() {
        let lm = date(0);
        let r = reuse(&format!("ETag: W/\"v1\"\r\nLast-Modified: {lm}\r\n"), &[]);
        assert_eq!(
            r.validators(),
            vec![h("If-None-Match", "W/\"v1\""), h("If-Modified-Since", &lm)]
        );
        assert!(r.not_modified_for(&[h("If-None-Match", "\"x\", \"v1\"")]));
        assert!(r.not_modified_for(&[h("If-None-Match", "*")]));
        assert!(!r.not_modified_for(&[h("If-None-Match", "\"v2\"")]));
        // If-None-Match wins over If-Modified-Since.
        assert!(!r.not_modified_for(&[
            h("If-None-Match", "\"v2\""),
            h("If-Modified-Since", &date(5))
        ]));
        assert!(r.not_modified_for(&[h("If-Modified-Since", &date(5))]));
        assert!(r.not_modified_for(&[h("If-Modified-Since", &lm)]));
        let earlier = httpdate::fmt_http_date(at(0) - Duration::from_secs(1));
        assert!(!r.not_modified_for(&[h("If-Modified-Since", &earlier)]));
        assert!(!r.not_modified_for(&[h("If-Modified-Since", "garbage")]));
        assert!(!r.not_modified_for(&[]));
        assert!(
            is_withheld_on_fetch("If-None-Match")
                && is_withheld_on_fetch("range")
                && is_withheld_on_fetch("Prefer")
                && !is_withheld_on_fetch("accept")
        );
    }

    #[test]
    fn a_304_refreshes_freshness_and_validators() {
        let old = reuse("ETag: \"v1\"\r\nCache-Control: max-age=60\r\n", &[]);
        let plain = old.refreshed(304, &facts(""), &[], at(100), TTL);
        assert_eq!(
            (plain.lifetime, plain.etag.as_deref()),
            (60, Some("\"v1\""))
        );
        let longer = old.refreshed(
            304,
            &facts("Cache-Control: max-age=600\r\nETag: \"v2\"\r\n"),
            &[],
            at(100),
            TTL,
        );
        assert_eq!(
            (longer.lifetime, longer.etag.as_deref()),
            (600, Some("\"v2\""))
        );
        assert!(
            !old.refreshed(304, &facts("Cache-Control: no-store\r\n"), &[], at(0), TTL)
                .shareable
        );
    }

    #[test]
    fn a_304_works_a_heuristic_lifetime_out_again_from_its_date() {
        // Fetched 5 s after it last changed: a tenth of that is no freshness at all.
        let young = reuse(
            &format!("Date: {}\r\nLast-Modified: {}\r\n", date(5), date(0)),
            &[],
        );
        assert_eq!((young.lifetime, young.heuristic), (0, true));
        // Validated 200 s later: unchanged for 200 s, so fresh for 20 (the 304 need not
        // repeat Last-Modified).
        let later = young.refreshed(
            304,
            &facts(&format!("Date: {}\r\n", date(200))),
            &[],
            at(200),
            TTL,
        );
        assert_eq!((later.lifetime, later.heuristic), (20, true));
        // A 304 with freshness of its own gives that, and it is no longer heuristic.
        let told = young.refreshed(
            304,
            &facts(&format!(
                "Date: {}\r\nCache-Control: max-age=7\r\n",
                date(200)
            )),
            &[],
            at(200),
            TTL,
        );
        assert_eq!((told.lifetime, told.heuristic), (7, false));
        // An explicit lifetime stored is kept by a 304 that gives none.
        let explicit = reuse("Cache-Control: max-age=60\r\n", &[]);
        assert!(!explicit.heuristic);
        let kept = explicit.refreshed(
            304,
            &facts(&format!("Date: {}\r\n", date(900))),
            &[],
            at(900),
            TTL,
        );
        assert_eq!(kept.lifetime, 60);
        // A status without heuristic freshness never gets one from a 304 either.
        let gone = reuse_for(
            302,
            &facts(&format!("Last-Modified: {}\r\n", date(0))),
            &[],
            at(5),
            TTL,
        );
        assert!(!gone.heuristic);
        let still = gone.refreshed(
            304,
            &facts(&format!("Date: {}\r\n", date(900))),
            &[],
            at(900),
            TTL,
        );
        assert_eq!(still.lifetime, 0);
    }
}
