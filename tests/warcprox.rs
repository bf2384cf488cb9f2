//! Crawlers that record through warcprox steer it with `Warcprox-Meta`: the header never
//! reaches the origin or the archive, its block rules refuse a URL before anything is
//! fetched (with the response header crawlers read), a malformed one is a 400 in words, and
//! `WARCPROX_WRITE_RECORD` writes the record a crawler hands over.

mod common;

use std::io::Read;

use common::*;

fn origin() -> FnOrigin {
    FnOrigin::start(|_| response("200 OK", "Cache-Control: max-age=600\r\n", "page"))
}

/// An origin answering each path with `body of PATH`, fresh for ten minutes.
fn path_origin() -> FnOrigin {
    FnOrigin::start(|head| {
        let path = head.split(' ').nth(1).unwrap_or("/").to_string();
        response(
            "200 OK",
            "Cache-Control: max-age=600\r\n",
            &format!("body of {path}"),
        )
    })
}

/// Every record in the archive files under `dir`, inflated, as one text.
fn archive_text(dir: &std::path::Path) -> String {
    let mut files = Vec::new();
    collect_arcs(dir, &mut files);
    let mut all = Vec::new();
    for f in files {
        let raw = std::fs::read(&f).unwrap();
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut all)
            .unwrap();
    }
    String::from_utf8_lossy(&all).into_owned()
}

#[test]
fn warcprox_meta_never_reaches_the_origin_or_the_archive_and_its_blocks_refuse() {
    let origin = origin();
    let proxy = Proxy::start(&["--format", "warc"]);
    let meta = r#"Warcprox-Meta: {"warc-prefix":"job1","stats":{"buckets":["b"]},"secret":"crawl-config"}"#;
    for (path, mode) in [("/live", "liveweb"), ("/fwd", "forward")] {
        let r = get(
            proxy.addr,
            &origin.url(path),
            &format!("X-Liveweb-Mode: {mode}\r\n{meta}\r\n"),
        );
        assert_eq!(r.status, 200, "{mode}: {}", r.head);
        let sent = origin.requests_for(path);
        assert_eq!(sent.len(), 1);
        assert!(
            !sent[0].to_ascii_lowercase().contains("warcprox-meta"),
            "{}",
            sent[0]
        );
    }
    // Waits for the streamed forward-mode record.
    wait_stored(&proxy, &origin.url("/fwd"), "");

    // A rule that blocks the URL: 403 with the rule in Warcprox-Meta, nothing fetched.
    let rule = r#"{"domain":"127.0.0.1","substring":"/blocked"}"#;
    let blocked = origin.url("/blocked/page");
    for extra in ["", "X-Liveweb-Mode: forward\r\n"] {
        let r = get(
            proxy.addr,
            &blocked,
            &format!("{extra}Warcprox-Meta: {{\"blocks\":[{rule}]}}\r\n"),
        );
        assert_eq!(r.status, 403, "{}", r.head);
        assert_eq!(
            r.header("warcprox-meta").as_deref(),
            Some(format!("{{\"blocked-by-rule\":{rule}}}").as_str())
        );
        assert!(String::from_utf8_lossy(&r.body).contains("blocked by rule"));
    }
    // So is a POST passed through in forward mode.
    let post = send_raw(
        proxy.addr,
        format!(
            "POST {blocked} HTTP/1.1\r\nX-Liveweb-Mode: forward\r\nWarcprox-Meta: {{\"blocks\":[{rule}]}}\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc"
        )
        .as_bytes(),
    );
    assert_eq!(post.status, 403);
    assert!(origin.requests_for("/blocked/page").is_empty());
    assert_eq!(
        get(proxy.addr, &blocked, "Cache-Control: only-if-cached\r\n").status,
        504,
        "nothing stored"
    );
    // A rule for another URL lets it through.
    let other = r#"Warcprox-Meta: {"blocks":[{"domain":"example.com"}]}"#;
    assert_eq!(
        get(proxy.addr, &origin.url("/ok"), &format!("{other}\r\n")).status,
        200
    );

    // Malformed: 400, said in words.
    let r = get(
        proxy.addr,
        &origin.url("/x"),
        "Warcprox-Meta: {\"blocks\": [\r\n",
    );
    assert_eq!(r.status, 400);
    assert!(String::from_utf8_lossy(&r.body).contains("bad Warcprox-Meta header"));
    assert!(origin.requests_for("/x").is_empty());

    let dir = proxy.finish().expect("data dir");
    let text = archive_text(dir.path());
    assert!(
        text.contains("WARC-Type: request"),
        "request records written"
    );
    assert!(!text.to_ascii_lowercase().contains("warcprox-meta"));
    assert!(!text.contains("crawl-config"));
}

