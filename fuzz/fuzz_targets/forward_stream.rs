//! Origin responses streamed to a forward-mode client in arbitrary pieces: the rewrite never
//! panics, whatever the origin sends.
#![no_main]

use libfuzzer_sys::fuzz_target;
use liveweb::http::client_head::ClientSide;
use liveweb::http::range::ByteRange;
use liveweb::http::client_body::ResponseStreamer;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, raw)) = data.split_first() else {
        return;
    };
    let client = ClientSide {
        version: flags & 1,
        keep_alive: flags & 2 != 0,
        head_only: flags & 4 != 0,
        cache: "MISS",
        age: (flags & 8 != 0).then_some(5),
        archive_limit: Some(1 << 20),
        // A 304's header update and a byte range, sometimes.
        update: (flags & 32 != 0).then(|| std::sync::Arc::from(&b"X-Updated: 1\r\n"[..])),
        range: (flags & 64 != 0).then_some(ByteRange::From {
            first: u64::from(flags >> 7),
            last: None,
        }),
    };
    let total = (flags & 16 != 0).then_some(raw.len() as u64);
    let mut streamer = ResponseStreamer::new(client, total);
    let mut out = Vec::new();
    for piece in raw.chunks(usize::from(flags >> 5) + 1) {
        if streamer.push(piece, &mut out).is_err() {
            return;
        }
    }
    let _ = streamer.finish(&mut out);
});
