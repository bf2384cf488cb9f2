//! The classic proxy-lab checks, with curl through liveweb in forward mode against an HTTP/1.0
//! origin that closes after each response.

mod common;

use common::*;
use std::process::Command;
use std::time::{Duration, Instant};

fn curl(args: &[&str]) -> (bool, Vec<u8>) {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10"])
        .args(args)
        .output()
        .expect("curl must be installed");
    (out.status.success(), out.stdout)
}

#[test]
fn curl_through_liveweb_matches_a_direct_fetch_and_survives_the_origin() {
    let origin = Origin::start();
    let text = b"The quick brown fox jumps over the lazy dog.\n".repeat(200);
    let binary: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 23) as u8)
        .collect();
    let mut raw = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n".to_vec();
    raw.extend_from_slice(&text);
    origin.route("/text.txt", Behavior::Send(raw));
    let mut raw = format!(
        "HTTP/1.0 200 OK\r\nContent-Type: image/png\r\nContent-Length: {}\r\n\r\n",
        binary.len()
    )
    .into_bytes();
    raw.extend_from_slice(&binary);
    origin.route("/image.png", Behavior::Send(raw));
    origin.route("/hang", Behavior::SendThenStall(Vec::new()));
    let proxy = Proxy::start(&["--mode", "forward", "--read-timeout", "4s"]);
    let via = format!("http://{}", proxy.addr);

    for path in ["/text.txt", "/image.png"] {
        let url = origin.url(path);
        let (ok, direct) = curl(&[&url]);
        assert!(ok);
        let (ok, proxied) = curl(&["-x", &via, &url]);
        assert!(ok, "{path} through liveweb");
        assert!(
            proxied == direct,
            "{path}: byte-identical to a direct fetch"
        );
    }

    // A request stuck on an origin that never answers does not hold up other clients.
    let hang_url = origin.url("/hang");
    let via2 = via.clone();
    let stuck = std::thread::spawn(move || curl(&["--max-time", "3", "-x", &via2, &hang_url]));
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let (ok, body) = curl(&["-x", &via, &origin.url("/text.txt")]);
    assert!(ok && body == text);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "served while another request hangs"
    );
    let (stuck_ok, _) = stuck.join().unwrap();
    assert!(
        !stuck_ok,
        "the hanging request is still hanging (curl gave up)"
    );

    // The origin goes away: what was fetched before still comes from the store.
    origin.stop();
    let (ok, _) = curl(&[&origin.url("/text.txt")]);
    assert!(!ok, "origin really is down");
    let (ok, body) = curl(&["-x", &via, &origin.url("/text.txt")]);
    assert!(ok && body == text, "text from the store");
    let (ok, body) = curl(&["-x", &via, &origin.url("/image.png")]);
    assert!(ok && body == binary, "binary from the store");
    proxy.finish();
}
