//! The command line (every flag also `LIVEWEB_<FLAG>` in the environment), its unit parsers,
//! and the validated `Config` the server runs on; what is derived from it is in `derived`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::archive::FsyncPolicy;
use crate::policy::Cidr;

mod derived;
mod units;

pub use units::*;

/// How a reply is shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// The reply body is the stored ARC record (gzip member), status mirrors the origin.
    Liveweb,
    /// A classic caching forward proxy: the client gets the origin's own response.
    Forward,
}

/// liveweb: a thread-per-core archiving HTTP proxy. Send it `GET http://host/path` (as to any
/// forward proxy) and it answers with an ARC record of the live response, stored on disk.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "liveweb",
    version,
    about,
    long_about = None,
    override_usage = "liveweb [OPTIONS]\n       liveweb ca init DIR\n       liveweb reindex DIR...\n       liveweb man\n       liveweb completions SHELL\n       liveweb help [ca|reindex]",
    after_help = "Commands:\n  ca init DIR        write a CA for archiving HTTPS through CONNECT (--mitm-ca)\n  reindex DIR...     rewrite the CDX files of sealed archive files\n  man                print the manual page (roff: liveweb man | man -l -)\n  completions SHELL  print shell completions (bash, zsh, fish, elvish, powershell)\n  help [COMMAND]     this help, or a command's\n\nEvery option can also be set as LIVEWEB_<OPTION> (--max-body: LIVEWEB_MAX_BODY). Manual: docs/ in the repository."
)]
pub struct Config {
    #[command(flatten)]
    pub clients: Clients,
    #[command(flatten)]
    pub archive: Archive,
    #[command(flatten)]
    pub fetch: Fetching,
    #[command(flatten)]
    pub cache: Cache,
    #[command(flatten)]
    pub tls: Tls,
    #[command(flatten)]
    pub sched: Scheduling,
    #[command(flatten)]
    pub ops: Operations,
}

/// Listening, who may connect, and the client connections.
#[derive(Debug, Clone, clap::Args)]
pub struct Clients {
    /// Address to listen on; every worker binds it with SO_REUSEPORT. Port 0 picks a free port
    /// (printed at start).
    #[arg(help_heading = "Listening and clients", long, env = "LIVEWEB_LISTEN", default_value = "127.0.0.1:8080", value_parser = parse_listen)]
    pub listen: SocketAddr,

