//! The one error type: what went wrong, which side it came from, its liveweb code and its
//! HTTP status. This is the only place that maps failures to statuses.

use std::fmt;

/// Where a failure came from; decides who is told and how it is logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client sent something we cannot serve.
    Client,
    /// The origin (or the way to it) failed.
    Upstream,
    /// Our own disk failed.
    Storage,
    /// A bug or an impossible state inside liveweb.
    Internal,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Upstream => "upstream",
            Side::Storage => "storage",
            Side::Internal => "internal",
        }
    }
}

/// Every failure liveweb reports. `detail` strings are for the log and the error body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    #[error("absolute URL required")]
    AbsoluteUrlRequired,
    #[error("invalid URL: {0}")]
    InvalidUrl(&'static str),
    #[error("unsupported URL scheme")]
    UnsupportedScheme,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("bad Warcprox-Meta header: {0}")]
    BadWarcproxMeta(String),
    /// A `/_liveweb/cdx` query that cannot be answered as asked.
    #[error("bad CDX query: {0}")]
    BadCdxQuery(String),
    /// A rule of the request's `Warcprox-Meta` blocks the URL (the rule, as JSON).
    #[error("request rejected: blocked by rule found in Warcprox-Meta header: {0}")]
    BlockedByRule(String),
    /// A limit of the request's `Warcprox-Meta` is reached (420, or 430 for a soft one).
    #[error("request rejected: reached {} {}={}", if .0.soft { "soft limit" } else { "limit" }, .0.key, .0.limit)]
    ReachedLimit(Box<crate::crawl_stats::Reached>),
    #[error("WARCPROX_WRITE_RECORD needs {0}")]
    WriteRecordNeeds(&'static str),
    #[error(
        "WARCPROX_WRITE_RECORD writes WARC records only (this liveweb writes ARC: --format warc)"
    )]
    WriteRecordNeedsWarc,
    #[error("CONNECT tunnels need forward mode (--mode forward, or X-Liveweb-Mode: forward)")]
    TunnelNeedsForward,
    #[error("request body too large")]
    RequestBodyTooLarge,
    #[error("URI too long")]
    UriTooLong,
    #[error("request header fields too large")]
    HeadTooLarge,
    #[error("not implemented: {0}")]
    NotImplemented(&'static str),
    #[error("not cached (only-if-cached)")]
    NotCached,
    #[error("client address not allowed")]
    ClientNotAllowed,
    #[error("admin endpoints are not allowed from this address")]
    AdminNotAllowed,
    #[error("proxy authentication required")]
    ProxyAuthRequired,
    #[error("request head not received in time")]
    RequestTimeout,
    #[error("too many connections")]
    TooManyConnections,
    #[error("overloaded: {0}")]
    Overloaded(&'static str),
    #[error("busy: {why}; retry in {retry_after} s")]
    Busy { why: &'static str, retry_after: u32 },
    #[error("CONNECT to port {0} is not allowed (see --connect-ports)")]
    ConnectPortNotAllowed(u16),
    #[error("upstream address not allowed: {0} (see --allow-upstream)")]
    AddressNotAllowed(String),
    #[error("loop detected: {0}")]
    LoopDetected(String),
    #[error("DNS failure: {0}")]
    Dns(String),
    #[error("DNS timeout")]
    DnsTimeout,
    #[error("connection refused: {0}")]
    Refused(String),
    #[error("connect timeout")]
    ConnectTimeout,
    #[error("first-byte timeout")]
    FirstByteTimeout,
    #[error("read timeout: {0}")]
    ReadTimeout(&'static str),
    #[error("connection dropped mid-response: {0}")]
    Dropped(String),
    #[error("invalid response: {0}")]
    InvalidResponse(String),
    #[error("TLS handshake failed: {0}")]
    TlsHandshake(String),
    #[error("{0}")]
    TlsCertificate(String),
    #[error("TLS handshake timeout")]
    TlsTimeout,
    #[error("response too big: over {0} bytes")]
    TooBig(u64),
    #[error("storage failure: {0}")]
    Storage(String),
    #[error("internal error: {0}")]
    Internal(&'static str),
}

/// How a failure is presented on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    pub code: u16,
    pub reason: &'static str,
}

impl Error {
    pub fn side(&self) -> Side {
        use Error::*;
        match self {
            BadRequest(_)
            | AbsoluteUrlRequired
            | InvalidUrl(_)
            | UnsupportedScheme
            | MethodNotAllowed
            | BadWarcproxMeta(_)
            | BadCdxQuery(_)
            | BlockedByRule(_)
            | ReachedLimit(_)
            | WriteRecordNeeds(_)
            | WriteRecordNeedsWarc
            | TunnelNeedsForward
            | RequestBodyTooLarge
            | UriTooLong
            | HeadTooLarge
            | NotImplemented(_)
            | NotCached
            | ClientNotAllowed
            | AdminNotAllowed
            | ProxyAuthRequired
            | RequestTimeout
            | TooManyConnections
            | Overloaded(_)
            // liveweb's own capacity, not the origin's: never archived, and a flood of
            // refusals is not a flood of log lines.
            | Busy { .. }
            | ConnectPortNotAllowed(_)
            // A URL whose host resolves to a denied address is the client's request refused
            // by policy, not an upstream failure: no log line per request (a client probing
            // internal addresses would otherwise flood the log).
            | AddressNotAllowed(_)
            // A request that would come back to liveweb itself: refused before it leaves.
            | LoopDetected(_) => Side::Client,
            Dns(_) | DnsTimeout | Refused(_) | ConnectTimeout
            | FirstByteTimeout | ReadTimeout(_) | Dropped(_) | InvalidResponse(_) | TooBig(_)
            | TlsHandshake(_) | TlsCertificate(_) | TlsTimeout => {
                Side::Upstream
            }
            Storage(_) => Side::Storage,
            Internal(_) => Side::Internal,
        }
    }

    /// The liveweb code and its short name, e.g. `E30 connection refused`; `None` for plain
    /// client errors that have no code.
    pub fn code_line(&self) -> Option<&'static str> {
        use Error::*;
        Some(match self {
            InvalidUrl(_) => "E10 invalid URL",
            AddressNotAllowed(_) => "E11 upstream address not allowed",
            LoopDetected(_) => "E12 loop detected",
            Dns(_) => "E20 DNS failure",
            DnsTimeout => "E21 DNS timeout",
            Refused(_) => "E30 connection refused",
            ConnectTimeout => "E31 connect timeout",
            FirstByteTimeout => "E32 first-byte timeout",
            ReadTimeout(_) => "E33 read timeout",
            Dropped(_) => "E34 connection dropped",
            InvalidResponse(_) => "E35 invalid response",
            TlsHandshake(_) => "E36 TLS handshake failed",
            TlsCertificate(_) => "E37 certificate invalid",
            TlsTimeout => "E38 TLS timeout",
            TooBig(_) => "E40 too big",
            Storage(_) => "E50 storage failure",
            Busy { .. } => "E60 busy",
            _ => return None,
        })
    }

    pub fn status(&self) -> Status {
        use Error::*;
        let (code, reason) = match self {
            BadRequest(_) | AbsoluteUrlRequired | InvalidUrl(_) | UnsupportedScheme
            | BadWarcproxMeta(_) | BadCdxQuery(_) | WriteRecordNeeds(_) => (400, "Bad Request"),
            BlockedByRule(_) => (403, "Forbidden"),
            ReachedLimit(r) if r.soft => (430, "Reached soft limit"),
            ReachedLimit(_) => (420, "Reached limit"),
            WriteRecordNeedsWarc => (405, "Method Not Allowed"),
            AddressNotAllowed(_)
            | ConnectPortNotAllowed(_)
            | ClientNotAllowed
            | AdminNotAllowed => (403, "Forbidden"),
            ProxyAuthRequired => (407, "Proxy Authentication Required"),
            LoopDetected(_) => (508, "Loop Detected"),
            RequestTimeout => (408, "Request Timeout"),
            TooManyConnections | Overloaded(_) | Busy { .. } => (503, "Service Unavailable"),
            MethodNotAllowed | TunnelNeedsForward => (405, "Method Not Allowed"),
            RequestBodyTooLarge => (413, "Content Too Large"),
            UriTooLong => (414, "URI Too Long"),
            HeadTooLarge => (431, "Request Header Fields Too Large"),
            NotImplemented(_) => (501, "Not Implemented"),
            NotCached | DnsTimeout | ConnectTimeout | FirstByteTimeout | ReadTimeout(_)
            | TlsTimeout => (504, "Gateway Timeout"),
            Dns(_) | Refused(_) | Dropped(_) | InvalidResponse(_) | TooBig(_) | TlsHandshake(_)
            | TlsCertificate(_) => (502, "Bad Gateway"),
            Storage(_) => (503, "Service Unavailable"),
            Internal(_) => (500, "Internal Server Error"),
        };
        Status { code, reason }
    }

    /// Whether the failure is recorded as an ARC record and cached for `--error-ttl`: the
    /// origin was tried and failed. A policy refusal (E11) never reached the origin.
    pub fn is_archived_failure(&self) -> bool {
        self.side() == Side::Upstream
    }

    /// Seconds a client should wait before retrying, for failures that pass by themselves.
    pub fn retry_after(&self) -> Option<u32> {
        match self {
            Error::Storage(_) => Some(30),
            Error::TooManyConnections | Error::Overloaded(_) => Some(1),
            Error::Busy { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// A header line the reply must carry besides the status: the challenge of a 407, the
    /// rule that blocked a URL (in the header warcprox sends it in, which crawlers read).
    pub fn extra_header(&self) -> Option<String> {
        match self {
            Error::ProxyAuthRequired => {
                Some("Proxy-Authenticate: Basic realm=\"liveweb\"\r\n".into())
            }
            Error::BlockedByRule(rule) => {
                Some(format!("Warcprox-Meta: {{\"blocked-by-rule\":{rule}}}\r\n"))
            }
            Error::ReachedLimit(r) => Some(format!("Warcprox-Meta: {}\r\n", r.header)),
            _ => None,
        }
    }

    /// One line for the log and the body of a text error reply: the code line, then what
    /// the error says beyond it (`E20 DNS failure: x: name does not resolve`, not the
    /// failure named twice).
    pub fn message(&self) -> String {
        let text = self.to_string();
        match self.code_line() {
            Some(line) => {
                let (number, name) = line.split_once(' ').unwrap_or((line, ""));
                if text.starts_with(name) {
                    format!("{number} {text}")
                } else {
                    format!("{line}: {text}")
                }
            }
            None => text,
        }
    }
}

/// `Display` helper for the access/error log: `side code message`.
pub struct LogLine<'a>(pub &'a Error);

impl fmt::Display for LogLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = self.0.status();
        write!(
            f,
            "{} {} {}",
            self.0.side().as_str(),
            status.code,
            self.0.message()
        )
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    #[test]
    fn every_counted_code_means_what_its_replies_say() {
        use crate::admin::{code_meaning, CODES};
        let io = || std::io::Error::other("x");
        let each = [
            Error::InvalidUrl("x"),
            Error::AddressNotAllowed("x".into()),
            Error::LoopDetected("x".into()),
            Error::Dns("x".into()),
            Error::DnsTimeout,
            Error::Refused("x".into()),
            Error::ConnectTimeout,
            Error::FirstByteTimeout,
            Error::ReadTimeout("x"),
            Error::Dropped("x".into()),
            Error::InvalidResponse("x".into()),
            Error::TlsHandshake("x".into()),
            Error::TlsCertificate("x".into()),
            Error::TlsTimeout,
            Error::TooBig(1),
            Error::Storage(io().to_string()),
            Error::Busy {
                why: "x",
                retry_after: 1,
            },
        ];
        assert_eq!(each.len(), CODES.len() - 1, "one per code but other");
        for (e, code) in each.iter().zip(CODES) {
            assert_eq!(
                e.code_line(),
                Some(format!("{code} {}", code_meaning(code)).as_str())
            );
        }
    }

    use super::*;

    #[test]
    fn messages_name_the_failure_once() {
        let dns = Error::Dns("a.example: name does not resolve".into());
        assert_eq!(
            dns.message(),
            "E20 DNS failure: a.example: name does not resolve"
        );
        assert_eq!(Error::DnsTimeout.message(), "E21 DNS timeout");
        let cert = Error::TlsCertificate("certificate expired".into());
        assert_eq!(
            cert.message(),
            "E37 certificate invalid: certificate expired"
        );
        let refused = Error::Refused("1.2.3.4:80: refused".into());
        assert_eq!(
            refused.message(),
            "E30 connection refused: 1.2.3.4:80: refused"
        );
        assert_eq!(Error::MethodNotAllowed.message(), "method not allowed");
    }

    #[test]
    fn timeouts_are_504_and_other_upstream_failures_502() {
        assert_eq!(Error::DnsTimeout.status().code, 504);
        assert_eq!(Error::ConnectTimeout.status().code, 504);
        assert_eq!(Error::FirstByteTimeout.status().code, 504);
        assert_eq!(Error::ReadTimeout("idle").status().code, 504);
        assert_eq!(Error::Refused("x".into()).status().code, 502);
        assert_eq!(Error::Dns("x".into()).status().code, 502);
        assert_eq!(Error::TooBig(1).status().code, 502);
        assert_eq!(Error::TlsTimeout.status().code, 504);
        assert_eq!(Error::TlsCertificate("x".into()).status().code, 502);
        assert_eq!(Error::TlsHandshake("x".into()).status().code, 502);
        assert_eq!(
            Error::AddressNotAllowed("127.0.0.1".into()).status().code,
            403
        );
    }

    #[test]
    fn code_lines_and_archiving() {
        let e = Error::Refused("127.0.0.1:1".into());
        assert_eq!(e.code_line(), Some("E30 connection refused"));
        assert!(e.message().starts_with("E30 connection refused: "));
        assert!(e.is_archived_failure());
        assert!(!Error::AddressNotAllowed("10.0.0.1".into()).is_archived_failure());
        let looped = Error::LoopDetected("127.0.0.1:8080 is liveweb itself".into());
        assert!(!looped.is_archived_failure());
        assert_eq!(looped.status().code, 508);
        assert_eq!(
            looped.message(),
            "E12 loop detected: 127.0.0.1:8080 is liveweb itself"
        );
        assert!(!Error::UriTooLong.is_archived_failure());
        assert_eq!(Error::UriTooLong.code_line(), None);
    }
}
