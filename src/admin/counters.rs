//! Per-worker counters: each worker writes only its own cells (plain relaxed stores, no
//! read-modify-write shared with another core, each worker's cells on their own cache lines),
//! and a reader sums every worker's when a status or metrics page is asked for.

use std::sync::atomic::{AtomicU64, Ordering};

/// How a request ended (the `X-Cache` values), as replies name it and counters count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestState {
    /// Answered from a stored record.
    Hit,
    /// This request's fetch produced the record.
    Miss,
    /// Another request's fetch produced the record.
    Coalesced,
    /// A stored record the origin confirmed unchanged (`304`) for this request.
    Revalidated,
    /// Answered by liveweb itself (`/_liveweb/...`).
    Admin,
    /// `Prefer: respond-async`: the fetch is queued or running; `202` now, the record later.
    Queued,
    /// Forward mode, a method other than GET/HEAD passed through, never cached.
    Bypass,
    /// Refused or failed without a record.
    Error,
}

impl RequestState {
    pub const ALL: [RequestState; 8] = [
        RequestState::Hit,
        RequestState::Miss,
        RequestState::Coalesced,
        RequestState::Revalidated,
        RequestState::Admin,
        RequestState::Queued,
        RequestState::Bypass,
        RequestState::Error,
    ];

    /// As `X-Cache` says it (`HIT`, `MISS`, ...; `BYPASS`, `ERROR`, `ADMIN`, `QUEUED`).
    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Hit => "HIT",
            RequestState::Miss => "MISS",
            RequestState::Coalesced => "COALESCED",
            RequestState::Revalidated => "REVALIDATED",
            RequestState::Admin => "ADMIN",
            RequestState::Queued => "QUEUED",
            RequestState::Bypass => "BYPASS",
            RequestState::Error => "ERROR",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            RequestState::Hit => "hit",
            RequestState::Miss => "miss",
            RequestState::Coalesced => "coalesced",
            RequestState::Revalidated => "revalidated",
            RequestState::Admin => "admin",
            RequestState::Queued => "queued",
            RequestState::Bypass => "bypass",
            RequestState::Error => "error",
        }
    }
}

/// The liveweb error codes counted, in order (`E10` ... `E60`).
pub const CODES: [&str; 18] = [
    "E10", "E11", "E12", "E20", "E21", "E30", "E31", "E32", "E33", "E34", "E35", "E36", "E37",
    "E38", "E40", "E50", "E60", "other",
];

/// What a counted code means: the words after it in `X-Liveweb-Error` (`error.rs` checks
/// they are the same).
pub fn code_meaning(code: &str) -> &'static str {
    match code {
        "E10" => "invalid URL",
        "E11" => "upstream address not allowed",
        "E12" => "loop detected",
        "E20" => "DNS failure",
        "E21" => "DNS timeout",
        "E30" => "connection refused",
        "E31" => "connect timeout",
        "E32" => "first-byte timeout",
        "E33" => "read timeout",
        "E34" => "connection dropped",
        "E35" => "invalid response",
        "E36" => "TLS handshake failed",
        "E37" => "certificate invalid",
        "E38" => "TLS timeout",
        "E40" => "too big",
        "E50" => "storage failure",
        "E60" => "busy",
        _ => "a code not listed above",
    }
}

/// Upper bounds (seconds) of the request-duration histogram's buckets (`+Inf` besides).
pub const LATENCY_BOUNDS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// The histogram bucket of a duration in microseconds (the last is `+Inf`).
fn bucket_of(micros: u64) -> usize {
    let secs = micros as f64 / 1e6;
    LATENCY_BOUNDS
        .iter()
        .position(|b| secs <= *b)
        .unwrap_or(LATENCY_BOUNDS.len())
}

/// One worker's cells. Written by that worker only.
#[derive(Default)]
pub struct WorkerCounters {
    outcomes: [AtomicU64; RequestState::ALL.len()],
    codes: [AtomicU64; CODES.len()],
    bytes_out: AtomicU64,
    connections: AtomicU64,
    /// Request durations: one count per bucket (the last is `+Inf`), and the sum in
    /// microseconds.
    latency: [AtomicU64; LATENCY_BOUNDS.len() + 1],
    latency_sum_us: AtomicU64,
    /// The worker's hot shard, in bytes (a gauge).
    hot_bytes: AtomicU64,
    /// The CPU the worker is pinned to, plus one (0: not pinned).
    cpu: AtomicU64,
    /// Bytes read from clients.
    bytes_in: AtomicU64,
    /// Upstream fetch durations (slot held: connect to last byte), like `latency`.
    fetch_latency: [AtomicU64; LATENCY_BOUNDS.len() + 1],
    fetch_latency_sum_us: AtomicU64,
}

/// Adds `n` to a cell only this thread writes.
fn bump(cell: &AtomicU64, n: u64) {
    cell.store(
        cell.load(Ordering::Relaxed).wrapping_add(n),
        Ordering::Relaxed,
    );
}

