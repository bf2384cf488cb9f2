//! The CDX lookup key of a URL (SURT form), byte for byte what pywb and OpenWayback compute:
//! the canonicalisation of archive-commons' `WaybackURLKeyMaker` as the Python `surt` package
//! implements it (Google's canonicaliser, then the Internet Archive's), so replay tools
//! pointed at liveweb's CDX files find what they look up.
//!
//! The steps follow that implementation, quirks included (a `sid=` value of exactly 32
//! characters is dropped from any argument whose name ends in `sid`; a dotted host of four
//! numbers in octal becomes its decimal address; IPv6 literals lose their brackets): a key
//! that is "more correct" than the reference is a key replay tools miss. `tests/surt.rs`
//! compares this module with the Python package over thousands of URLs.

use std::sync::OnceLock;

use percent_encoding::{percent_decode, percent_encode, AsciiSet, CONTROLS};
use regex_lite::Regex;

/// Bytes `escape_once` leaves alone: Python's `quote` with the reference's `safe` list,
/// which keeps every printable ASCII byte except space, `#` and `%`.
const ESCAPED: &AsciiSet = &CONTROLS.add(b' ').add(b'#').add(b'%');

/// The SURT key of `url`: host labels reversed and comma-joined (`com,example)`), the port
/// when it is not the scheme's default, then the canonical path and query (lowercased,
/// percent-escapes normalised, dot segments resolved, session ids dropped, query arguments
/// sorted). The scheme is not part of the key: `http` and `https` share it.
pub fn surt(url: &str) -> String {
    if url.is_empty() {
        return "-".into();
    }
    if url.starts_with("filedesc") {
        return url.into();
    }
    let mut u = Parsed::parse(url.as_bytes());
    google_canonicalize(&mut u);
    ia_canonicalize(&mut u);
    String::from_utf8_lossy(&u.key()).into_owned()
}

/// A URL split as the reference's `handyurl` splits it.
#[derive(Debug, Default)]
struct Parsed {
    scheme: Vec<u8>,
    host: Option<Vec<u8>>,
    port: Option<u32>,
    path: Option<Vec<u8>>,
    query: Option<Vec<u8>>,
}

impl Parsed {
    fn parse(url: &[u8]) -> Parsed {
        // Surrounding whitespace goes, and tabs and line breaks anywhere.
        // Python's `bytes.strip`: space and \t \n \x0b \x0c \r.
        let is_space = |b: &u8| matches!(b, b' ' | b'\t'..=b'\r');
        let start = url.iter().position(|b| !is_space(b)).unwrap_or(url.len());
        let end = url
            .iter()
            .rposition(|b| !is_space(b))
            .map_or(start, |i| i + 1);
        let trimmed = &url[start..end];
        let mut url: Vec<u8> = trimmed
            .iter()
            .copied()
            .filter(|b| !matches!(b, b'\n' | b'\r' | b'\t'))
            .collect();
        if !has_scheme(&url) {
            url.splice(0..0, b"http://".iter().copied());
        }
        // `http://https://host/`: the last of repeated scheme prefixes is the URL's.
        while let Some(first) = http_prefix(&url) {
            if http_prefix(&url[first..]).is_none() {
                break;
            }
            url.drain(..first);
        }
        let split = split_url(&url);
        let mut netloc = split.netloc;
        while let Some(rest) = netloc.strip_suffix(b":") {
            netloc = rest;
        }
        let (hostname, port) = host_info(netloc);
        let mut host = hostname.filter(|h| !h.is_empty()).map(lower_host);
        let mut path = nonempty(split.path);
        // `http:////host/path`: the host was taken for a path.
        if split.scheme.starts_with(b"http") && host.is_none() {
            if let Some(p) = &path {
                let stripped = p.trim_ascii_start_matches(b'/');
                let (h, rest) = match stripped.iter().position(|&b| b == b'/') {
                    Some(i) => (&stripped[..i], &stripped[i + 1..]),
                    None => (stripped, &b""[..]),
                };
                host = Some(h.to_vec());
                let mut new_path = vec![b'/'];
                new_path.extend_from_slice(rest);
                path = Some(new_path);
            }
        }
        Parsed {
            scheme: split.scheme.to_vec(),
            host,
            port: port.filter(|&p| p != 0),
            path,
            query: nonempty(split.query),
        }
    }

