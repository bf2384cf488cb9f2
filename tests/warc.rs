//! `--format warc` on the real binary: WARC/1.1 files whose digests `warcio check` finds
//! valid (checked for every file a test leaves), a request record holding the bytes the
//! origin received, linked to its response; the CDX equal to pywb's own index; hits in both
//! reply shapes; recovery after kill -9; `liveweb reindex`.

mod common;

use common::*;
use std::fs;
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;

/// Each record of a `.warc.gz` file: its header block and content.
fn records(path: &Path) -> Vec<(String, Vec<u8>)> {
    let data = gunzip_all(&fs::read(path).unwrap());
    let mut out = Vec::new();
    let mut rest = &data[..];
    while !rest.is_empty() {
        let end = rest.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let head = String::from_utf8(rest[..end].to_vec()).unwrap();
        let len: usize = header_in(&head, "content-length").unwrap().parse().unwrap();
        out.push((head, rest[end..end + len].to_vec()));
        assert_eq!(&rest[end + len..end + len + 4], b"\r\n\r\n", "record end");
        rest = &rest[end + len + 4..];
    }
    out
}

/// cdxj-indexer's CDXJ lines for `file`, as 11-field CDX lines (failures left out).
fn cdxj_as_cdx(file: &Path) -> String {
    let script = "import json, subprocess, sys\n\
                  out = subprocess.run(['cdxj-indexer', sys.argv[1]], capture_output=True, check=True)\n\
                  for line in out.stdout.decode().splitlines():\n\
                  \x20   key, ts, j = line.split(' ', 2)\n\
                  \x20   f = json.loads(j)\n\
                  \x20   if f['mime'] == 'application/x-liveweb-error': continue\n\
                  \x20   d = f['digest'].removeprefix('sha1:')\n\
                  \x20   print(key, ts, f['url'], f['mime'], f.get('status', '-'), d, '-', '-', f['length'], f['offset'], f['filename'])\n";
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cdxj-indexer (scripts/test installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn warc_records_hits_and_the_index() {
    let origin = Origin::start();
    let page = b"<html><p>warc</p></html>";
    origin.ok("/page.html", "text/html; charset=utf-8", page);
    origin.ok(
        "/bin",
        "application/octet-stream",
        &incompressible(70_000, 9),
    );
    origin.route(
        "/chunked",
        Behavior::Send(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
                .to_vec(),
        ),
    );
    let proxy = Proxy::start(&["--workers", "1", "--format", "warc"]);
    // Taken once liveweb listens, so it cannot be liveweb's own port (that would be a loop).
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let url = origin.url("/page.html");
    let miss = get(proxy.addr, &url, "");
    assert_eq!(miss.status, 200);
    assert_eq!(
        miss.header("content-type").as_deref(),
        Some("application/warc-gz")
    );
    // The reply is the response record alone, one gzip member.
    let record = gunzip_one_member(&miss.body);
    assert!(record.starts_with(b"WARC/1.1\r\nWARC-Type: response\r\n"));
    let hit = get(proxy.addr, &url, "");
    assert_eq!(hit.header("x-cache").as_deref(), Some("HIT"));
    assert!(hit.body == miss.body, "a hit is the same record");
    let forward = get(proxy.addr, &url, "X-Liveweb-Mode: forward\r\n");
    assert_eq!(forward.header("x-cache").as_deref(), Some("HIT"));
    assert_eq!(forward.body, page, "forward mode: the origin's body");
    for path in ["/bin", "/chunked"] {
        assert_eq!(get(proxy.addr, &origin.url(path), "").status, 200);
        let f = get(proxy.addr, &origin.url(path), "X-Liveweb-Mode: forward\r\n");
        assert_eq!(f.header("x-cache").as_deref(), Some("HIT"), "{path}");
    }
    assert_eq!(
        get(proxy.addr, &format!("http://{closed}/gone"), "").status,
        502
    );
    let data = proxy.data_dir.clone();
    let _keep = proxy.finish();

    let sealed = data.join("sealed");
    let warc = files_ending(&sealed, ".warc.gz")
        .pop()
        .expect("a sealed .warc.gz");
    let recs = records(&warc);
    let kinds: Vec<String> = recs
        .iter()
        .map(|(h, _)| header_in(h, "warc-type").unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "warcinfo", "response", "request", "response", "request", "response", "request",
            "metadata"
        ]
    );
    assert!(header_in(&recs[0].0, "warc-filename")
        .is_some_and(|n| warc.to_string_lossy().ends_with(&n)));
    // The request record holds what the origin received, and names its response.
    let (response, request) = (&recs[1], &recs[2]);
    let received = origin.requests.lock().unwrap()[0].clone();
    assert_eq!(String::from_utf8_lossy(&request.1), received);
    assert_eq!(
        header_in(&request.0, "warc-concurrent-to"),
        header_in(&response.0, "warc-record-id")
    );
    assert_eq!(header_in(&response.0, "warc-target-uri"), Some(url.clone()));
    assert_eq!(
        header_in(&response.0, "warc-ip-address").as_deref(),
        Some("127.0.0.1")
    );
    let date = header_in(&response.0, "warc-date").unwrap();
    assert!(
        date.len() == 24 && date.ends_with('Z') && date.as_bytes()[19] == b'.',
        "sub-second WARC-Date: {date}"
    );
    assert!(response.1.ends_with(page), "the response as received");
    // The failure is a metadata record of fields (which indexers skip), marked as liveweb's.
    let failure = &recs[7];
    assert_eq!(
        header_in(&failure.0, "content-type").as_deref(),
        Some("application/warc-fields")
    );
    assert!(header_in(&failure.0, "x-liveweb-error").is_some_and(|c| c.starts_with("E30 ")));
    let fields = String::from_utf8_lossy(&failure.1).into_owned();
    assert!(
        fields.starts_with("liveweb-error: E30 ")
            && fields.contains("\r\nstatus: 502 Bad Gateway\r\n"),
        "{fields}"
    );

    // The CDX is the index pywb builds itself, less the failure.
    let ours = fs::read_to_string(files_ending(&sealed, ".cdx").pop().unwrap()).unwrap();
    let out = Command::new("cdx-indexer").arg(&warc).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let theirs = String::from_utf8(out.stdout).unwrap();
    assert!(
        !theirs.contains("/gone"),
        "pywb does not index the failure: {theirs}"
    );
    assert_eq!(capture_lines(&ours), capture_lines(&theirs));
    assert_eq!(ours.lines().count(), 4, "{ours}");
    // And cdxj-indexer's CDXJ says the same of every capture.
    assert_eq!(
        capture_lines(&ours)[1..],
        capture_lines(&cdxj_as_cdx(&warc))[..]
    );
    // Rewritten from the file, the CDX is the same.
    let out = Command::new(env!("CARGO_BIN_EXE_liveweb"))
        .arg("reindex")
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        fs::read_to_string(files_ending(&sealed, ".cdx").pop().unwrap()).unwrap(),
        ours
    );
}

#[test]
fn warc_files_left_open_by_kill_9_are_recovered_and_serve_the_same_records() {
    let origin = Origin::start();
    origin.ok("/a", "text/plain", b"first");
    origin.ok("/b", "text/plain", &incompressible(20_000, 4));
    let dir = tempfile::tempdir().unwrap();
    let args = ["--workers", "1", "--format", "warc"];
    let proxy = Proxy::start_in(dir.path(), &args);
    let a = get(proxy.addr, &origin.url("/a"), "");
    let b = get(proxy.addr, &origin.url("/b"), "");
    proxy.kill9();
    let proxy = Proxy::start_in(dir.path(), &args);
    for (path, before) in [("/a", &a), ("/b", &b)] {
        let again = get(
            proxy.addr,
            &origin.url(path),
            "Cache-Control: only-if-cached\r\n",
        );
        assert_eq!(again.header("x-cache").as_deref(), Some("HIT"), "{path}");
        assert!(again.body == before.body, "{path}: byte-identical");
    }
    assert_eq!((origin.hits("/a"), origin.hits("/b")), (1, 1));
    let _keep = proxy.finish();
}
