//! Forward-mode bodies: a filter that turns the origin's body bytes into the client's as the
//! plan for this client says (`BodyFilter`), and the streamer that takes a whole stored or
//! arriving response, head then body, to the client's reply (`ResponseStreamer`). Pure: no
//! I/O.

use std::io::Write;

use super::chunked::ChunkedScanner;
use super::client_head::{forward_head, split_head, BodyPlan, ClientSide};
use crate::error::Error;

/// Turns origin body bytes into client body bytes according to a `BodyPlan`.
#[derive(Debug)]
pub struct BodyFilter {
    plan: BodyPlan,
    /// Bytes still expected for `Length`.
    remaining: u64,
    chunks: ChunkedScanner,
    done: bool,
    /// For `Range`: body bytes still to skip before the range starts.
    skip: u64,
}

impl BodyFilter {
    pub fn new(plan: BodyPlan) -> Self {
        BodyFilter {
            plan,
            remaining: match plan {
                BodyPlan::Length(n) | BodyPlan::Range { len: n, .. } => n,
                _ => 0,
            },
            chunks: ChunkedScanner::new(),
            done: matches!(
                plan,
                BodyPlan::None | BodyPlan::Length(0) | BodyPlan::Range { len: 0, .. }
            ),
            skip: match plan {
                BodyPlan::Range { skip, .. } => skip,
                _ => 0,
            },
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
            BodyPlan::Length(_) | BodyPlan::Range { .. } => {
                let skipped = self.skip.min(input.len() as u64) as usize;
                self.skip -= skipped as u64;
                let input = &input[skipped..];
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
            close: !client.keep_alive,
            client,
            total,
            stage: Stage::Head(Vec::new()),
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
        let f = forward_head(&buf[head_at..body_start], &head, body_len, &self.client);
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
    use crate::http::client_head::ForwardTemplate;

    fn client(version: u8) -> ClientSide {
        ClientSide {
            cache: "HIT",
            age: Some(5),
            ..crate::http::client_head::test_client(version)
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
    fn a_range_skips_and_stops_across_pieces() {
        for step in [1, 3, 10] {
            let mut f = BodyFilter::new(BodyPlan::Range { skip: 2, len: 5 });
            assert!(!f.is_identity());
            let mut out = Vec::new();
            for piece in b"0123456789".chunks(step) {
                f.push(piece, &mut out).unwrap();
            }
            assert_eq!(out, b"23456", "step {step}");
            assert!(f.is_done());
            f.finish(&mut out).unwrap();
        }
        let mut cut = BodyFilter::new(BodyPlan::Range { skip: 2, len: 5 });
        cut.push(b"0123", &mut Vec::new()).unwrap();
        assert!(
            cut.finish(&mut Vec::new()).is_err(),
            "cut short before the range's end"
        );
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
                    let (head, body, close) = run(raw, Some(raw.len() as u64), c.clone());
                    let Some(f) = t.head_for(&c) else {
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
