//! Absolute-form request targets: parse `http://host[:port]/path?query`, and normalize to
//! the index key (scheme and host lowercased, default port dropped, fragment dropped).

use crate::error::Error;

/// URL schemes liveweb knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// A parsed absolute URL, ready to fetch and to key the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetUrl {
    pub scheme: Scheme,
    /// Lowercased host; an IPv6 literal keeps its brackets, as in a Host header.
    pub host: String,
    pub port: u16,
    /// Path and query, never empty (`/` at least), no fragment.
    pub path_and_query: String,
    /// `scheme://host[:port]path?query`: the index key and the URL written in ARC records.
    pub normalized: String,
}

impl TargetUrl {
    /// The Host header value: the port only when it is not the scheme's default.
    pub fn host_header(&self) -> String {
        if self.port == self.scheme.default_port() {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The host without IPv6 brackets, for name resolution.
    pub fn host_for_dns(&self) -> &str {
        unbracketed(&self.host)
    }
}

/// A host as name resolution wants it: an IPv6 literal without its brackets.
pub fn unbracketed(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// Parses an absolute-form target. `https` parses (so the caller can answer 501 precisely);
/// any other scheme is `UnsupportedScheme`.
pub fn parse_absolute(target: &str) -> Result<TargetUrl, Error> {
    let (scheme_str, rest) = target
        .split_once("://")
        .ok_or(Error::InvalidUrl("missing scheme://"))?;
    let scheme = if scheme_str.eq_ignore_ascii_case("http") {
        Scheme::Http
    } else if scheme_str.eq_ignore_ascii_case("https") {
        Scheme::Https
    } else if !scheme_str.is_empty()
        && scheme_str
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    {
        return Err(Error::UnsupportedScheme);
    } else {
        return Err(Error::InvalidUrl("bad scheme"));
    };

    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    if authority.contains('@') {
        return Err(Error::InvalidUrl("user info in URL is not allowed"));
    }
    let (host, port) = split_host_port(authority, scheme.default_port())?;

    let without_fragment = match tail.find('#') {
        Some(i) => &tail[..i],
        None => tail,
    };
    if without_fragment.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(Error::InvalidUrl("control or space character in path"));
    }
    let path_and_query = if without_fragment.starts_with('/') {
        without_fragment.to_string()
    } else {
        format!("/{without_fragment}")
    };

    let mut normalized = String::with_capacity(target.len());
    normalized.push_str(scheme.as_str());
    normalized.push_str("://");
    normalized.push_str(&host);
    if port != scheme.default_port() {
        normalized.push(':');
        normalized.push_str(&port.to_string());
    }
    normalized.push_str(&path_and_query);

    Ok(TargetUrl {
        scheme,
        host,
        port,
        path_and_query,
        normalized,
    })
}

/// Parses a CONNECT target, `host:port` or `[v6]:port`; the port is required.
pub fn parse_authority(target: &str) -> Result<(String, u16), Error> {
    if target.contains(['/', '?', '#', '@']) {
        return Err(Error::InvalidUrl("CONNECT needs host:port"));
    }
    match split_host_port(target, 0)? {
        (_, 0) => Err(Error::InvalidUrl("CONNECT needs host:port")),
        found => Ok(found),
    }
}

fn split_host_port(authority: &str, default_port: u16) -> Result<(String, u16), Error> {
    let (host, port_str) = if let Some(after) = authority.strip_prefix('[') {
        let close = after
            .find(']')
            .ok_or(Error::InvalidUrl("unclosed IPv6 literal"))?;
        let literal = &after[..close];
        if literal.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(Error::InvalidUrl("bad IPv6 literal"));
        }
        let rest = &after[close + 1..];
        let port = match rest.strip_prefix(':') {
            Some(p) => Some(p),
            None if rest.is_empty() => None,
            None => return Err(Error::InvalidUrl("junk after IPv6 literal")),
        };
        (format!("[{}]", literal.to_ascii_lowercase()), port)
    } else {
        let (h, p) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        };
        let valid = !h.is_empty()
            && h.len() <= 253
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
        if !valid {
            return Err(Error::InvalidUrl("bad host"));
        }
        (h.to_ascii_lowercase(), p)
    };
    let port = match port_str {
        None | Some("") => default_port,
        // `u16::from_str` would accept a leading '+'; a port is digits only.
        Some(p) if p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or(Error::InvalidUrl("bad port"))?,
        Some(_) => return Err(Error::InvalidUrl("bad port")),
    };
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        parse_absolute(s).expect(s).normalized
    }

    #[test]
    fn normalizes_scheme_host_port_fragment() {
        assert_eq!(
            norm("HTTP://Example.COM/a/B?q=1#frag"),
            "http://example.com/a/B?q=1"
        );
        assert_eq!(norm("http://example.com:80/"), "http://example.com/");
        assert_eq!(norm("http://example.com:8080"), "http://example.com:8080/");
        assert_eq!(norm("http://example.com?x"), "http://example.com/?x");
        assert_eq!(norm("http://example.com:/p"), "http://example.com/p");
        assert_eq!(norm("http://[::1]:8080/x"), "http://[::1]:8080/x");
        assert_eq!(norm("http://[FE80::1]/"), "http://[fe80::1]/");
    }

    #[test]
    fn unbracketed_hosts() {
        assert_eq!(unbracketed("[::1]"), "::1");
        assert_eq!(unbracketed("example.com"), "example.com");
        assert_eq!(unbracketed("[::1"), "[::1");
    }

    #[test]
    fn parts() {
        let u = parse_absolute("http://a.b:81/x?y").unwrap();
        assert_eq!(u.host, "a.b");
        assert_eq!(u.port, 81);
        assert_eq!(u.path_and_query, "/x?y");
        assert_eq!(u.host_header(), "a.b:81");
        let v6 = parse_absolute("http://[::1]/").unwrap();
        assert_eq!(v6.host_for_dns(), "::1");
        assert_eq!(v6.host_header(), "[::1]");
        assert_eq!(parse_absolute("https://x/").unwrap().scheme, Scheme::Https);
    }

    #[test]
    fn connect_authorities() {
        assert_eq!(
            parse_authority("Example.com:443"),
            Ok(("example.com".into(), 443))
        );
        assert_eq!(parse_authority("[::1]:8443"), Ok(("[::1]".into(), 8443)));
        assert!(parse_authority("example.com").is_err());
        assert!(parse_authority("example.com:").is_err());
        assert!(parse_authority("a/b:443").is_err());
    }

    #[test]
    fn rejects() {
        assert_eq!(parse_absolute("ftp://x/"), Err(Error::UnsupportedScheme));
        for bad in [
            "/relative",
            "http://",
            "http:///path",
            "http://user@host/",
            "http://host:0/",
            "http://host:65536/",
            "http://host:+80/",
            "http://host:8a/",
            "http://ho st/",
            "http://[::1/",
            "http://[zz]/",
            "http://[::1]x/",
            "://host/",
        ] {
            assert!(
                matches!(parse_absolute(bad), Err(Error::InvalidUrl(_))),
                "{bad} must be an invalid URL"
            );
        }
    }
}
