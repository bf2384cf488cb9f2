//! What liveweb shows its operator: the numbers of a running process (per-worker counters
//! summed when asked, plus gauges read from the shared state), rendered as Prometheus text
//! (`/_liveweb/metrics`) and as JSON (`/_liveweb/status.json`).

pub mod counters;

use std::fmt::Write;

pub use counters::{Outcome, Totals, WorkerCounters, CODES, LATENCY_BOUNDS};

/// The numbers one page shows, gathered at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub version: &'static str,
    pub uptime_secs: u64,
    pub workers: usize,
    pub totals: Totals,
    pub fetches_running: usize,
    pub fetches_queued: usize,
    pub index_entries: usize,
}

/// Prometheus text exposition format 0.0.4.
pub fn metrics_text(s: &Snapshot) -> String {
    let mut out = String::with_capacity(4096);
    let t = &s.totals;
    let name = "liveweb_requests_total";
    let samples: Vec<String> = Outcome::ALL
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
    let name = "liveweb_request_duration_seconds";
    let mut samples = Vec::new();
    let mut cumulative = 0;
    for (bound, n) in LATENCY_BOUNDS.iter().zip(t.latency) {
        cumulative += n;
        samples.push(format!("{name}_bucket{{le=\"{bound}\"}} {cumulative}"));
    }
    cumulative += t.latency[LATENCY_BOUNDS.len()];
    samples.push(format!("{name}_bucket{{le=\"+Inf\"}} {cumulative}"));
    samples.push(format!("{name}_sum {}", t.latency_sum_us as f64 / 1e6));
    samples.push(format!("{name}_count {cumulative}"));
    let help = "Time from a request's head to its reply's last byte.";
    family(&mut out, name, "histogram", help, &samples);
    let scalars: [(&str, &str, &str, u64); 8] = [
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
            "URLs in the index (stored or being fetched).",
            s.index_entries as u64,
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

/// One metric family: its HELP and TYPE lines, then its samples.
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[String]) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for sample in samples {
        out.push_str(sample);
        out.push('\n');
    }
}

/// The same numbers as JSON, field names stable (documented in the README).
pub fn status_json(s: &Snapshot) -> String {
    let t = &s.totals;
    let mut out = String::with_capacity(1024);
    let _ = write!(
        out,
        "{{\"version\":\"{}\",\"uptime_seconds\":{},\"workers\":{},\"requests\":{{",
        s.version, s.uptime_secs, s.workers
    );
    let outcomes: Vec<String> = Outcome::ALL
        .iter()
        .map(|o| format!("\"{}\":{}", o.label(), t.outcome(*o)))
        .collect();
    out.push_str(&outcomes.join(","));
    out.push_str("},\"errors\":{");
    let codes: Vec<String> = CODES
        .iter()
        .zip(t.codes)
        .map(|(c, n)| format!("\"{c}\":{n}"))
        .collect();
    out.push_str(&codes.join(","));
    let _ = write!(
        out,
        "}},\"response_bytes\":{},\"client_connections\":{},\"fetches_running\":{},\
         \"fetches_queued\":{},\"index_entries\":{},\"hot_shard_bytes\":{}}}",
        t.bytes_out,
        t.connections,
        s.fetches_running,
        s.fetches_queued,
        s.index_entries,
        t.hot_bytes
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> Snapshot {
        let w = WorkerCounters::default();
        w.request(Outcome::Hit, None, 1000, Some(80));
        w.request(Outcome::Error, Some("E60 busy"), 50, Some(3000));
        w.set_hot_bytes(4096);
        let mut totals = Totals::default();
        totals.add(&w);
        Snapshot {
            version: "0.1.0",
            uptime_secs: 5,
            workers: 2,
            totals,
            fetches_running: 1,
            fetches_queued: 3,
            index_entries: 7,
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
    fn status_json_has_the_documented_fields() {
        let json = status_json(&snapshot());
        for field in [
            "\"version\":\"0.1.0\"",
            "\"requests\":{\"hit\":1,",
            "\"errors\":{\"E10\":0,",
            "\"E60\":1",
            "\"fetches_queued\":3",
            "\"hot_shard_bytes\":4096}",
        ] {
            assert!(json.contains(field), "{field} in {json}");
        }
    }
}
