//! Queries over the archive's index in pywb's CDX server API (`url`, `matchType`, `from`,
//! `to`, `limit`, `sort`, `closest`, `output`). Each sealed CDX file is sorted, so a query
//! reads only the lines it matches, found by binary search with positioned reads, never a
//! whole file; the files still being written are read from their spools (one file's lines
//! at most each). The matches are then merged, ordered and cut to the limit. Blocking file
//! I/O: run it on the blocking pool.

use std::cmp::Ordering;
use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::cdx_spool::SpoolView;
use super::surt::surt;
use std::sync::Arc;

/// Lines a query returns when it names no limit, and at most whatever it names.
pub const DEFAULT_LIMIT: usize = 10_000;
pub const MAX_LIMIT: usize = 100_000;
/// Bytes read per step of the binary search (a CDX line is rarely longer).
const PROBE: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    Exact,
    /// The URL's key and everything under it.
    Prefix,
    /// Every URL of the host.
    Host,
    /// Every URL of the host and of the hosts under it.
    Domain,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    /// By key, then time (the files' own order).
    Ascending,
    Reverse,
    /// Nearest to this time first (seconds since the epoch).
    Closest(i64),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// `urlkey timestamp {json}`, as pywb's CDX server answers by default.
    Cdxj,
    /// One JSON object per line, every field in it.
    Json,
}

/// A parsed query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// The SURT key (or key prefix) looked for.
    pub key: String,
    pub matching: Match,
    /// Inclusive bounds on the 14-digit timestamp.
    pub from: String,
    pub to: String,
    pub limit: usize,
    pub sort: Sort,
    pub output: Output,
}

/// One matching line's fields (the CDX's 11, the file name included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CdxLine {
    pub line: String,
}

impl CdxLine {
    fn fields(&self) -> Vec<&str> {
        self.line.split(' ').collect()
    }

    fn timestamp(&self) -> &str {
        self.line.split(' ').nth(1).unwrap_or("")
    }
}

impl Query {
    /// Parses a query string (`a=b&c=d`, percent-encoded). Parameters pywb sends that are
    /// not about selection (`fl`, `filter`, ...) are ignored; a bad value is an error in
    /// words.
    pub fn parse(query: &str) -> Result<Query, String> {
        let mut url = None;
        let mut matching = None;
        let (mut from, mut to) = (String::new(), String::new());
        let mut limit = DEFAULT_LIMIT;
        let mut sort = None;
        let mut closest = None;
        let mut output = Output::Cdxj;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = decode(value);
            match name {
                "url" => url = Some(value),
                "matchType" => {
                    matching = Some(match value.as_str() {
                        "exact" => Match::Exact,
                        "prefix" => Match::Prefix,
                        "host" => Match::Host,
                        "domain" => Match::Domain,
                        other => {
                            return Err(format!(
                                "matchType {other:?}: use exact, prefix, host or domain"
                            ))
                        }
                    })
                }
                "from" => from = timestamp_bound(&value, '0', "from")?,
                "to" => to = timestamp_bound(&value, '9', "to")?,
                "limit" => {
                    limit = value
                        .parse::<usize>()
                        .map_err(|_| format!("limit {value:?} is not a number"))?
                        .min(MAX_LIMIT)
                }
                "sort" => sort = Some(value),
                "closest" => closest = Some(timestamp_bound(&value, '0', "closest")?),
                "output" => {
                    output = match value.as_str() {
                        "json" => Output::Json,
                        "cdxj" | "" => Output::Cdxj,
                        other => return Err(format!("output {other:?}: use json or cdxj")),
                    }
                }
                _ => {}
            }
        }
        let url = url.filter(|u| !u.is_empty()).ok_or("url is required")?;
        // pywb's shorthands: `example.com/*` (prefix), `*.example.com` (domain).
        let (url, implied) = if let Some(rest) = url.strip_prefix("*.") {
            (rest.to_string(), Some(Match::Domain))
        } else if let Some(rest) = url.strip_suffix('*') {
            (rest.to_string(), Some(Match::Prefix))
        } else {
            (url, None)
        };
        let matching = matching.or(implied).unwrap_or(Match::Exact);
        let key = key_for(&url, matching);
        let sort = match (sort.as_deref(), closest) {
            (Some("reverse"), _) => Sort::Reverse,
            (Some("closest") | None, Some(ts)) => Sort::Closest(seconds(&ts)),
            (Some("closest"), None) => return Err("sort=closest needs closest=TIMESTAMP".into()),
            (None | Some("") | Some("asc"), None) => Sort::Ascending,
            (Some(other), _) => return Err(format!("sort {other:?}: use reverse or closest")),
        };
        Ok(Query {
            key,
            matching,
            from: if from.is_empty() {
                "0".repeat(14)
            } else {
                from
            },
            to: if to.is_empty() { "9".repeat(14) } else { to },
            limit,
            sort,
            output,
        })
    }

    /// Whether a line's key is one this query asks for.
    fn key_matches(&self, urlkey: &str) -> bool {
        match self.matching {
            Match::Exact => urlkey == self.key,
            Match::Prefix | Match::Host => urlkey.starts_with(&self.key),
            Match::Domain => {
                urlkey.starts_with(&self.key)
                    && matches!(urlkey.as_bytes().get(self.key.len()), Some(b')' | b','))
            }
        }
    }

    fn wants(&self, line: &str) -> bool {
        let mut f = line.split(' ');
        let (Some(urlkey), Some(ts)) = (f.next(), f.next()) else {
            return false;
        };
        self.key_matches(urlkey) && ts >= self.from.as_str() && ts <= self.to.as_str()
    }

    /// Whether lines sorted after `line` can still match (a line past the key range ends
    /// the scan of a file).
    fn past(&self, line: &str) -> bool {
        let urlkey = line.split(' ').next().unwrap_or("");
        match self.matching {
            Match::Exact => urlkey > self.key.as_str(),
            _ => !urlkey.starts_with(&self.key) && urlkey > self.key.as_str(),
        }
    }
}