    /// Reply shape: `liveweb` (the ARC record) or `forward` (the origin's own response, as
    /// from a classic caching forward proxy). Per request: `X-Liveweb-Mode`.
    #[arg(
        help_heading = "Listening and clients",
        long,
        env = "LIVEWEB_MODE",
        value_enum,
        default_value = "liveweb"
    )]
    pub mode: Mode,

    /// How long an idle client keep-alive connection is kept open.
    #[arg(help_heading = "Listening and clients", long, env = "LIVEWEB_CLIENT_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub client_idle_timeout: Duration,

    /// Clients allowed to use the proxy besides loopback, e.g. 10.0.0.0/8. Repeatable; in the
    /// environment, comma-separated. Others get 403.
    #[arg(
        help_heading = "Listening and clients",
        long,
        env = "LIVEWEB_ALLOW_CLIENT",
        value_delimiter = ','
    )]
    pub allow_client: Vec<Cidr>,

    /// A file of allowed client ranges (one CIDR, address or `first-last` range per line,
    /// `#` comments), reloaded on SIGHUP; a bad file is rejected with its line number.
    #[arg(
        help_heading = "Listening and clients",
        long,
        env = "LIVEWEB_CLIENT_TABLE"
    )]
    pub client_table: Option<PathBuf>,

    /// Loopback clients are allowed as clients and admins. `false` when something on this
    /// machine (a TLS terminator, a local balancer) forwards other people's connections, so
    /// loopback must not bypass the tables.
    #[arg(help_heading = "Listening and clients", long, env = "LIVEWEB_ALLOW_LOOPBACK", default_value_t = true, action = clap::ArgAction::Set)]
    pub allow_loopback: bool,

    /// Load balancers that open each connection with a PROXY protocol header (v1 or v2;
    /// HAProxy's `send-proxy-v2`): connections from these addresses must start with one, and
    /// the client it names is the client (access checks, per-client cap, fair queue, logs;
    /// a LOCAL header names no one: health only). Repeatable; comma-separated in the
    /// environment.
    #[arg(
        help_heading = "Listening and clients",
        long,
        env = "LIVEWEB_PROXY_PROTOCOL_FROM",
        value_delimiter = ','
    )]
    pub proxy_protocol_from: Vec<Cidr>,

    /// Addresses allowed to use `/_liveweb/...` besides loopback. Repeatable; comma-separated
    /// in the environment.
    #[arg(
        help_heading = "Listening and clients",
        long,
        env = "LIVEWEB_ALLOW_ADMIN",
        value_delimiter = ','
    )]
    pub allow_admin: Vec<Cidr>,

    /// Require proxy authentication (Basic) against this htpasswd file of bcrypt hashes
    /// (`htpasswd -B`); reloaded on SIGHUP.
    #[arg(
        help_heading = "Listening and clients",
        long,
        env = "LIVEWEB_PROXY_AUTH"
    )]
    pub proxy_auth: Option<PathBuf>,

    /// Longest time a client may take to send a whole request head, however it trickles
    /// (then 408 and the connection closes).
    #[arg(help_heading = "Listening and clients", long, env = "LIVEWEB_REQUEST_HEAD_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub request_head_timeout: Duration,

    /// Most client connections open at once; over it a new connection gets 503 and is
    /// closed [default: from the open-file limit, half of it less a reserve, since a client
    /// connection may need an upstream one].
    #[arg(
        help_heading = "Listening and clients",
        long,
        env = "LIVEWEB_MAX_CONNECTIONS"
    )]
    pub max_connections: Option<usize>,

    /// Most connections open at once from one client address; over it, 503.
    #[arg(
        help_heading = "Listening and clients",
        long,
        env = "LIVEWEB_MAX_CONNECTIONS_PER_CLIENT",
        default_value_t = 256
    )]
    pub max_connections_per_client: usize,

    /// Largest request body relayed for POST, PUT and the like (forward mode); bigger is 413.
    #[arg(help_heading = "Listening and clients", long, env = "LIVEWEB_MAX_REQUEST_BODY", default_value = "1GB", value_parser = parse_size)]
    pub max_request_body: u64,
}

