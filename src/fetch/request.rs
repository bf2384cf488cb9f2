//! The request head liveweb sends upstream: built from the URL and the client's end-to-end
//! headers, framed by what liveweb itself sends. Pure: builds bytes, does no I/O.

use crate::http::is_end_to_end;
use crate::http::request::{tokens, Header};
use crate::http::url::TargetUrl;

/// The body liveweb itself sends after an upstream request head. The head declares this,
/// never the client's Content-Length or Transfer-Encoding: a body liveweb did not forward but
/// whose length it declared would make a keep-alive origin read the next pooled request as
/// that body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamBody {
    None,
    Length(u64),
    Chunked,
}

/// The upstream request head: `<METHOD> <path> HTTP/1.1`, Host from the URL (RFC 9112
/// 3.2.2: a proxy replaces the Host of an absolute-form request with the URL's), the client's
/// end-to-end headers, a User-Agent if the client sent none, `Via`, the framing of `body`,
/// and `Connection: close` unless `keep_alive` (the connection goes back to the pool).
/// `Expect` is not forwarded (liveweb answers `100 Continue` itself).
pub fn build_request(
    method: &str,
    url: &TargetUrl,
    client_headers: &[Header],
    user_agent: &str,
    body: UpstreamBody,
    keep_alive: bool,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(url.path_and_query.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(url.host_header().as_bytes());
    out.extend_from_slice(b"\r\n");
    let named_by_connection: Vec<&str> = client_headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .flat_map(|h| tokens(&h.value))
        .collect();
    let mut has_user_agent = false;
    for h in client_headers {
        let skip = h.name.eq_ignore_ascii_case("host")
            || h.name.eq_ignore_ascii_case("expect")
            || h.name.eq_ignore_ascii_case("content-length")
            || !is_end_to_end(&h.name, &named_by_connection);
        if skip {
            continue;
        }
        has_user_agent |= h.name.eq_ignore_ascii_case("user-agent");
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(&h.value);
        out.extend_from_slice(b"\r\n");
    }
    if !has_user_agent {
        out.extend_from_slice(b"User-Agent: ");
        out.extend_from_slice(user_agent.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match body {
        UpstreamBody::None => {}
        UpstreamBody::Length(n) => {
            out.extend_from_slice(format!("Content-Length: {n}\r\n").as_bytes());
        }
        UpstreamBody::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
    }
    out.extend_from_slice(crate::http::via::via_line().as_bytes());
    if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::url::parse_absolute;

    fn h(name: &str, value: &str) -> Header {
        Header {
            name: name.into(),
            value: value.as_bytes().to_vec(),
        }
    }

    #[test]
    fn request_strips_hop_by_hop_and_adds_user_agent() {
        let url = parse_absolute("http://Example.com:8080/a?b#c").unwrap();
        let headers = [
            h("Host", "ignored"),
            h("Accept", "*/*"),
            h("Connection", "keep-alive, X-Secret"),
            h("X-Secret", "1"),
            h("Proxy-Authorization", "Basic x"),
            h("X-Liveweb-Mode", "liveweb"),
            h("Warcprox-Meta", "{\"warc-prefix\":\"job1\"}"),
            h("Cookie", "a=b"),
        ];
        let req = String::from_utf8(build_request(
            "GET",
            &url,
            &headers,
            "liveweb/test",
            UpstreamBody::None,
            false,
        ))
        .unwrap();
        assert_eq!(
            req,
            "GET /a?b HTTP/1.1\r\nHost: example.com:8080\r\nAccept: */*\r\nCookie: a=b\r\nUser-Agent: liveweb/test\r\nVia: 1.1 liveweb\r\nConnection: close\r\n\r\n"
        );
        let with_ua = String::from_utf8(build_request(
            "GET",
            &url,
            &[h("User-Agent", "curl")],
            "x",
            UpstreamBody::None,
            true,
        ))
        .unwrap();
        assert!(with_ua.contains("User-Agent: curl\r\n") && !with_ua.contains("User-Agent: x"));
    }

    #[test]
    fn request_framing_is_what_liveweb_sends_never_the_clients() {
        let url = parse_absolute("http://example.com/a").unwrap();
        let client = [
            h("Content-Length", "10"),
            h("content-length", "10"),
            h("Transfer-Encoding", "chunked"),
        ];
        let head = |body| {
            String::from_utf8(build_request("GET", &url, &client, "ua", body, true)).unwrap()
        };
        assert_eq!(
            head(UpstreamBody::None),
            "GET /a HTTP/1.1\r\nHost: example.com\r\nUser-Agent: ua\r\nVia: 1.1 liveweb\r\n\r\n"
        );
        let sized = head(UpstreamBody::Length(7));
        assert_eq!(sized.matches("ontent-Length").count(), 1);
        assert!(sized.contains("Content-Length: 7\r\n") && !sized.contains("Transfer-Encoding"));
        let chunked = head(UpstreamBody::Chunked);
        assert!(chunked.contains("Transfer-Encoding: chunked\r\n"));
        assert!(!chunked.contains("Content-Length"));
    }
}
