//! The Internet Archive's canonicaliser, the second half of the SURT key: `www.` and default
//! ports dropped, path and query lowercased, session ids stripped, query arguments sorted.

use std::sync::OnceLock;

use regex_lite::Regex;

use super::Parsed;

/// The Internet Archive's canonicaliser (the second half).
pub(super) fn ia_canonicalize(u: &mut Parsed) {
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
}
