//! What liveweb shows its operator: the numbers of a running process (per-worker counters
//! summed when asked, plus gauges read from the shared state) and the last errors, rendered
//! as Prometheus text (`/_liveweb/metrics`), JSON (`/_liveweb/status.json`) and an HTML page
//! (`/_liveweb/status`).

pub mod access_log;
pub mod counters;
pub mod page;
pub mod recent;
mod status_json;

pub use status_json::status_json;

use std::fmt::Write;

pub use counters::{code_meaning, RequestState, Totals, WorkerCounters, CODES, LATENCY_BOUNDS};
pub use page::status_html;
pub use recent::{RecentError, RecentErrors};

/// The numbers one page shows, gathered at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub version: &'static str,
    pub uptime_secs: u64,
    pub workers: usize,
    pub totals: Totals,
    pub fetches_running: usize,
    pub fetches_queued: usize,
    /// Stored URLs in the index, its tables' bytes, its budget and its evictions.
    pub index: crate::index::IndexMemory,
    /// Response bodies that went to disk as they arrived (past `--spill-threshold`, or with
    /// `--transfer-memory` spent), and the bytes of bodies in memory now.
    pub spilled_responses: u64,
    pub transfer_memory_bytes: u64,
    /// Each worker's own counters, by worker id.
    pub per_worker: Vec<Totals>,
    /// Each worker's requests per second over the last minute.
    pub per_worker_rate: Vec<f64>,
    /// The last errors, newest first.
    pub recent: Vec<RecentError>,
    /// Access-log lines dropped because its thread fell behind.
    pub access_log_dropped: u64,
    pub archive: Archive,
    pub open_files: Vec<OpenFile>,
    /// Records and bytes archived per second over the last 1, 5 and 15 minutes.
    pub archive_rates: [ArchiveRate; 3],
    /// What it runs with: `(flag, value)` (`Config::summary`).
    pub settings: Vec<(&'static str, String)>,
}

/// Archiving over a recent window, as warcprox's `/status` reports it (`rates_Nmin`).
#[derive(Debug, Clone, Copy, Default)]
pub struct ArchiveRate {
    /// Seconds the numbers cover (less than the window just after start).
    pub elapsed: f64,
    pub urls_per_sec: f64,
    pub bytes_per_sec: f64,
}

/// What the archive did since start.
#[derive(Debug, Clone, Copy, Default)]
pub struct Archive {
    pub bytes: u64,
    pub records: u64,
    pub files_sealed: u64,
    pub seal_failures: u64,
    pub on_seal_failures: u64,
    /// Identical-payload revisit records written (`--dedup`).
    pub revisits: u64,
    /// Free bytes on the data filesystem at the last check (0: not checked yet).
    pub disk_free: u64,
}

/// A worker's ARC file being written.
#[derive(Debug, Clone, Default)]
pub struct OpenFile {
    pub worker: usize,
    pub name: String,
    pub bytes: u64,
}

/// Prometheus text exposition format 0.0.4.
/// What one of liveweb's own pages answers, for the proxy to frame.
#[derive(Debug, PartialEq, Eq)]
pub enum AdminReply {
    /// `200 OK` with this body.
    Page {
        content_type: &'static str,
        body: String,
    },
    /// A short text reply.
    Text {
        status: u16,
        reason: &'static str,
        body: &'static str,
    },
}

/// Whether a request for `target` must come from the admin ranges: every `/_liveweb/`
/// target but the health check, which anyone let in may ask (a balancer's own checks name
/// no client).
pub fn needs_admin_range(target: &str) -> bool {
    target != "/_liveweb/health" && target.starts_with("/_liveweb/")
}

/// Answers `GET path` for liveweb's own pages: `/` (what this is, for a browser), health,
/// metrics, the status page and its JSON (the CDX query, which reads the archive, is the
/// proxy's). `snapshot` is taken only for a page that shows it.
pub fn serve(path: &str, snapshot: impl FnOnce() -> Snapshot) -> AdminReply {
    let page = |content_type, body| AdminReply::Page { content_type, body };
    match path {
        "/" => page("text/html; charset=utf-8", page::WELCOME.into()),
        "/_liveweb/health" => AdminReply::Text {
            status: 200,
            reason: "OK",
            body: "ok",
        },
        "/_liveweb/metrics" => page(
            "text/plain; version=0.0.4; charset=utf-8",
            metrics_text(&snapshot()),
        ),
        "/_liveweb/status" => page("text/html; charset=utf-8", status_html(&snapshot())),
        "/_liveweb/status.json" => page("application/json", status_json(&snapshot())),
        _ => AdminReply::Text {
            status: 404,
            reason: "Not Found",
            body: "no such liveweb endpoint",
        },
    }
}

