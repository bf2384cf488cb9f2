//! Absolute request targets: parsing and normalising never panic, and the SURT key of a
//! normalised URL is computed without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(target) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(url) = liveweb::http::url::parse_absolute(target) {
        let _ = liveweb::archive::cdx::surt(&url.normalized);
        // Normalising is stable.
        if let Ok(again) = liveweb::http::url::parse_absolute(&url.normalized) {
            assert_eq!(again.normalized, url.normalized);
        }
    }
});
