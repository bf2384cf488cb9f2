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

mod google;
mod ia;

use google::google_canonicalize;
use ia::ia_canonicalize;

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
