//! Reaching an origin: resolve its name off the worker, keep the addresses the upstream rules
//! allow (checked after resolution, so a name cannot smuggle a private address past them),
//! connect to the first that answers, and for `https` do the TLS handshake.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Instant;

use monoio::net::TcpStream;

use super::bad_hosts::BadHosts;
use super::client::{FetchError, FetchLimits};
use super::dns::DnsCache;
use super::origin_conn::OriginConn;
use super::pool::UpstreamPool;
use super::tls;
use crate::error::Error;
use crate::http::url::{Scheme, TargetUrl};
use crate::policy::UpstreamRules;

/// Everything a worker fetches through: its DNS cache and connection pool, the shared
/// upstream rules and limits.
#[derive(Clone, Copy)]
pub struct Upstream<'a> {
    pub dns: &'a DnsCache,
    pub pool: &'a UpstreamPool,
    pub rules: &'a UpstreamRules,
    pub limits: &'a FetchLimits,
    /// Sent when the client sent no User-Agent.
    pub user_agent: &'a str,
    /// TLS client configuration for `https` origins.
    pub tls: &'a Arc<rustls::ClientConfig>,
    /// Origins that just failed to be reached (`--bad-host-ttl`).
    pub bad_hosts: &'a BadHosts,
    /// The address liveweb itself listens on (once bound): never an upstream.
    pub own_listen: Option<SocketAddr>,
    /// Where responses too big for memory go as they arrive (`None`: kept in memory).
    pub spill: Option<&'a super::spill::SpillTo>,
}

/// A connection to the origin of `url`: TCP, then TLS for `https` (within the connect
/// timeout, and the fetch deadline). An origin that could not be reached within
/// `--bad-host-ttl` fails at once with the same error.
pub async fn connect_origin(
    up: Upstream<'_>,
    url: &TargetUrl,
    deadline: Instant,
) -> Result<(OriginConn, IpAddr), FetchError> {
    let origin = BadHosts::key(url);
    if let Some(remembered) = up.bad_hosts.recent(&origin) {
        return Err(remembered);
    }
    let result = reach(up, url, deadline).await;
    match &result {
        Ok(_) => up.bad_hosts.forget(&origin),
        Err(fe) => up.bad_hosts.remember(&origin, fe),
    }
    result
}

async fn reach(
    up: Upstream<'_>,
    url: &TargetUrl,
    deadline: Instant,
) -> Result<(OriginConn, IpAddr), FetchError> {
    let host = url.host_for_dns();
    let (stream, ip) = connect_upstream(up, host, url.port, deadline).await?;
    match url.scheme {
        Scheme::Http => Ok((OriginConn::Plain(stream), ip)),
        Scheme::Https => {
            let left = deadline.saturating_duration_since(Instant::now());
            let wait = up.limits.connect_timeout.min(left);
            let fd = stream.as_raw_fd();
            match tls::handshake(up.tls, stream, host, wait).await {
                Ok(tls) => Ok((OriginConn::tls(tls, fd), ip)),
                Err(error) => Err(FetchError {
                    error,
                    ip: Some(ip),
                }),
            }
        }
    }
}

