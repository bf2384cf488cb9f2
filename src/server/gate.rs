//! Who may send a request: the client ranges for proxy requests, the admin ranges for
//! `/_liveweb/...`, and proxy authentication when `--proxy-auth` is set. The tables are read
//! from the shared state on every check, so a reload (SIGHUP) applies to the next request.

pub(super) use crate::logging::{log_limited, LogLimit};
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use crate::blocking::Pool;
use crate::error::Error;
use crate::http::request::RequestHead;
use crate::policy::ProxyAuth;
use crate::proxy::WorkerCtx;

/// A load balancer in `--proxy-protocol-from`.
pub(super) fn is_balancer(ctx: &WorkerCtx, peer: IpAddr) -> bool {
    ctx.shared
        .config
        .clients
        .proxy_protocol_from
        .iter()
        .any(|c| c.contains(peer))
}

/// Whether a connection from `peer` may be served at all (client, admin, or a `balancer`,
/// whose clients are checked once its header names them); refused ones get `403` before any
/// request is read. Logged at most once a second per worker (with how many more), so a
/// flood of outsiders cannot flood the log.
pub(super) fn may_connect(ctx: &WorkerCtx, peer: IpAddr, balancer: bool) -> bool {
    let access = ctx.shared.access.load();
    let allowed = balancer || access.is_client(peer) || access.is_admin(peer);
    if !allowed {
        log_limited(&REFUSED_LOG, || {
            format!("refused client {peer}: not in the client or admin ranges")
        });
    }
    allowed
}

thread_local! {
    static REFUSED_LOG: LogLimit = const { LogLimit::new() };
    pub(super) static BUSY_LOG: LogLimit = const { LogLimit::new() };
}

/// Whether `req` from `peer` may be served; the error is the reply (403 or 407).
pub(super) async fn admit(ctx: &WorkerCtx, peer: IpAddr, req: &RequestHead) -> Result<(), Error> {
    let access = ctx.shared.access.load();
    if req.target == "/_liveweb/health" {
        return Ok(());
    }
    if crate::admin::needs_admin_range(&req.target) {
        if access.is_admin(peer) {
            return Ok(());
        }
        log_limited(&REFUSED_LOG, || {
            format!("refused admin request from {peer}: not in the admin ranges")
        });
        return Err(Error::AdminNotAllowed);
    }
    if !access.is_client(peer) {
        log_limited(&REFUSED_LOG, || {
            format!("refused client {peer}: not in the client ranges")
        });
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
        None => verify_off_worker(auth, credentials.to_vec()).await?,
    };
    if verified {
        Ok(())
    } else {
        log_limited(&REFUSED_LOG, || {
            format!("proxy authentication failed from {peer}")
        });
        Err(Error::ProxyAuthRequired)
    }
}

/// Threads that run bcrypt, apart from the blocking pool and the DNS pool, so a flood of
/// guesses cannot starve those.
const AUTH_THREADS: usize = 2;
/// Checks waiting for an auth thread at most; beyond it a request is refused with 503.
const AUTH_QUEUE: usize = 64;

/// The bcrypt pool, started on first use (`None` if its threads could not be started).
fn auth_pool() -> Option<&'static Pool> {
    static POOL: OnceLock<Option<Pool>> = OnceLock::new();
    POOL.get_or_init(|| match Pool::start("auth", AUTH_THREADS, AUTH_QUEUE) {
        Ok(pool) => Some(pool),
        Err(e) => {
            log::error!("could not start the authentication threads: {e}");
            None
        }
    })
    .as_ref()
}

/// Runs the full bcrypt check on an auth thread; `Overloaded` when too many are waiting.
async fn verify_off_worker(auth: Arc<ProxyAuth>, credentials: Vec<u8>) -> Result<bool, Error> {
    let busy = Error::Overloaded("too many proxy authentication checks waiting");
    let pool = auth_pool().ok_or(busy.clone())?;
    let verdict = pool
        .run(move || auth.verify(&credentials))
        .map_err(|_| busy)?;
    Ok(verdict.await.unwrap_or(false))
}