#[test]
fn warcprox_write_record_writes_the_record_a_crawler_hands_over() {
    let proxy = Proxy::start(&["--format", "warc"]);
    let png = incompressible(5000, 3);
    let target = "screenshot:http://example.com/";
    let write = |headers: &str, body: &[u8]| {
        let mut raw = format!(
            "WARCPROX_WRITE_RECORD {target} HTTP/1.1\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        raw.extend_from_slice(body);
        send_raw(proxy.addr, &raw)
    };
    let r = write("WARC-Type: resource\r\nContent-Type: image/png\r\n", &png);
    assert_eq!(r.status, 204, "{}", r.head);
    // Without its WARC-Type (or Content-Type): 400, and nothing written.
    let r = write("Content-Type: image/png\r\n", b"x");
    assert_eq!(r.status, 400);
    assert!(String::from_utf8_lossy(&r.body).contains("WARC-Type"));
    let dir = proxy.finish().expect("data dir");
    let text = archive_text(dir.path());
    let record = text
        .split("WARC/1.1\r\n")
        .find(|r| r.contains("WARC-Type: resource"))
        .expect("the record");
    assert!(
        record.contains(&format!("WARC-Target-URI: {target}\r\n")),
        "{record}"
    );
    assert!(record.contains("Content-Type: image/png\r\n"));
    assert!(record.contains(&format!("Content-Length: {}\r\n", png.len())));
    assert_eq!(text.matches("WARC-Type: resource").count(), 1);
    assert_warcio_clean(dir.path());

    // An ARC archive has no record type to hold it.
    let arc = Proxy::start(&[]);
    let r = send_raw(
        arc.addr,
        format!("WARCPROX_WRITE_RECORD {target} HTTP/1.1\r\nWARC-Type: resource\r\nContent-Type: image/png\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx").as_bytes(),
    );
    assert_eq!(r.status, 405, "{}", r.head);
    arc.finish();
}

/// `accept: ["capture-metadata"]`: a forward-mode reply says when its response was captured
/// (`Warcprox-Meta: {"capture-metadata":{"timestamp":...}}`), a miss and a later hit alike;
/// without it, no such header.
#[test]
fn capture_metadata_says_when_the_response_was_captured() {
    let origin = origin();
    let proxy = Proxy::start(&["--format", "warc", "--mode", "forward"]);
    let url = origin.url("/captured");
    let ask = "Warcprox-Meta: {\"accept\":[\"capture-metadata\"]}\r\n";
    let stamp = |r: &Reply| {
        let meta = r
            .header("warcprox-meta")
            .unwrap_or_else(|| panic!("{}", r.head));
        let prefix = "{\"capture-metadata\":{\"timestamp\":\"";
        assert!(
            meta.starts_with(prefix) && meta.ends_with("Z\"}}"),
            "{meta}"
        );
        meta[prefix.len()..prefix.len() + 20].to_string()
    };
    let miss = fwd(&proxy, &url, ask);
    assert_eq!(
        (miss.status, cache(&miss).as_str()),
        (200, "MISS"),
        "{}",
        miss.head
    );
    let captured = stamp(&miss);
    wait_stored(&proxy, &url, "");
    let hit = fwd(&proxy, &url, ask);
    assert_eq!(cache(&hit), "HIT");
    let seconds = |t: &str| -> i64 {
        let n = |r: std::ops::Range<usize>| t[r].parse::<i64>().unwrap();
        n(11..13) * 3600 + n(14..16) * 60 + n(17..19)
    };
    assert_eq!(&stamp(&hit)[..10], &captured[..10]);
    assert!(
        (seconds(&stamp(&hit)) - seconds(&captured)).abs() <= 1,
        "{captured} vs the hit's"
    );
    assert!(fwd(&proxy, &url, "").header("warcprox-meta").is_none());
    let dir = proxy.finish().expect("data dir");
    // The record's WARC-Date is the same capture, to the second.
    let text = archive_text(dir.path());
    let date = text
        .split("WARC/1.1\r\n")
        .find(|r| r.contains("WARC-Type: response") && r.contains("/captured"))
        .and_then(|r| r.lines().find_map(|l| l.strip_prefix("WARC-Date: ")))
        .expect("the response record's date")
        .to_string();
    assert_eq!(&date[..10], &captured[..10]);
    assert!(
        (seconds(&date) - seconds(&captured)).abs() <= 1,
        "{date} vs {captured}"
    );
}

/// `warc-prefix`: a capture's records (and a record a crawler writes) go to files named
/// with the prefix, sealed with their own CDX; other captures stay in the default files;
/// after a restart those captures answer from the prefix files; a prefix that cannot be a
/// file name is a 400.
#[test]
fn warc_prefix_sends_records_to_files_of_their_own() {
    let origin = path_origin();
    let proxy = Proxy::start(&["--format", "warc"]);
    let job = |p: &str| format!("Warcprox-Meta: {{\"warc-prefix\":\"{p}\"}}\r\n");
    let fwd_job1 = origin.url("/fwd-job1");
    assert_eq!(
        fwd(
            &proxy,
            &fwd_job1,
            &format!("X-Liveweb-Mode: forward\r\n{}", job("job-1"))
        )
        .status,
        200
    );
    wait_stored(&proxy, &fwd_job1, "X-Liveweb-Mode: forward\r\n");
    assert_eq!(
        get(proxy.addr, &origin.url("/live-job2"), &job("job.2")).status,
        200
    );
    assert_eq!(get(proxy.addr, &origin.url("/plain"), "").status, 200);
    let shot = format!(
        "WARCPROX_WRITE_RECORD screenshot:{fwd_job1} HTTP/1.1\r\n{}WARC-Type: resource\r\nContent-Type: image/png\r\nContent-Length: 3\r\nConnection: close\r\n\r\npng",
        job("job-1")
    );
    assert_eq!(send_raw(proxy.addr, shot.as_bytes()).status, 204);
    let bad = get(proxy.addr, &origin.url("/bad"), &job("a b"));
    assert_eq!(bad.status, 400);
    assert!(String::from_utf8_lossy(&bad.body).contains("warc-prefix"));
    assert!(origin.requests_for("/bad").is_empty());
    let data = proxy.data_dir.clone();
    let _keep = proxy.finish();

    let sealed = data.join("sealed");
    let cdx_of = |prefix: &str| -> String {
        let files = files_ending(&sealed, ".cdx");
        let mine: Vec<_> = files
            .iter()
            .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
            .collect();
        assert!(!mine.is_empty(), "no {prefix} CDX in {files:?}");
        mine.iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect()
    };
    let job1 = cdx_of("job-1-");
    assert!(job1.contains(&format!(" {fwd_job1} ")), "{job1}");
    assert!(job1.contains(&format!(" screenshot:{fwd_job1} ")), "{job1}");
    assert!(
        !job1.contains("/plain") && !job1.contains("/live-job2"),
        "{job1}"
    );
    let job2 = cdx_of("job.2-");
    assert!(
        job2.contains("/live-job2 ") && !job2.contains("/plain"),
        "{job2}"
    );
    let default = cdx_of("LIVEWEB-");
    assert!(
        default.contains("/plain ") && !default.contains("job"),
        "{default}"
    );
    // Each line names its own file, and every file is a whole WARC (checked by finish).
    // (one CDX per file: two workers may have written job-1 files, each with its header)
    for line in job1.lines().filter(|l| !l.starts_with(" CDX")) {
        assert!(
            line.ends_with(".warc.gz") && line.contains(" job-1-"),
            "{line}"
        );
    }

    // The prefix files are part of the archive: after a restart their captures are hits.
    let proxy = Proxy::start_in(&data, &["--format", "warc"]);
    let r = get(proxy.addr, &origin.url("/live-job2"), "");
    assert_eq!(cache(&r), "HIT", "{}", r.head);
    assert_eq!(origin.requests_for("/live-job2").len(), 1);
    proxy.finish();
}

/// `--crawl-log-dir`: one line per capture in Heritrix's format, as warcprox writes it:
/// status, size, URL, hop path and via (from the Referer and `Warcprox-Meta`'s metadata),
/// MIME type, fetch time and duration, payload digest, seed, `duplicate:digest` for a
/// revisit, and the record's file and offset; a failed fetch with Heritrix's negative
/// status; one file per warc-prefix.
#[test]
fn the_crawl_log_has_a_line_per_capture() {
    let origin =
        FnOrigin::start(|_| response("200 OK", "Content-Type: text/html\r\n", "<p>same page</p>"));
    let logs = tempfile::tempdir().unwrap();
    let dir = logs.path().join("crawl");
    let proxy = Proxy::start(&[
        "--format",
        "warc",
        "--mode",
        "forward",
        "--crawl-log-dir",
        dir.to_str().unwrap(),
    ]);
    let first = origin.url("/first");
    let meta = r#"Warcprox-Meta: {"metadata":{"hop_path":"L","seed":"http://seed.example/"}}"#;
    fwd(
        &proxy,
        &first,
        &format!("Referer: http://seed.example/\r\n{meta}\r\n"),
    );
    wait_stored(&proxy, &first, "");
    // A crawler's capture of the same payload: a revisit (`duplicate:digest`).
    fwd(&proxy, &origin.url("/again"), "Warcprox-Meta: {}\r\n");
    fwd(
        &proxy,
        &origin.url("/job"),
        "Warcprox-Meta: {\"warc-prefix\":\"job7\"}\r\n",
    );
    let closed = free_addr();
    let refused = format!("http://{closed}/gone");
    assert_eq!(fwd(&proxy, &refused, "").status, 502);
    let port = proxy.addr.port();
    let _ = proxy.finish();

    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let host = host.trim().split('.').next().unwrap().to_string();
    let read = |prefix: &str| {
        std::fs::read_to_string(dir.join(format!("{prefix}-{host}-{port}.log")))
            .unwrap_or_else(|e| panic!("{prefix}: {e}"))
    };
    let crawl = read("crawl");
    let line_for = |text: &str, url: &str| -> Vec<String> {
        text.lines()
            .find(|l| l.split_whitespace().nth(3) == Some(url))
            .unwrap_or_else(|| panic!("no line for {url} in\n{text}"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    let f = line_for(&crawl, &first);
    assert_eq!(f.len(), 13, "{f:?}");
    assert!(f[0].ends_with('Z') && f[0].len() == 24, "{f:?}");
    assert_eq!((f[1].as_str(), f[2].as_str()), ("200", "16"));
    assert_eq!(
        (f[4].as_str(), f[5].as_str()),
        ("L", "http://seed.example/")
    );
    assert_eq!((f[6].as_str(), f[7].as_str()), ("text/html", "-"));
    assert!(f[8].len() > 18 && f[8].contains('+'), "{f:?}");
    assert!(f[9].starts_with("sha1:"), "{f:?}");
    assert_eq!(
        (f[10].as_str(), f[11].as_str()),
        ("http://seed.example/", "-")
    );
    let extra: serde_json::Value = serde_json::from_str(&f[12]).unwrap();
    assert_eq!(extra["contentSize"], 16);
    assert!(extra["warcFilename"]
        .as_str()
        .unwrap()
        .ends_with(".warc.gz"));
    assert!(extra["warcFileOffset"].as_u64().is_some());
    let again = line_for(&crawl, &origin.url("/again"));
    assert_eq!(
        (again[9].as_str(), again[11].as_str()),
        (f[9].as_str(), "duplicate:digest")
    );
    let gone = line_for(&crawl, &refused);
    assert_eq!(
        (gone[1].as_str(), gone[2].as_str(), gone[9].as_str()),
        ("-2", "0", "-")
    );
    assert!(gone[12].contains("E30_connection_refused"), "{gone:?}");
    let job = read("job7");
    assert_eq!(job.lines().count(), 1, "{job}");
    assert!(!crawl.contains("/job "), "{crawl}");
}

/// logrotate: move the crawl log, SIGHUP, and the next line goes to a new file.
#[test]
fn sighup_reopens_the_crawl_log() {
    let origin = path_origin();
    let logs = tempfile::tempdir().unwrap();
    let dir = logs.path().join("crawl");
    let proxy = Proxy::start(&[
        "--format",
        "warc",
        "--mode",
        "forward",
        "--crawl-log-dir",
        dir.to_str().unwrap(),
    ]);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let host = host.trim().split('.').next().unwrap().to_string();
    let path = dir.join(format!("crawl-{host}-{}.log", proxy.addr.port()));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let wait_for = |path: &std::path::Path, text: &str| {
        while !std::fs::read_to_string(path)
            .unwrap_or_default()
            .contains(text)
        {
            assert!(
                std::time::Instant::now() < deadline,
                "no {text} in {path:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    let before = origin.url("/before");
    fwd(&proxy, &before, "");
    wait_for(&path, &before);
    let rotated = dir.join("rotated.log");
    std::fs::rename(&path, &rotated).unwrap();
    // SAFETY: signalling our own child by PID.
    unsafe { libc::kill(proxy.pid() as i32, libc::SIGHUP) };
    // The signal thread, then the log thread act on it: fetch until a line lands anew.
    let mut n = 0;
    while !path.exists() {
        n += 1;
        fwd(&proxy, &origin.url(&format!("/after{n}")), "");
        assert!(std::time::Instant::now() < deadline, "never reopened");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    wait_for(&path, "/after");
    let _ = proxy.finish();
    assert!(std::fs::read_to_string(&rotated).unwrap().contains(&before));
}

/// `stats` buckets and `limits` / `soft-limits`: each capture is tallied as it is archived,
/// and the next request over a limit is refused at once (`420 Reached limit`, `430 Reached
/// soft limit`) with the bucket's numbers in `Warcprox-Meta`, nothing fetched; the numbers
/// survive a restart.
#[test]
fn limits_refuse_at_once_and_the_numbers_survive_a_restart() {
    let origin = path_origin();
    let proxy = Proxy::start(&["--format", "warc", "--mode", "forward"]);
    let hard = r#"Warcprox-Meta: {"stats":{"buckets":["job"]},"limits":{"job/total/urls":2}}"#;
    for path in ["/l1", "/l2"] {
        let url = origin.url(path);
        assert_eq!(fwd(&proxy, &url, &format!("{hard}\r\n")).status, 200);
        wait_stored(&proxy, &url, "");
    }
    let r = fwd(&proxy, &origin.url("/l3"), &format!("{hard}\r\n"));
    assert!(
        r.head.starts_with("HTTP/1.1 420 Reached limit\r\n"),
        "{}",
        r.head
    );
    let meta: serde_json::Value =
        serde_json::from_str(&r.header("warcprox-meta").unwrap()).unwrap();
    assert_eq!(meta["reached-limit"]["job/total/urls"], 2);
    assert_eq!(meta["stats"]["job"]["total"]["urls"], 2);
    assert_eq!(meta["stats"]["job"]["new"]["urls"], 2);
    assert!(
        meta["stats"]["job"]["total"]["wire_bytes"]
            .as_u64()
            .unwrap()
            > 20
    );
    assert!(String::from_utf8_lossy(&r.body).contains("reached limit job/total/urls=2"));
    assert!(origin.requests_for("/l3").is_empty());
    // Without the limit, the same bucket fetches on.
    assert_eq!(fwd(&proxy, &origin.url("/l3"), "").status, 200);

    // A soft limit on a domain's sub-bucket: 430 for that domain's URLs.
    let soft = r#"Warcprox-Meta: {"stats":{"buckets":[{"bucket":"d","tally-domains":["127.0.0.1"]}]},"soft-limits":{"d:127.0.0.1/new/urls":1}}"#;
    let s1 = origin.url("/s1");
    assert_eq!(fwd(&proxy, &s1, &format!("{soft}\r\n")).status, 200);
    wait_stored(&proxy, &s1, "");
    let r = fwd(&proxy, &origin.url("/s2"), &format!("{soft}\r\n"));
    assert_eq!(r.status, 430, "{}", r.head);
    assert!(r
        .header("warcprox-meta")
        .unwrap()
        .contains("\"reached-soft-limit\""));
    let data = proxy.data_dir.clone();
    let _keep = proxy.finish();

    let saved = std::fs::read_to_string(data.join("crawl-stats.json")).unwrap();
    assert!(saved.contains("\"job\""), "{saved}");
    let proxy = Proxy::start_in(&data, &["--format", "warc", "--mode", "forward"]);
    assert_eq!(
        fwd(&proxy, &origin.url("/l4"), &format!("{hard}\r\n")).status,
        420
    );
    proxy.finish();
}