/// The archive: where, in which format, how files roll and become durable, dedup, the crawl log.
#[derive(Debug, Clone, clap::Args)]
pub struct Archive {
    /// Directory for ARC files; worker N writes DATA/N/.
    #[arg(
        help_heading = "Archive and storage",
        long,
        env = "LIVEWEB_DATA_DIR",
        default_value = "./data"
    )]
    pub data_dir: PathBuf,

    /// gzip level for ARC records, 0 (store) to 9 (smallest).
    #[arg(help_heading = "Archive and storage", long, env = "LIVEWEB_GZIP_LEVEL", default_value_t = 1, value_parser = clap::value_parser!(u32).range(0..=9))]
    pub gzip_level: u32,

    /// Store records gzip-compressed (`.arc.gz`, one member per record) or, with `false`,
    /// plain (`.arc`): bigger files, but forward-mode hits then send the body straight from
    /// disk with sendfile.
    #[arg(help_heading = "Archive and storage", long, env = "LIVEWEB_ARC_GZIP", default_value_t = true, action = clap::ArgAction::Set)]
    pub arc_gzip: bool,

    /// Archive format: `arc` (ARC v1, `.arc.gz`) or `warc` (WARC/1.1, `.warc.gz`: a request
    /// and a response record per exchange).
    #[arg(help_heading = "Archive and storage", long, env = "LIVEWEB_FORMAT", default_value = "arc", value_parser = parse_format)]
    pub format: crate::archive::format::Format,

    /// WARC only: a response whose payload was already stored whole (the same payload
    /// digest, in the same dedup bucket, within --dedup-ttl) is archived as a `revisit`
    /// record naming that capture, as warcprox does; the client still gets the whole
    /// response. `on` or `off`.
    #[arg(help_heading = "Archive and storage", long, env = "LIVEWEB_DEDUP", default_value = "on", value_parser = parse_on_off, action = clap::ArgAction::Set)]
    pub dedup: bool,

    /// Revisit only payloads stored whole within this long; 0: whatever their age.
    #[arg(help_heading = "Archive and storage", long, env = "LIVEWEB_DEDUP_TTL", default_value = "0", value_parser = parse_duration)]
    pub dedup_ttl: Duration,

    /// Text responses (Content-Type text/*) with a payload of at most this many bytes are
    /// always stored whole (warcprox's --dedup-min-text-size).
    #[arg(help_heading = "Archive and storage", long, env = "LIVEWEB_DEDUP_MIN_TEXT_SIZE", default_value = "0", value_parser = parse_size)]
    pub dedup_min_text_size: u64,

    /// Other responses with a payload of at most this many bytes are always stored whole
    /// (warcprox's --dedup-min-binary-size).
    #[arg(help_heading = "Archive and storage", long, env = "LIVEWEB_DEDUP_MIN_BINARY_SIZE", default_value = "0", value_parser = parse_size)]
    pub dedup_min_binary_size: u64,

    /// Write a crawl log in Heritrix's format, as warcprox does: one line per capture in
    /// DIR/PREFIX-HOST-PORT.log (PREFIX: the capture's warc-prefix, else `crawl`).
    #[arg(
        help_heading = "Archive and storage",
        long,
        env = "LIVEWEB_CRAWL_LOG_DIR"
    )]
    pub crawl_log_dir: Option<PathBuf>,

    /// ARC file name prefix: PREFIX-<timestamp17>-<worker>-<serial>.arc.gz.
    #[arg(help_heading = "Archive and storage", long, env = "LIVEWEB_PREFIX", default_value = "LIVEWEB", value_parser = parse_prefix)]
    pub prefix: String,

    /// Seal an ARC file before the next record would take it past this size (a record is
    /// never split; one bigger than this gets a file of its own).
    #[arg(help_heading = "Archive and storage", long, env = "LIVEWEB_ARC_MAX_SIZE", default_value = "100MB", value_parser = parse_size)]
    pub arc_max_size: u64,

    /// Seal an ARC file that has records and has received none for this long.
    #[arg(help_heading = "Archive and storage", long, env = "LIVEWEB_ARC_MAX_IDLE", default_value = "10m", value_parser = parse_duration)]
    pub arc_max_idle: Duration,

    /// Command run as `CMD <path-to-sealed-arc>` after each seal (e.g. upload, then delete);
    /// retried with backoff while it fails.
    #[arg(help_heading = "Archive and storage", long, env = "LIVEWEB_ON_SEAL")]
    pub on_seal: Option<String>,

    /// When archived data is made durable: `never` (only at seal), `interval:DURATION`, or
    /// `always` (the reply waits until its record is durable).
    #[arg(help_heading = "Archive and storage", long, env = "LIVEWEB_FSYNC", default_value = "interval:1s", value_parser = parse_fsync)]
    pub fsync: FsyncPolicy,

    /// Stop archiving (misses answer 503 E50, hits still served) while the data filesystem
    /// has less free space than this; archiving resumes by itself. 0 disables the check.
    #[arg(help_heading = "Archive and storage", long, env = "LIVEWEB_MIN_FREE", default_value = "1GB", value_parser = parse_size)]
    pub min_free: u64,
}

/// Threads, memory, logs and shutdown.
#[derive(Debug, Clone, clap::Args)]
pub struct Operations {
    /// Worker threads, each with its own io_uring runtime [default: CPUs].
    #[arg(help_heading = "Operations", long, env = "LIVEWEB_WORKERS")]
    pub workers: Option<usize>,

    /// Where workers run: `off` leaves placement to the scheduler; `each` (or `auto`) pins
    /// worker N to the Nth CPU, for a machine liveweb has to itself; a list such as `0,2-3`
    /// pins workers to those CPUs in turn. Unpinned is the default because a pinned worker
    /// cannot leave a CPU that other busy work shares, and the scheduler keeps a busy
    /// unpinned worker on its CPU anyway (docs/performance.md, "Why unpinned is the default":
    /// same-run placements).
    #[arg(help_heading = "Operations", long, env = "LIVEWEB_CPU_AFFINITY", default_value = "off", value_parser = parse_affinity)]
    pub cpu_affinity: CpuAffinity,

