//! Forward-mode replies: the origin's own response as a browser expects it. Rewrites the
//! origin's head for the client (hop-by-hop headers replaced by our own connection management,
//! `Via` and `Age` added) and chooses how the body is framed for this client
//! (`client_body` then turns the origin's body bytes into the client's). Pure: no I/O.

use std::io::Write;

use super::range::{ByteRange, Resolved};
use super::reply::{sanitize_reason, ConnState};
use super::request::tokens;
pub use super::response::split_head;
use super::response::{Framing, ResponseHead};

/// Whether an origin header is dropped on the way to the client: the hop-by-hop ones
/// (replaced by our own connection management), those its `Connection` header names, `Age`
/// when we set our own (hits: the current age, which counts the origin's `Age`; a miss passes
/// the origin's on, RFC 9111 5.1), our own diagnostics (`X-Cache`, `X-Liveweb-*`: an origin
/// must not be able to spoof them), and Content-Length unless the response has no body
/// (otherwise the framing decides it).
fn dropped(name: &str, named: &[&str], framing: Framing, own_age: bool) -> bool {
    let is = |h: &&str| name.eq_ignore_ascii_case(h);
    super::HOP_BY_HOP.iter().any(is)
        || named.iter().any(is)
        || (own_age && name.eq_ignore_ascii_case("age"))
        || super::is_liveweb_header(name)
        || (name.eq_ignore_ascii_case("content-length") && framing != Framing::Empty)
}

/// What the client asked and how the connection is managed.
#[derive(Debug, Clone)]
pub struct ClientSide {
    /// Client's minor HTTP version (0 or 1).
    pub version: u8,
    pub keep_alive: bool,
    /// The request was HEAD: head only.
    pub head_only: bool,
    /// `X-Cache` value.
    pub cache: &'static str,
    /// Seconds since the response was fetched, for `Age` on hits.
    pub age: Option<u64>,
    /// For a live response: `--max-body`, so a declared length over it is labelled
    /// `X-Liveweb-Archived: no; E40` (the client still gets it whole).
    pub archive_limit: Option<u64>,
    /// Header fields from `304` revalidations that replace the stored response's (RFC 9111
    /// 4.3.4; see `update_fields`).
    pub update: Option<std::sync::Arc<[u8]>>,
    /// A stored full `200` of known length is answered with this range (`206`, or `416`).
    pub range: Option<ByteRange>,
}

/// How the body goes to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyPlan {
    /// No body.
    None,
    /// Exactly this many bytes (Content-Length).
    Length(u64),
    /// The origin's chunked body, passed through as is.
    PassChunked,
    /// The origin's chunked body decoded; the connection closes after it (HTTP/1.0 client).
    Dechunk,
    /// A body of unknown length wrapped in chunks for an HTTP/1.1 client.
    Rechunk,
    /// A body of unknown length, ended by closing the connection (HTTP/1.0 client).
    UntilClose,
    /// One byte range of a body of known length (`206`): `len` bytes after the first `skip`.
    Range { skip: u64, len: u64 },
}

/// The client's head and body plan for an origin response.
#[derive(Debug)]
pub struct ForwardHead {
    pub head: Vec<u8>,
    pub plan: BodyPlan,
    /// The connection must close after this reply (framing or client's wish).
    pub close: bool,
}

/// Builds the client head. `raw_head` is the origin's head as received (status line to blank
/// line, after any 1xx interim responses); `body_len` is the body length when known in
/// advance (a stored response), for origins that delimited it by closing.
pub fn forward_head(
    raw_head: &[u8],
    origin: &ResponseHead,
    body_len: Option<u64>,
    client: &ClientSide,
) -> ForwardHead {
    let updated;
    let raw_head = match &client.update {
        Some(fields) => {
            updated = apply_update(raw_head, fields);
            &updated[..]
        }
        None => raw_head,
    };
    finish_head(
        &kept_head(raw_head, origin, client.age.is_some()),
        origin.framing,
        body_len,
        client,
    )
}

