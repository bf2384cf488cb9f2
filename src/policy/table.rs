//! IP range table files (the client table and the like): one CIDR, address or `first-last`
//! range per line, loaded whole into a [`RangeSet`] or rejected whole with the line at fault.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::range_set::RangeSet;
use super::ranges::{shorthand_v4, to_point};

/// Why a table (or another policy file) could not be loaded: which file, which line, what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", Location(.path, *.line))]
pub struct TableError {
    /// The file as the operator named it, so the message points at something they can open.
    pub path: PathBuf,
    /// 1-based line of the bad entry; 0 when the fault is the whole file (it cannot be read).
    pub line: usize,
    /// What is wrong, quoting the offending text.
    pub message: String,
}

impl TableError {
    pub(crate) fn at(path: &Path, line: usize, message: String) -> Self {
        TableError {
            path: path.to_path_buf(),
            line,
            message,
        }
    }
}

/// `path:line`, or just `path` for errors about the whole file.
struct Location<'a>(&'a Path, usize);

impl fmt::Display for Location<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.1 {
            0 => write!(f, "{}", self.0.display()),
            line => write!(f, "{}:{line}", self.0.display()),
        }
    }
}

/// Reads and parses a table file; see [`parse_table`] for the format.
pub fn load_table(path: &Path) -> Result<RangeSet, TableError> {
    let text = read_text(path)?;
    parse_table(&text, path)
}

/// Reads a whole policy file as UTF-8, naming the line of the first invalid byte if it is not.
pub(crate) fn read_text(path: &Path) -> Result<String, TableError> {
    let bytes = std::fs::read(path)
        .map_err(|e| TableError::at(path, 0, format!("cannot read the file: {e}")))?;
    String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
        TableError::at(path, line, "not valid UTF-8 text".to_string())
    })
}

/// Parses table text. Each line holds one entry, `#` starts a comment, blank lines are skipped:
///
/// ```text
/// 10.0.0.0/8                  # a CIDR block
/// 10.99/16                    # IPv4 shorthand, as in the flags: 10.99.0.0/16
/// 192.0.2.7                   # one address
/// 10.0.0.1 - 10.0.0.9         # an inclusive range, both ends of one family
/// 2001:db8::1-2001:db8::ff
/// ```
///
/// Overlapping and adjacent entries merge. Any bad line rejects the whole text, because a
/// silently skipped line would let in (or keep out) clients the operator did not mean to.
pub fn parse_table(text: &str, path_for_errors: &Path) -> Result<RangeSet, TableError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut ranges = Vec::with_capacity(text.bytes().filter(|&b| b == b'\n').count() + 1);
    for (index, raw) in text.lines().enumerate() {
        let entry = match raw.split_once('#') {
            Some((before, _comment)) => before,
            None => raw,
        }
        .trim();
        if entry.is_empty() {
            continue;
        }
        let range = parse_entry(entry)
            .map_err(|message| TableError::at(path_for_errors, index + 1, message))?;
        ranges.push(range);
    }
    Ok(RangeSet::from_ranges(ranges))
}

/// One entry (comment and surrounding space already gone) as inclusive points.
fn parse_entry(entry: &str) -> Result<(u128, u128), String> {
    if let Some((first, last)) = entry.split_once('-') {
        let (first, last) = (first.trim(), last.trim());
        let (a, b) = (parse_addr(first)?, parse_addr(last)?);
        if a.is_ipv4() != b.is_ipv4() {
            return Err(format!("range {} mixes IPv4 and IPv6", quoted(entry)));
        }
        let (start, end) = (to_point(a), to_point(b));
        if start > end {
            return Err(format!("range {} ends before it starts", quoted(entry)));
        }
        return Ok((start, end));
    }
    if let Some((addr, prefix)) = entry.split_once('/') {
        // With a prefix, the IPv4 shorthand of the flags too: `10.99/16` is 10.99.0.0/16.
        let addr = addr.trim_end();
        let addr = parse_addr(addr).or_else(|e| shorthand_v4(addr).ok_or(e))?;
        let max: u32 = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix
            .trim_start()
            .parse::<u32>()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| format!("bad prefix length in {}: must be 0 to {max}", quoted(entry)))?;
        let point = to_point(addr);
        // Host bits past the prefix usually mean a typo (`10.0.0.1/8` for `/32`), and
        // widening it silently would admit a whole network.
        let host_bits = max - prefix;
        let host_mask = if host_bits == 0 {
            0
        } else {
            u128::MAX >> (128 - host_bits)
        };
        if point & host_mask != 0 {
            return Err(format!(
                "{} has bits set past its prefix length",
                quoted(entry)
            ));
        }
        return Ok((point, point | host_mask));
    }
    let point = to_point(parse_addr(entry)?);
    Ok((point, point))
}

