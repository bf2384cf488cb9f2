//! A start-up on a big archive reads each CDX file a line at a time, twice (checked, then
//! indexed), and hands what its loader threads parsed back to the system: the memory it
//! keeps is the index, not the size of the CDX files (which a read of whole files kept
//! resident for the life of the process).

mod common;

use std::io::Write;

use common::*;

/// Lines of the synthetic CDX: about 72 MB of it.
const LINES: u64 = 400_000;

#[test]
fn a_big_cdx_is_not_held_in_memory_at_start_up() {
    let data = tempfile::tempdir().unwrap();
    let sealed = data.path().join("sealed");
    std::fs::create_dir_all(&sealed).unwrap();
    let name = "LIVEWEB-20261206000000000-0-00000.arc.gz";
    // The ARC file's records are not read at start-up, only its size checked against the
    // CDX: a sparse file will do.
    let arc = std::fs::File::create(sealed.join(name)).unwrap();
    arc.set_len(LINES * 100).unwrap();
    let date = liveweb::clock::UtcTime::now().arc14();
    let mut cdx = std::io::BufWriter::new(
        std::fs::File::create(sealed.join(name.replace(".arc.gz", ".cdx"))).unwrap(),
    );
    writeln!(cdx, "{}", liveweb::archive::cdx::CDX_HEADER).unwrap();
    for i in 0..LINES {
        writeln!(
            cdx,
            "test,example)/page/{i:07} {date} http://example.test/page/{i:07} text/html 200 \
             AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA - - 100 {} {name}",
            i * 100
        )
        .unwrap();
    }
    cdx.into_inner().unwrap().sync_all().unwrap();
    let cdx_size = std::fs::metadata(sealed.join(name.replace(".arc.gz", ".cdx")))
        .unwrap()
        .len();

    let proxy = Proxy::start_in(data.path(), &["--workers", "1"]);
    let peak = peak_rss(proxy.pid());
    let now = proc_status_bytes(proxy.pid(), "RssAnon");
    let status = send_raw(
        proxy.addr,
        b"GET /_liveweb/status.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let status = String::from_utf8(status.body).unwrap();
    let json: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(json["index_entries"], LINES, "{status}");
    // Reading whole files held the CDX text and a parsed entry per line at once (more than
    // twice the file) and kept it resident; read a line at a time, the peak stays under
    // the file's size and what stays is about the index.
    assert!(
        peak < cdx_size,
        "peak {peak} bytes for a {cdx_size}-byte CDX"
    );
    assert!(
        now < cdx_size * 3 / 4,
        "{now} bytes resident after start-up"
    );
    drop(proxy);
}
