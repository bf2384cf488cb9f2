//! Forward-mode replies: the origin's own response as a browser expects it. Rewrites the
//! origin's head for the client (hop-by-hop headers replaced by our own connection management,
//! `Via` and `Age` added) and chooses how the body is framed for this client, then a filter
//! turns the origin's body bytes into the client's. Pure: no I/O.

use std::io::Write;

use super::chunked::ChunkedScanner;
use super::reply::{sanitize_reason, ConnState};
use super::request::tokens;
pub use super::response::split_head;
use super::response::{Framing, ResponseHead};
use crate::error::Error;

/// Whether an origin header is dropped on the way to the client: the hop-by-hop ones
/// (replaced by our own connection management), those its `Connection` header names, `Age`
/// (we set our own on hits), our own diagnostics (`X-Cache`, `X-Liveweb-*`: an origin must
/// not be able to spoof them), and Content-Length unless the response has no body (otherwise
/// the framing decides it).
fn dropped(name: &str, named: &[&str], framing: Framing) -> bool {
    let is = |h: &&str| name.eq_ignore_ascii_case(h);
    super::HOP_BY_HOP.iter().any(is)
        || named.iter().any(is)
        || name.eq_ignore_ascii_case("age")
        || super::is_liveweb_header(name)
        || (name.eq_ignore_ascii_case("content-length") && framing != Framing::Empty)
}

/// What the client asked and how the connection is managed.
#[derive(Debug, Clone, Copy)]
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
    client: ClientSide,
) -> ForwardHead {
    finish_head(
        &kept_head(raw_head, origin),
        origin.framing,
        body_len,
        client,
    )
}

/// The part of the client head that depends only on the stored response: the status line
/// and the origin headers that go on to the client.
fn kept_head(raw_head: &[u8], origin: &ResponseHead) -> Vec<u8> {
    let mut storage = [httparse::EMPTY_HEADER; super::response::MAX_RESPONSE_HEADERS];
    let mut parsed = httparse::Response::new(&mut storage);
    // The head was parsed once already; a failure here cannot happen, and would only lose
    // the origin's headers, not the framing decision.
    let _ = parsed.parse(raw_head);
    let named: Vec<&str> = parsed
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .flat_map(|h| tokens(h.value))
        .collect();
    let mut out = Vec::with_capacity(raw_head.len() + 128);
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\n",
        origin.status,
        sanitize_reason(&origin.reason)
    );
    for h in parsed.headers.iter() {
        if dropped(h.name, &named, origin.framing) {
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

/// The client head: `kept` (see `kept_head`), then the framing and our own headers.
fn finish_head(
    kept: &[u8],
    framing: Framing,
    body_len: Option<u64>,
    client: ClientSide,
) -> ForwardHead {
    let (plan, close) = plan_for(framing, body_len, client.version);
    let close = close || !client.keep_alive;
    let mut out = Vec::with_capacity(kept.len() + 128);
    out.extend_from_slice(kept);
    match plan {
        BodyPlan::Length(n) => {
            let _ = write!(out, "Content-Length: {n}\r\n");
        }
        BodyPlan::PassChunked | BodyPlan::Rechunk => {
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n")
        }
        BodyPlan::None | BodyPlan::Dechunk | BodyPlan::UntilClose => {}
    }
    out.extend_from_slice(b"Via: 1.1 liveweb\r\n");
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
            kept: kept_head(&response[head_at..body_start], &head),
            framing: head.framing,
            body: body_start..response.len(),
        })
    }

    /// The head for this client and the body plan, when the stored body goes out unchanged
    /// (`None` for a chunked body to an HTTP/1.0 client, which must be decoded).
    pub fn head_for(&self, client: ClientSide) -> Option<ForwardHead> {
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

/// Turns origin body bytes into client body bytes according to a `BodyPlan`.
#[derive(Debug)]
pub struct BodyFilter {
    plan: BodyPlan,
    /// Bytes still expected for `Length`.
    remaining: u64,
    chunks: ChunkedScanner,
    done: bool,
}

impl BodyFilter {
    pub fn new(plan: BodyPlan) -> Self {
        BodyFilter {
            plan,
            remaining: match plan {
                BodyPlan::Length(n) => n,
                _ => 0,
            },
            chunks: ChunkedScanner::new(),
            done: matches!(plan, BodyPlan::None | BodyPlan::Length(0)),
        }
    }

    /// Whether the whole body has been produced.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Whether the client gets the origin's body bytes unchanged (so they can be sent
    /// straight from where they are stored).
    pub fn is_identity(&self) -> bool {
        matches!(
            self.plan,
            BodyPlan::Length(_) | BodyPlan::PassChunked | BodyPlan::UntilClose
        )
    }

    /// Appends the client bytes for `input` to `out`. Input past the end is ignored.
    pub fn push(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        if self.done || input.is_empty() {
            return Ok(());
        }
        match self.plan {
            BodyPlan::None => {}
            BodyPlan::Length(_) => {
                let take = self.remaining.min(input.len() as u64) as usize;
                out.extend_from_slice(&input[..take]);
                self.remaining -= take as u64;
                self.done = self.remaining == 0;
            }
            BodyPlan::PassChunked => {
                let end = self.chunks.feed(input)?;
                out.extend_from_slice(&input[..end.unwrap_or(input.len())]);
                self.done = end.is_some();
            }
            BodyPlan::Dechunk => {
                let end = self.chunks.feed_with(input, |d| out.extend_from_slice(d))?;
                self.done = end.is_some();
            }
            BodyPlan::Rechunk => {
                let _ = write!(out, "{:x}\r\n", input.len());
                out.extend_from_slice(input);
                out.extend_from_slice(b"\r\n");
            }
            BodyPlan::UntilClose => out.extend_from_slice(input),
        }
        Ok(())
    }

    /// The origin's body has ended: finish the client's framing, or fail if the body was cut
    /// short (the client must then see its connection closed, not a complete-looking reply).
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), Error> {
        match self.plan {
            BodyPlan::Rechunk => out.extend_from_slice(b"0\r\n\r\n"),
            BodyPlan::UntilClose | BodyPlan::None => {}
            _ if self.done => {}
            _ => return Err(Error::Dropped("response body ended early".into())),
        }
        self.done = true;
        Ok(())
    }
}