fn parse_addr(s: &str) -> Result<IpAddr, String> {
    s.parse().map_err(|_| format!("bad address {}", quoted(s)))
}

/// The offending text in quotes, cut short so a stray binary line cannot flood the log.
fn quoted(s: &str) -> String {
    const MAX_CHARS: usize = 80;
    match s.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("{:?}...", &s[..cut]),
        None => format!("{s:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    fn parse(text: &str) -> Result<RangeSet, TableError> {
        parse_table(text, Path::new("clients.txt"))
    }

    fn err(text: &str) -> (usize, String) {
        let e = parse(text).expect_err("table must be rejected");
        assert_eq!(e.path, Path::new("clients.txt"));
        (e.line, e.message)
    }

    #[test]
    fn every_entry_form_with_comments_and_blanks() {
        let set = parse(
            "# client table\n\
             \n\
             10.0.0.0/8\n\
             172.20/16 # shorthand\n\
             \t192.0.2.7   # one host\n\
             198.51.100.10 - 198.51.100.20\n\
             203.0.113.1-203.0.113.3#no space before the comment\n\
             2001:db8::/32\n\
             2001:db9::1-2001:db9::ff\n\
             2001:dba::5\n\
             \x20\x20\x20\n\
             #\n",
        )
        .expect("valid table");
        for inside in [
            "10.1.2.3",
            "172.20.255.1",
            "192.0.2.7",
            "198.51.100.15",
            "203.0.113.2",
            "2001:db8:1234::1",
            "2001:db9::80",
            "2001:dba::5",
        ] {
            assert!(set.contains(ip(inside)), "{inside} must be in the table");
        }
        for outside in [
            "192.0.2.8",
            "11.0.0.0",
            "172.21.0.0",
            "2001:db9::100",
            "2001:dba::6",
        ] {
            assert!(
                !set.contains(ip(outside)),
                "{outside} must not be in the table"
            );
        }
    }

    #[test]
    fn range_edges_are_inclusive() {
        let set = parse("10.0.0.1-10.0.0.9\n2001:db8::1-2001:db8::ff\n10.1.0.0/16").unwrap();
        for inside in ["10.0.0.1", "10.0.0.9", "2001:db8::1", "2001:db8::ff"] {
            assert!(set.contains(ip(inside)), "{inside}");
        }
        for outside in ["10.0.0.0", "10.0.0.10", "2001:db8::", "2001:db8::100"] {
            assert!(!set.contains(ip(outside)), "{outside}");
        }
        assert!(set.contains(ip("10.1.0.0")));
        assert!(set.contains(ip("10.1.255.255")));
        assert!(!set.contains(ip("10.0.255.255")));
        assert!(!set.contains(ip("10.2.0.0")));
    }

    #[test]
    fn overlapping_and_adjacent_entries_merge() {
        let set = parse(
            "10.0.0.0/24\n10.0.0.128-10.0.1.5\n10.0.1.6\n10.0.0.7\n2001:db8::/64\n2001:db8::/48",
        )
        .unwrap();
        assert_eq!(set.len(), 2);
        assert!(set.contains(ip("10.0.1.6")));
        assert!(!set.contains(ip("10.0.1.7")));
        assert!(set.contains(ip("2001:db8:0:ffff::1")));
    }

    #[test]
    fn ipv4_mapped_peers_match_ipv4_lines_and_back() {
        let set = parse("10.0.0.0/8\n::ffff:192.0.2.0/120").unwrap();
        assert!(set.contains(ip("::ffff:10.0.0.1")));
        assert!(!set.contains(ip("::ffff:11.0.0.1")));
        assert!(set.contains(ip("192.0.2.200")));
        assert!(!set.contains(ip("192.0.3.0")));
        assert!(
            !set.contains(ip("::10.0.0.1")),
            "IPv4-compatible is not IPv4-mapped"
        );
    }

    #[test]
    fn crlf_and_byte_order_mark_are_tolerated() {
        let set = parse("\u{feff}10.0.0.1\r\n10.0.0.2 # two\r\n").unwrap();
        assert!(set.contains(ip("10.0.0.1")));
        assert!(set.contains(ip("10.0.0.2")));
    }

    #[test]
    fn empty_table_is_empty() {
        assert!(parse("").unwrap().is_empty());
        assert!(parse("# nothing yet\n\n").unwrap().is_empty());
    }

    #[test]
    fn each_error_names_its_line() {
        let cases: &[(&str, usize, &str)] = &[
            ("10.0.0.1\n10.0.0.300\n", 2, r#"bad address "10.0.0.300""#),
            ("# c\n\nhello # there", 3, r#"bad address "hello""#),
            ("10.0.0.0/33", 1, "bad prefix length"),
            ("2001:db8::/129", 1, "must be 0 to 128"),
            ("10.0.0.0/", 1, "bad prefix length"),
            ("10.0.0.0/x", 1, "bad prefix length"),
            ("10.0.0.1/8", 1, "bits set past its prefix length"),
            ("1.2.3.4\n10.0.0.1-::1", 2, "mixes IPv4 and IPv6"),
            ("10.0.0.9-10.0.0.1", 1, "ends before it starts"),
            ("10.0.0.1-", 1, r#"bad address """#),
            ("-10.0.0.1", 1, r#"bad address """#),
            (
                "10.0.0.1-10.0.0.2-10.0.0.3",
                1,
                r#"bad address "10.0.0.2-10.0.0.3""#,
            ),
            ("10.0.0.0/8-10.0.0.9", 1, r#"bad address "10.0.0.0/8""#),
            ("10.0.0.1 10.0.0.2", 1, "bad address"),
            ("fe80::1%eth0", 1, "bad address"),
        ];
        for (text, line, needle) in cases {
            let (got_line, message) = err(text);
            assert_eq!(got_line, *line, "{text:?}: {message}");
            assert!(
                message.contains(needle),
                "{text:?}: {message:?} lacks {needle:?}"
            );
        }
    }

    #[test]
    fn display_reads_path_line_message() {
        let text = format!("{}10.0.0.300 # typo\n", "10.0.0.0/8\n".repeat(16));
        let e = parse(&text).unwrap_err();
        assert_eq!(e.to_string(), r#"clients.txt:17: bad address "10.0.0.300""#);
    }

    #[test]
    fn long_offending_text_is_cut() {
        let (_, message) = err(&"x".repeat(10_000));
        assert!(message.len() < 200, "{message}");
        assert!(message.ends_with("..."));
    }

    #[test]
    fn load_reads_files_and_names_them_in_errors() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("clients.txt");
        std::fs::write(&good, "10.0.0.0/8\n").unwrap();
        assert!(load_table(&good).unwrap().contains(ip("10.9.9.9")));

        let missing = dir.path().join("missing.txt");
        let e = load_table(&missing).unwrap_err();
        assert_eq!(e.line, 0);
        let shown = e.to_string();
        assert!(
            shown.starts_with(&format!("{}: cannot read", missing.display())),
            "{shown}"
        );

        let binary = dir.path().join("binary.txt");
        std::fs::write(&binary, b"10.0.0.1\n10.0.0.2\n\xff\xfe\n").unwrap();
        let e = load_table(&binary).unwrap_err();
        assert_eq!((e.line, e.message.as_str()), (3, "not valid UTF-8 text"));
    }
}