/// The header names a head's `Connection` fields list (hop-by-hop for this message).
fn connection_named<'h>(headers: &[httparse::Header<'h>]) -> Vec<&'h str> {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .flat_map(|h| tokens(h.value))
        .collect()
}

/// The part of the client head that depends only on the stored response: the status line
/// and the origin headers that go on to the client (`Age` too unless `own_age`).
fn kept_head(raw_head: &[u8], origin: &ResponseHead, own_age: bool) -> Vec<u8> {
    let mut storage = [httparse::EMPTY_HEADER; super::response::MAX_RESPONSE_HEADERS];
    let mut parsed = httparse::Response::new(&mut storage);
    // The head was parsed once already; a failure here cannot happen, and would only lose
    // the origin's headers, not the framing decision.
    let _ = parsed.parse(raw_head);
    let named = connection_named(parsed.headers);
    let mut out = Vec::with_capacity(raw_head.len() + 128);
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\n",
        origin.status,
        sanitize_reason(&origin.reason)
    );
    for h in parsed.headers.iter() {
        if dropped(h.name, &named, origin.framing, own_age) {
            continue;
        }
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The body plan for a response framed as `framing` going to a client of HTTP/1.`version`,
/// and whether the connection must close after it.
fn plan_for(framing: Framing, body_len: Option<u64>, version: u8) -> (BodyPlan, bool) {
    match (framing, body_len, version) {
        (Framing::Empty, _, _) => (BodyPlan::None, false),
        (Framing::Length(n), _, _) | (Framing::UntilClose, Some(n), _) => {
            (BodyPlan::Length(n), false)
        }
        (Framing::Chunked, _, 1) => (BodyPlan::PassChunked, false),
        (Framing::Chunked, _, _) => (BodyPlan::Dechunk, true),
        (Framing::UntilClose, None, 1) => (BodyPlan::Rechunk, false),
        (Framing::UntilClose, None, _) => (BodyPlan::UntilClose, true),
    }
}

/// Whether a `304`'s header field leaves the stored response's alone (RFC 9111 3.2): the
/// framing and content coding of the stored body (the body is not what changes), hop-by-hop
/// fields, `Age` (recomputed) and liveweb's own.
fn keeps_stored(name: &str) -> bool {
    const KEPT: [&str; 5] = [
        "content-length",
        "content-encoding",
        "content-range",
        "transfer-encoding",
        "age",
    ];
    KEPT.iter().any(|k| name.eq_ignore_ascii_case(k))
        || super::HOP_BY_HOP
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h))
        || super::is_liveweb_header(name)
}

/// The header fields a `304` (its head as received, `head_304`) brings to the stored
/// response, on top of those `earlier` revalidations brought, as `Name: value\r\n` lines;
/// `None` when there are none. When the two together would exceed a response head's limits
/// (`MAX_RESPONSE_HEAD` bytes, `MAX_RESPONSE_HEADERS` fields), this `304`'s fields alone.
pub fn update_fields(head_304: &[u8], earlier: Option<&[u8]>) -> Option<std::sync::Arc<[u8]>> {
    let mut storage = [httparse::EMPTY_HEADER; super::response::MAX_RESPONSE_HEADERS];
    let mut parsed = httparse::Response::new(&mut storage);
    parsed.parse(head_304).ok()?;
    let named = connection_named(parsed.headers);
    let fresh: Vec<&httparse::Header> = parsed
        .headers
        .iter()
        .filter(|h| !keeps_stored(h.name) && !named.iter().any(|n| h.name.eq_ignore_ascii_case(n)))
        .collect();
    let mut latest = Vec::new();
    for h in &fresh {
        latest.extend_from_slice(h.name.as_bytes());
        latest.extend_from_slice(b": ");
        latest.extend_from_slice(h.value);
        latest.extend_from_slice(b"\r\n");
    }
    let mut out = Vec::new();
    let mut fields = fresh.len();
    // Earlier updates stay unless this 304 replaces them.
    for line in earlier.unwrap_or_default().split_inclusive(|&b| b == b'\n') {
        let name = line.split(|&b| b == b':').next().unwrap_or_default();
        let replaced = fresh
            .iter()
            .any(|h| h.name.as_bytes().eq_ignore_ascii_case(name));
        if !replaced {
            out.extend_from_slice(line);
            fields += 1;
        }
    }
    // New names on every 304 would grow the update (and the index's copy) without end; the
    // latest 304 is kept whole, as the freshness computed from it is.
    if out.len() + latest.len() > super::response::MAX_RESPONSE_HEAD
        || fields > super::response::MAX_RESPONSE_HEADERS
    {
        out.clear();
    }
    out.extend_from_slice(&latest);
    (!out.is_empty()).then(|| out.into())
}