/// The SURT key (or key prefix) of `url` for `matching`.
fn key_for(url: &str, matching: Match) -> String {
    let with_scheme = if url.contains("://") {
        url.to_string()
    } else {
        format!("http://{url}")
    };
    let key = surt(&with_scheme);
    match matching {
        Match::Exact => key,
        // `com,example)/path` with no trailing `/` added by the key for a bare host.
        Match::Prefix => key,
        Match::Host => match key.find(')') {
            Some(at) => key[..=at].to_string(),
            None => key,
        },
        Match::Domain => match key.find(')') {
            Some(at) => key[..at].to_string(),
            None => key,
        },
    }
}

fn timestamp_bound(value: &str, fill: char, name: &str) -> Result<String, String> {
    if value.is_empty() || value.len() > 14 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{name} {value:?}: expected 1 to 14 digits (YYYYMMDDhhmmss)"
        ));
    }
    let mut t = value.to_string();
    while t.len() < 14 {
        t.push(fill);
    }
    Ok(t)
}

/// Seconds since the epoch of a 14-digit timestamp (0 for one that does not parse).
fn seconds(ts: &str) -> i64 {
    crate::clock::parse_arc14(ts).unwrap_or(0)
}

fn decode(value: &str) -> String {
    let plus = value.replace('+', " ");
    percent_encoding::percent_decode_str(&plus)
        .decode_utf8_lossy()
        .into_owned()
}

/// Runs `query` over the files being written (`open`, their records named
/// `../WORKER/NAME.open` from `dir`) and every `.cdx` file in `dir`.
pub fn search(dir: &Path, open: &[Arc<SpoolView>], query: &Query) -> io::Result<Vec<CdxLine>> {
    let mut found = Vec::new();
    // The open files first: one sealed meanwhile is then found twice (once each way, and
    // listed once) rather than missed.
    for view in open {
        let file = format!("../{}/{}", view.worker, view.name);
        for entry in view.entries()? {
            let line = entry.to_line(&file);
            if query.wants(&line) {
                found.push(CdxLine { line });
            }
        }
    }
    let mut paths: Vec<_> = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "cdx"))
        .collect();
    paths.sort();
    for path in paths {
        // A file sealed away (handed off) meanwhile is simply not there any more.
        let Ok(file) = File::open(&path) else {
            continue;
        };
        search_file(&file, query, &mut found)?;
    }
    order(&mut found, query);
    Ok(found)
}

