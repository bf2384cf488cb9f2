//! Decides what a request is, in one place: for liveweb itself (origin-form `/_liveweb/...`),
//! a CONNECT tunnel, a pass-through of another method, or a cacheable GET/HEAD answered in
//! liveweb or forward mode. Pure: the connection loop acts on the answer.

use crate::config::Mode;
use crate::error::Error;
use crate::http::request::{Method, RequestHead};
use crate::http::url::parse_absolute;
use crate::http::via::{names_this_node, pseudonym};
use crate::warcprox::{Capture, WarcproxMeta};

#[derive(Debug, PartialEq)]
pub enum Route {
    /// Origin-form: a request for liveweb itself.
    Admin,
    /// Forward-mode CONNECT.
    Tunnel,
    /// Forward mode, a method other than GET/HEAD: relayed to the origin, never cached.
    PassThrough,
    /// GET or HEAD of an absolute URL: looked up, fetched once, archived. `capture`: what
    /// its `Warcprox-Meta` asked of the capture.
    Cache { forward: bool, capture: Capture },
    /// warcprox's `WARCPROX_WRITE_RECORD`: the body is a record to archive (in the
    /// `warc-prefix` files its `Warcprox-Meta` names, if any).
    WriteRecord { warc_prefix: Option<String> },
    /// Answered with this error (after the request body, if any, is read).
    Refuse(Error),
}

/// The route for `req` under `--mode` (`default`), which the request's `X-Liveweb-Mode`
/// header may override.
pub fn route(default: Mode, req: &RequestHead) -> Route {
    // Before anything else, admin requests included: liveweb fetching its own status page
    // from loopback (which is admin) is the loop that matters most.
    if req
        .headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("via") && names_this_node(&h.value))
    {
        return Route::Refuse(Error::LoopDetected(format!(
            "the request already passed through {} (Via)",
            pseudonym()
        )));
    }
    if matches!(&req.method, Method::Other(m) if m == super::write_record::METHOD) {
        return match warcprox_check(req) {
            Ok(capture) => Route::WriteRecord {
                warc_prefix: capture.warc_prefix,
            },
            Err(e) => Route::Refuse(e),
        };
    }
    if req.target.starts_with('/') {
        return Route::Admin;
    }
    let forward = match forward_requested(default, req) {
        Ok(forward) => forward,
        Err(e) => return Route::Refuse(e),
    };
    let capture = match warcprox_check(req) {
        Ok(capture) => capture,
        Err(e) => return Route::Refuse(e),
    };
    match &req.method {
        Method::Get | Method::Head => Route::Cache { forward, capture },
        Method::Other(m) if forward && m == "CONNECT" => Route::Tunnel,
        Method::Other(_) if forward => Route::PassThrough,
        Method::Other(m) if m == "CONNECT" => Route::Refuse(Error::TunnelNeedsForward),
        Method::Other(_) => Route::Refuse(Error::MethodNotAllowed),
    }
}

/// Reads the request's `Warcprox-Meta`, once: refused when malformed, or when a rule blocks
/// its URL (before anything is fetched or archived); else what it asks of the capture.
pub fn warcprox_check(req: &RequestHead) -> Result<Capture, Error> {
    let Some(meta) = WarcproxMeta::of(req)? else {
        return Ok(Capture::default());
    };
    if let Ok(url) = parse_absolute(&req.target) {
        if let Some(rule) = meta.blocked(&url) {
            return Err(Error::BlockedByRule(rule));
        }
    }
    Ok(meta.capture())
}

