//! The upstream HTTP/1.1 client: one fetch of one URL, on a pooled connection or a fresh one
//! (`connect`), the exchange itself in `exchange`; the raw bytes are kept as received for the
//! archive.

use std::net::IpAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::connect::{connect_origin, Upstream};
use super::exchange::{exchange, Exchanged};
use super::pool::{Identity, UpstreamPool};
use super::request::{build_request, UpstreamBody};
use super::tap::Tap;
use crate::error::Error;
use crate::http::cache::is_withheld_on_fetch;
use crate::http::request::Header;
use crate::http::response::ResponseHead;
use crate::http::url::TargetUrl;

/// Time and size bounds for one fetch.
#[derive(Debug, Clone, Copy)]
pub struct FetchLimits {
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub fetch_timeout: Duration,
    pub max_body: u64,
}

/// A complete origin response.
#[derive(Debug)]
pub struct Fetched {
    /// Status line, headers and body exactly as received (chunked framing kept); when the
    /// response spilled to disk, its heads only.
    pub raw: Vec<u8>,
    /// The whole response as received, when it was too big to keep in memory
    /// (`--spill-threshold`).
    pub spill: Option<super::spill::Spill>,
    /// What `raw` holds of the workers' shared transfer budget, given back when dropped.
    pub held: super::spill::Held,
    pub head: ResponseHead,
    /// Where the body starts in `raw` (after the final head and any interim 1xx responses).
    pub body_start: usize,
    pub ip: IpAddr,
    /// The request as sent upstream (for WARC's request record).
    pub request: bytes::Bytes,
}

impl Fetched {
    /// The final response head as received (after any interim 1xx responses): found from
    /// where the body starts, without parsing the response again.
    pub fn final_head(&self) -> &[u8] {
        let start = self.body_start.saturating_sub(self.head.head_len);
        self.raw.get(start..self.body_start).unwrap_or(&[])
    }
}

/// A failed fetch, with the origin address when it was known (for the failure record).
#[derive(Debug, Clone)]
pub struct FetchError {
    pub error: Error,
    pub ip: Option<IpAddr>,
}

/// Fetches `url` and returns the whole response. The client's conditional headers (and
/// Range) are not sent: what is stored must be the whole response; `validators` are sent
/// instead when a stored response is being revalidated. With a tap, the bytes are also
/// handed on as they arrive; a failed fetch (or one too big to archive) closes the tap, a
/// response to archive leaves it open: the caller closes it once the record is written, so
/// the client's reply completes only then (the tap holds back its last bytes until closed).
pub async fn fetch(
    up: Upstream<'_>,
    url: &TargetUrl,
    client_headers: &[Header],
    validators: &[Header],
    tap: Option<Rc<Tap>>,
) -> Result<Fetched, FetchError> {
    let rewritten: Vec<Header>;
    let headers =
        if validators.is_empty() && !client_headers.iter().any(|h| is_withheld_on_fetch(&h.name)) {
            client_headers
        } else {
            rewritten = client_headers
                .iter()
                .filter(|h| !is_withheld_on_fetch(&h.name))
                .chain(validators)
                .cloned()
                .collect();
            &rewritten
        };
    let result = fetch_inner(up, url, headers, tap.as_ref()).await;
    if let (Some(tap), Err(fe)) = (tap, &result) {
        // With a tap, TooBig means the response was read whole (the client has it all) but
        // is not archived: nothing to wait for.
        let whole = match fe.error {
            Error::TooBig(_) => Ok(()),
            _ => Err(fe.error.clone()),
        };
        tap.close(whole);
    }
    result
}