    /// The key itself (the reference's `geturl` with `surt=True, with_scheme=False`).
    fn key(&self) -> Vec<u8> {
        let mut s = Vec::with_capacity(64);
        match self.host.as_deref().filter(|h| !h.is_empty()) {
            Some(host) => {
                for (i, label) in host.split(|&b| b == b'.').rev().enumerate() {
                    if i > 0 {
                        s.push(b',');
                    }
                    s.extend_from_slice(label);
                }
                if let Some(port) = self.port {
                    s.extend_from_slice(format!(":{port}").as_bytes());
                }
                s.push(b')');
            }
            None => {
                s.extend_from_slice(&self.scheme);
                s.push(b':');
            }
        }
        match self.path.as_deref().filter(|p| !p.is_empty()) {
            Some(path) => s.extend_from_slice(path),
            None if self.query.is_some() => s.push(b'/'),
            None => {}
        }
        if let Some(q) = &self.query {
            s.push(b'?');
            s.extend_from_slice(q);
        }
        s
    }
}

fn nonempty(part: &[u8]) -> Option<Vec<u8>> {
    (!part.is_empty()).then(|| part.to_vec())
}

trait TrimMatches {
    fn trim_ascii_start_matches(&self, b: u8) -> &[u8];
}

impl TrimMatches for [u8] {
    fn trim_ascii_start_matches(&self, b: u8) -> &[u8] {
        let start = self.iter().position(|&c| c != b).unwrap_or(self.len());
        &self[start..]
    }
}

/// `[a-zA-Z][a-zA-Z0-9+.-]*:` at the start.
fn has_scheme(url: &[u8]) -> bool {
    let Some((&first, rest)) = url.split_first() else {
        return false;
    };
    if !first.is_ascii_alphabetic() {
        return false;
    }
    for &b in rest {
        if b == b':' {
            return true;
        }
        if !(b.is_ascii_alphanumeric() || b"+-.".contains(&b)) {
            return false;
        }
    }
    false
}

/// The length of a leading `http://` or `https://` (case as written).
fn http_prefix(url: &[u8]) -> Option<usize> {
    if url.starts_with(b"http://") {
        Some(7)
    } else if url.starts_with(b"https://") {
        Some(8)
    } else {
        None
    }
}

struct Split<'a> {
    scheme: &'a [u8],
    netloc: &'a [u8],
    path: &'a [u8],
    query: &'a [u8],
}

/// RFC 2396 appendix B's split (scheme limited to legal scheme characters).
fn split_url(url: &[u8]) -> Split<'_> {
    let (scheme, mut rest) = match url.iter().position(|&b| b == b':') {
        Some(i) if has_scheme(url) => (&url[..i], &url[i + 1..]),
        _ => (&b""[..], url),
    };
    // The fragment, then the query, are cut from the end of what follows the scheme.
    if let Some(i) = rest.iter().position(|&b| b == b'#') {
        rest = &rest[..i];
    }
    let mut netloc = &b""[..];
    if let Some(after) = rest.strip_prefix(b"//") {
        let end = after
            .iter()
            .position(|&b| matches!(b, b'/' | b'?'))
            .unwrap_or(after.len());
        netloc = &after[..end];
        rest = &after[end..];
    }
    let (path, query) = match rest.iter().position(|&b| b == b'?') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &b""[..]),
    };
    Split {
        scheme,
        netloc,
        path,
        query,
    }
}

