//! Client request heads: parsing never panics, and a parsed head never claims more bytes
//! than it was given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use liveweb::http::request::{parse_request_head, Limits};

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((head, used))) = parse_request_head(data, &Limits::default()) {
        assert!(used <= data.len());
        let _ = liveweb::http::cache::request_directives(&head.headers);
    }
});