/// The stored head (status line to blank line) with `update` applied: every field it names
/// replaces all of the stored fields of that name. A result over a response head's limits
/// (`MAX_RESPONSE_HEAD` bytes, `MAX_RESPONSE_HEADERS` fields) is not made: the stored head
/// as it is.
pub fn apply_update(raw_head: &[u8], update: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw_head.len() + update.len());
    let mut lines = raw_head.split_inclusive(|&b| b == b'\n');
    if let Some(status) = lines.next() {
        out.extend_from_slice(status);
    }
    let updated: Vec<&[u8]> = update
        .split_inclusive(|&b| b == b'\n')
        .map(|l| l.split(|&b| b == b':').next().unwrap_or_default())
        .collect();
    let mut fields = updated.len();
    for line in lines {
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        let name = line.split(|&b| b == b':').next().unwrap_or_default();
        if !updated
            .iter()
            .any(|u| u.eq_ignore_ascii_case(name.trim_ascii()))
        {
            out.extend_from_slice(line);
            fields += 1;
        }
    }
    out.extend_from_slice(update);
    out.extend_from_slice(b"\r\n");
    // A head past these limits would not parse (`kept_head`) nor be accepted from an origin.
    if out.len() > super::response::MAX_RESPONSE_HEAD
        || fields > super::response::MAX_RESPONSE_HEADERS
    {
        return raw_head.to_vec();
    }
    out
}

/// The client head: `kept` (see `kept_head`), then the framing and our own headers.
fn finish_head(
    kept: &[u8],
    framing: Framing,
    body_len: Option<u64>,
    client: &ClientSide,
) -> ForwardHead {
    let (plan, close) = plan_for(framing, body_len, client.version);
    let close = close || !client.keep_alive;
    let mut out = Vec::with_capacity(kept.len() + 128);
    let plan = match (client.range, plan) {
        (Some(range), BodyPlan::Length(total)) if kept.starts_with(b"HTTP/1.1 200 ") => {
            let rest = kept
                .iter()
                .position(|&b| b == b'\n')
                .map_or(kept.len(), |i| i + 1);
            let plan = match range.resolve(total) {
                Resolved::Part { first, len } => {
                    let last = first + len - 1;
                    let _ = write!(
                        out,
                        "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {first}-{last}/{total}\r\n"
                    );
                    BodyPlan::Range { skip: first, len }
                }
                Resolved::Unsatisfiable => {
                    let _ = write!(
                        out,
                        "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{total}\r\n"
                    );
                    BodyPlan::Length(0)
                }
            };
            out.extend_from_slice(&kept[rest..]);
            plan
        }
        (_, plan) => {
            out.extend_from_slice(kept);
            plan
        }
    };
    match plan {
        BodyPlan::Length(n) | BodyPlan::Range { len: n, .. } => {
            let _ = write!(out, "Content-Length: {n}\r\n");
        }
        BodyPlan::PassChunked | BodyPlan::Rechunk => {
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n")
        }
        BodyPlan::None | BodyPlan::Dechunk | BodyPlan::UntilClose => {}
    }
    out.extend_from_slice(super::via::via_line().as_bytes());
    if let Some(age) = client.age {
        let _ = write!(out, "Age: {age}\r\n");
    }
    if let (Some(limit), Framing::Length(n)) = (client.archive_limit, framing) {
        if n > limit {
            out.extend_from_slice(b"X-Liveweb-Archived: no; E40\r\n");
        }
    }
    let _ = write!(out, "X-Cache: {}\r\n", client.cache);
    let conn = ConnState {
        keep_alive: !close,
        version: client.version,
    };
    out.extend_from_slice(conn.header().as_bytes());
    out.extend_from_slice(b"\r\n");
    ForwardHead {
        head: out,
        plan: if client.head_only {
            BodyPlan::None
        } else {
            plan
        },
        close,
    }
}