pub fn metrics_text(s: &Snapshot) -> String {
    let mut out = String::with_capacity(4096);
    let t = &s.totals;
    let name = "liveweb_requests_total";
    let samples: Vec<String> = RequestState::ALL
        .iter()
        .map(|o| format!("{name}{{outcome=\"{}\"}} {}", o.label(), t.outcome(*o)))
        .collect();
    family(
        &mut out,
        name,
        "counter",
        "Requests answered, by outcome (X-Cache).",
        &samples,
    );
    let name = "liveweb_errors_total";
    let samples: Vec<String> = CODES
        .iter()
        .zip(t.codes)
        .map(|(code, n)| format!("{name}{{code=\"{code}\"}} {n}"))
        .collect();
    let help = "Requests answered with a liveweb error code, by code.";
    family(&mut out, name, "counter", help, &samples);
    let help = "Time from a request's head to its reply's last byte.";
    let name = "liveweb_request_duration_seconds";
    histogram(&mut out, name, help, &t.latency, t.latency_sum_us);
    let help = "Upstream fetches, from taking a slot to the last byte of the response.";
    let name = "liveweb_fetch_duration_seconds";
    histogram(
        &mut out,
        name,
        help,
        &t.fetch_latency,
        t.fetch_latency_sum_us,
    );
    let a = &s.archive;
    let scalars: [(&str, &str, &str, u64); 22] = [
        (
            "liveweb_request_bytes_total",
            "counter",
            "Bytes read from clients.",
            t.bytes_in,
        ),
        (
            "liveweb_archive_bytes_total",
            "counter",
            "Record bytes appended to ARC files.",
            a.bytes,
        ),
        (
            "liveweb_archive_records_total",
            "counter",
            "Records appended to ARC files.",
            a.records,
        ),
        (
            "liveweb_files_sealed_total",
            "counter",
            "ARC files sealed (CDX written, moved to sealed/).",
            a.files_sealed,
        ),
        (
            "liveweb_seal_failures_total",
            "counter",
            "ARC files whose seal failed (sealed at the next start).",
            a.seal_failures,
        ),
        (
            "liveweb_on_seal_failures_total",
            "counter",
            "--on-seal runs that failed (retried).",
            a.on_seal_failures,
        ),
        (
            "liveweb_revisits_total",
            "counter",
            "Responses archived as identical-payload revisit records (--dedup).",
            a.revisits,
        ),
        (
            "liveweb_disk_free_bytes",
            "gauge",
            "Free bytes on the data filesystem at the last check.",
            a.disk_free,
        ),
        (
            "liveweb_access_log_dropped_total",
            "counter",
            "Access-log lines dropped because the log writer fell behind.",
            s.access_log_dropped,
        ),
        (
            "liveweb_response_bytes_total",
            "counter",
            "Bytes written to clients.",
            t.bytes_out,
        ),
        (
            "liveweb_client_connections",
            "gauge",
            "Client connections open.",
            t.connections,
        ),
        (
            "liveweb_fetches_running",
            "gauge",
            "Upstream fetches holding a slot.",
            s.fetches_running as u64,
        ),
        (
            "liveweb_fetches_queued",
            "gauge",
            "Upstream fetches waiting for a slot.",
            s.fetches_queued as u64,
        ),
        (
            "liveweb_index_entries",
            "gauge",
            "Stored URLs in the index.",
            s.index.entries as u64,
        ),
        (
            "liveweb_index_bytes",
            "gauge",
            "Bytes the index's tables take (at most --index-memory).",
            s.index.table_bytes as u64,
        ),
        (
            "liveweb_index_evictions_total",
            "counter",
            "Index entries that left to keep within --index-memory (their records stay on disk).",
            s.index.evictions,
        ),
        (
            "liveweb_index_vary_lists",
            "gauge",
            "URLs whose Vary list is remembered (for --ttl, outside --index-memory).",
            s.index.vary_lists as u64,
        ),
        (
            "liveweb_spilled_responses_total",
            "counter",
            "Responses that went to disk as they arrived instead of being held in memory.",
            s.spilled_responses,
        ),
        (
            "liveweb_transfer_memory_bytes",
            "gauge",
            "Bytes of response bodies held in memory while they arrive (--transfer-memory).",
            s.transfer_memory_bytes,
        ),
        (
            "liveweb_hot_shard_bytes",
            "gauge",
            "Record bytes the workers' hot shards hold in memory.",
            t.hot_bytes,
        ),
        (
            "liveweb_workers",
            "gauge",
            "Worker threads.",
            s.workers as u64,
        ),
        (
            "liveweb_uptime_seconds",
            "gauge",
            "Seconds since start.",
            s.uptime_secs,
        ),
    ];
    for (name, kind, help, value) in scalars {
        family(&mut out, name, kind, help, &[format!("{name} {value}")]);
    }
    out
}