    /// TCP_NOTSENT_LOWAT on client connections: at most this much reply data waits unsent
    /// in the kernel; the rest stays with the worker until the socket drains. `0` keeps
    /// the system's setting (net.ipv4.tcp_notsent_lowat).
    #[arg(help_heading = "Operations", long, env = "LIVEWEB_NOTSENT_LOWAT", default_value = "128KB", value_parser = parse_size)]
    pub notsent_lowat: u64,

    /// A response bigger than this goes to a temporary file in the worker's directory as it
    /// arrives, and is archived from there, instead of being held in memory (at least 64KB).
    #[arg(help_heading = "Operations", long, env = "LIVEWEB_SPILL_THRESHOLD", default_value = "1MB", value_parser = parse_size)]
    pub spill_threshold: u64,

    /// Memory all workers together may hold in response bodies still arriving (each at most
    /// --spill-threshold); when it is spent, new bodies go to disk from their first byte.
    /// Default: a sixteenth of the machine's memory, at least 64MB (printed at start).
    #[arg(help_heading = "Operations", long, env = "LIVEWEB_TRANSFER_MEMORY", value_parser = parse_size)]
    pub transfer_memory: Option<u64>,

    /// Threads resolving names (getaddrinfo), apart from the blocking pool so a lookup never
    /// waits behind compression or sealing.
    #[arg(help_heading = "Operations", long, env = "LIVEWEB_DNS_THREADS", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub dns_threads: u16,

    /// Threads for the other blocking work: compressing large records, sealing files, checking
    /// free space.
    #[arg(help_heading = "Operations", long, env = "LIVEWEB_BLOCKING_THREADS", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub blocking_threads: u16,

    /// Write one line per request to FILE (appended; reopened on SIGHUP), or to stdout with
    /// `-`. Off by default.
    #[arg(help_heading = "Operations", long, env = "LIVEWEB_ACCESS_LOG")]
    pub access_log: Option<String>,

    /// Least severe log lines written: error, warn, info or debug.
    #[arg(help_heading = "Operations", long, env = "LIVEWEB_LOG_LEVEL", default_value = "info", value_parser = crate::logging::parse_level)]
    pub log_level: log::LevelFilter,

    /// On SIGTERM/SIGINT, how long in-flight requests may take to finish.
    #[arg(help_heading = "Operations", long, env = "LIVEWEB_SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,
}

/// How long records answer, and the index and hot-shard memory.
#[derive(Debug, Clone, clap::Args)]
pub struct Cache {
    /// How long a stored record answers repeats before the URL is fetched again.
    #[arg(help_heading = "Cache", long, env = "LIVEWEB_TTL", default_value = "1h", value_parser = parse_duration)]
    pub ttl: Duration,

    /// How long an archived upstream failure answers repeats.
    #[arg(help_heading = "Cache", long, env = "LIVEWEB_ERROR_TTL", default_value = "60s", value_parser = parse_duration)]
    pub error_ttl: Duration,

    /// URLs the index is sized for at start (within --index-memory). The index grows by a
    /// quarter of one of its 256 shards at a time, so this is rarely worth setting; sized
    /// tables take their memory at once.
    #[arg(
        help_heading = "Cache",
        long,
        env = "LIVEWEB_EXPECTED_URLS",
        default_value_t = 0
    )]
    pub expected_urls: usize,

    /// Memory for the index of stored URLs (44 bytes a slot, at most 9 in 10 slots used).
    /// At the budget, the entries closest to expiry leave the index first: their records
    /// stay on disk and in the CDX, and a request for one fetches it again. Default: an
    /// eighth of the machine's memory (printed at start).
    #[arg(help_heading = "Cache", long, env = "LIVEWEB_INDEX_MEMORY", value_parser = parse_size)]
    pub index_memory: Option<u64>,

    /// Memory for hot records, split evenly across workers.
    #[arg(help_heading = "Cache", long, env = "LIVEWEB_MEM_CACHE", default_value = "256MB", value_parser = parse_size)]
    pub mem_cache: u64,

    /// Liveweb mode: a request carrying Authorization or Cookie is never answered from
    /// another request's record, and its own record answers no other request (it is still
    /// archived). `false` shares them like any other record.
    #[arg(help_heading = "Cache", long, env = "LIVEWEB_ISOLATE_CREDENTIALS", default_value_t = true, action = clap::ArgAction::Set)]
    pub isolate_credentials: bool,
}