/// A stored response made ready for forward-mode hits, once: its client head up to the
/// per-request part, and where its body lies, so a hit neither parses nor filters anything.
#[derive(Debug)]
pub struct ForwardTemplate {
    kept: Vec<u8>,
    framing: Framing,
    /// The body's range in the stored response.
    pub body: std::ops::Range<usize>,
}

impl ForwardTemplate {
    /// Prepares `response` (a whole stored response: head, body), or `None` if it does not
    /// parse.
    pub fn new(response: &[u8]) -> Option<Self> {
        let (head, head_at, body_start) = split_head(response).ok()??;
        Some(ForwardTemplate {
            // Hits only, which carry their own current age.
            kept: kept_head(&response[head_at..body_start], &head, true),
            framing: head.framing,
            body: body_start..response.len(),
        })
    }

    /// The head for this client and the body plan, when the stored body goes out unchanged
    /// (`None` for a chunked body to an HTTP/1.0 client, which must be decoded).
    pub fn head_for(&self, client: &ClientSide) -> Option<ForwardHead> {
        // Not for updated heads or ranges: those go through `forward_head` as they stream.
        if client.update.is_some() || client.range.is_some() {
            return None;
        }
        let f = finish_head(
            &self.kept,
            self.framing,
            Some(self.body.len() as u64),
            client,
        );
        (f.plan != BodyPlan::Dechunk).then_some(f)
    }

    /// Bytes held, for the hot shard's accounting.
    pub fn size(&self) -> usize {
        self.kept.len() + std::mem::size_of::<Self>()
    }
}

