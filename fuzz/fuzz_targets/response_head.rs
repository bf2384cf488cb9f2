//! Origin response heads (after any 1xx) and the caching facts read from them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use liveweb::http::cache::{response_facts, reuse_for};
use liveweb::http::response::split_head;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((head, at, body_start))) = split_head(data) {
        assert!(at <= body_start && body_start <= data.len());
        let facts = response_facts(&data[at..body_start]);
        let _ = reuse_for(
            head.status,
            &facts,
            &[],
            std::time::SystemTime::now(),
            std::time::Duration::from_secs(3600),
        );
    }
});