impl WorkerCounters {
    /// One request answered: how it ended, its error code line (`E30 ...`) if any, the
    /// bytes written and how long it took from its head to its last byte (`None` for a
    /// refusal before its head was whole: no duration to speak of).
    pub fn request(
        &self,
        outcome: RequestState,
        code: Option<&str>,
        bytes: u64,
        micros: Option<u64>,
    ) {
        bump(&self.outcomes[outcome as usize], 1);
        if let Some(line) = code {
            let code = line.split(' ').next().unwrap_or("");
            let at = CODES
                .iter()
                .position(|c| *c == code)
                .unwrap_or(CODES.len() - 1);
            bump(&self.codes[at], 1);
        }
        bump(&self.bytes_out, bytes);
        let Some(micros) = micros else {
            return;
        };
        bump(&self.latency[bucket_of(micros)], 1);
        bump(&self.latency_sum_us, micros);
    }

    /// The worker runs pinned to `cpu`.
    pub fn set_cpu(&self, cpu: usize) {
        self.cpu.store(cpu as u64 + 1, Ordering::Relaxed);
    }

    pub fn read_bytes(&self, n: u64) {
        bump(&self.bytes_in, n);
    }

    /// One upstream fetch took `micros`.
    pub fn fetch(&self, micros: u64) {
        bump(&self.fetch_latency[bucket_of(micros)], 1);
        bump(&self.fetch_latency_sum_us, micros);
    }

    pub fn set_hot_bytes(&self, bytes: u64) {
        self.hot_bytes.store(bytes, Ordering::Relaxed);
    }

    pub fn connection_opened(&self) {
        bump(&self.connections, 1);
    }

    pub fn connection_closed(&self) {
        let now = self.connections.load(Ordering::Relaxed);
        self.connections
            .store(now.saturating_sub(1), Ordering::Relaxed);
    }
}

/// Every worker's counters summed (and kept per worker where a page shows them so).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    pub outcomes: [u64; RequestState::ALL.len()],
    pub codes: [u64; CODES.len()],
    pub bytes_out: u64,
    pub connections: u64,
    pub latency: [u64; LATENCY_BOUNDS.len() + 1],
    pub latency_sum_us: u64,
    pub hot_bytes: u64,
    /// The CPU plus one (0: not pinned); meaningful per worker only.
    pub cpu: u64,
    pub bytes_in: u64,
    pub fetch_latency: [u64; LATENCY_BOUNDS.len() + 1],
    pub fetch_latency_sum_us: u64,
}

impl Totals {
    pub fn add(&mut self, w: &WorkerCounters) {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        for (t, c) in self.outcomes.iter_mut().zip(&w.outcomes) {
            *t += load(c);
        }
        for (t, c) in self.codes.iter_mut().zip(&w.codes) {
            *t += load(c);
        }
        for (t, c) in self.latency.iter_mut().zip(&w.latency) {
            *t += load(c);
        }
        self.bytes_out += load(&w.bytes_out);
        self.connections += load(&w.connections);
        self.latency_sum_us += load(&w.latency_sum_us);
        self.hot_bytes += load(&w.hot_bytes);
        self.cpu = load(&w.cpu);
        self.bytes_in += load(&w.bytes_in);
        for (t, c) in self.fetch_latency.iter_mut().zip(&w.fetch_latency) {
            *t += load(c);
        }
        self.fetch_latency_sum_us += load(&w.fetch_latency_sum_us);
    }

    /// Hits among requests answered from the cache or by a fetch (0 when none).
    pub fn hit_ratio(&self) -> f64 {
        let hits = self.outcome(RequestState::Hit) + self.outcome(RequestState::Revalidated);
        let cached =
            hits + self.outcome(RequestState::Miss) + self.outcome(RequestState::Coalesced);
        if cached == 0 {
            0.0
        } else {
            hits as f64 / cached as f64
        }
    }

    pub fn requests(&self) -> u64 {
        self.outcomes.iter().sum()
    }

    pub fn outcome(&self, o: RequestState) -> u64 {
        self.outcomes[o as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_outcome_code_and_duration() {
        let w = WorkerCounters::default();
        w.connection_opened();
        w.request(RequestState::Hit, None, 1000, Some(80));
        w.request(RequestState::Miss, None, 2000, Some(3_000));
        w.request(
            RequestState::Error,
            Some("E30 connection refused"),
            100,
            Some(2_000_000),
        );
        w.request(RequestState::Error, Some("E99 unheard of"), 100, Some(10));
        w.request(RequestState::Error, Some("E60 busy"), 0, None);
        let mut t = Totals::default();
        t.add(&w);
        t.add(&w);
        assert_eq!(t.requests(), 10);
        assert_eq!(t.outcome(RequestState::Hit), 2);
        assert_eq!(t.outcome(RequestState::Error), 6);
        assert_eq!(
            t.latency.iter().sum::<u64>(),
            8,
            "refusals have no duration"
        );
        let e30 = CODES.iter().position(|c| *c == "E30").unwrap();
        assert_eq!(t.codes[e30], 2, "E30");
        assert_eq!(t.codes[CODES.len() - 1], 2, "unknown codes count as other");
        assert_eq!(t.bytes_out, 6400);
        assert_eq!(t.connections, 2);
        assert_eq!(t.latency[0], 4, "80 us and 10 us in the first bucket");
        assert_eq!(t.latency[5], 2, "3 ms in the 5 ms bucket");
        assert_eq!(
            t.latency[LATENCY_BOUNDS.len()],
            2,
            "2 s past the last bound"
        );
        w.connection_closed();
        w.connection_closed();
        let mut t = Totals::default();
        t.add(&w);
        assert_eq!(t.connections, 0);
    }
}