/// Adds `file`'s matching lines to `found`: as many as the query's order can use.
fn search_file(file: &File, query: &Query, found: &mut Vec<CdxLine>) -> io::Result<()> {
    let len = file.metadata()?.len();
    let mut at = first_at_or_after(file, len, &query.key)?;
    let mut kept: VecDeque<CdxLine> = VecDeque::new();
    let mut reader = Lines::new(file, len);
    while let Some((line, next)) = reader.line_at(at)? {
        at = next;
        if line.starts_with(' ') {
            continue;
        }
        if query.past(&line) {
            break;
        }
        if !query.wants(&line) {
            continue;
        }
        kept.push_back(CdxLine { line });
        match query.sort {
            // Each file is in ascending order: its first `limit` are all it can give.
            Sort::Ascending if kept.len() >= query.limit => break,
            Sort::Reverse if kept.len() > query.limit => {
                kept.pop_front();
            }
            Sort::Closest(_) if kept.len() >= MAX_LIMIT => break,
            _ => {}
        }
    }
    found.extend(kept);
    Ok(())
}

fn order(found: &mut Vec<CdxLine>, query: &Query) {
    match query.sort {
        Sort::Ascending => found.sort_by(|a, b| a.line.cmp(&b.line)),
        Sort::Reverse => found.sort_by(|a, b| b.line.cmp(&a.line)),
        Sort::Closest(t) => {
            let distance = |c: &CdxLine| (seconds(c.timestamp()) - t).abs();
            found.sort_by(|a, b| match distance(a).cmp(&distance(b)) {
                Ordering::Equal => a.line.cmp(&b.line),
                other => other,
            })
        }
    }
    // A record found both in its open file and sealed: the same line but for the name.
    found.dedup_by(|b, a| same_record(&a.line, &b.line));
    found.truncate(query.limit);
}

/// Whether two lines list the same record, one from its open file, one sealed.
fn same_record(a: &str, b: &str) -> bool {
    let (Some((a_rest, a_file)), Some((b_rest, b_file))) = (a.rsplit_once(' '), b.rsplit_once(' '))
    else {
        return false;
    };
    let base = |f: &str| {
        let name = f.rsplit('/').next().unwrap_or(f);
        name.strip_suffix(super::record::OPEN_SUFFIX)
            .unwrap_or(name)
            .to_string()
    };
    a_rest == b_rest && base(a_file) == base(b_file)
}

/// A line start at or before the first line that sorts at or after `key`: where a scan for
/// `key` may begin. Only `lo` is trusted: it is always a line start with every line before
/// it sorting before `key`; `hi` only narrows where the next probe falls.
fn first_at_or_after(file: &File, len: u64, key: &str) -> io::Result<u64> {
    let mut reader = Lines::new(file, len);
    let (mut lo, mut hi) = (0u64, len);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let start = match mid == lo {
            true => Some(lo),
            false => reader.next_line_start(mid)?,
        };
        match start {
            Some(s) if s < hi => match reader.line_at(s)? {
                Some((line, next)) if line.as_str() < key => lo = next,
                _ => hi = s,
            },
            _ => hi = mid,
        }
    }
    Ok(lo)
}

/// Positioned line reads from a file.
struct Lines<'a> {
    file: &'a File,
    len: u64,
    buf: Vec<u8>,
}

impl<'a> Lines<'a> {
    fn new(file: &'a File, len: u64) -> Self {
        Lines {
            file,
            len,
            buf: vec![0; PROBE],
        }
    }

    /// The offset just after the first `\n` at or after `at`; `None` at the end.
    fn next_line_start(&mut self, mut at: u64) -> io::Result<Option<u64>> {
        while at < self.len {
            let n = self.file.read_at(&mut self.buf, at)?;
            if n == 0 {
                break;
            }
            if let Some(i) = self.buf[..n].iter().position(|&b| b == b'\n') {
                return Ok(Some(at + i as u64 + 1));
            }
            at += n as u64;
        }
        Ok(None)
    }