/// Where a streamed response stands.
#[derive(Debug)]
enum Stage {
    /// Collecting the origin's head.
    Head(Vec<u8>),
    /// Sending the body; `remaining` counts down a body of known length.
    Body {
        filter: BodyFilter,
        remaining: Option<u64>,
    },
    /// The client has everything.
    Done,
}

/// Turns an origin response arriving in pieces (from a socket, or from a stored record) into
/// the client's reply: head rewritten once it is whole, body framed for the client.
#[derive(Debug)]
pub struct ResponseStreamer {
    client: ClientSide,
    /// Total bytes of the response when known in advance (a stored response).
    total: Option<u64>,
    stage: Stage,
    close: bool,
    /// The origin's status, once the head is in.
    pub status: Option<u16>,
}

impl ResponseStreamer {
    pub fn new(client: ClientSide, total: Option<u64>) -> Self {
        ResponseStreamer {
            client,
            total,
            stage: Stage::Head(Vec::new()),
            close: !client.keep_alive,
            status: None,
        }
    }

    /// The client has its whole reply.
    pub fn is_done(&self) -> bool {
        matches!(self.stage, Stage::Done)
    }

    /// The connection must close after this reply.
    pub fn must_close(&self) -> bool {
        self.close
    }

    /// The head is out and the rest of the body passes through unchanged: the caller may
    /// send it from storage itself and call `skip_rest`.
    pub fn passes_body_through(&self) -> bool {
        matches!(&self.stage, Stage::Body { filter, .. } if filter.is_identity())
    }

    /// The caller sent the rest of the body itself.
    pub fn skip_rest(&mut self) {
        self.stage = Stage::Done;
    }

    /// Feeds origin bytes; appends the client's bytes to `out`.
    pub fn push(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        let Stage::Head(buf) = &mut self.stage else {
            return self.push_body(data, out);
        };
        buf.extend_from_slice(data);
        let Some((head, head_at, body_start)) = split_head(buf)? else {
            if buf.len() > super::response::MAX_RESPONSE_HEAD {
                return Err(Error::InvalidResponse("response head too large".into()));
            }
            return Ok(());
        };
        let buf = std::mem::take(buf);
        let body_len = self.total.map(|t| t.saturating_sub(body_start as u64));
        let f = forward_head(&buf[head_at..body_start], &head, body_len, self.client);
        out.extend_from_slice(&f.head);
        self.close |= f.close;
        self.status = Some(head.status);
        let filter = BodyFilter::new(f.plan);
        let empty = filter.is_done();
        self.stage = Stage::Body {
            filter,
            remaining: body_len,
        };
        if empty {
            return self.finish(out);
        }
        self.push_body(&buf[body_start..], out)
    }

    fn push_body(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
        let Stage::Body { filter, remaining } = &mut self.stage else {
            return Ok(());
        };
        let take = remaining.map_or(data.len(), |r| (r as usize).min(data.len()));
        filter.push(&data[..take], out)?;
        if let Some(r) = remaining.as_mut() {
            *r -= take as u64;
        }
        if filter.is_done() || *remaining == Some(0) {
            return self.finish(out);
        }
        Ok(())
    }