/// `--mode`, unless the request says otherwise with `X-Liveweb-Mode`.
fn forward_requested(default: Mode, req: &RequestHead) -> Result<bool, Error> {
    match req.header("x-liveweb-mode") {
        None => Ok(default == Mode::Forward),
        Some(v) if v.eq_ignore_ascii_case(b"forward") => Ok(true),
        Some(v) if v.eq_ignore_ascii_case(b"liveweb") => Ok(false),
        Some(_) => Err(Error::BadRequest(
            "X-Liveweb-Mode must be liveweb or forward",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::{parse_request_head, Limits};

    fn route_of(default: Mode, raw: &str) -> Route {
        let (req, _) = parse_request_head(raw.as_bytes(), &Limits::default())
            .unwrap()
            .unwrap();
        route(default, &req)
    }

    #[test]
    fn each_kind_of_request_has_one_route() {
        let l = Mode::Liveweb;
        let f = Mode::Forward;
        let get = "GET http://a/ HTTP/1.1\r\n\r\n";
        assert_eq!(
            route_of(l, get),
            Route::Cache {
                forward: false,
                capture: Capture::default()
            }
        );
        assert_eq!(
            route_of(f, get),
            Route::Cache {
                forward: true,
                capture: Capture::default()
            }
        );
        assert_eq!(
            route_of(
                l,
                "HEAD http://a/ HTTP/1.1\r\nX-Liveweb-Mode: FORWARD\r\n\r\n"
            ),
            Route::Cache {
                forward: true,
                capture: Capture::default()
            }
        );
        assert_eq!(
            route_of(
                f,
                "GET http://a/ HTTP/1.1\r\nX-Liveweb-Mode: liveweb\r\n\r\n"
            ),
            Route::Cache {
                forward: false,
                capture: Capture::default()
            }
        );
        assert_eq!(
            route_of(f, "GET /_liveweb/health HTTP/1.1\r\n\r\n"),
            Route::Admin
        );
        assert_eq!(route_of(l, "POST /x HTTP/1.1\r\n\r\n"), Route::Admin);
        assert_eq!(route_of(f, "CONNECT a:443 HTTP/1.1\r\n\r\n"), Route::Tunnel);
        assert_eq!(
            route_of(f, "POST http://a/ HTTP/1.1\r\nContent-Length: 0\r\n\r\n"),
            Route::PassThrough
        );
        assert_eq!(
            route_of(l, "DELETE http://a/ HTTP/1.1\r\n\r\n"),
            Route::Refuse(Error::MethodNotAllowed)
        );
        assert_eq!(
            route_of(l, "CONNECT a:443 HTTP/1.1\r\n\r\n"),
            Route::Refuse(Error::TunnelNeedsForward)
        );
        assert!(matches!(
            route_of(l, "GET http://a/ HTTP/1.1\r\nX-Liveweb-Mode: both\r\n\r\n"),
            Route::Refuse(Error::BadRequest(_))
        ));
        // A request that came through this node already, admin requests too.
        for raw in [
            "GET http://a/ HTTP/1.1\r\nVia: 1.0 other, 1.1 liveweb\r\n\r\n",
            "GET /_liveweb/status.json HTTP/1.1\r\nVia: 1.1 liveweb\r\n\r\n",
            "CONNECT a:443 HTTP/1.1\r\nVia: 1.1 liveweb\r\n\r\n",
        ] {
            assert!(
                matches!(route_of(f, raw), Route::Refuse(Error::LoopDetected(_))),
                "{raw}"
            );
        }
        assert_eq!(
            route_of(
                l,
                "GET http://a/ HTTP/1.1\r\nVia: 1.1 liveweb-elsewhere\r\n\r\n"
            ),
            Route::Cache {
                forward: false,
                capture: Capture::default()
            }
        );
        // A crawler's Warcprox-Meta: read, refused when malformed or when it blocks the URL.
        let meta = |m: &str| format!("POST http://a.org/x HTTP/1.1\r\nWarcprox-Meta: {m}\r\n\r\n");
        assert_eq!(
            route_of(f, &meta(r#"{"warc-prefix":"job"}"#)),
            Route::PassThrough
        );
        assert_eq!(
            route_of(
                f,
                "GET http://a.org/ HTTP/1.1\r\nWarcprox-Meta: {\"accept\":[\"capture-metadata\"]}\r\n\r\n"
            ),
            Route::Cache {
                forward: true,
                capture: Capture {
                    metadata: true,
                    tallied: true,
                    ..Capture::default()
                }
            }
        );
        assert!(matches!(
            route_of(f, &meta("{oops")),
            Route::Refuse(Error::BadWarcproxMeta(_))
        ));
        assert_eq!(
            route_of(f, &meta(r#"{"blocks":[{"domain":"a.org"}]}"#)),
            Route::Refuse(Error::BlockedByRule(r#"{"domain":"a.org"}"#.into()))
        );
    }
}
