//! The pages a person reads: the status page (`/_liveweb/status`: plain HTML, no script, every
//! value from the network escaped), and what a browser opening the proxy itself gets.

use std::fmt::Write;

use super::{code_meaning, RequestState, Snapshot, CODES};

/// What a browser opening the proxy's own address (`GET /`) gets: what liveweb is, how to
/// use it as a proxy, and the status page.
pub const WELCOME: &str = "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>liveweb</title></head>\n<body>\n<h1>liveweb</h1>\n<p>This is an archiving HTTP proxy: it is used as a proxy, not visited. Point a client at it, for example <code>curl -x http://THIS-HOST:PORT http://example.com/</code>, and every page it fetches is archived.</p>\n<p>Operators: <a href=\"/_liveweb/status\">/_liveweb/status</a> (from an admin address).</p>\n</body></html>\n";

/// `text` safe inside HTML text and attribute values.
pub fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d {h}h {m}m")
    } else if h > 0 {
        format!("{h}h {m}m {s}s")
    } else {
        format!("{m}m {s}s")
    }
}

pub fn status_html(s: &Snapshot) -> String {
    let t = &s.totals;
    let mut out = String::with_capacity(8192);
    let _ = write!(
        out,
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>liveweb status</title>\
         <style>body{{font-family:sans-serif;margin:1.5em}}table{{border-collapse:collapse;margin-bottom:1.2em}}\
         td,th{{border:1px solid #ccc;padding:.2em .6em;text-align:right}}th{{background:#eee}}\
         td.l,th.l{{text-align:left}}</style></head><body>\n\
         <h1>liveweb {}</h1>\n<p id=\"summary\">up {}, {} workers, {} requests, {} written, \
         {} client connections open.</p>\n",
        html_escape(s.version),
        duration(s.uptime_secs),
        s.workers,
        t.requests(),
        bytes(t.bytes_out),
        t.connections,
    );
    out.push_str("<h2>Running with</h2>\n<table id=\"settings\">");
    for (flag, value) in &s.settings {
        let _ = write!(
            out,
            "<tr><th class=\"l\">{flag}</th><td class=\"l\">{}</td></tr>",
            html_escape(value)
        );
    }
    out.push_str("</table>\n<h2>Requests</h2>\n<table id=\"requests\"><tr>");
    for o in RequestState::ALL {
        let _ = write!(out, "<th>{}</th>", o.label());
    }
    out.push_str("</tr><tr>");
    for o in RequestState::ALL {
        let _ = write!(out, "<td>{}</td>", t.outcome(o));
    }
    out.push_str("</tr></table>\n<h2>Fetches and store</h2>\n<table id=\"fetches\">");
    let _ = writeln!(
        out,
        "<tr><th class=\"l\">fetches running</th><td>{}</td></tr>\
         <tr><th class=\"l\">fetches queued</th><td>{}</td></tr>\
         <tr><th class=\"l\">index entries</th><td>{}</td></tr>\
         <tr><th class=\"l\">index memory</th><td>{} of {} ({} evicted)</td></tr>\
         <tr><th class=\"l\">hot shards</th><td>{}</td></tr></table>",
        s.fetches_running,
        s.fetches_queued,
        s.index.entries,
        bytes(s.index.table_bytes as u64),
        bytes(s.index.budget as u64),
        s.index.evictions,
        bytes(t.hot_bytes)
    );
    let a = &s.archive;
    let _ = writeln!(
        out,
        "<h2>Archive</h2>\n<table id=\"archive\">\
         <tr><th class=\"l\">records appended</th><td>{}</td></tr>\
         <tr><th class=\"l\">bytes appended</th><td>{}</td></tr>\
         <tr><th class=\"l\">files sealed</th><td>{}</td></tr>\
         <tr><th class=\"l\">seal failures</th><td>{}</td></tr>\
         <tr><th class=\"l\">on-seal failures</th><td>{}</td></tr>\
         <tr><th class=\"l\">revisits (dedup)</th><td>{}</td></tr>\
         <tr><th class=\"l\">disk free</th><td>{}</td></tr></table>",
        a.records,
        bytes(a.bytes),
        a.files_sealed,
        a.seal_failures,
        a.on_seal_failures,
        a.revisits,
        if a.disk_free == 0 {
            "not checked yet".to_string()
        } else {
            bytes(a.disk_free)
        }
    );
    out.push_str("<h2>Files being written</h2>\n<table id=\"open\"><tr><th>worker</th><th class=\"l\">file</th><th>size</th></tr>");
    for f in &s.open_files {
        let _ = write!(
            out,
            "<tr><td>{}</td><td class=\"l\">{}</td><td>{}</td></tr>",
            f.worker,
            html_escape(&f.name),
            bytes(f.bytes)
        );
    }
    out.push_str("</table>\n");
    out.push_str(
        "<h2>Workers</h2>\n<table id=\"workers\"><tr><th>worker</th><th>connections</th>\
         <th>CPU</th><th>requests</th><th>requests/s (last minute)</th><th>hit ratio</th><th>written</th><th>hot shard</th></tr>",
    );
    for (i, w) in s.per_worker.iter().enumerate() {
        let _ = write!(
            out,
            "<tr><td>{i}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td><td>{:.0}%</td><td>{}</td><td>{}</td></tr>",
            w.connections,
            match w.cpu {
                0 => "-".to_string(),
                cpu => (cpu - 1).to_string(),
            },
            w.requests(),
            s.per_worker_rate.get(i).copied().unwrap_or(0.0),
            w.hit_ratio() * 100.0,
            bytes(w.bytes_out),
            bytes(w.hot_bytes)
        );
    }
    out.push_str(
        "</table>\n<h2>Errors by code</h2>\n<table id=\"codes\">\
         <tr><th class=\"l\">code</th><th class=\"l\">meaning</th><th>replies</th></tr>",
    );
    for (code, n) in CODES.iter().zip(t.codes) {
        let _ = write!(
            out,
            "<tr><td class=\"l\">{code}</td><td class=\"l\">{}</td><td>{n}</td></tr>",
            code_meaning(code)
        );
    }
    let _ = write!(
        out,
        "</table>\n<h2>Recent errors ({} kept, newest first)</h2>\n\
         <table id=\"recent\"><tr><th class=\"l\">time (UTC)</th><th class=\"l\">client</th>\
         <th class=\"l\">URL</th><th class=\"l\">code</th><th class=\"l\">message</th></tr>",
        super::recent::KEPT
    );
    for e in &s.recent {
        let _ = write!(
            out,
            "<tr><td class=\"l\">{}</td><td class=\"l\">{}</td><td class=\"l\">{}</td>\
             <td class=\"l\">{}</td><td class=\"l\">{}</td></tr>",
            httpdate::fmt_http_date(e.at),
            e.client,
            html_escape(&e.url),
            // The code alone: the message says it in words, with the detail.
            html_escape(e.code.split(' ').next().unwrap_or(e.code)),
            html_escape(&e.message)
        );
    }
    out.push_str(
        "</table>\n<p>Also as <a href=\"/_liveweb/status.json\">JSON</a> and \
         <a href=\"/_liveweb/metrics\">Prometheus metrics</a>.</p>\n</body></html>\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_text_is_escaped() {
        assert_eq!(
            html_escape("<script>alert('x')</script>&\"\u{7}"),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;\u{fffd}"
        );
    }

    #[test]
    fn units_read_at_a_glance() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 << 20), "3.0 MiB");
        assert_eq!(duration(59), "0m 59s");
        assert_eq!(duration(3 * 3600 + 61), "3h 1m 1s");
        assert_eq!(duration(2 * 86400 + 3600), "2d 1h 0m");
    }
}
