//! A stored record's head, ARC header line or WARC header block, as hits and recovery read it
//! back from files that may be damaged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use liveweb::archive::format::{payload_at, PayloadAt};

fuzz_target!(|data: &[u8]| {
    if let PayloadAt::Found { start, .. } = payload_at(data) {
        assert!(start <= data.len());
    }
    if let Some((end, _)) = liveweb::archive::warc::parse_header(data) {
        assert!(end <= data.len());
    }
});
