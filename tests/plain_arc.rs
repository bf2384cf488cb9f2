//! `--arc-gzip false`: plain `.arc` files. Liveweb mode replies with the plain record;
//! forward-mode hits send the body from the file with sendfile; recovery reads plain files.

mod common;

use common::*;
use std::io::Write;

#[test]
fn plain_records_in_both_reply_shapes_and_across_a_crash() {
    let origin = Origin::start();
    let body: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 21) as u8)
        .collect();
    let raw = origin.ok("/big.bin", "application/octet-stream", &body);
    origin.route(
        "/chunked",
        Behavior::Send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nplai\r\n1\r\nn\r\n0\r\n\r\n".to_vec()),
    );
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // No hot shard, so every hit comes from the file.
    let args = ["--arc-gzip", "false", "--mem-cache", "0"];
    let proxy = Proxy::start_in(&data, &args);
    let url = origin.url("/big.bin");

    let rec = get(proxy.addr, &url, "");
    assert_eq!(
        rec.header("content-type").as_deref(),
        Some("application/arc")
    );
    let (header, payload) = split_record(&rec.body);
    assert!(header.starts_with(&url));
    assert!(payload == raw, "plain record payload is the origin's bytes");
    assert!(
        get(proxy.addr, &url, "").body == rec.body,
        "liveweb-mode hit byte-identical"
    );

    let forward = |p: &Proxy, u: &str| {
        let mut c = connect(p.addr);
        c.get_mut()
            .write_all(
                format!("GET {u} HTTP/1.1\r\nX-Liveweb-Mode: forward\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .unwrap();
        read_any_reply(&mut c, false).0
    };
    // First forward hit reads the record (making it resident), later ones use sendfile.
    for _ in 0..3 {
        let r = forward(&proxy, &url);
        assert_eq!(r.header("x-cache").as_deref(), Some("HIT"));
        assert_eq!(r.header("content-length").as_deref(), Some("3000000"));
        assert!(r.body == body, "forward hit body identical");
    }
    let r = forward(&proxy, &origin.url("/chunked"));
    assert_eq!(r.body, b"plain");
    // The miss was streamed; wait for its record (only-if-cached waits on the fetch).
    assert_eq!(
        get(
            proxy.addr,
            &origin.url("/chunked"),
            "Cache-Control: only-if-cached\r\n"
        )
        .status,
        200
    );
    let r = forward(&proxy, &origin.url("/chunked"));
    assert_eq!(r.header("x-cache").as_deref(), Some("HIT"));
    assert_eq!(
        r.body, b"plain",
        "chunked body passed through from the file"
    );

    // Crash and restart: the plain file is recovered and still serves both shapes; forward
    // mode reads the restored record's reuse rules from its head and answers from it.
    proxy.kill9();
    let proxy = Proxy::start_in(&data, &args);
    let again = get(proxy.addr, &url, "Cache-Control: only-if-cached\r\n");
    assert_eq!(again.status, 200);
    assert!(again.body == rec.body);
    assert_eq!(origin.hits("/big.bin"), 1);
    let r = forward(&proxy, &url);
    assert_eq!(r.header("x-cache").as_deref(), Some("HIT"));
    assert!(r.body == body);
    assert_eq!(origin.hits("/big.bin"), 1);
    let _keep = proxy.finish();
    let mut arcs = Vec::new();
    collect_arcs(&data, &mut arcs);
    assert!(
        !arcs.is_empty() && arcs.iter().all(|p| p.to_string_lossy().ends_with(".arc")),
        "{arcs:?}"
    );
}