/// Host and port as Python's `urllib` reads a netloc: user info dropped, brackets of an IPv6
/// literal removed, the port the digits after the first `:` (an unreadable port is none).
fn host_info(netloc: &[u8]) -> (Option<&[u8]>, Option<u32>) {
    let hostinfo = match netloc.iter().rposition(|&b| b == b'@') {
        Some(i) => &netloc[i + 1..],
        None => netloc,
    };
    let (hostname, port) = match hostinfo.iter().position(|&b| b == b'[') {
        Some(open) => {
            let bracketed = &hostinfo[open + 1..];
            match bracketed.iter().position(|&b| b == b']') {
                Some(close) => {
                    let after = &bracketed[close + 1..];
                    let port = match after.iter().position(|&b| b == b':') {
                        Some(i) => &after[i + 1..],
                        None => &b""[..],
                    };
                    (&bracketed[..close], port)
                }
                None => (bracketed, &b""[..]),
            }
        }
        None => match hostinfo.iter().position(|&b| b == b':') {
            Some(i) => (&hostinfo[..i], &hostinfo[i + 1..]),
            None => (hostinfo, &b""[..]),
        },
    };
    let port = match port {
        p if p.is_empty() || !p.iter().all(u8::is_ascii_digit) => None,
        p => std::str::from_utf8(p)
            .ok()
            .and_then(|p| p.parse::<u32>().ok())
            .filter(|&p| p <= 65535),
    };
    (Some(hostname), port)
}

/// Lowercase, except an IPv6 zone after `%`.
fn lower_host(host: &[u8]) -> Vec<u8> {
    let zone = host.iter().position(|&b| b == b'%').unwrap_or(host.len());
    let mut out = host[..zone].to_ascii_lowercase();
    out.extend_from_slice(&host[zone..]);
    out
}

/// Decodes percent-escapes until nothing changes (`%2541` becomes `A`).
fn unescape_repeatedly(input: &[u8]) -> Vec<u8> {
    let mut current = input.to_vec();
    loop {
        let next: Vec<u8> = percent_decode(&current).collect();
        if next == current {
            return current;
        }
        current = next;
    }
}

fn escape_once(input: &[u8]) -> Vec<u8> {
    percent_encode(input, ESCAPED).to_string().into_bytes()
}

fn minimal_escape(input: &[u8]) -> Vec<u8> {
    escape_once(&unescape_repeatedly(input))
}

/// Google's canonicaliser (the first half).
fn google_canonicalize(u: &mut Parsed) {
    if let Some(q) = u.query.as_deref().filter(|q| !q.is_empty()) {
        u.query = Some(minimal_escape(q));
    }
    if let Some(h) = u.host.as_deref().filter(|h| !h.is_empty()) {
        let unescaped = unescape_repeatedly(h);
        let collapsed = replace_double_dots(&unescaped);
        let trimmed = trim_dots(&collapsed);
        u.host = Some(match ip_formats(trimmed) {
            Some(ip) => ip.into_bytes(),
            None => escape_once(&trimmed.to_ascii_lowercase()),
        });
    }
    let path = u.path.as_deref().map(unescape_repeatedly);
    let path = if u.host.as_deref().is_some_and(|h| !h.is_empty()) {
        Some(normalize_path(path.as_deref()))
    } else {
        path
    };
    u.path = path.map(|p| escape_once(&p));
}

/// `..` becomes `.` once, left to right (Python's `replace`: `a...b` stays `a..b`).
fn replace_double_dots(host: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(host.len());
    let mut i = 0;
    while i < host.len() {
        if host[i..].starts_with(b"..") {
            out.push(b'.');
            i += 2;
        } else {
            out.push(host[i]);
            i += 1;
        }
    }
    out
}

fn trim_dots(host: &[u8]) -> &[u8] {
    let start = host.iter().position(|&b| b != b'.').unwrap_or(host.len());
    let end = host
        .iter()
        .rposition(|&b| b != b'.')
        .map_or(start, |i| i + 1);
    &host[start..end]
}

