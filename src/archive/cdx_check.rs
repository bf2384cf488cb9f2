//! Reading a sealed file's CDX at start-up a line at a time: checking that it belongs to its
//! ARC file (`CdxCheck`) and walking its lines, so that a whole CDX (hundreds of MB for a big
//! file) is never held in memory.

use std::fs;
use std::io;
use std::path::Path;

use super::cdx::{stored_length, CdxRef, CDX_HEADER};

/// Whether a CDX was written by liveweb for this file: header, every line well formed,
/// naming this file, each record (as served: `stored_length`) inside the file and apart from
/// the others. A plain file's CDX from a version that counted each record's newline fails
/// the last check where its records touch, so it is rebuilt; where blank-line padding
/// (`--fsync always`) separates them it passes, and such a record is served with one padding
/// newline after it (still a whole record; `liveweb reindex` rewrites those CDX files).
/// Fed a line at a time (`line`, then `finish`), so a CDX is never held whole; what it keeps
/// is each record's span, 16 bytes a line.
pub(super) struct CdxCheck<'n> {
    arc_name: &'n str,
    arc_size: u64,
    gzip: bool,
    header_seen: bool,
    /// A line was refused.
    refused: bool,
    spans: Vec<(u64, u64)>,
}

impl<'n> CdxCheck<'n> {
    pub(super) fn new(arc_name: &'n str, arc_size: u64, gzip: bool) -> Self {
        CdxCheck {
            arc_name,
            arc_size,
            gzip,
            header_seen: false,
            refused: false,
            spans: Vec::new(),
        }
    }

    /// Takes the next line; `false` once the CDX is known to be invalid.
    pub(super) fn line(&mut self, line: &str) -> bool {
        let ok = self.accepts(line);
        self.refused |= !ok;
        ok
    }

    fn accepts(&mut self, line: &str) -> bool {
        if !self.header_seen {
            self.header_seen = true;
            return line == CDX_HEADER;
        }
        let Some(e) = CdxRef::parse(line) else {
            return false;
        };
        // Offsets from a file are checked, not trusted: a sum that wraps is invalid.
        let Some(end) = e.offset.checked_add(stored_length(e.length, self.gzip)) else {
            return false;
        };
        if e.file != self.arc_name || end > self.arc_size {
            return false;
        }
        self.spans.push((e.offset, end));
        true
    }

    /// Whether every line taken was accepted, after a header, and no two records overlap.
    pub(super) fn finish(mut self) -> bool {
        self.spans.sort_unstable();
        !self.refused && self.header_seen && self.spans.windows(2).all(|w| w[0].1 <= w[1].0)
    }
}

/// `CdxCheck` over a whole text.
#[cfg(test)]
fn valid_cdx(text: &str, arc_name: &str, arc_size: u64, gzip: bool) -> bool {
    let mut check = CdxCheck::new(arc_name, arc_size, gzip);
    text.lines().all(|l| check.line(l)) && check.finish()
}

/// How much of the newest CDX start-up reads to learn the length of a line.
pub(super) const LINE_SAMPLE: usize = 64 << 10;

/// The first `limit` bytes of a file.
pub(super) fn read_start(path: &Path, limit: usize) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let mut start = Vec::with_capacity(limit);
    fs::File::open(path)?
        .take(limit as u64)
        .read_to_end(&mut start)?;
    Ok(start)
}

/// Calls `each` with every line of the file at `path` (without its line end) until it
/// returns `false`, through `buf`. A file that is not UTF-8 is an error.
pub(super) fn each_line(
    path: &Path,
    buf: &mut String,
    mut each: impl FnMut(&str) -> bool,
) -> io::Result<()> {
    use std::io::BufRead;
    let mut reader = io::BufReader::with_capacity(1 << 20, fs::File::open(path)?);
    loop {
        buf.clear();
        if reader.read_line(buf)? == 0 {
            return Ok(());
        }
        let line = buf.strip_suffix('\n').unwrap_or(buf);
        let line = line.strip_suffix('\r').unwrap_or(line);
        if !each(line) {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cdx_whose_offsets_wrap_is_invalid() {
        let line = |offset: u64, length: u64| {
            format!("{CDX_HEADER}\nk 20261122000000 http://a/ text/plain 200 D - - {length} {offset} F.arc.gz\n")
        };
        assert!(valid_cdx(&line(10, 20), "F.arc.gz", 30, true));
        assert!(!valid_cdx(&line(10, 21), "F.arc.gz", 30, true));
        assert!(!valid_cdx(&line(u64::MAX, 2), "F.arc.gz", 30, true));
        // A plain record is served with its newline, one byte past what the CDX counts.
        assert!(valid_cdx(&line(10, 19), "F.arc.gz", 30, false));
        assert!(!valid_cdx(&line(10, 20), "F.arc.gz", 30, false));
    }

    #[test]
    fn a_plain_cdx_whose_records_touch_counted_newlines_and_is_rebuilt() {
        let lines = |l: &[(u64, u64)]| {
            let mut t = format!("{CDX_HEADER}\n");
            for (offset, length) in l {
                t += &format!(
                    "k 20261122000000 http://a/ text/plain 200 D - - {length} {offset} F.arc\n"
                );
            }
            t
        };
        // Today: 10 bytes counted, 11 stored (the newline), next record right after.
        assert!(valid_cdx(&lines(&[(0, 10), (11, 10)]), "F.arc", 22, false));
        // An older version counted the newline: the records would overlap by a byte.
        assert!(!valid_cdx(&lines(&[(0, 11), (11, 11)]), "F.arc", 22, false));
    }
}