    /// The origin's response has ended (or the stored one was read whole): complete the
    /// client's framing, or fail if the response was cut short.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), Error> {
        match &mut self.stage {
            Stage::Done => Ok(()),
            Stage::Head(_) => Err(Error::Dropped("response ended inside its head".into())),
            Stage::Body { filter, .. } => {
                filter.finish(out)?;
                self.stage = Stage::Done;
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(version: u8) -> ClientSide {
        ClientSide {
            version,
            keep_alive: true,
            head_only: false,
            cache: "HIT",
            age: Some(5),
            archive_limit: None,
        }
    }

    /// Streams `raw` through a `ResponseStreamer` in 3-byte pieces; `body_len` given means a
    /// stored response (whose total length is known).
    fn run(raw: &[u8], body_len: Option<u64>, c: ClientSide) -> (String, Vec<u8>, bool) {
        let total = body_len.map(|_| raw.len() as u64);
        let mut s = ResponseStreamer::new(c, total);
        let mut out = Vec::new();
        for piece in raw.chunks(3) {
            s.push(piece, &mut out).unwrap();
        }
        s.finish(&mut out).unwrap();
        let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let head = String::from_utf8(out[..split].to_vec()).unwrap();
        (head, out[split..].to_vec(), s.must_close())
    }

    #[test]
    fn a_template_gives_the_same_reply_as_the_streamer() {
        let responses: [&[u8]; 5] = [
            b"HTTP/1.1 200 OK\r\nServer: o\r\nConnection: X-Hop\r\nX-Hop: 1\r\nAge: 9\r\nContent-Length: 5\r\n\r\nhello",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Gone Away\r\nContent-Length: 2\r\n\r\nno",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close",
            b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n",
        ];
        for raw in responses {
            let t = ForwardTemplate::new(raw).unwrap();
            for version in [0, 1] {
                for (keep_alive, head_only) in [(true, false), (false, false), (true, true)] {
                    let c = ClientSide {
                        keep_alive,
                        head_only,
                        ..client(version)
                    };
                    let (head, body, close) = run(raw, Some(raw.len() as u64), c);
                    let Some(f) = t.head_for(c) else {
                        assert!(raw.ends_with(b"0\r\n\r\n") && version == 0);
                        continue;
                    };
                    assert_eq!(String::from_utf8(f.head).unwrap(), head);
                    assert_eq!(f.close, close);
                    let sent = if f.plan == BodyPlan::None {
                        &[][..]
                    } else {
                        &raw[t.body.clone()]
                    };
                    assert_eq!(sent, &body[..], "{version} {keep_alive} {head_only}");
                }
            }
        }
        assert!(ForwardTemplate::new(b"not http").is_none());
    }

    #[test]
    fn rewrites_hop_by_hop_and_adds_via_age() {
        let raw = b"HTTP/1.1 200 OK\r\nServer: o\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nAge: 99\r\nX-Cache: HIT from origin\r\nx-liveweb-error: E99 spoofed\r\nX-Liveweb-Archived: yes\r\nContent-Length: 5\r\n\r\nhello";
        let (head, body, close) = run(raw, None, client(1));
        assert_eq!(
            head,
            "HTTP/1.1 200 OK\r\nServer: o\r\nContent-Length: 5\r\nVia: 1.1 liveweb\r\nAge: 5\r\nX-Cache: HIT\r\n\r\n"
        );
        assert_eq!(body, b"hello");
        assert!(!close);
    }

    #[test]
    fn chunked_to_http11_passes_and_to_http10_is_decoded() {
        let raw =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nT: x\r\n\r\n";
        let (head, body, close) = run(raw, None, client(1));
        assert!(head.contains("Transfer-Encoding: chunked\r\n"));
        assert_eq!(body, b"5\r\nhello\r\n0\r\nT: x\r\n\r\n");
        assert!(!close);
        let (head, body, close) = run(raw, None, client(0));
        assert!(!head.contains("Transfer-Encoding") && head.contains("Connection: close\r\n"));
        assert_eq!(body, b"hello");
        assert!(close);
    }

    #[test]
    fn close_delimited_bodies() {
        let raw = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close";
        let (head, body, _) = run(raw, Some(11), client(1));
        assert!(
            head.contains("Content-Length: 11\r\n"),
            "stored: length known"
        );
        assert_eq!(body, b"until close");
        let (head, body, _) = run(raw, None, client(1));
        assert!(
            head.contains("Transfer-Encoding: chunked\r\n"),
            "live: re-chunked"
        );
        assert_eq!(
            body,
            b"3\r\nunt\r\n3\r\nil \r\n3\r\nclo\r\n2\r\nse\r\n0\r\n\r\n"
        );
        let (_, body, close) = run(raw, None, client(0));
        assert_eq!(body, b"until close");
        assert!(close);
    }

    #[test]
    fn interim_and_bodiless_and_head() {
        let raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 304 Not Modified\r\nETag: x\r\nContent-Length: 7\r\n\r\n";
        let (head, body, _) = run(raw, None, client(1));
        assert!(head.starts_with("HTTP/1.1 304 Not Modified\r\nETag: x\r\nContent-Length: 7\r\n"));
        assert!(body.is_empty());
        let get = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        let mut c = client(1);
        c.head_only = true;
        let (head, body, _) = run(get, None, c);
        assert!(head.contains("Content-Length: 5\r\n"));
        assert!(body.is_empty());
    }

    #[test]
    fn short_body_is_an_error_not_a_complete_reply() {
        let mut f = BodyFilter::new(BodyPlan::Length(10));
        let mut out = Vec::new();
        f.push(b"short", &mut out).unwrap();
        assert!(f.finish(&mut out).is_err());
        let mut f = BodyFilter::new(BodyPlan::PassChunked);
        f.push(b"5\r\nhel", &mut out).unwrap();
        assert!(f.finish(&mut out).is_err());
    }
}
