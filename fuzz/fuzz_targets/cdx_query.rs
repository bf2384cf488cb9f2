//! The CDX query API on hostile input: any query string (`/_liveweb/cdx?...`) against any
//! CDX file (a damaged or foreign `.cdx` dropped beside ours) is answered or refused in
//! words, never a panic, and every line it returns came from the file.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use liveweb::archive::cdx_query::{render, search, Query};

/// One directory per fuzzing process, holding the one CDX file each input writes.
fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("liveweb-fuzz-cdx-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    // The first line is the query string, the rest the file.
    let split = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let (query, file) = data.split_at(split);
    let Ok(query) = std::str::from_utf8(query) else {
        return;
    };
    let _ = liveweb::archive::surt::surt(query);
    let Ok(query) = Query::parse(query) else {
        return;
    };
    let path = dir().join("a.cdx");
    std::fs::write(&path, file).expect("write the CDX file");
    let found = search(dir(), &[], &query).expect("search a readable file");
    let text = String::from_utf8_lossy(file);
    for line in &found {
        assert!(text.contains(line.line.as_str()), "a line not in the file: {:?}", line.line);
    }
    let _ = render(&found, query.output);
});
