//! ARC files as recovery finds them after a crash: the scan never panics and never claims
//! more valid bytes than the file has.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let result = liveweb::archive::scan::scan(data);
    assert!(result.valid_len <= data.len() as u64);
    for e in &result.entries {
        assert!(e.offset.saturating_add(e.length) <= result.valid_len);
    }
});
