//! Who may send a request: the client ranges for proxy requests, the admin ranges for
//! `/_liveweb/...`, and proxy authentication when `--proxy-auth` is set. The tables are read
//! from the shared state on every check, so a reload (SIGHUP) applies to the next request.

use std::net::IpAddr;

use crate::error::Error;
use crate::http::request::RequestHead;
use crate::proxy::WorkerCtx;

/// Whether a connection from `peer` may be served at all (client or admin); refused ones get
/// `403` before any request is read.
pub(super) fn may_connect(ctx: &WorkerCtx, peer: IpAddr) -> bool {
    let access = ctx.shared.access.load();
    let allowed = access.is_client(peer) || access.is_admin(peer);
    if !allowed {
        eprintln!("liveweb: refused client {peer}: not in the client or admin ranges");
    }
    allowed
}

/// Whether `req` from `peer` may be served; the error is the reply (403 or 407).
pub(super) async fn admit(ctx: &WorkerCtx, peer: IpAddr, req: &RequestHead) -> Result<(), Error> {
    let access = ctx.shared.access.load();
    if req.target.starts_with("/_liveweb/") {
        if access.is_admin(peer) {
            return Ok(());
        }
        eprintln!("liveweb: refused admin request from {peer}: not in the admin ranges");
        return Err(Error::AdminNotAllowed);
    }
    if !access.is_client(peer) {
        eprintln!("liveweb: refused client {peer}: not in the client ranges");
        return Err(Error::ClientNotAllowed);
    }
    let Some(auth) = ctx.shared.proxy_auth.load_full() else {
        return Ok(());
    };
    let Some(credentials) = req.header("proxy-authorization") else {
        return Err(Error::ProxyAuthRequired);
    };
    let verified = match auth.check_cached(credentials) {
        Some(verdict) => verdict,
        // bcrypt is slow by design: never on the worker.
        None => {
            let credentials = credentials.to_vec();
            monoio::spawn_blocking(move || auth.verify(&credentials))
                .await
                .unwrap_or(false)
        }
    };
    if verified {
        Ok(())
    } else {
        eprintln!("liveweb: proxy authentication failed from {peer}");
        Err(Error::ProxyAuthRequired)
    }
}