/// A keep-alive client of HTTP/1.`version` getting a miss, for tests here and beside.
#[cfg(test)]
pub(super) fn test_client(version: u8) -> ClientSide {
    ClientSide {
        version,
        keep_alive: true,
        head_only: false,
        cache: "MISS",
        age: None,
        archive_limit: None,
        update: None,
        range: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(version: u8) -> ClientSide {
        test_client(version)
    }

    /// The client head for an origin head, as text.
    fn head_for(origin: &str, body_len: Option<u64>, c: &ClientSide) -> (String, BodyPlan, bool) {
        let raw = origin.as_bytes();
        let parsed = super::super::response::parse_response_head(raw)
            .unwrap()
            .unwrap();
        let f = forward_head(raw, &parsed, body_len, c);
        (String::from_utf8(f.head).unwrap(), f.plan, f.close)
    }

    fn count(head: &str, name: &str) -> usize {
        head.lines()
            .filter(|l| {
                l.split(':')
                    .next()
                    .is_some_and(|n| n.eq_ignore_ascii_case(name))
            })
            .count()
    }

    #[test]
    fn an_origin_cannot_spoof_liveweb_s_headers_or_the_connection_s() {
        let origin = "HTTP/1.1 200 OK\r\nX-Cache: HIT\r\nx-liveweb-error: E00 fake\r\nX-Liveweb-Archived: yes\r\n\
            Connection: keep-alive, X-Secret\r\nX-Secret: s\r\nKeep-Alive: timeout=1\r\n\
            Proxy-Authenticate: Basic\r\nTrailer: X-T\r\nUpgrade: h2c\r\nX-Kept: yes\r\n\
            Content-Length: 3\r\n\r\n";
        let (head, plan, close) = head_for(origin, None, &client(1));
        assert_eq!(plan, BodyPlan::Length(3));
        assert!(!close);
        assert_eq!(count(&head, "x-cache"), 1, "{head}");
        assert!(head.contains("X-Cache: MISS\r\n"), "{head}");
        for gone in [
            "x-liveweb-error",
            "x-liveweb-archived",
            "x-secret",
            "keep-alive",
            "proxy-authenticate",
            "trailer",
            "upgrade",
        ] {
            assert_eq!(count(&head, gone), 0, "{gone} in {head}");
        }
        assert_eq!(count(&head, "x-kept"), 1);
        assert_eq!(count(&head, "content-length"), 1);
        assert_eq!(count(&head, "via"), 1);
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n") && head.ends_with("\r\n\r\n"));
    }

    #[test]
    fn a_reason_phrase_cannot_inject_lines_and_age_is_ours_only_on_hits() {
        let raw = b"HTTP/1.1 200 OK\r\nAge: 100\r\nContent-Length: 0\r\n\r\n";
        let mut parsed = super::super::response::parse_response_head(raw)
            .unwrap()
            .unwrap();
        parsed.reason = "OK\r\nX-Injected: 1".into();
        let f = forward_head(raw, &parsed, None, &client(1));
        let head = String::from_utf8(f.head).unwrap();
        assert!(!head.contains("\r\nX-Injected"), "{head}");
        assert!(
            head.contains("Age: 100\r\n"),
            "a miss passes the origin's Age on"
        );
        let hit = ClientSide {
            age: Some(160),
            cache: "HIT",
            ..client(1)
        };
        let f = forward_head(raw, &parsed, None, &hit);
        let head = String::from_utf8(f.head).unwrap();
        assert_eq!(count(&head, "age"), 1, "{head}");
        assert!(head.contains("Age: 160\r\n"));
    }

    #[test]
    fn each_framing_reaches_each_client_version_intact() {
        let chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        let (head, plan, close) = head_for(chunked, None, &client(1));
        assert_eq!((plan, close), (BodyPlan::PassChunked, false));
        assert_eq!(count(&head, "transfer-encoding"), 1);
        let (head, plan, close) = head_for(chunked, None, &client(0));
        assert_eq!((plan, close), (BodyPlan::Dechunk, true));
        assert_eq!(count(&head, "transfer-encoding"), 0, "{head}");
        let until_close = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n";
        let (head, plan, _) = head_for(until_close, None, &client(1));
        assert_eq!(plan, BodyPlan::Rechunk);
        assert!(head.contains("Transfer-Encoding: chunked\r\n"));
        assert_eq!(
            head_for(until_close, None, &client(0)).1,
            BodyPlan::UntilClose
        );
        // A stored body's length is known: it is sent with a Content-Length.
        let (head, plan, _) = head_for(until_close, Some(7), &client(1));
        assert_eq!(plan, BodyPlan::Length(7));
        assert!(head.contains("Content-Length: 7\r\n"));
        let no_body = "HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n";
        let (head, plan, _) = head_for(no_body, None, &client(1));
        assert_eq!(plan, BodyPlan::None);
        assert!(
            head.contains("Content-Length: 50\r\n"),
            "a 304 keeps its own: {head}"
        );
        // A client that asked to close gets Connection: close.
        let closing = ClientSide {
            keep_alive: false,
            ..client(1)
        };
        let (head, _, close) = head_for(
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n",
            None,
            &closing,
        );
        assert!(close && head.contains("Connection: close\r\n"), "{head}");
    }

    #[test]
    fn a_range_of_a_stored_body_is_a_206_or_a_416_and_an_oversized_one_is_labelled() {
        let ok = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n";
        let ranged = |spec: &str| ClientSide {
            range: super::super::range::parse_range(spec.as_bytes()),
            ..client(1)
        };
        let (head, plan, _) = head_for(ok, Some(10), &ranged("bytes=2-4"));
        assert_eq!(plan, BodyPlan::Range { skip: 2, len: 3 });
        assert!(head.starts_with("HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 2-4/10\r\n"));
        assert!(head.contains("Content-Length: 3\r\n"));
        assert_eq!(count(&head, "content-length"), 1, "{head}");
        let (head, plan, _) = head_for(ok, Some(10), &ranged("bytes=20-"));
        assert_eq!(plan, BodyPlan::Length(0));
        assert!(
            head.starts_with("HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */10\r\n")
        );
        let limited = ClientSide {
            archive_limit: Some(5),
            ..client(1)
        };
        let (head, _, _) = head_for(ok, None, &limited);
        assert!(head.contains("X-Liveweb-Archived: no; E40\r\n"), "{head}");
    }

    #[test]
    fn a_304_replaces_fields_by_name_but_never_the_framing() {
        let stored = b"HTTP/1.1 200 OK\r\nCache-Control: max-age=0\r\nX-A: 1\r\nX-A: 2\r\nContent-Length: 4\r\nContent-Encoding: gzip\r\nX-Keep: k\r\n\r\n";
        let not_modified = b"HTTP/1.1 304 Not Modified\r\nCache-Control: max-age=60\r\nx-a: 3\r\nContent-Length: 99\r\nContent-Encoding: br\r\nConnection: close, X-Hop\r\nX-Hop: h\r\nKeep-Alive: 5\r\nAge: 7\r\nX-Cache: HIT\r\n\r\n";
        let update = update_fields(not_modified, None).unwrap();
        assert_eq!(&update[..], b"Cache-Control: max-age=60\r\nx-a: 3\r\n");
        assert_eq!(
            apply_update(stored, &update),
            b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nContent-Encoding: gzip\r\nX-Keep: k\r\nCache-Control: max-age=60\r\nx-a: 3\r\n\r\n"
        );
        // A later 304 replaces what it names and keeps the rest of the earlier update.
        let later = update_fields(
            b"HTTP/1.1 304 Not Modified\r\nX-A: 4\r\nETag: \"e\"\r\n\r\n",
            Some(&update),
        )
        .unwrap();
        assert_eq!(
            &later[..],
            b"Cache-Control: max-age=60\r\nX-A: 4\r\nETag: \"e\"\r\n"
        );
        // Nothing to update.
        assert_eq!(
            update_fields(b"HTTP/1.1 304 Not Modified\r\nAge: 1\r\n\r\n", None),
            None
        );
    }

    #[test]
    fn new_names_on_every_304_do_not_grow_the_update_and_the_latest_304_is_applied() {
        use super::super::response::{MAX_RESPONSE_HEAD, MAX_RESPONSE_HEADERS};
        let stored = "HTTP/1.1 200 OK\r\nCache-Control: max-age=0\r\nContent-Length: 4\r\n\r\n";
        let mut update: Option<std::sync::Arc<[u8]>> = None;
        for i in 0..2 * MAX_RESPONSE_HEADERS {
            let head_304 = format!(
                "HTTP/1.1 304 Not Modified\r\nCache-Control: max-age={i}\r\nX-New-{i}: {}\r\n\r\n",
                "v".repeat(1024)
            );
            update = update_fields(head_304.as_bytes(), update.as_deref());
            let u = update.as_deref().unwrap();
            let fields = u.split_inclusive(|&b| b == b'\n').count();
            assert!(u.len() <= MAX_RESPONSE_HEAD && fields <= MAX_RESPONSE_HEADERS);
            let c = ClientSide {
                update: update.clone(),
                ..client(1)
            };
            let (head, plan, _) = head_for(stored, None, &c);
            assert_eq!(plan, BodyPlan::Length(4));
            assert!(
                head.contains(&format!("Cache-Control: max-age={i}\r\n")),
                "{head}"
            );
            assert!(head.contains(&format!("X-New-{i}: ")));
        }
    }

    #[test]
    fn an_update_that_would_make_the_head_too_big_leaves_the_stored_head_as_it_is() {
        use super::super::response::MAX_RESPONSE_HEADERS;
        let mut stored = String::from("HTTP/1.1 200 OK\r\n");
        for i in 0..MAX_RESPONSE_HEADERS - 1 {
            stored.push_str(&format!("X-Stored-{i}: s\r\n"));
        }
        stored.push_str("\r\n");
        let small = b"X-Stored-0: u\r\n";
        let applied = apply_update(stored.as_bytes(), small);
        assert!(String::from_utf8(applied)
            .unwrap()
            .contains("X-Stored-0: u\r\n"));
        let more = b"X-Update-1: u\r\nX-Update-2: u\r\n";
        assert_eq!(apply_update(stored.as_bytes(), more), stored.as_bytes());
    }
}