/// Fetching from origins: limits, timeouts, which upstream addresses and ports.
#[derive(Debug, Clone, clap::Args)]
pub struct Fetching {
    /// Largest response body archived; a bigger one is answered 502 E40.
    #[arg(help_heading = "Fetching and upstreams", long, env = "LIVEWEB_MAX_BODY", default_value = "100MB", value_parser = parse_size)]
    pub max_body: u64,

    /// Time allowed to connect to the origin (and to resolve its name).
    #[arg(help_heading = "Fetching and upstreams", long, env = "LIVEWEB_CONNECT_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub connect_timeout: Duration,

    /// Longest silence allowed from the origin, before its first byte and between reads.
    #[arg(help_heading = "Fetching and upstreams", long, env = "LIVEWEB_READ_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub read_timeout: Duration,

    /// Total time allowed for one fetch, connect to last byte.
    #[arg(help_heading = "Fetching and upstreams", long, env = "LIVEWEB_FETCH_TIMEOUT", default_value = "2m", value_parser = parse_duration)]
    pub fetch_timeout: Duration,

    /// How long an origin that could not be reached (DNS, connect or TLS failure) fails
    /// fetches at once with the same error; a connection that succeeds clears it. 0: off.
    #[arg(help_heading = "Fetching and upstreams", long, env = "LIVEWEB_BAD_HOST_TTL", default_value = "30s", value_parser = parse_duration)]
    pub bad_host_ttl: Duration,

    /// User-Agent sent upstream when the client sent none [default: liveweb/<version>].
    #[arg(
        help_heading = "Fetching and upstreams",
        long,
        env = "LIVEWEB_USER_AGENT"
    )]
    pub user_agent: Option<String>,

    /// Lift the default deny (loopback, private, link-local, ...) for an upstream range, e.g.
    /// 127.0.0.0/8. Repeatable; in the environment, comma-separated.
    #[arg(
        help_heading = "Fetching and upstreams",
        long,
        env = "LIVEWEB_ALLOW_UPSTREAM",
        value_delimiter = ','
    )]
    pub allow_upstream: Vec<Cidr>,

    /// Ports CONNECT may tunnel to (forward mode). Repeatable; comma-separated in the env.
    #[arg(
        help_heading = "Fetching and upstreams",
        long,
        env = "LIVEWEB_CONNECT_PORTS",
        value_delimiter = ',',
        default_value = "443"
    )]
    pub connect_ports: Vec<u16>,

    /// A CONNECT tunnel with no bytes either way for this long is closed.
    #[arg(help_heading = "Fetching and upstreams", long, env = "LIVEWEB_TUNNEL_IDLE_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    pub tunnel_idle_timeout: Duration,
}

/// Fetch slots and the fair queue.
#[derive(Debug, Clone, clap::Args)]
pub struct Scheduling {
    /// Upstream fetches running at once, all origins (default: 64 per worker). Misses past
    /// it wait in the fair queue; hits and coalesced requests never wait.
    #[arg(help_heading = "Scheduling", long, env = "LIVEWEB_MAX_FETCHES")]
    pub max_fetches: Option<usize>,

    /// Upstream fetches running at once to one origin (host:port). Fetches to one origin
    /// run at most this many round trips at a time, so a low value also caps the miss rate
    /// to a busy origin (docs/using.md, "Fetch scheduling"); 8 is polite for crawling.
    #[arg(
        help_heading = "Scheduling",
        long,
        env = "LIVEWEB_MAX_FETCHES_PER_HOST",
        default_value_t = 64
    )]
    pub max_fetches_per_host: usize,

    /// Fetches waiting for a slot, all clients; past it a miss is `503` (E60 busy).
    #[arg(
        help_heading = "Scheduling",
        long,
        env = "LIVEWEB_MAX_QUEUE",
        default_value_t = 10_000
    )]
    pub max_queue: usize,

    /// Fetches waiting for a slot for one client (an IPv4 address or an IPv6 /64).
    #[arg(
        help_heading = "Scheduling",
        long,
        env = "LIVEWEB_MAX_QUEUE_PER_CLIENT",
        default_value_t = 1_000
    )]
    pub max_queue_per_client: usize,

    /// Longest a fetch waits for a slot; then the request is `503` (E60 busy).
    #[arg(help_heading = "Scheduling", long, env = "LIVEWEB_QUEUE_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub queue_timeout: Duration,
}

