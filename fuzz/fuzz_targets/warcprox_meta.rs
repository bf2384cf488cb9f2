//! A crawler's `Warcprox-Meta` header (JSON, block rules, compressed rules): reading it never
//! panics, whatever the value, and matching its rules against a URL never does either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use liveweb::http::request::{parse_request_head, Limits};
use liveweb::warcprox::WarcproxMeta;

fuzz_target!(|data: &[u8]| {
    // The first line is the URL, the rest the header's value.
    let split = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let (url, value) = data.split_at(split);
    let value: Vec<u8> = value
        .iter()
        .copied()
        .filter(|&b| b != b'\r' && b != b'\n')
        .collect();
    let mut raw = b"GET ".to_vec();
    raw.extend(url.iter().copied().filter(|b| !b.is_ascii_whitespace()));
    raw.extend_from_slice(b" HTTP/1.1\r\nWarcprox-Meta: ");
    raw.extend_from_slice(&value);
    raw.extend_from_slice(b"\r\n\r\n");
    let Ok(Some((head, _))) = parse_request_head(&raw, &Limits::default()) else {
        return;
    };
    if let Ok(Some(meta)) = WarcproxMeta::of(&head) {
        if let Ok(url) = liveweb::http::url::parse_absolute(&head.target) {
            let _ = meta.blocked(&url);
        }
    }
});