/// A host written as a number, or as dotted numbers the C resolver reads as an IPv4 address
/// (`inet_aton`: `127.1`, octal `0177.0.0.1`), becomes the dotted-quad address.
fn ip_formats(host: &[u8]) -> Option<String> {
    if host.is_empty() {
        return None;
    }
    if host.iter().all(u8::is_ascii_digit) {
        // Only the low four bytes of the number count.
        let value = host.iter().fold(0u32, |v, &d| {
            v.wrapping_mul(10).wrapping_add(u32::from(d - b'0'))
        });
        return Some(std::net::Ipv4Addr::from(value).to_string());
    }
    if !(decimal_ip(host) || octal_ip(host)) {
        return None;
    }
    inet_aton(host).map(|a| a.to_string())
}

/// `^[1-9][0-9]*(\.[0-9]+){0,3}$`
fn decimal_ip(host: &[u8]) -> bool {
    dotted(host, |first| {
        first[0] != b'0' && first.iter().all(u8::is_ascii_digit)
    }) && host.iter().all(|&b| b == b'.' || b.is_ascii_digit())
}

/// `^0[0-7]*(\.[0-7]+){0,3}$`
fn octal_ip(host: &[u8]) -> bool {
    dotted(host, |first| first[0] == b'0')
        && host
            .iter()
            .all(|&b| b == b'.' || (b'0'..=b'7').contains(&b))
}

/// One to four non-empty parts separated by dots, the first passing `first`.
fn dotted(host: &[u8], first: impl Fn(&[u8]) -> bool) -> bool {
    let parts: Vec<&[u8]> = host.split(|&b| b == b'.').collect();
    parts.len() <= 4 && parts.iter().all(|p| !p.is_empty()) && first(parts[0])
}

/// glibc's `inet_aton`: parts in C notation (leading `0` octal, `0x` hex), the last part
/// filling the bytes the others left.
fn inet_aton(text: &[u8]) -> Option<std::net::Ipv4Addr> {
    let parts: Vec<&[u8]> = text.split(|&b| b == b'.').collect();
    if parts.len() > 4 {
        return None;
    }
    let mut values = Vec::with_capacity(4);
    for part in &parts {
        let (digits, radix) = match part {
            [b'0', b'x' | b'X', rest @ ..] => (rest, 16),
            [b'0', rest @ ..] if !rest.is_empty() => (rest, 8),
            _ => (*part, 10),
        };
        let digits = std::str::from_utf8(digits).ok()?;
        values.push(u64::from_str_radix(digits, radix).ok()?);
    }
    let (last, leading) = values.split_last()?;
    if leading.iter().any(|&v| v > 0xff) {
        return None;
    }
    let room = 8 * (4 - leading.len() as u32);
    if room < 64 && *last >= 1u64 << room {
        return None;
    }
    let mut address = *last as u32;
    for (i, &v) in leading.iter().enumerate() {
        address |= (v as u32) << (24 - 8 * i as u32);
    }
    Some(address.into())
}

/// Resolves `.` and `..` segments and drops empty ones (a trailing `/` stays).
fn normalize_path(path: Option<&[u8]>) -> Vec<u8> {
    let Some(path) = path.filter(|p| !p.is_empty()) else {
        return b"/".to_vec();
    };
    let mut kept: Vec<&[u8]> = Vec::new();
    // The part before the first `/` is dropped, as the reference does.
    for segment in path.split(|&b| b == b'/').skip(1) {
        match segment {
            b"." => {}
            b".." => {
                if kept.pop().is_none() {
                    kept.push(segment);
                }
            }
            _ => kept.push(segment),
        }
    }
    let mut out = vec![b'/'];
    if let Some((last, leading)) = kept.split_last() {
        for segment in leading.iter().filter(|s| !s.is_empty()) {
            out.extend_from_slice(segment);
            out.push(b'/');
        }
        out.extend_from_slice(last);
    }
    out
}

