//! Google's canonicaliser, the first half of the SURT key: query and path minimally
//! percent-escaped, the host unescaped, its dots tidied and a numeric host read as the C
//! resolver reads it, dot segments of the path resolved.

use percent_encoding::{percent_decode, percent_encode, AsciiSet, CONTROLS};

use super::Parsed;

/// Bytes `escape_once` leaves alone: Python's `quote` with the reference's `safe` list,
/// which keeps every printable ASCII byte except space, `#` and `%`.
const ESCAPED: &AsciiSet = &CONTROLS.add(b' ').add(b'#').add(b'%');

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
pub(super) fn google_canonicalize(u: &mut Parsed) {
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

#[cfg(test)]
mod tests {
    use super::*;

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
