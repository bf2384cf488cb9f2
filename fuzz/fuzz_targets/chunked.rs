//! Chunked bodies fed in arbitrary pieces: the end found (and the payload decoded) does not
//! depend on how the bytes were split.
#![no_main]

use libfuzzer_sys::fuzz_target;
use liveweb::http::chunked::ChunkedScanner;

fuzz_target!(|data: &[u8]| {
    let Some((&split, body)) = data.split_first() else {
        return;
    };
    let step = usize::from(split).max(1);
    let whole = ChunkedScanner::new().feed(body);
    let mut pieces = ChunkedScanner::new();
    let mut decoded = Vec::new();
    let mut at = 0;
    let mut end = None;
    for piece in body.chunks(step) {
        match pieces.feed_with(piece, |d| decoded.extend_from_slice(d)) {
            Ok(Some(n)) => {
                end = Some(at + n);
                break;
            }
            Ok(None) => at += piece.len(),
            Err(_) => {
                assert!(
                    whole.is_err(),
                    "split input failed where whole input did not"
                );
                return;
            }
        }
    }
    if let Ok(found) = whole {
        assert_eq!(found, end);
    }
});
