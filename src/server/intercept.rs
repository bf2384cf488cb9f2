//! Intercepted CONNECT tunnels (`--mitm-ca`): answer `200`, take the client's TLS handshake
//! with a leaf for the requested host, then serve the requests inside as forward-mode
//! requests for `https://host:port/...`, each held to the tunnel's origin.

use std::io::Cursor;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::Duration;

use monoio::io::PrefixedReadIo;
use monoio::net::TcpStream;

use super::gate::{log_limited, LogLimit};
use crate::error::Error;
use crate::http::request::{Method, RequestHead};
use crate::http::url::{parse_absolute, unbracketed, Scheme};
use crate::mitm::Interceptor;
use crate::proxy::client_conn::ClientConn;
use crate::proxy::router::Route;
use crate::proxy::WorkerCtx;

thread_local! {
    static HANDSHAKE_LOG: LogLimit = const { LogLimit::new() };
}

/// The origin of an intercepted tunnel, as its CONNECT named it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Origin {
    /// Lowercase; an IPv6 literal keeps its brackets.
    pub host: String,
    pub port: u16,
}

impl Origin {
    /// `https://host[:port]`, the prefix of every URL asked for in the tunnel.
    fn url_prefix(&self) -> String {
        if self.port == Scheme::Https.default_port() {
            format!("https://{}", self.host)
        } else {
            format!("https://{}:{}", self.host, self.port)
        }
    }
}

/// A CONNECT to intercept: its socket (the CONNECT already answered by nobody yet), the
/// bytes the client sent behind the CONNECT head, and the origin.
pub(super) struct Tunnel {
    pub socket: TcpStream,
    pub early: Vec<u8>,
    pub origin: Origin,
    pub peer: IpAddr,
}

/// Answers `200` and takes the TLS handshake, within `--request-head-timeout`. `None` when
/// the client went away or the handshake failed (logged: once per host when the client
/// rejected our certificate, rate-limited otherwise).
pub(super) async fn accept(
    ctx: &WorkerCtx,
    mitm: &Interceptor,
    tunnel: Tunnel,
    idle: Duration,
) -> Option<ClientConn> {
    let Tunnel {
        mut socket,
        early,
        origin,
        peer,
    } = tunnel;
    let ok = b"HTTP/1.1 200 Connection Established\r\n\r\n".to_vec();
    crate::proxy::send::write_all(&mut socket, ok, idle)
        .await
        .ok()?;
    let host = unbracketed(&origin.host);
    let acceptor = monoio_rustls::TlsAcceptor::from(mitm.server_config(host));
    // Kept for the tunnel's life: hold only the bytes, not the connection's read buffer.
    let early = if early.is_empty() {
        Vec::new()
    } else {
        early.into_boxed_slice().into_vec()
    };
    let io = PrefixedReadIo::new(socket, Cursor::new(early));
    let wait = ctx.shared.config.clients.request_head_timeout;
    let failure = match monoio::time::timeout(wait, acceptor.accept(io)).await {
        Ok(Ok(tls)) => return Some(ClientConn::tls(tls)),
        Ok(Err(e)) => e,
        Err(_) => {
            log_limited(&HANDSHAKE_LOG, || {
                format!("client {peer} did not finish the TLS handshake for {host} in time")
            });
            return None;
        }
    };
    match crate::fetch::tls::rustls_error(&failure) {
        Some(rustls::Error::AlertReceived(alert)) if rejects_certificate(alert) => {
            if mitm.first_rejection(host) {
                log::warn!(
                    "a client ({peer}) rejected liveweb's certificate for {host} \
                     ({alert:?}): does it trust the --mitm-ca certificate? \
                     (logged once per host)"
                );
            }
        }
        Some(other) => log_limited(&HANDSHAKE_LOG, || {
            format!("TLS handshake with client {peer} for {host} failed: {other}")
        }),
        None => log_limited(&HANDSHAKE_LOG, || {
            let detail = crate::fetch::tls::failure_text(&failure);
            format!("TLS handshake with client {peer} for {host} failed: {detail}")
        }),
    }
    None
}

/// Alerts a client sends when it does not accept the server's certificate.
fn rejects_certificate(alert: rustls::AlertDescription) -> bool {
    use rustls::AlertDescription as A;
    matches!(
        alert,
        A::BadCertificate
            | A::UnsupportedCertificate
            | A::CertificateRevoked
            | A::CertificateExpired
            | A::CertificateUnknown
            | A::UnknownCA
            | A::AccessDenied
    )
}

/// The route of a request inside an intercepted tunnel: its target made the absolute
/// `https` URL of the tunnel's origin. A request for any other origin (absolute-form, or a
/// `Host` naming another) is refused, so one tunnel cannot be used to reach another host.
pub(super) fn route_inner(origin: &Origin, req: &mut RequestHead) -> Route {
    if matches!(&req.method, Method::Other(m) if m == "CONNECT") {
        return Route::Refuse(Error::BadRequest("CONNECT inside an intercepted tunnel"));
    }
    if req.header("upgrade").is_some() {
        return Route::Refuse(Error::NotImplemented(
            "protocol upgrades (WebSocket) in an intercepted tunnel; list the host in --mitm-bypass",
        ));
    }
    if let Err(e) = aim(origin, req) {
        return Route::Refuse(e);
    }
    let capture = match crate::proxy::router::warcprox_check(req) {
        Ok(capture) => capture,
        Err(e) => return Route::Refuse(e),
    };
    // Always forward mode (X-Liveweb-Mode does not apply): the client is a browser that
    // expects the origin's own responses.
    match req.method {
        Method::Get | Method::Head => Route::Cache {
            forward: true,
            capture,
        },
        Method::Other(_) => Route::PassThrough,
    }
}