/// The Internet Archive's canonicaliser (the second half).
fn ia_canonicalize(u: &mut Parsed) {
    if let Some(h) = u.host.as_mut().filter(|h| !h.is_empty()) {
        h.make_ascii_lowercase();
        if u.scheme != b"dns" {
            strip_www(h);
        }
    }
    let default_port = match u.scheme.to_ascii_lowercase().as_slice() {
        b"http" => Some(80),
        b"https" => Some(443),
        _ => None,
    };
    if !u.scheme.is_empty() && u.port.is_some() && u.port == default_port {
        u.port = None;
    }
    if let Some(p) = u.path.as_mut().filter(|p| !p.is_empty()) {
        p.make_ascii_lowercase();
        strip_path_session_id(p);
        if p.len() > 1 && p.ends_with(b"/") {
            p.pop();
        }
    }
    if let Some(q) = u.query.take().filter(|q| !q.is_empty()) {
        let mut q = strip_query_session_ids(&q);
        q.make_ascii_lowercase();
        let q = alpha_reorder(&q);
        u.query = (!q.is_empty()).then_some(q);
    }
}

/// `www.`, `www2.`, `www10.` ... at the start.
fn strip_www(host: &mut Vec<u8>) {
    if let Some(rest) = host.strip_prefix(b"www") {
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if rest.get(digits) == Some(&b'.') {
            host.drain(..3 + digits + 1);
        }
    }
}

