//! CDX lines and `.private` lists as found on disk at start.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for line in text.lines() {
        let _ = liveweb::archive::cdx::CdxRef::parse(line);
    }
    let _ = liveweb::archive::cdx::parse_private_list(text);
});
