//! The operator's numbers: `/_liveweb/metrics` (Prometheus text, checked with the
//! `prometheus_client` parser) and `/_liveweb/status.json` count what the proxy did.

mod common;

use std::io::Write;
use std::net::TcpListener;
use std::process::{Command, Stdio};

use common::*;

fn admin_get(proxy: &Proxy, path: &str) -> Reply {
    send_raw(
        proxy.addr,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

/// The value of one sample (`name{labels}` exactly as written) in Prometheus text.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

#[test]
fn metrics_and_status_count_hits_misses_and_errors() {
    let origin = Origin::start();
    origin.ok("/page", "text/html", b"<p>hello</p>");
    let proxy = Proxy::start(&[]);
    let url = origin.url("/page");
    assert_eq!(get(proxy.addr, &url, "").status, 200);
    let hit = get(proxy.addr, &url, "");
    assert_eq!(hit.header("x-cache").as_deref(), Some("HIT"));
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let refused = get(proxy.addr, &format!("http://{closed}/x"), "");
    assert_eq!(refused.status, 502);

    // A worker counts a request once its reply is written, so a client can read the reply
    // before the count lands: wait until the last request (the refused one) shows.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let (metrics, text) = loop {
        let metrics = admin_get(&proxy, "/_liveweb/metrics");
        let text = String::from_utf8(metrics.body.clone()).unwrap();
        if sample(&text, "liveweb_requests_total{outcome=\"miss\"}") >= 2.0 {
            break (metrics, text);
        }
        assert!(std::time::Instant::now() < deadline, "{text}");
    };
    assert_eq!(metrics.status, 200);
    assert!(metrics
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    assert_eq!(
        sample(&text, "liveweb_requests_total{outcome=\"hit\"}"),
        1.0
    );
    // The miss and the refused fetch (its failure record is a miss too).
    assert_eq!(
        sample(&text, "liveweb_requests_total{outcome=\"miss\"}"),
        2.0
    );
    assert_eq!(sample(&text, "liveweb_errors_total{code=\"E30\"}"), 1.0);
    assert!(sample(&text, "liveweb_response_bytes_total") > (2 * 12) as f64);
    // The three requests and the metrics requests answered before this one.
    let admin = sample(&text, "liveweb_requests_total{outcome=\"admin\"}");
    assert_eq!(
        sample(&text, "liveweb_request_duration_seconds_count"),
        3.0 + admin
    );
    // Two fetches ran (the page, the refused one); the hit was not one.
    assert_eq!(sample(&text, "liveweb_fetch_duration_seconds_count"), 2.0);
    assert!(sample(&text, "liveweb_request_bytes_total") > 3.0 * 30.0);
    assert_eq!(sample(&text, "liveweb_index_entries"), 2.0);
    assert_eq!(sample(&text, "liveweb_workers"), 2.0);
    // This request's own connection is open.
    assert!(sample(&text, "liveweb_client_connections") >= 1.0);
    assert!(sample(&text, "liveweb_hot_shard_bytes") > 0.0);
    // The page's record and the refused fetch's failure record.
    assert_eq!(sample(&text, "liveweb_archive_records_total"), 2.0);
    assert!(sample(&text, "liveweb_archive_bytes_total") > 100.0);
    assert!(sample(&text, "liveweb_disk_free_bytes") > 0.0);
    assert_eq!(sample(&text, "liveweb_revisits_total"), 0.0);

    // A real Prometheus parser reads it.
    let mut parser = Command::new("python3")
        .args([
            "-c",
            "import sys\nfrom prometheus_client.parser import text_string_to_metric_families as p\nprint(len(list(p(sys.stdin.read()))))",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    parser
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = parser.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client rejected the metrics (pip install prometheus_client): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "26");

    // As above: the metrics request just answered counts once it lands.
    let (status, json) = loop {
        let status = admin_get(&proxy, "/_liveweb/status.json");
        let json = String::from_utf8(status.body.clone()).unwrap();
        if !json.contains("\"admin\":0,") && !json.contains("\"admin\":0}") {
            break (status, json);
        }
        assert!(std::time::Instant::now() < deadline, "{json}");
    };
    assert_eq!(
        status.header("content-type").as_deref(),
        Some("application/json")
    );
    assert!(json.contains(".arc.gz.open\",\"bytes\":"), "{json}");
    for field in [
        "\"hit\":1,",
        "\"miss\":2,",
        "\"E30\":1,",
        "\"workers\":2,",
        "\"urls_processed\":",
        "\"warc_bytes_written\":",
        "\"queued_urls\":0,",
        "\"seconds_behind\":0",
    ] {
        assert!(json.contains(field), "{field} in {json}");
    }
    // Checked as JSON by a JSON parser.
    let checked = Command::new("python3")
        .args([
            "-c",
            "import json,sys; d=json.loads(sys.argv[1]); r=d['rates_1min']; print(d['requests']['admin'] >= 1 and r['urls_per_sec'] > 0 and r['warc_bytes_per_sec'] > 0 and 0 < r['actual_elapsed'] <= 65 and d['rates_15min']['actual_elapsed'] <= r['actual_elapsed'] + 5)",
            &json,
        ])
        .output()
        .unwrap();
    assert!(checked.status.success(), "{json}");
    assert_eq!(String::from_utf8_lossy(&checked.stdout).trim(), "True");

    // Per-worker rates over the last minute: non-zero once the first sample (taken at start)
    // is old enough to divide by.
    let rate_script = "import json,sys; d=json.loads(sys.argv[1]); print(sum(w['requests_per_second'] for w in d['per_worker']))";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let json = String::from_utf8(admin_get(&proxy, "/_liveweb/status.json").body).unwrap();
        let out = Command::new("python3")
            .args(["-c", rate_script, &json])
            .output()
            .unwrap();
        let rate: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        if rate > 0.0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{json}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// A record is kept in memory once it is asked for again, not when it is first fetched: a
/// crawl fetches most URLs once, and keeping each would push out the records that are asked
/// for again. In both reply shapes and for plain ARC records too. One worker and one
/// keep-alive connection, so each request is counted (and the shard's bytes sampled) before
/// the next is read.
#[test]
fn a_record_enters_the_hot_shard_on_its_second_request_not_its_fetch() {
    let origin = Origin::start();
    origin.ok("/page", "text/html", b"<p>kept on the second request</p>");
    let url = origin.url("/page");
    let configurations: [&[&str]; 3] = [
        &["--workers", "1"],
        &["--workers", "1", "--mode", "forward"],
        &["--workers", "1", "--mode", "forward", "--arc-gzip", "false"],
    ];
    for (n, args) in configurations.into_iter().enumerate() {
        let proxy = Proxy::start(args);
        let mut conn = connect(proxy.addr);
        let ask = |conn: &mut std::io::BufReader<std::net::TcpStream>, target: &str| {
            let req = format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n");
            conn.get_mut().write_all(req.as_bytes()).unwrap();
            read_reply(conn, false)
        };
        let hot_bytes = |reply: Reply| {
            let text = String::from_utf8(reply.body).unwrap();
            sample(&text, "liveweb_hot_shard_bytes")
        };
        let miss = ask(&mut conn, &url);
        assert_eq!(miss.header("x-cache").as_deref(), Some("MISS"), "{args:?}");
        let after_miss = hot_bytes(ask(&mut conn, "/_liveweb/metrics"));
        assert_eq!(after_miss, 0.0, "{args:?}");
        // A forward-mode miss is answered while its record is still being archived; a
        // request joining that fetch would keep the record too. Wait until it is stored
        // with requests that keep nothing: HEAD, and `202` instead of joining the fetch.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let head = format!(
                "HEAD {url} HTTP/1.1\r\nHost: x\r\nX-Liveweb-Mode: liveweb\r\n\
                 Prefer: respond-async\r\n\r\n"
            );
            conn.get_mut().write_all(head.as_bytes()).unwrap();
            let reply = read_reply(&mut conn, true);
            if reply.header("x-cache").as_deref() == Some("HIT") {
                break;
            }
            assert_eq!(reply.status, 202, "{args:?}");
            assert!(
                std::time::Instant::now() < deadline,
                "{args:?}: never stored"
            );
        }
        let again = ask(&mut conn, &url);
        assert_eq!(again.header("x-cache").as_deref(), Some("HIT"), "{args:?}");
        assert_eq!(again.body, miss.body, "{args:?}");
        let after_hit = hot_bytes(ask(&mut conn, "/_liveweb/metrics"));
        assert!(after_hit > 0.0, "{args:?}");
        assert_eq!(origin.hits("/page"), n + 1, "{args:?}");
    }
}

#[test]
fn the_status_page_reads_in_a_browser_and_lists_recent_errors_escaped() {
    let proxy = Proxy::start(&[]);
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    // A URL with markup in it: shown as text, never as markup.
    let hostile = format!("http://{closed}/<b>bold</b>?q=\"x\"");
    let refused = send_raw(
        proxy.addr,
        format!("GET {hostile} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    assert_eq!(refused.status, 502);

    let url = format!("http://{}/_liveweb/status", proxy.addr);
    let dom = String::from_utf8(chromium(&["--dump-dom"], &url).stdout).unwrap();
    assert!(dom.contains("<h1>liveweb "), "{dom}");
    assert!(dom.contains("E30 connection refused"), "{dom}");
    assert!(
        dom.contains("&lt;b&gt;bold&lt;/b&gt;"),
        "the URL is text: {dom}"
    );
    assert!(!dom.contains("<b>bold</b>"), "the URL became markup: {dom}");

    let dir = tempfile::tempdir().unwrap();
    let shot = dir.path().join("status.png");
    let arg = format!("--screenshot={}", shot.display());
    chromium(&[&arg, "--window-size=1200,900"], &url);
    let png = std::fs::read(&shot).expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
    assert!(
        png.len() > 10_000,
        "a page with text renders to more than a blank image"
    );
}

#[test]
fn log_lines_carry_time_and_level_and_upstream_errors_name_the_url() {
    let proxy = Proxy::start(&["--mode", "forward"]);
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("http://{closed}/gone");
    assert_eq!(get(proxy.addr, &url, "").status, 502);
    // The line is written before the reply: it is in the log once the reader thread has it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !proxy.log_text().contains("/gone") {
        assert!(std::time::Instant::now() < deadline, "{}", proxy.log_text());
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let log = proxy.log_text();
    let line = log.lines().find(|l| l.contains("/gone")).unwrap();
    // 2026-11-26T00:23:00.123Z WARN  liveweb: http://.../gone upstream 502 E30 ...
    let (time, rest) = line.split_once(' ').unwrap();
    assert!(
        time.len() == 24 && time.ends_with('Z') && time.as_bytes()[10] == b'T',
        "{line}"
    );
    assert!(rest.starts_with("WARN  liveweb: http://"), "{line}");
    assert!(line.contains("E30 connection refused: "), "{line}");
    assert!(
        !line.contains("connection refused: connection refused"),
        "{line}"
    );
    let startup = log.lines().find(|l| l.contains("listening on")).unwrap();
    assert!(
        startup.contains(" INFO  liveweb: listening on"),
        "{startup}"
    );

    // --log-level error drops the warning (the line saying where it listens stays).
    let quiet = Proxy::start(&["--log-level", "error", "--mode", "forward"]);
    // The start-up lines before "listening on" are all read by now: the info ones are gone.
    let log = quiet.log_text();
    assert!(!log.contains("recovering"), "{log}");
    assert!(log.contains(" INFO  liveweb: listening on"), "{log}");
    let _ = get(quiet.addr, &url, "");
    assert!(!quiet.log_text().contains("/gone"), "{}", quiet.log_text());
}

/// Starts liveweb with `args` (and its own data dir unless `args` names one), expecting it to
/// refuse to start; its stderr.
fn refused_start(args: &[&str]) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_liveweb"));
    if !args.contains(&"--data-dir") {
        cmd.arg("--data-dir").arg(tmp.path().join("data"));
    }
    if !args.contains(&"--listen") {
        cmd.args(["--listen", "127.0.0.1:0"]);
    }
    let out = cmd
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run liveweb");
    assert!(!out.status.success(), "started with {args:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn start_up_mistakes_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let err = refused_start(&["--data-dir", file.to_str().unwrap()]);
    assert!(
        err.contains("not-a-dir") && err.contains("is a file"),
        "{err}"
    );
    // A file where a worker's directory goes: named, and nothing made before the refusal.
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("1"), b"x").unwrap();
    let err = refused_start(&["--data-dir", data.to_str().unwrap(), "--workers", "2"]);
    assert!(
        err.contains("data/1 is not a directory") && err.contains("move it away"),
        "{err}"
    );
    assert!(!data.join("0").exists(), "worker 0's directory was made");
    let err = refused_start(&["--on-seal", "no-such-uploader-xyz --bucket b"]);
    assert!(
        err.contains("no-such-uploader-xyz") && err.contains("not on PATH"),
        "{err}"
    );
    let err = refused_start(&["--listen", "localhost"]);
    assert!(
        err.contains("no port") && err.contains("127.0.0.1:8080"),
        "{err}"
    );
    let err = refused_start(&["--connect-ports", "443,0"]);
    assert!(err.contains("--connect-ports"), "{err}");
    let err = refused_start(&["--ttl", "1.5 hours"]);
    assert!(err.contains("1.5h"), "{err}");
    // A bad value from the environment names the variable.
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_liveweb"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(tmp.path().join("data"))
        .env("LIVEWEB_MAX_BODY", "lots")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("LIVEWEB_MAX_BODY") && err.contains("--max-body"),
        "{err}"
    );
    // Fractions and any case in durations; an on-seal command with an assignment first.
    let proxy = Proxy::start(&["--ttl", "1.5H", "--on-seal", "X=1 true"]);
    assert_eq!(admin_get(&proxy, "/_liveweb/health").status, 200);
}

/// Waits until `path` holds at least `n` lines; its lines.
fn lines_of(path: &std::path::Path, n: usize) -> Vec<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{}: {text:?}",
            path.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn the_access_log_has_a_line_per_request_and_is_reopened_on_sighup() {
    let origin = Origin::start();
    origin.ok("/page", "text/html", b"<p>hello</p>");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let proxy = Proxy::start(&["--access-log", path.to_str().unwrap()]);
    let url = origin.url("/page");
    let miss = get(proxy.addr, &url, "");
    get(proxy.addr, &url, "");
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    get(proxy.addr, &format!("http://{closed}/x"), "");
    // A forward-mode miss streams from its fetch: its origin is known only once connected.
    origin.ok("/streamed", "text/plain", b"as it arrives");
    let forward = origin.url("/streamed");
    get(proxy.addr, &forward, "X-Liveweb-Mode: forward\r\n");
    // Each worker hands its lines over in batches: lines of different workers are not in
    // request order.
    let lines = lines_of(&path, 4);
    let line = |pattern: &str| {
        lines
            .iter()
            .find(|l| l.contains(pattern))
            .unwrap_or_else(|| panic!("no {pattern} in {lines:?}"))
            .clone()
    };
    let first = lines
        .iter()
        .find(|l| l.contains(" MISS/200 ") && l.contains(&format!(" {url} ")))
        .unwrap_or_else(|| panic!("no miss of {url} in {lines:?}"));
    // time.ms elapsed_ms client OUTCOME/status bytes method URL - HIER/origin code
    let fields: Vec<&str> = first.split_whitespace().collect();
    assert_eq!(fields.len(), 10, "{first}");
    assert!(fields[0].contains('.') && fields[0].split('.').all(|p| p.parse::<u64>().is_ok()));
    assert_eq!(fields[2], "127.0.0.1");
    assert_eq!(fields[3], "MISS/200");
    assert_eq!(
        fields[4].parse::<usize>().unwrap(),
        miss.head.len() + miss.body.len()
    );
    assert_eq!(
        (fields[5], fields[6], fields[7], fields[8], fields[9]),
        ("GET", url.as_str(), "-", "DIRECT/127.0.0.1", "-")
    );
    // A hit contacted no origin.
    assert!(line(" HIT/200 ").ends_with(&format!(" {url} - HIER_NONE/- -")));
    assert!(line(" MISS/502 ").ends_with(" - DIRECT/127.0.0.1 E30"));
    assert!(line(&forward).contains(" MISS/200 "));
    assert!(line(&forward).ends_with(" - DIRECT/127.0.0.1 -"));

    // logrotate: move the file, SIGHUP, and the next line goes to a new file.
    let rotated = dir.path().join("access.log.1");
    std::fs::rename(&path, &rotated).unwrap();
    // SAFETY: signalling our own child by PID.
    unsafe { libc::kill(proxy.pid() as i32, libc::SIGHUP) };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !path.exists() {
        // The reopen is handled by the signal thread, then the log thread: ask until a line
        // lands in the new file.
        get(proxy.addr, &url, "");
        assert!(std::time::Instant::now() < deadline, "never reopened");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(lines_of(&path, 1)[0].contains(" HIT/200 "));
    assert!(std::fs::read_to_string(&rotated).unwrap().lines().count() >= 3);
}

#[test]
fn promtool_accepts_the_metrics_and_a_real_prometheus_scrapes_them() {
    let proxy = Proxy::start(&[]);
    let _ = admin_get(&proxy, "/_liveweb/health");
    let text = admin_get(&proxy, "/_liveweb/metrics").body;
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool must be installed (scripts/test installs prometheus)");
    check.stdin.take().unwrap().write_all(&text).unwrap();
    let out = check.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Prometheus on loopback, scraping liveweb every second; its API says when it did.
    let dir = tempfile::tempdir().unwrap();
    let web = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global: {{scrape_interval: 1s}}\nscrape_configs:\n  - job_name: liveweb\n    metrics_path: /_liveweb/metrics\n    static_configs: [{{targets: ['{}']}}]\n",
            proxy.addr
        ),
    )
    .unwrap();
    let mut prometheus = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("tsdb").display()
        ))
        .arg(format!("--web.listen-address={web}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus");
    let query = format!(
        "GET /api/v1/query?query=liveweb_workers HTTP/1.1\r\nHost: {web}\r\nConnection: close\r\n\r\n"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let scraped = loop {
        if let Ok(mut conn) = std::net::TcpStream::connect(web) {
            let mut reply = String::new();
            if conn.write_all(query.as_bytes()).is_ok() {
                let _ = std::io::Read::read_to_string(&mut conn, &mut reply);
            }
            if reply.contains("\"liveweb_workers\"") && reply.contains("\"2\"]") {
                break true;
            }
        }
        if std::time::Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let _ = prometheus.kill();
    let _ = prometheus.wait();
    assert!(scraped, "Prometheus never stored liveweb_workers = 2");
}

/// A forward-mode fetch that fails is counted like liveweb mode's: its E-code in
/// `liveweb_errors_total`, the recent errors of status.json, and the access log.
#[test]
fn forward_mode_upstream_failures_are_counted_listed_and_logged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let proxy = Proxy::start(&["--mode", "forward", "--access-log", path.to_str().unwrap()]);
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("http://{closed}/gone");
    let refused = get(proxy.addr, &url, "");
    assert_eq!(refused.status, 502);
    assert_eq!(
        refused.header("x-liveweb-error").as_deref(),
        Some("E30 connection refused")
    );
    let lines = lines_of(&path, 1);
    let line = lines
        .iter()
        .find(|l| l.contains(&url))
        .expect("an access log line");
    assert!(line.ends_with(" E30"), "{line}");
    let text = String::from_utf8(admin_get(&proxy, "/_liveweb/metrics").body).unwrap();
    assert_eq!(sample(&text, "liveweb_errors_total{code=\"E30\"}"), 1.0);
    let status = String::from_utf8(admin_get(&proxy, "/_liveweb/status.json").body).unwrap();
    assert!(status.contains("E30 connection refused"), "{status}");
    assert!(status.contains("/gone"), "{status}");
    proxy.finish();
}

/// In liveweb mode a failed fetch is answered from the failure record it archives; the
/// recent errors still say what went wrong in words (not the code's name twice), and a
/// later request answered from that stored failure says so.
#[test]
fn liveweb_mode_failures_list_what_went_wrong() {
    let proxy = Proxy::start(&[]);
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = format!("http://{closed}/gone");
    let recent = |proxy: &Proxy| {
        let body = admin_get(proxy, "/_liveweb/status.json").body;
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        json["recent_errors"].as_array().unwrap().clone()
    };
    let miss = get(proxy.addr, &url, "");
    assert_eq!(miss.status, 502);
    assert_eq!(miss.header("x-cache").as_deref(), Some("MISS"));
    let errors = recent(&proxy);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["code"], "E30 connection refused");
    let message = errors[0]["message"].as_str().unwrap();
    assert!(
        message.starts_with("E30 connection refused: ")
            && message.contains("Connection refused (os error"),
        "{message}"
    );

    let hit = get(proxy.addr, &url, "");
    assert_eq!(hit.status, 502);
    assert_eq!(hit.header("x-cache").as_deref(), Some("HIT"));
    let errors = recent(&proxy);
    assert_eq!(errors.len(), 2, "{errors:?}");
    let message = errors
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .find(|m| m.contains("stored failure"));
    assert_eq!(
        message,
        Some("E30 connection refused: the stored failure of an earlier fetch, reused within --error-ttl"),
        "{errors:?}"
    );
    proxy.finish();
}

/// A browser opening the proxy's own address gets a page saying what it is and where the
/// status page is, not `400 absolute URL required`; other origin-form paths still get it.
#[test]
fn opening_the_proxy_in_a_browser_points_to_the_status_page() {
    let proxy = Proxy::start(&[]);
    let r = admin_get(&proxy, "/");
    assert_eq!(r.status, 200, "{}", r.head);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    let page = String::from_utf8_lossy(&r.body);
    assert!(page.contains("href=\"/_liveweb/status\""), "{page}");
    assert_eq!(admin_get(&proxy, "/other").status, 400);
    proxy.finish();
}
