//! The shared cache's reading of hostile heads: any origin response head and any request
//! headers give caching facts and a reuse decision, and any `Range` / `If-Range` gives a
//! range inside the body or none, never a panic or an overflow.
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use liveweb::http::cache::{request_directives, response_facts, reuse_for};
use liveweb::http::range::{honoured, Resolved};
use liveweb::http::request::Header;

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let (numbers, rest) = data.split_at(8);
    let total = u64::from_le_bytes(numbers.try_into().unwrap_or_default());
    // The response head, a blank line, then request header lines `name: value`.
    let split = rest
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(rest.len(), |p| p + 4);
    let (head, request) = rest.split_at(split);
    let headers: Vec<Header> = request
        .split(|&b| b == b'\n')
        .filter_map(|line| {
            let colon = line.iter().position(|&b| b == b':')?;
            let name = std::str::from_utf8(&line[..colon]).ok()?.trim().to_string();
            Some(Header {
                name,
                value: line[colon + 1..].trim_ascii().to_vec(),
            })
        })
        .collect();
    let facts = response_facts(head);
    let status = 100 + (total % 500) as u16;
    let now = UNIX_EPOCH + Duration::from_secs(total % (1 << 40));
    let reuse = reuse_for(status, &facts, &headers, now, Duration::from_secs(3600));
    let _ = reuse.matches_variant(&headers);
    let _ = reuse.not_modified_for(&headers);
    let _ = reuse.validators();
    let directives = request_directives(&headers);
    let _ = reuse.is_fresh_for(directives, Duration::from_secs(total % 100_000));
    let value = |name: &str| {
        headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_slice())
    };
    if let Some(range) = value("range") {
        let asked = honoured(
            range,
            value("if-range"),
            facts.etag.as_deref(),
            facts.last_modified.as_deref(),
        );
        if let Some(asked) = asked {
            match asked.resolve(total) {
                Resolved::Part { first, len } => {
                    assert!(len > 0 && first.checked_add(len).is_some_and(|end| end <= total));
                }
                Resolved::Unsatisfiable => {}
            }
        }
    }
});
