//! liveweb: a thread-per-core, io_uring archiving HTTP proxy.
//!
//! # Layout
//! - [`admin`]: the operator's numbers: per-worker counters, Prometheus text and JSON.
//! - [`config`]: the CLI (clap, `LIVEWEB_*` env); its value parsers in `config::units`, the
//!   values derived from it (per section, checks, summary) in `config::derived`.
//! - [`error`]: the one error type, its codes and the status mapping.
//! - [`clock`]: ARC timestamps.
//! - [`cert_words`]: what a failed certificate check means, in words (upstream TLS, the
//!   MITM CA's self-check).
//! - [`blocking`]: small thread pools with bounded queues (DNS, bcrypt) apart from the
//!   runtime's blocking pool.
//! - [`http`]: pure HTTP/1.x: request/response heads, chunked framing, URLs, reply heads,
//!   and the RFC 9111 shared-cache rules (`http::cache`).
//! - [`policy`]: IP range tables (upstream rules, client and admin ranges, table files) and
//!   proxy authentication.
//! - [`archive`]: ARC record encoding, the O_DIRECT group-commit writer, the file table.
//! - [`crawl_log`]: the Heritrix-format crawl log warcprox writes (`--crawl-log-dir`).
//! - [`crawl_stats`]: warcprox's per-bucket crawl statistics and the limits on them.
//! - [`dedup`]: the payload-digest store behind identical-payload revisits (fjall, an LSM tree, on disk).
//! - [`index`]: the shared URL index (compact slots in sharded tables, within a memory
//!   budget) and in-flight fetch coalescing.
//! - [`fetch`]: DNS off the worker and the upstream HTTP client, over TCP or TLS.
//! - [`logging`]: the log sink (timestamped lines on stderr at `--log-level`).
//! - [`mitm`]: the CA for archiving HTTPS through CONNECT (`liveweb ca init`), its
//!   per-host leaf certificates and the TLS server configuration for intercepted tunnels.
//! - [`sched`]: fetch slots (in all and per origin) and the fair queue of fetches waiting
//!   for one, per client.
//! - [`proxy`]: where index, fetch and archive meet: the cache decision per request
//!   (`proxy::lookup`), storing, hot shard, zero-copy sends.
//! - [`server`]: worker threads, runtimes, listeners, connection limits, who may send a
//!   request (`gate`), connection loop, shutdown.
//! - [`warcprox`]: crawlers' `Warcprox-Meta` header and its block rules.

pub mod admin;
pub mod archive;
pub mod blocking;
pub mod cert_words;
pub mod clock;
pub mod config;
pub mod crawl_log;
pub mod crawl_stats;
pub mod dedup;
pub mod error;
pub mod fetch;
pub mod http;
pub mod index;
pub mod logging;
pub mod mitm;
pub mod policy;
pub mod proxy;
pub mod sched;
pub mod server;
pub mod warcprox;

/// Locks `m`, taking over a lock a panicking thread left poisoned: every mutex here guards
/// data that stays whole between statements (counts, queues, maps), so it is still usable.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