/// A histogram family from bucket counts (the last is `+Inf`) and a sum in microseconds.
fn histogram(out: &mut String, name: &str, help: &str, buckets: &[u64], sum_us: u64) {
    let mut samples = Vec::new();
    let mut cumulative = 0;
    for (bound, n) in LATENCY_BOUNDS.iter().zip(buckets) {
        cumulative += n;
        samples.push(format!("{name}_bucket{{le=\"{bound}\"}} {cumulative}"));
    }
    cumulative += buckets.get(LATENCY_BOUNDS.len()).copied().unwrap_or(0);
    samples.push(format!("{name}_bucket{{le=\"+Inf\"}} {cumulative}"));
    samples.push(format!("{name}_sum {}", sum_us as f64 / 1e6));
    samples.push(format!("{name}_count {cumulative}"));
    family(out, name, "histogram", help, &samples);
}

/// One metric family: its HELP and TYPE lines, then its samples.
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[String]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for sample in samples {
        out.push_str(sample);
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        let w = WorkerCounters::default();
        w.request(RequestState::Hit, None, 1000, Some(80));
        w.request(RequestState::Error, Some("E60 busy"), 50, Some(3000));
        w.set_hot_bytes(4096);
        let mut totals = Totals::default();
        totals.add(&w);
        Snapshot {
            version: "0.1.0",
            uptime_secs: 5,
            workers: 2,
            per_worker: vec![totals.clone(), Totals::default()],
            per_worker_rate: vec![12.5, 0.0],
            totals,
            fetches_running: 1,
            fetches_queued: 3,
            index: crate::index::IndexMemory {
                entries: 7,
                table_bytes: 880,
                budget: 1 << 20,
                evictions: 0,
                vary_lists: 0,
            },
            spilled_responses: 0,
            transfer_memory_bytes: 0,
            access_log_dropped: 0,
            open_files: vec![OpenFile {
                worker: 0,
                name: "L-1-0-00003.arc.gz".into(),
                bytes: 8192,
            }],
            archive_rates: Default::default(),
            settings: vec![
                ("--mode", "forward".into()),
                ("--data-dir", "/srv/<lw>".into()),
            ],
            archive: Archive {
                bytes: 9000,
                records: 3,
                files_sealed: 1,
                ..Archive::default()
            },
            recent: vec![RecentError {
                at: std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000),
                client: [127, 0, 0, 1].into(),
                url: "http://a.example/\"q\"\\<b>\u{1}".into(),
                code: "E30 connection refused",
                message: "E30 connection refused: 1.2.3.4:80".into(),
            }],
        }
    }

    #[test]
    fn metrics_are_prometheus_text_with_help_and_type_for_every_family() {
        let text = metrics_text(&snapshot());
        assert!(
            text.contains("liveweb_requests_total{outcome=\"hit\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("liveweb_errors_total{code=\"E60\"} 1\n"));
        assert!(text.contains("liveweb_request_duration_seconds_bucket{le=\"0.0001\"} 1\n"));
        assert!(text.contains("liveweb_request_duration_seconds_bucket{le=\"+Inf\"} 2\n"));
        assert!(text.contains("liveweb_request_duration_seconds_count 2\n"));
        assert!(text.contains("liveweb_fetches_queued 3\n"));
        assert!(text.contains("liveweb_files_sealed_total 1\n"));
        // Every sample's family was declared (HELP and TYPE) before it.
        let mut declared = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                declared.push(rest.split(' ').next().unwrap().to_string());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                let family = name
                    .trim_end_matches("_bucket")
                    .trim_end_matches("_sum")
                    .trim_end_matches("_count");
                assert!(declared.iter().any(|d| d == family || d == name), "{line}");
            }
        }
    }

    #[test]
    fn each_page_has_one_route_and_only_pages_that_show_numbers_take_them() {
        let untouched = || -> Snapshot { panic!("no snapshot for this page") };
        assert_eq!(
            serve("/_liveweb/health", untouched),
            AdminReply::Text {
                status: 200,
                reason: "OK",
                body: "ok"
            }
        );
        assert!(
            matches!(serve("/", untouched), AdminReply::Page { content_type, .. } if content_type.starts_with("text/html"))
        );
        assert!(matches!(
            serve("/_liveweb/nope", untouched),
            AdminReply::Text { status: 404, .. }
        ));
        for (path, kind) in [
            ("/_liveweb/metrics", "text/plain; version=0.0.4"),
            ("/_liveweb/status", "text/html"),
            ("/_liveweb/status.json", "application/json"),
        ] {
            match serve(path, snapshot) {
                AdminReply::Page { content_type, body } => {
                    assert!(content_type.starts_with(kind) && !body.is_empty(), "{path}")
                }
                other => panic!("{path}: {other:?}"),
            }
        }
        assert!(!needs_admin_range("/_liveweb/health"));
        assert!(needs_admin_range("/_liveweb/health?verbose"));
        assert!(needs_admin_range("/_liveweb/cdx?url=x"));
        assert!(!needs_admin_range("/"));
    }

    #[test]
    fn status_json_has_the_documented_fields() {
        let json = status_json(&snapshot());
        for field in [
            "\"version\":\"0.1.0\"",
            "\"requests\":{\"hit\":1,",
            "\"errors\":{\"E10\":0,",
            "\"E60\":1",
            "\"fetches_queued\":3",
            "\"hot_shard_bytes\":4096,",
            "\"per_worker\":[{\"cpu\":null,\"client_connections\":0,\"requests\":2,\"requests_per_second\":12.5,\"hit_ratio\":1.0,",
            "\"url\":\"http://a.example/\\\"q\\\"\\\\<b>\\u0001\"",
            "\"time\":1700000000,",
            "\"open_files\":[{\"worker\":0,\"name\":\"L-1-0-00003.arc.gz\",\"bytes\":8192}]",
            "\"archive\":{\"bytes\":9000,\"records\":3,\"files_sealed\":1,",
        ] {
            assert!(json.contains(field), "{field} in {json}");
        }
        assert!(
            json.ends_with("\"other\":\"a code not listed above\"}}"),
            "{json}"
        );
        assert!(json.contains("\"settings\":{\"--mode\":\"forward\",\"--data-dir\":\"/srv/<lw>\"}"));
        assert!(json.contains("\"code_meanings\":{\"E10\":\"invalid URL\","));
        for window in ["rates_1min", "rates_5min", "rates_15min"] {
            assert_eq!(
                json.matches(&format!("\"{window}\":{{")).count(),
                1,
                "{json}"
            );
        }
    }

    #[test]
    fn the_html_page_shows_the_numbers_and_escapes_what_came_from_the_network() {
        let html = status_html(&snapshot());
        assert!(html.contains("<h1>liveweb 0.1.0</h1>"));
        assert!(
            html.contains("<th class=\"l\">--data-dir</th><td class=\"l\">/srv/&lt;lw&gt;</td>"),
            "{html}"
        );
        assert!(
            html.contains("<td class=\"l\">E37</td><td class=\"l\">certificate invalid</td>"),
            "{html}"
        );
        // A recent error: its code, then the message that says it in words (not twice).
        assert_eq!(html.matches("E30 connection refused").count(), 1, "{html}");
        assert!(
            html.contains("http://a.example/&quot;q&quot;\\&lt;b&gt;\u{fffd}"),
            "{html}"
        );
        assert!(!html.contains("<b>"));
        assert!(html.contains("<td>3</td>"), "fetches queued");
    }
}
