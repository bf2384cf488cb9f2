//! Fetching from origins: name resolution off the worker thread and the HTTP/1.1 client that
//! reads a response by its framing, under connect / idle / total time limits and a size cap.

pub mod client;
pub mod connect;
pub mod dns;
mod exchange;
pub mod pool;
pub mod request;
pub mod tap;

pub use client::{fetch, FetchError, FetchLimits, Fetched};
pub use connect::{connect_upstream, Upstream};
pub use dns::DnsCache;
pub use pool::UpstreamPool;
pub use tap::{Tap, TapItem, TapReader};
