//! `/_liveweb/status.json`: the status page's numbers as JSON, through serde. Field names are
//! stable (docs/operating.md, "Status page and metrics"); some are warcprox's `/status`
//! names, which crawlers script against.

use serde::ser::{Serialize, Serializer};

use super::{code_meaning, RequestState, Snapshot, CODES};

/// A JSON object whose keys keep the order given (serde_json's own maps sort them).
struct Ordered<K, V>(Vec<(K, V)>);

impl<K: Serialize, V: Serialize> Serialize for Ordered<K, V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

#[derive(serde::Serialize)]
struct Status<'a> {
    version: &'a str,
    uptime_seconds: u64,
    workers: usize,
    requests: Ordered<&'static str, u64>,
    errors: Ordered<&'static str, u64>,
    request_bytes: u64,
    response_bytes: u64,
    client_connections: u64,
    fetches_running: usize,
    fetches_queued: usize,
    index_entries: u64,
    index_bytes: u64,
    index_evictions: u64,
    hot_shard_bytes: u64,
    archive: Archive,
    // warcprox's names: records written, bytes written, fetches waiting and running;
    // nothing is written behind (a reply completes once its record is written).
    urls_processed: u64,
    warc_bytes_written: u64,
    queued_urls: usize,
    active_requests: usize,
    seconds_behind: u64,
    rates_1min: Rate,
    rates_5min: Rate,
    rates_15min: Rate,
    open_files: Vec<OpenFile<'a>>,
    per_worker: Vec<Worker>,
    recent_errors: Vec<Recent<'a>>,
    settings: Ordered<&'static str, &'a str>,
    code_meanings: Ordered<&'static str, &'static str>,
}

#[derive(serde::Serialize)]
struct Archive {
    bytes: u64,
    records: u64,
    files_sealed: u64,
    seal_failures: u64,
    on_seal_failures: u64,
    revisits: u64,
    disk_free_bytes: u64,
}

#[derive(serde::Serialize)]
struct Rate {
    actual_elapsed: f64,
    urls_per_sec: f64,
    warc_bytes_per_sec: f64,
}

#[derive(serde::Serialize)]
struct OpenFile<'a> {
    worker: usize,
    name: &'a str,
    bytes: u64,
}

#[derive(serde::Serialize)]
struct Worker {
    /// The CPU it last ran on, `null` before it was seen.
    cpu: Option<u64>,
    client_connections: u64,
    requests: u64,
    requests_per_second: f64,
    hit_ratio: f64,
    response_bytes: u64,
    hot_shard_bytes: u64,
}

#[derive(serde::Serialize)]
struct Recent<'a> {
    /// Unix seconds.
    time: u64,
    client: String,
    url: &'a str,
    code: &'a str,
    message: &'a str,
}

/// `x` to `places` decimals: the JSON says what the page shows, not float noise.
fn rounded(x: f64, places: i32) -> f64 {
    let scale = 10f64.powi(places);
    (x * scale).round() / scale
}

/// The same numbers as the status page, as JSON.
pub fn status_json(s: &Snapshot) -> String {
    let t = &s.totals;
    let rate = |i: usize| {
        let r = s.archive_rates[i];
        Rate {
            actual_elapsed: rounded(r.elapsed, 1),
            urls_per_sec: rounded(r.urls_per_sec, 1),
            warc_bytes_per_sec: rounded(r.bytes_per_sec, 1),
        }
    };
    let status = Status {
        version: s.version,
        uptime_seconds: s.uptime_secs,
        workers: s.workers,
        requests: Ordered(
            RequestState::ALL
                .iter()
                .map(|o| (o.label(), t.outcome(*o)))
                .collect(),
        ),
        errors: Ordered(CODES.iter().copied().zip(t.codes).collect()),
        request_bytes: t.bytes_in,
        response_bytes: t.bytes_out,
        client_connections: t.connections,
        fetches_running: s.fetches_running,
        fetches_queued: s.fetches_queued,
        index_entries: s.index.entries as u64,
        index_bytes: s.index.table_bytes as u64,
        index_evictions: s.index.evictions,
        hot_shard_bytes: t.hot_bytes,
        archive: Archive {
            bytes: s.archive.bytes,
            records: s.archive.records,
            files_sealed: s.archive.files_sealed,
            seal_failures: s.archive.seal_failures,
            on_seal_failures: s.archive.on_seal_failures,
            revisits: s.archive.revisits,
            disk_free_bytes: s.archive.disk_free,
        },
        urls_processed: s.archive.records,
        warc_bytes_written: s.archive.bytes,
        queued_urls: s.fetches_queued,
        active_requests: s.fetches_running,
        seconds_behind: 0,
        rates_1min: rate(0),
        rates_5min: rate(1),
        rates_15min: rate(2),
        open_files: s
            .open_files
            .iter()
            .map(|f| OpenFile {
                worker: f.worker,
                name: &f.name,
                bytes: f.bytes,
            })
            .collect(),
        per_worker: s
            .per_worker
            .iter()
            .enumerate()
            .map(|(i, w)| Worker {
                cpu: w.cpu.checked_sub(1),
                client_connections: w.connections,
                requests: w.requests(),
                requests_per_second: rounded(s.per_worker_rate.get(i).copied().unwrap_or(0.0), 1),
                hit_ratio: rounded(w.hit_ratio(), 3),
                response_bytes: w.bytes_out,
                hot_shard_bytes: w.hot_bytes,
            })
            .collect(),
        recent_errors: s
            .recent
            .iter()
            .map(|e| Recent {
                time: e
                    .at
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
                client: e.client.to_string(),
                url: &e.url,
                code: e.code,
                message: &e.message,
            })
            .collect(),
        settings: Ordered(s.settings.iter().map(|(k, v)| (*k, v.as_str())).collect()),
        code_meanings: Ordered(CODES.iter().map(|c| (*c, code_meaning(c))).collect()),
    };
    // Serializing these types cannot fail (string keys, finite numbers).
    serde_json::to_string(&status).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}