async fn fetch_inner(
    up: Upstream<'_>,
    url: &TargetUrl,
    client_headers: &[Header],
    tap: Option<&Rc<Tap>>,
) -> Result<Fetched, FetchError> {
    let limits = up.limits;
    let deadline = Instant::now() + limits.fetch_timeout;
    // Shared, so a retry on a fresh connection does not copy it.
    let request = bytes::Bytes::from(build_request(
        "GET",
        url,
        client_headers,
        up.user_agent,
        UpstreamBody::None,
        true,
    ));
    // A pooled connection first, one opened for requests with the same credentials; if the
    // origin had closed it (nothing comes back) or answered out of turn before any of the
    // answer was handed on, once more on a fresh one.
    let identity = up.pool.identity(client_headers);
    if let Some((stream, ip)) = up
        .pool
        .checkout(url.scheme, url.host_for_dns(), url.port, identity)
    {
        if let Some(tap) = tap {
            tap.set_upstream(ip);
        }
        match exchange(
            stream,
            request.clone(),
            limits,
            deadline,
            tap,
            true,
            up.spill,
        )
        .await
        {
            Ok(done) => return finish(done, up.pool, url, identity, ip, limits, request),
            Err((_, false)) => {}
            Err((error, true)) => {
                return Err(FetchError {
                    error,
                    ip: Some(ip),
                })
            }
        }
    }
    // Boxed, like the exchange below: a fresh connection (DNS, connect, TLS handshake) is
    // the rare path, and its large futures would otherwise size every fetch's task, which is
    // copied whole when it is spawned (`ab-20261126T085810Z.txt`).
    let (stream, ip) = Box::pin(connect_origin(up, url, deadline)).await?;
    if let Some(tap) = tap {
        tap.set_upstream(ip);
    }
    match Box::pin(exchange(
        stream,
        request.clone(),
        limits,
        deadline,
        tap,
        false,
        up.spill,
    ))
    .await
    {
        Ok(done) => finish(done, up.pool, url, identity, ip, limits, request),
        Err((error, _)) => Err(FetchError {
            error,
            ip: Some(ip),
        }),
    }
}

fn finish(
    done: Exchanged,
    pool: &UpstreamPool,
    url: &TargetUrl,
    identity: Identity,
    ip: IpAddr,
    limits: &FetchLimits,
    request: bytes::Bytes,
) -> Result<Fetched, FetchError> {
    if let Some(stream) = done.reusable {
        pool.checkin(
            url.scheme,
            url.host_for_dns(),
            url.port,
            identity,
            stream,
            ip,
        );
    }
    if !done.archivable {
        return Err(FetchError {
            error: Error::TooBig(limits.max_body),
            ip: Some(ip),
        });
    }
    Ok(Fetched {
        raw: done.raw,
        held: done.held,
        spill: done.spill,
        head: done.head,
        body_start: done.body_start,
        ip,
        request,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::response::ResponseTracker;

    /// A response fed to the tracker as the exchange does, `step` bytes at a time.
    fn fetched(raw: &[u8], step: usize) -> Fetched {
        let mut tracker = ResponseTracker::new();
        let mut ended = false;
        for piece in raw.chunks(step) {
            ended = tracker.feed(piece).unwrap().is_some();
        }
        assert!(ended);
        let body_start = tracker.head_len().unwrap();
        Fetched {
            raw: raw.to_vec(),
            head: tracker.take_head().unwrap(),
            body_start,
            spill: None,
            held: Default::default(),
            ip: IpAddr::from([127, 0, 0, 1]),
            request: bytes::Bytes::new(),
        }
    }

    #[test]
    fn the_final_head_is_found_without_parsing_again_after_interim_responses() {
        let head = "HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 4\r\n\r\n";
        let with_interim = format!(
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n{head}body"
        );
        for raw in [format!("{head}body"), with_interim] {
            for step in [1, 7, raw.len()] {
                let f = fetched(raw.as_bytes(), step);
                assert_eq!(
                    f.final_head(),
                    head.as_bytes(),
                    "{raw:?} in steps of {step}"
                );
                assert_eq!(&f.raw[f.body_start..], b"body");
            }
        }
    }
}
