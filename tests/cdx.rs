//! The CDX files replay tools read: keys in the reference canonical form, archived failures
//! marked in the ARC file and left out of the CDX, and `liveweb reindex` rewriting CDX files
//! from the ARC files, on the real binary.

mod common;

use common::*;
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

fn sealed(data: &Path, suffix: &str) -> Vec<PathBuf> {
    files_ending(&data.join("sealed"), suffix)
}

fn reindex(dir: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_liveweb"))
        .arg("reindex")
        .arg(dir)
        .output()
        .unwrap()
}

#[test]
fn failures_are_archived_as_errors_not_captures_and_reindex_rewrites_old_cdx_files() {
    let origin = Origin::start();
    origin.ok("/www/Page", "text/html", b"<p>captured</p>");
    let proxy = Proxy::start(&["--workers", "1"]);
    // Taken once liveweb listens, so it cannot be liveweb's own port (that would be a loop).
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let page = origin.url("/www/Page");
    let failed = format!("http://{closed}/gone");
    assert_eq!(get(proxy.addr, &page, "").status, 200);
    assert_eq!(get(proxy.addr, &failed, "").status, 502);
    let data = proxy.data_dir.clone();
    let _keep = proxy.finish();

    let arcs = sealed(&data, ".arc.gz");
    assert_eq!(arcs.len(), 1);
    // The failure is in the ARC file, labelled as liveweb's error, not as the URL's content.
    let records = gunzip_all(&fs::read(&arcs[0]).unwrap());
    let text = String::from_utf8_lossy(&records);
    let header = text
        .lines()
        .find(|l| l.starts_with(&failed))
        .expect("the failure is archived");
    assert_eq!(
        header.split(' ').nth(3),
        Some("application/x-liveweb-error"),
        "{header}"
    );
    // The CDX lists the capture only, keyed as pywb keys it.
    let cdx_path = sealed(&data, ".cdx").pop().unwrap();
    let cdx = fs::read_to_string(&cdx_path).unwrap();
    let lines: Vec<&str> = cdx.lines().collect();
    assert_eq!(lines.len(), 2, "{cdx}");
    let port = page.split(':').nth(2).unwrap().split('/').next().unwrap();
    assert!(
        lines[1].starts_with(&format!("1,0,0,127:{port})/www/page 2")),
        "{}",
        lines[1]
    );

    // A CDX as an older version wrote it: its own keys, the failure listed as text/plain.
    let old = format!(
        "{}\n127.0.0.1:{port})/www/page{}\n{closed})/gone 20260101000000 {failed} text/plain 502 X - - 1 1 x\n",
        lines[0],
        &lines[1][lines[1].find(' ').unwrap()..],
    );
    fs::write(&cdx_path, &old).unwrap();
    let out = reindex(&data);
    assert!(out.status.success(), "{out:?}");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("1 sealed ARC files (1 captures)"), "{said}");
    assert_eq!(fs::read_to_string(&cdx_path).unwrap(), cdx);

    // A damaged file: reindex refuses rather than write a CDX that lists fewer captures.
    let mut damaged = fs::read(&arcs[0]).unwrap();
    damaged.extend_from_slice(b"\x1f\x8b\x08garbage");
    fs::write(&arcs[0], &damaged).unwrap();
    let out = reindex(&data);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains(&arcs[0].file_name().unwrap().to_string_lossy().to_string())
            && said.contains("left as it was"),
        "{said}"
    );
    assert_eq!(fs::read_to_string(&cdx_path).unwrap(), cdx);

    // Bad input is named.
    let missing = data.join("no-such-dir");
    let out = reindex(&missing);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("no-such-dir"), "{said}");
}

/// Runs a tool from the test venv (scripts/test puts it first on PATH) on `args`.
fn tool(name: &str, args: &[&Path]) -> std::process::Output {
    let out = Command::new(name)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{name} must be on PATH (scripts/test installs it): {e}"));
    assert!(out.status.success(), "{name}: {out:?}");
    out
}

#[test]
fn the_cdx_equals_pywbs_own_index_and_warctools_converts_the_files() {
    let origin = Origin::start();
    origin.ok("/", "text/html", b"<p>home</p>");
    origin.ok("/Dir/./Page?b=2&a=1", "text/html", b"<p>page</p>");
    origin.ok("/img.png", "image/png", &incompressible(3000, 7));
    for gzip in ["true", "false"] {
        let proxy = Proxy::start(&["--workers", "1", "--arc-gzip", gzip]);
        // Taken once liveweb listens, so it cannot be liveweb's own port (a loop).
        let closed = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        for path in ["/", "/Dir/./Page?b=2&a=1", "/img.png"] {
            assert_eq!(get(proxy.addr, &origin.url(path), "").status, 200);
        }
        assert_eq!(
            get(proxy.addr, &format!("http://{closed}/x"), "").status,
            502
        );
        let data = proxy.data_dir.clone();
        let _keep = proxy.finish();
        let arc = sealed(&data, if gzip == "true" { ".arc.gz" } else { ".arc" })
            .pop()
            .unwrap();
        let ours = fs::read_to_string(sealed(&data, ".cdx").pop().unwrap()).unwrap();
        // pywb's indexer lists the failure too (it cannot know): its MIME type says what it is.
        let theirs = String::from_utf8(tool("cdx-indexer", &[&arc]).stdout).unwrap();
        assert_eq!(capture_lines(&ours), capture_lines(&theirs), "gzip {gzip}");
        assert_eq!(capture_lines(&ours).len(), 4, "header and three captures");
        // warctools reads the filedesc record and every record after it.
        let warc = tool("arc2warc", &[&arc]).stdout;
        let text = String::from_utf8_lossy(&warc);
        assert_eq!(
            text.matches("WARC-Type: warcinfo").count(),
            1,
            "gzip {gzip}"
        );
        assert_eq!(
            text.matches("WARC-Type: response").count(),
            4,
            "gzip {gzip}"
        );
    }
}