/// Resolves `host` off the worker, keeps the addresses the upstream rules allow (checked
/// after resolution, so a name cannot smuggle a private address past them), and connects to
/// the first that answers.
pub async fn connect_upstream(
    up: Upstream<'_>,
    host: &str,
    port: u16,
    deadline: Instant,
) -> Result<(TcpStream, IpAddr), FetchError> {
    let (dns, rules, limits) = (up.dns, up.rules, up.limits);
    let fail = |error: Error, ip: Option<IpAddr>| FetchError { error, ip };
    let left = deadline.saturating_duration_since(Instant::now());
    let addrs = dns
        .resolve(host, limits.connect_timeout.min(left))
        .await
        .map_err(|e| fail(e, None))?;
    let allowed: Vec<IpAddr> = addrs
        .iter()
        .copied()
        .filter(|ip| rules.allows(*ip))
        .collect();
    if allowed.is_empty() {
        let shown = addrs.first().map(|ip| ip.to_string()).unwrap_or_default();
        return Err(fail(Error::AddressNotAllowed(shown), None));
    }
    if let Some(own) = up.own_listen {
        if let Some(ip) = allowed.iter().find(|ip| is_own_listener(own, **ip, port)) {
            return Err(fail(looped(SocketAddr::new(*ip, port)), None));
        }
    }
    let (stream, ip) = connect_any(&allowed, port, limits, deadline)
        .await
        .map_err(|(e, ip)| fail(e, ip))?;
    if let Some(own) = up.own_listen {
        // Listening on all addresses: any address of this machine with our port is us, and
        // only the connection shows whether an address is this machine's (the kernel picks
        // the destination itself as the source of a local connection).
        let local = stream.local_addr().ok().map(|a| a.ip().to_canonical());
        if own.ip().is_unspecified() && port == own.port() && local == Some(ip.to_canonical()) {
            return Err(fail(looped(SocketAddr::new(ip, port)), Some(ip)));
        }
    }
    if allowed.first() != Some(&ip) {
        dns.prefer(host, ip);
    }
    Ok((stream, ip))
}

fn looped(addr: SocketAddr) -> Error {
    Error::LoopDetected(format!("{addr} is this liveweb's own listening address"))
}

/// Whether connecting to `ip:port` would reach the listener at `own`, as far as the address
/// alone tells: the same address, or loopback and the unspecified address (which Linux
/// connects to this machine) when `own` listens on all addresses.
pub fn is_own_listener(own: SocketAddr, ip: IpAddr, port: u16) -> bool {
    let ip = ip.to_canonical();
    let own_ip = own.ip().to_canonical();
    if port != own.port() {
        return false;
    }
    if ip == own_ip {
        return true;
    }
    // 0.0.0.0 and :: as a destination mean this machine.
    if ip.is_unspecified() {
        return own_ip.is_loopback() || own_ip.is_unspecified();
    }
    own_ip.is_unspecified() && ip.is_loopback()
}

/// Tries each address in turn (each within the connect timeout, all within the fetch
/// deadline); the last failure is reported.
async fn connect_any(
    addrs: &[IpAddr],
    port: u16,
    limits: &FetchLimits,
    deadline: Instant,
) -> Result<(TcpStream, IpAddr), (Error, Option<IpAddr>)> {
    let mut last = (Error::ConnectTimeout, None);
    for &ip in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let wait = limits.connect_timeout.min(left);
        let addr = SocketAddr::new(ip, port);
        match monoio::time::timeout(wait, TcpStream::connect_addr(addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Ok((stream, ip));
            }
            Ok(Err(e)) => last = (Error::Refused(format!("{addr}: {e}")), Some(ip)),
            Err(_) => last = (Error::ConnectTimeout, Some(ip)),
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_own_listener_is_recognised_by_address_and_port() {
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let lo = at("127.0.0.1:8080");
        assert!(is_own_listener(lo, ip("127.0.0.1"), 8080));
        assert!(is_own_listener(lo, ip("::ffff:127.0.0.1"), 8080));
        assert!(is_own_listener(lo, ip("0.0.0.0"), 8080));
        assert!(!is_own_listener(lo, ip("127.0.0.1"), 8081));
        assert!(!is_own_listener(lo, ip("127.0.0.2"), 8080));
        let all = at("0.0.0.0:3128");
        assert!(is_own_listener(all, ip("127.0.0.9"), 3128));
        assert!(is_own_listener(all, ip("::1"), 3128));
        assert!(is_own_listener(all, ip("0.0.0.0"), 3128));
        // Other addresses of this machine are found once connected.
        assert!(!is_own_listener(all, ip("192.0.2.7"), 3128));
        let v6 = at("[::1]:80");
        assert!(is_own_listener(v6, ip("::1"), 80));
        assert!(is_own_listener(v6, ip("::"), 80));
        assert!(!is_own_listener(v6, ip("127.0.0.1"), 80));
    }
}
