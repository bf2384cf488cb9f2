//! Pure HTTP/1.x: request and response head parsing, body framing, URL handling and reply
//! heads. Nothing in here touches a socket.

pub mod cache;
pub mod chunked;
pub mod client_body;
pub mod client_head;
pub mod range;
pub mod reply;
pub mod request;
pub mod response;
pub mod url;
pub mod via;

/// Hop-by-hop headers (RFC 9110 7.6.1) that never cross the proxy, plus our own control
/// headers; `Connection` may name more.
pub const HOP_BY_HOP: &[&str] = &[
    "connection",
    "proxy-connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
];

/// A crawler's instructions to its archiving proxy (warcprox's header): crawl
/// configuration a site must never see.
pub const WARCPROX_META: &str = "warcprox-meta";

/// Whether a client header is forwarded to the origin.
pub fn is_end_to_end(name: &str, connection_tokens: &[&str]) -> bool {
    !HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
        && !name.eq_ignore_ascii_case(WARCPROX_META)
        && !connection_tokens
            .iter()
            .any(|t| name.eq_ignore_ascii_case(t))
        && !name
            .get(..10)
            .is_some_and(|p| p.eq_ignore_ascii_case("x-liveweb-"))
}

/// Our own diagnostic headers (`X-Cache`, `X-Liveweb-*`): liveweb sets them, nobody else's
/// copies pass through.
pub fn is_liveweb_header(name: &str) -> bool {
    name.eq_ignore_ascii_case("x-cache")
        || name
            .get(..10)
            .is_some_and(|p| p.eq_ignore_ascii_case("x-liveweb-"))
}
