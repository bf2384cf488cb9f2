//! Fetching from origins: name resolution off the worker thread and the HTTP/1.1 client that
//! reads a response by its framing, under connect / idle / total time limits and a size cap,
//! over plain TCP or TLS.

pub mod bad_hosts;
mod cancel_safe;
pub mod client;
pub mod connect;
pub mod dns;
mod exchange;
pub mod origin_conn;
pub mod pool;
pub mod request;
pub mod spill;
pub mod tap;
pub mod tls;

pub use bad_hosts::BadHosts;
pub use cancel_safe::CancelSafe;
pub use client::{fetch, FetchError, FetchLimits, Fetched};
pub use connect::{connect_origin, connect_upstream, Upstream};
pub use dns::DnsCache;
pub use origin_conn::OriginConn;
pub use pool::{UpstreamPool, SWEEP_EVERY as POOL_SWEEP_EVERY};
pub use tap::{Tap, TapItem, TapReader};