fn aim(origin: &Origin, req: &mut RequestHead) -> Result<(), Error> {
    let other_origin = Error::BadRequest("request for another origin than the CONNECT target");
    let path = if req.target.starts_with('/') {
        if let Some(host) = req.header("host") {
            let host = std::str::from_utf8(host).map_err(|_| other_origin.clone())?;
            let named = parse_absolute(&format!("https://{host}/"))
                .map_err(|_| Error::BadRequest("bad Host header"))?;
            if (named.host.as_str(), named.port) != (origin.host.as_str(), origin.port) {
                return Err(other_origin);
            }
        }
        std::mem::take(&mut req.target)
    } else {
        let url = parse_absolute(&req.target)?;
        if url.scheme != Scheme::Https
            || (url.host.as_str(), url.port) != (origin.host.as_str(), origin.port)
        {
            return Err(other_origin);
        }
        url.path_and_query
    };
    req.target = origin.url_prefix() + &path;
    Ok(())
}

/// Serves an intercepted tunnel after its CONNECT: handshake, then the requests inside.
pub(super) async fn serve(
    ctx: Rc<WorkerCtx>,
    mitm: &Interceptor,
    tunnel: Tunnel,
    drain: &super::drain::Drain,
) {
    let idle = ctx.shared.config.clients.client_idle_timeout;
    let (peer, origin) = (tunnel.peer, tunnel.origin.clone());
    if let Some(conn) = accept(&ctx, mitm, tunnel, idle).await {
        super::conn::serve_conn(ctx, conn, peer, drain, Some(&origin), Vec::new()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::{parse_request_head, Limits};
    use crate::warcprox::Capture;

    fn inner(origin: &Origin, raw: &str) -> (Route, String) {
        let (mut req, _) = parse_request_head(raw.as_bytes(), &Limits::default())
            .unwrap()
            .unwrap();
        let route = route_inner(origin, &mut req);
        (route, req.target)
    }

    #[test]
    fn requests_in_a_tunnel_are_for_its_origin_only() {
        let o = Origin {
            host: "example.com".into(),
            port: 443,
        };
        let fwd = Route::Cache {
            forward: true,
            capture: Capture::default(),
        };
        let (route, target) = inner(&o, "GET /a?b HTTP/1.1\r\nHost: Example.COM\r\n\r\n");
        assert_eq!((route, target.as_str()), (fwd, "https://example.com/a?b"));
        let (route, target) = inner(&o, "GET / HTTP/1.0\r\n\r\n");
        assert_eq!(
            (route, target.as_str()),
            (
                Route::Cache {
                    forward: true,
                    capture: Capture::default()
                },
                "https://example.com/"
            )
        );
        let (route, target) = inner(
            &o,
            "GET https://example.com:443/x HTTP/1.1\r\nHost: other\r\n\r\n",
        );
        assert_eq!(
            (route, target.as_str()),
            (
                Route::Cache {
                    forward: true,
                    capture: Capture::default()
                },
                "https://example.com/x"
            )
        );
        let (route, _) = inner(
            &o,
            "POST /form HTTP/1.1\r\nHost: example.com\r\nContent-Length: 0\r\n\r\n",
        );
        assert_eq!(route, Route::PassThrough);
        for other in [
            "GET /a HTTP/1.1\r\nHost: evil.example\r\n\r\n",
            "GET /a HTTP/1.1\r\nHost: example.com:8443\r\n\r\n",
            "GET https://evil.example/a HTTP/1.1\r\n\r\n",
            "GET http://example.com/a HTTP/1.1\r\n\r\n",
            "GET https://example.com:444/a HTTP/1.1\r\n\r\n",
            "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com\r\n\r\n",
            "GET /a HTTP/1.1\r\nHost: bad host\r\n\r\n",
        ] {
            let (route, _) = inner(&o, other);
            assert!(
                matches!(route, Route::Refuse(Error::BadRequest(_))),
                "{other:?}: {route:?}"
            );
        }
        // Upgrades cannot be relayed; X-Liveweb-Mode does not apply inside.
        let (route, _) = inner(
            &o,
            "GET /ws HTTP/1.1\r\nHost: example.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        );
        assert!(matches!(route, Route::Refuse(Error::NotImplemented(_))));
        let (route, _) = inner(
            &o,
            "GET /m HTTP/1.1\r\nHost: example.com\r\nX-Liveweb-Mode: liveweb\r\n\r\n",
        );
        assert_eq!(
            route,
            Route::Cache {
                forward: true,
                capture: Capture::default()
            }
        );
        let ip6 = Origin {
            host: "[::1]".into(),
            port: 8443,
        };
        let (route, target) = inner(&ip6, "GET /v HTTP/1.1\r\nHost: [::1]:8443\r\n\r\n");
        assert_eq!(
            (route, target.as_str()),
            (
                Route::Cache {
                    forward: true,
                    capture: Capture::default()
                },
                "https://[::1]:8443/v"
            )
        );
    }
}