/// The reference's session-id patterns; `regex_lite` picks the same match a backtracking
/// engine (Python's `re`) does, greedy groups included. Each comes with a literal it cannot
/// match without (lowercase; the text is compared case-insensitively): most URLs hold none,
/// and looking for it costs far less than running the pattern.
fn path_session_patterns() -> &'static [(&'static [u8], Regex)] {
    static P: OnceLock<Vec<(&'static [u8], Regex)>> = OnceLock::new();
    P.get_or_init(|| {
        compile(&[
            (
                b".aspx",
                r"(?i)^(.*/)(\((?:[a-z]\([0-9a-z]{24}\))+\)/)([^\?]+\.aspx.*)$",
            ),
            (b".aspx", r"(?i)^(.*/)(\([0-9a-z]{24}\)/)([^\?]+\.aspx.*)$"),
        ])
    })
}

fn query_session_patterns() -> &'static [(&'static [u8], Regex)] {
    static P: OnceLock<Vec<(&'static [u8], Regex)>> = OnceLock::new();
    P.get_or_init(|| {
        compile(&[
            (
                b"jsessionid=",
                r"(?i)^(.*)(?:jsessionid=[0-9a-zA-Z]{32})(?:&(.*))?$",
            ),
            (
                b"phpsessid=",
                r"(?i)^(.*)(?:phpsessid=[0-9a-zA-Z]{32})(?:&(.*))?$",
            ),
            (b"sid=", r"(?i)^(.*)(?:sid=[0-9a-zA-Z]{32})(?:&(.*))?$"),
            (
                b"aspsessionid",
                r"(?i)^(.*)(?:ASPSESSIONID[a-zA-Z]{8}=[a-zA-Z]{24})(?:&(.*))?$",
            ),
            (
                b"&cftoken=",
                r"(?i)^(.*)(?:cfid=[^&]+&cftoken=[^&]+)(?:&(.*))?$",
            ),
        ])
    })
}

/// The patterns are constants checked by the unit tests; one that failed to compile would
/// simply never match.
fn compile(patterns: &[(&'static [u8], &str)]) -> Vec<(&'static [u8], Regex)> {
    patterns
        .iter()
        .filter_map(|&(literal, p)| Some((literal, Regex::new(p).ok()?)))
        .collect()
}

/// Whether `text` holds `literal` (lowercase), ignoring ASCII case.
fn contains_ignoring_case(text: &[u8], literal: &[u8]) -> bool {
    text.windows(literal.len())
        .any(|w| w.eq_ignore_ascii_case(literal))
}

/// Path and query are escaped ASCII by now; anything else is left as it is.
fn strip_path_session_id(path: &mut Vec<u8>) {
    for (literal, pattern) in path_session_patterns() {
        if !contains_ignoring_case(path, literal) {
            continue;
        }
        let Ok(text) = std::str::from_utf8(path) else {
            return;
        };
        if let Some(c) = pattern.captures(text) {
            let kept = [c.get(1), c.get(3)]
                .iter()
                .flatten()
                .map(|m| m.as_str())
                .collect::<String>();
            *path = kept.into_bytes();
        }
    }
}

fn strip_query_session_ids(query: &[u8]) -> Vec<u8> {
    let mut query = query.to_vec();
    for (literal, pattern) in query_session_patterns() {
        if !contains_ignoring_case(&query, literal) {
            continue;
        }
        let Ok(text) = std::str::from_utf8(&query) else {
            break;
        };
        if let Some(c) = pattern.captures(text) {
            let mut kept = c.get(1).map_or("", |m| m.as_str()).to_string();
            if let Some(rest) = c.get(2).filter(|m| !m.is_empty()) {
                kept.push_str(rest.as_str());
            }
            query = kept.into_bytes();
        }
    }
    query
}

/// Query arguments sorted by name, then value (`a` before `a=`), joined by `&` again; empty
/// arguments sort first and stay.
fn alpha_reorder(query: &[u8]) -> Vec<u8> {
    if query.len() <= 1 {
        return query.to_vec();
    }
    let mut args: Vec<(&[u8], Option<&[u8]>)> = query
        .split(|&b| b == b'&')
        .map(|arg| match arg.iter().position(|&b| b == b'=') {
            Some(i) => (&arg[..i], Some(&arg[i + 1..])),
            None => (arg, None),
        })
        .collect();
    args.sort();
    let mut out = Vec::with_capacity(query.len());
    for (i, (name, value)) in args.iter().enumerate() {
        if i > 0 {
            out.push(b'&');
        }
        out.extend_from_slice(name);
        if let Some(v) = value {
            out.push(b'=');
            out.extend_from_slice(v);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_patterns_compile() {
        assert_eq!(path_session_patterns().len(), 2);
        assert_eq!(query_session_patterns().len(), 5);
    }

    #[test]
    fn keys_of_the_issue_examples() {
        let cases = [
            (
                "http://127.0.0.1:19310/index.html",
                "1,0,0,127:19310)/index.html",
            ),
            ("http://example.com/dir/", "com,example)/dir"),
            (
                "http://example.com/a%7Eb/c%2fd?x=%41",
                "com,example)/a~b/c/d?x=a",
            ),
            ("http://example.com/a/./b/../c", "com,example)/a/c"),
            (
                "http://example.com//double//slash",
                "com,example)/double/slash",
            ),
            ("http://www2.example.com/", "com,example)/"),
            ("http://example.com/?a=1&&b=2", "com,example)/?&a=1&b=2"),
            ("http://example.com./x", "com,example)/x"),
            (
                "http://www.Example.com/Path?b=2&a=1",
                "com,example)/path?a=1&b=2",
            ),
            ("https://example.com:443/", "com,example)/"),
            ("https://example.com:80/", "com,example:80)/"),
            ("http://[::1]:81/", "::1:81)/"),
            ("http://example.com", "com,example)/"),
            ("http://2130706433/", "1,0,0,127)/"),
            ("http://0177.0.0.1/", "1,0,0,127)/"),
            ("http://127.1/", "1,0,0,127)/"),
            (
                "http://example.com/?PHPSESSID=0123456789abcdef0123456789abcdef&x=1",
                "com,example)/?x=1",
            ),
            ("http://example.com/a%20b#frag", "com,example)/a%20b"),
        ];
        for (url, key) in cases {
            assert_eq!(surt(url), key, "{url}");
        }
    }

    #[test]
    fn inet_aton_reads_c_notation() {
        let ip = |s: &str| inet_aton(s.as_bytes()).map(|a| a.to_string());
        assert_eq!(ip("1.2.3").as_deref(), Some("1.2.0.3"));
        assert_eq!(ip("1.010").as_deref(), Some("1.0.0.8"));
        assert_eq!(ip("1.09"), None);
        assert_eq!(ip("256.1.1.1"), None);
        assert_eq!(ip("1.2.65535").as_deref(), Some("1.2.255.255"));
        assert_eq!(ip("1.2.65536"), None);
    }
}