    /// The line starting at `at` (without its `\n`) and where the next one starts.
    fn line_at(&mut self, at: u64) -> io::Result<Option<(String, u64)>> {
        if at >= self.len {
            return Ok(None);
        }
        let mut line = Vec::new();
        let mut pos = at;
        loop {
            let n = self.file.read_at(&mut self.buf, pos)?;
            if n == 0 {
                return Ok(Some((String::from_utf8_lossy(&line).into_owned(), pos)));
            }
            if let Some(i) = self.buf[..n].iter().position(|&b| b == b'\n') {
                line.extend_from_slice(&self.buf[..i]);
                let next = pos + i as u64 + 1;
                return Ok(Some((String::from_utf8_lossy(&line).into_owned(), next)));
            }
            line.extend_from_slice(&self.buf[..n]);
            pos += n as u64;
            if line.len() > 1 << 20 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "a CDX line longer than 1 MiB",
                ));
            }
        }
    }
}

/// The answer's body: one line per capture in the query's output.
pub fn render(found: &[CdxLine], output: Output) -> String {
    let mut out = String::new();
    for c in found {
        let f = c.fields();
        if f.len() != 11 {
            continue;
        }
        let fields = [
            ("url", f[2]),
            ("mime", f[3]),
            ("status", f[4]),
            ("digest", f[5]),
            ("length", f[8]),
            ("offset", f[9]),
            ("filename", f[10]),
        ];
        let mut map = serde_json::Map::new();
        if output == Output::Json {
            map.insert("urlkey".into(), f[0].into());
            map.insert("timestamp".into(), f[1].into());
        }
        for (name, value) in fields {
            map.insert(name.into(), value.into());
        }
        let json = serde_json::Value::Object(map).to_string();
        match output {
            Output::Cdxj => out.push_str(&format!("{} {} {json}\n", f[0], f[1])),
            Output::Json => {
                out.push_str(&json);
                out.push('\n');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn line(key: &str, ts: &str, url: &str, file: &str) -> String {
        format!("{key} {ts} {url} text/html 200 DIGEST - - 100 0 {file}")
    }

    fn file_with(lines: &[String]) -> tempfile::NamedTempFile {
        let mut sorted = lines.to_vec();
        sorted.sort();
        let mut f = tempfile::Builder::new().suffix(".cdx").tempfile().unwrap();
        writeln!(f, " CDX N b a m s k r M S V g").unwrap();
        for l in sorted {
            writeln!(f, "{l}").unwrap();
        }
        f
    }

    fn run(files: &[&tempfile::NamedTempFile], q: &str) -> Vec<String> {
        let query = Query::parse(q).unwrap();
        let mut found = Vec::new();
        for f in files {
            search_file(f.as_file(), &query, &mut found).unwrap();
        }
        order(&mut found, &query);
        found.into_iter().map(|c| c.line).collect()
    }

    #[test]
    fn binary_search_finds_every_key_in_files_of_any_size() {
        for n in [0usize, 1, 2, 3, 7, 100, 1000] {
            let lines: Vec<String> = (0..n)
                .map(|i| line(&format!("com,a)/{i:05}"), "20260101000000", "u", "f"))
                .collect();
            let f = file_with(&lines);
            for i in [0, n / 2, n.saturating_sub(1)] {
                if n == 0 {
                    break;
                }
                let got = run(&[&f], &format!("url=a.com/{i:05}"));
                assert_eq!(got.len(), 1, "n={n} i={i}");
                assert!(got[0].starts_with(&format!("com,a)/{i:05} ")));
            }
            assert!(run(&[&f], "url=a.com/zzz").is_empty());
        }
    }

    #[test]
    fn match_types_time_bounds_sorts_and_limits() {
        let a = file_with(&[
            line(
                "com,example)/",
                "20260101000000",
                "http://example.com/",
                "a",
            ),
            line(
                "com,example)/page",
                "20260102000000",
                "http://example.com/page",
                "a",
            ),
            line(
                "com,example,www)/",
                "20260103000000",
                "http://www.example.com/",
                "a",
            ),
            line(
                "com,examples)/",
                "20260104000000",
                "http://examples.com/",
                "a",
            ),
        ]);
        let b = file_with(&[
            line(
                "com,example)/page",
                "20260105000000",
                "http://example.com/page",
                "b",
            ),
            line(
                "com,example)/pagex",
                "20260106000000",
                "http://example.com/pagex",
                "b",
            ),
        ]);
        let urls = |q: &str| -> Vec<String> {
            run(&[&a, &b], q)
                .iter()
                .map(|l| {
                    let f: Vec<&str> = l.split(' ').collect();
                    format!("{}@{}", f[2], &f[1][6..8])
                })
                .collect()
        };
        assert_eq!(
            urls("url=http://example.com/page"),
            ["http://example.com/page@02", "http://example.com/page@05"]
        );
        assert_eq!(
            urls("url=example.com/page&matchType=prefix").len(),
            3,
            "page and pagex"
        );
        assert_eq!(urls("url=example.com/page*").len(), 3);
        assert_eq!(urls("url=example.com&matchType=host").len(), 4);
        assert_eq!(
            urls("url=example.com&matchType=domain").len(),
            5,
            "www too, not examples.com"
        );
        assert_eq!(urls("url=*.example.com").len(), 5);
        assert_eq!(
            urls("url=example.com/page&from=20260103&to=2026010523"),
            ["http://example.com/page@05"]
        );
        assert_eq!(
            urls("url=example.com/page&sort=reverse&limit=1"),
            ["http://example.com/page@05"]
        );
        assert_eq!(
            urls("url=example.com/page&closest=20260101&sort=closest&limit=1"),
            ["http://example.com/page@02"]
        );
        assert_eq!(urls("url=example.com&matchType=domain&limit=2").len(), 2);
    }

    #[test]
    fn a_record_found_open_and_sealed_is_listed_once() {
        let open = line(
            "com,a)/",
            "20260101000000",
            "http://a.com/",
            "../0/F.warc.gz.open",
        );
        let sealed = line("com,a)/", "20260101000000", "http://a.com/", "F.warc.gz");
        let other = line("com,a)/", "20260101000000", "http://a.com/", "G.warc.gz");
        let query = Query::parse("url=a.com").unwrap();
        let mut found: Vec<CdxLine> = [&open, &sealed, &other]
            .iter()
            .map(|l| CdxLine {
                line: l.to_string(),
            })
            .collect();
        order(&mut found, &query);
        assert_eq!(found.len(), 2, "{found:?}");
    }

    #[test]
    fn bad_queries_are_refused_in_words() {
        for (q, says) in [
            ("", "url is required"),
            ("url=a&matchType=fuzzy", "matchType"),
            ("url=a&from=2026x", "from"),
            ("url=a&limit=-1", "limit"),
            ("url=a&sort=random", "sort"),
            ("url=a&sort=closest", "closest=TIMESTAMP"),
            ("url=a&output=xml", "output"),
        ] {
            let e = Query::parse(q).unwrap_err();
            assert!(e.contains(says), "{q}: {e}");
        }
    }

    #[test]
    fn answers_render_as_cdxj_or_json_lines() {
        let c = CdxLine {
            line: line("com,a)/", "20260101000000", "http://a.com/", "f.warc.gz"),
        };
        let cdxj = render(std::slice::from_ref(&c), Output::Cdxj);
        assert_eq!(
            cdxj,
            "com,a)/ 20260101000000 {\"digest\":\"DIGEST\",\"filename\":\"f.warc.gz\",\"length\":\"100\",\"mime\":\"text/html\",\"offset\":\"0\",\"status\":\"200\",\"url\":\"http://a.com/\"}\n"
        );
        let json = render(&[c], Output::Json);
        let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
        assert_eq!(v["urlkey"], "com,a)/");
        assert_eq!(v["timestamp"], "20260101000000");
        assert_eq!(v["filename"], "f.warc.gz");
    }
}