/// TLS to origins, and archiving HTTPS through CONNECT.
#[derive(Debug, Clone, clap::Args)]
pub struct Tls {
    /// PEM file of extra root certificates trusted for `https` origins, besides the bundled
    /// Mozilla roots (an internal CA, a test CA). Repeatable.
    #[arg(
        help_heading = "TLS and MITM",
        long,
        env = "LIVEWEB_UPSTREAM_CA",
        value_delimiter = ','
    )]
    pub upstream_ca: Vec<PathBuf>,

    /// Accept any certificate from `https` origins (expired, self-signed, another host's).
    /// The connection is encrypted but the origin is not authenticated: for testing only.
    #[arg(help_heading = "TLS and MITM", long, env = "LIVEWEB_INSECURE_UPSTREAM")]
    pub insecure_upstream: bool,

    /// Archive HTTPS through CONNECT (forward mode): the CA certificate (PEM) that signs the
    /// certificates liveweb presents inside CONNECT tunnels; clients must trust it. `liveweb
    /// ca init DIR` makes one. Needs `--mitm-key`; without both, CONNECT is a blind tunnel.
    #[arg(
        help_heading = "TLS and MITM",
        long,
        env = "LIVEWEB_MITM_CA",
        requires = "mitm_key"
    )]
    pub mitm_ca: Option<PathBuf>,

    /// The private key (PEM) of the `--mitm-ca` certificate.
    #[arg(
        help_heading = "TLS and MITM",
        long,
        env = "LIVEWEB_MITM_KEY",
        requires = "mitm_ca"
    )]
    pub mitm_key: Option<PathBuf>,

    /// Hosts whose CONNECT tunnels stay blind even with `--mitm-ca` (pinned apps, banks);
    /// an entry also covers the names below it. Comma-separated.
    #[arg(
        help_heading = "TLS and MITM",
        long,
        env = "LIVEWEB_MITM_BYPASS",
        value_delimiter = ','
    )]
    pub mitm_bypass: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_defaults_and_validation() {
        let c = Config::try_parse_from(["liveweb"]).expect("defaults parse");
        assert_eq!(c.clients.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.fetch.max_body, 100 << 20);
        assert_eq!(c.fetch.fetch_timeout, Duration::from_secs(120));
        assert_eq!(c.archive.arc_max_size, 100 << 20);
        assert_eq!(
            c.archive.fsync,
            FsyncPolicy::Interval(Duration::from_secs(1))
        );
        assert_eq!(c.archive.min_free, 1 << 30);
        assert_eq!(c.ops.notsent_lowat, 128 << 10);
        assert_eq!(c.ops.cpu_affinity, CpuAffinity::Off);
        assert!(c.validate().is_ok());
        let huge = Config::try_parse_from(["liveweb", "--notsent-lowat", "4GB"]).expect("parses");
        assert!(huge.validate().is_err(), "TCP_NOTSENT_LOWAT is a C int");
        let f = Config::try_parse_from(["liveweb", "--mode", "forward"]).expect("parses");
        assert_eq!(f.clients.mode, Mode::Forward);
        assert!(f.validate().is_ok());
        assert!(Config::try_parse_from(["liveweb", "--gzip-level", "10"]).is_err());
        let warc = Config::try_parse_from(["liveweb", "--format", "WARC"]).expect("parses");
        assert_eq!(warc.archive.format, crate::archive::format::Format::Warc);
        assert_eq!(warc.archive.reply_content_type(), "application/warc-gz");
        let plain_warc =
            Config::try_parse_from(["liveweb", "--format", "warc", "--arc-gzip", "false"]).unwrap();
        assert!(plain_warc.validate().unwrap_err().contains("--format warc"));
        assert!(Config::try_parse_from(["liveweb", "--format", "wacz"]).is_err());
        assert!(Config::try_parse_from(["liveweb", "--prefix", "a/b"]).is_err());
        let a = Config::try_parse_from([
            "liveweb",
            "--allow-upstream",
            "127.0.0.0/8",
            "--allow-upstream",
            "::1",
        ])
        .expect("parses");
        assert_eq!(a.fetch.allow_upstream.len(), 2);
    }
}
