//! WARC/1.1 records (`--format warc`): the `warcinfo` record that opens each file; per
//! exchange a `response` record (the origin's bytes as received) and a `request` record (the
//! bytes sent upstream) that names it in `WARC-Concurrent-To`; a `metadata` record
//! (`application/warc-fields`) for an archived failure. Also reading a record's header block back (recovery, hits).
//!
//! Each record is one gzip member, like an ARC record: the header block, the content block,
//! then the `\r\n\r\n` that ends every WARC record.

use std::net::IpAddr;

use super::cdx::base32_sha1;
use crate::clock::UtcTime;

/// What ends every WARC record, after its content block.
pub const RECORD_END: &[u8] = b"\r\n\r\n";

/// Longest header block accepted when reading records back.
pub const MAX_HEADER_BLOCK: usize = 32 * 1024;

/// A fresh `WARC-Record-ID`.
pub fn record_id() -> String {
    format!("<urn:uuid:{}>", uuid::Uuid::new_v4())
}

/// `sha1:` and the base32 SHA-1 of `data`, the digest form WARC tools write and check.
pub fn sha1_digest(data: &[u8]) -> String {
    format!("sha1:{}", base32_sha1(data))
}

/// One record's header block (ending in the blank line) and its id; its content is encoded
/// after it.
#[derive(Debug, Clone)]
pub struct WarcRecord {
    pub head: String,
    pub id: String,
}

/// The header block of a record of `kind` over `block`, with `fields` between the standard
/// ones and the digests.
fn head(
    kind: &str,
    id: &str,
    date: &str,
    fields: &[(&str, &str)],
    content_type: &str,
    block: &[u8],
) -> String {
    let block = Block {
        digest: &sha1_digest(block),
        len: block.len() as u64,
    };
    head_for(kind, id, date, fields, content_type, &block)
}

/// What a header block says of its content block: its digest (`sha1:...`) and length.
pub struct Block<'a> {
    pub digest: &'a str,
    pub len: u64,
}

/// `head`, for a content block digested and measured elsewhere (one read from a file).
fn head_for(
    kind: &str,
    id: &str,
    date: &str,
    fields: &[(&str, &str)],
    content_type: &str,
    block: &Block<'_>,
) -> String {
    let mut h =
        format!("WARC/1.1\r\nWARC-Type: {kind}\r\nWARC-Record-ID: {id}\r\nWARC-Date: {date}\r\n");
    for (name, value) in fields {
        h.push_str(name);
        h.push_str(": ");
        h.push_str(value);
        h.push_str("\r\n");
    }
    h.push_str(&format!(
        "Content-Type: {content_type}\r\nWARC-Block-Digest: {}\r\nContent-Length: {}\r\n\r\n",
        block.digest, block.len
    ));
    h
}

/// A record a client asked to have written (warcprox's `WARCPROX_WRITE_RECORD`: a screenshot,
/// a thumbnail, crawl metadata): its type, target and content type as given, the content
/// as sent, payload digest equal to the block's (the block is the payload).
pub fn client_record(
    target: &Target<'_>,
    kind: &str,
    content_type: &str,
    block: &[u8],
) -> WarcRecord {
    let digest = sha1_digest(block);
    let id = record_id();
    let head = head(
        kind,
        &id,
        &target.date.warc_date(),
        &[
            ("WARC-Target-URI", target.url),
            ("WARC-Warcinfo-ID", target.warcinfo),
            ("WARC-Payload-Digest", &digest),
        ],
        content_type,
        block,
    );
    WarcRecord { head, id }
}

/// The stored response a `revisit` record refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefersTo {
    pub id: Option<String>,
    pub target: String,
    /// Its `WARC-Date`.
    pub date: String,
    /// Its `WARC-Payload-Digest` (`sha1:...`), which replay tools use to find it.
    pub payload_digest: Option<String>,
}

/// The `revisit` record of a `304 Not Modified` answer to a revalidation (WARC 1.1 6.7.2,
/// profile `server-not-modified`), naming the stored response it confirmed, with an empty
/// block: a replay tool then shows that response, head and body, for this capture (pywb
/// replays a revisit's own HTTP head when it has one, which for a 304 is an empty page).
pub fn revisit_not_modified(target: &Target<'_>, refers: &RefersTo) -> WarcRecord {
    revisit(target, refers, PROFILE_NOT_MODIFIED, b"")
}

/// The `revisit` record of a response whose payload a stored response already holds (WARC
/// 1.1 6.7.2, profile `identical-payload-digest`, as warcprox and Heritrix write it): its
/// block is the response's HTTP head alone, and it names that stored response.
pub fn revisit_identical_payload(
    target: &Target<'_>,
    refers: &RefersTo,
    http_head: &[u8],
) -> WarcRecord {
    revisit(target, refers, PROFILE_IDENTICAL_PAYLOAD, http_head)
}

pub const PROFILE_NOT_MODIFIED: &str =
    "http://netpreserve.org/warc/1.1/revisit/server-not-modified";
pub const PROFILE_IDENTICAL_PAYLOAD: &str =
    "http://netpreserve.org/warc/1.1/revisit/identical-payload-digest";

fn revisit(target: &Target<'_>, refers: &RefersTo, profile: &str, block: &[u8]) -> WarcRecord {
    let id = record_id();
    let ip = target.ip.map(|ip| ip.to_string());
    let mut fields = vec![("WARC-Target-URI", target.url)];
    if let Some(ip) = &ip {
        fields.push(("WARC-IP-Address", ip));
    }
    fields.push(("WARC-Warcinfo-ID", target.warcinfo));
    fields.push(("WARC-Profile", profile));
    if let Some(original) = &refers.id {
        fields.push(("WARC-Refers-To", original));
    }
    fields.push(("WARC-Refers-To-Target-URI", &refers.target));
    fields.push(("WARC-Refers-To-Date", &refers.date));
    if let Some(digest) = &refers.payload_digest {
        fields.push(("WARC-Payload-Digest", digest));
    }
    let head = head(
        "revisit",
        &id,
        &target.date.warc_date(),
        &fields,
        "application/http;msgtype=response",
        block,
    );
    WarcRecord { head, id }
}

/// The `warcinfo` record that opens a file named `file_name`: what wrote it, on which
/// machine (host name and address, as warcprox and Heritrix say), in which format, and that
/// robots.txt was not consulted (liveweb fetches what it is asked to).
pub fn warcinfo(file_name: &str, date: &UtcTime, id: &str) -> (String, Vec<u8>) {
    let (hostname, ip) = machine();
    let mut block = format!("software: liveweb/{}\r\n", env!("CARGO_PKG_VERSION"));
    if !hostname.is_empty() {
        block.push_str(&format!("hostname: {hostname}\r\n"));
    }
    if let Some(ip) = ip {
        block.push_str(&format!("ip: {ip}\r\n"));
    }
    block.push_str("format: WARC File Format 1.1\r\nconformsTo: https://iipc.github.io/warc-specifications/specifications/warc-format/warc-1.1/\r\nrobots: ignore\r\n");
    let block = block.into_bytes();
    let head = head(
        "warcinfo",
        id,
        &date.warc_date(),
        &[("WARC-Filename", file_name)],
        "application/warc-fields",
        &block,
    );
    (head, block)
}

/// This machine's host name and its first address that is not loopback (IPv4 first), read
/// once.
fn machine() -> &'static (String, Option<IpAddr>) {
    static MACHINE: std::sync::OnceLock<(String, Option<IpAddr>)> = std::sync::OnceLock::new();
    MACHINE.get_or_init(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let host: String = host
            .trim()
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .collect();
        (host, first_address())
    })
}

/// The first interface address that is not loopback or link-local, IPv4 before IPv6.
fn first_address() -> Option<IpAddr> {
    let mut found: Vec<IpAddr> = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a linked list freed below with freeifaddrs; each
    // node's `ifa_addr` is read only when non-null and of the family it says.
    unsafe {
        if libc::getifaddrs(&mut list) != 0 {
            return None;
        }
        let mut node = list;
        while !node.is_null() {
            let addr = (*node).ifa_addr;
            if !addr.is_null() {
                match i32::from((*addr).sa_family) {
                    libc::AF_INET => {
                        let v4 = &*(addr as *const libc::sockaddr_in);
                        let ip = std::net::Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr));
                        found.push(IpAddr::V4(ip));
                    }
                    libc::AF_INET6 => {
                        let v6 = &*(addr as *const libc::sockaddr_in6);
                        found.push(IpAddr::V6(std::net::Ipv6Addr::from(v6.sin6_addr.s6_addr)));
                    }
                    _ => {}
                }
            }
            node = (*node).ifa_next;
        }
        libc::freeifaddrs(list);
    }
    let usable = |ip: &IpAddr| match ip {
        IpAddr::V4(v4) => !v4.is_loopback() && !v4.is_link_local(),
        IpAddr::V6(v6) => !v6.is_loopback() && (v6.segments()[0] & 0xffc0) != 0xfe80,
    };
    let v4 = found.iter().copied().find(|ip| ip.is_ipv4() && usable(ip));
    v4.or_else(|| found.into_iter().find(usable))
}

/// Where a fetch went: the URL, the address it connected to, when; and the `warcinfo`
/// record of the file its records are written to (`WARC-Warcinfo-ID`).
pub struct Target<'a> {
    pub url: &'a str,
    pub ip: Option<IpAddr>,
    pub date: &'a UtcTime,
    pub warcinfo: &'a str,
}

impl Target<'_> {
    /// A record of `kind` about this target: a fresh id, the target's URI, address and
    /// date, then `extra` fields.
    fn record(
        &self,
        kind: &str,
        extra: (&str, &str),
        content_type: &str,
        block: &[u8],
    ) -> WarcRecord {
        let block = Block {
            digest: &sha1_digest(block),
            len: block.len() as u64,
        };
        self.record_of(kind, extra, content_type, &block)
    }

    /// `record`, for a content block digested and measured elsewhere.
    fn record_of(
        &self,
        kind: &str,
        extra: (&str, &str),
        content_type: &str,
        block: &Block<'_>,
    ) -> WarcRecord {
        let id = record_id();
        let ip = self.ip.map(|ip| ip.to_string()).unwrap_or_default();
        let mut fields = vec![("WARC-Target-URI", self.url)];
        if self.ip.is_some() {
            fields.push(("WARC-IP-Address", &ip));
        }
        fields.push(("WARC-Warcinfo-ID", self.warcinfo));
        fields.push(extra);
        let head = head_for(
            kind,
            &id,
            &self.date.warc_date(),
            &fields,
            content_type,
            block,
        );
        WarcRecord { head, id }
    }
}

/// The `response` record of an exchange: `raw` is the response as received; `payload_digest`
/// is its body's (what the CDX line says too).
pub fn response(target: &Target<'_>, raw: &[u8], payload_digest: &str) -> WarcRecord {
    let payload = format!("sha1:{payload_digest}");
    target.record(
        "response",
        ("WARC-Payload-Digest", &payload),
        "application/http; msgtype=response",
        raw,
    )
}

/// `response`, for a response in a file: its block (the response as received) digested and
/// measured in a read of its own.
pub fn response_of(target: &Target<'_>, block: &Block<'_>, payload_digest: &str) -> WarcRecord {
    let payload = format!("sha1:{payload_digest}");
    target.record_of(
        "response",
        ("WARC-Payload-Digest", &payload),
        "application/http; msgtype=response",
        block,
    )
}

/// The `request` record of the exchange whose response record is `response_id`: the bytes
/// sent upstream.
pub fn request(target: &Target<'_>, sent: &[u8], response_id: &str) -> WarcRecord {
    target.record(
        "request",
        ("WARC-Concurrent-To", response_id),
        "application/http; msgtype=request",
        sent,
    )
}

/// The content of a failure's `metadata` record: `application/warc-fields` naming the
/// liveweb error code, the status liveweb answered with, and what went wrong.
pub fn failure_fields(code: &str, status: u16, reason: &str, message: &str) -> Vec<u8> {
    let one_line = |s: &str| s.replace(['\r', '\n'], " ");
    format!(
        "liveweb-error: {}\r\nstatus: {status} {}\r\nmessage: {}\r\n",
        one_line(code),
        one_line(reason),
        one_line(message)
    )
    .into_bytes()
}

/// The `metadata` record of a failed fetch: `application/warc-fields` (see `failure_fields`),
/// which replay tools' indexers skip, so no tool takes it for a capture of the URL; the
/// `X-Liveweb-Error` field (a WARC extension field) marks it for liveweb's own reading.
pub fn failure(target: &Target<'_>, fields: &[u8], code: &str) -> WarcRecord {
    target.record(
        "metadata",
        ("X-Liveweb-Error", code),
        "application/warc-fields",
        fields,
    )
}

/// A record's header block, parsed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Header<'a> {
    pub kind: &'a str,
    pub id: Option<&'a str>,
    pub target: Option<&'a str>,
    pub date: Option<&'a str>,
    pub payload_digest: Option<&'a str>,
    /// liveweb's mark on a failure's metadata record.
    pub liveweb_error: Option<&'a str>,
    pub content_length: u64,
}

/// The header block at the start of `data`: its length (through the blank line) and its
/// fields; `None` when `data` does not start with a whole, valid WARC header block.
pub fn parse_header(data: &[u8]) -> Option<(usize, Header<'_>)> {
    if !data.starts_with(b"WARC/") {
        return None;
    }
    let window = &data[..data.len().min(MAX_HEADER_BLOCK)];
    let end = window.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let text = std::str::from_utf8(&data[..end]).ok()?;
    let mut header = Header::default();
    let mut length = None;
    for line in text.split("\r\n").skip(1).filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':')?;
        let value = value.trim();
        let is = |field: &str| name.eq_ignore_ascii_case(field);
        if is("warc-type") {
            header.kind = value;
        } else if is("warc-record-id") {
            header.id = Some(value);
        } else if is("warc-target-uri") {
            header.target = Some(value);
        } else if is("warc-date") {
            header.date = Some(value);
        } else if is("warc-payload-digest") {
            header.payload_digest = Some(value);
        } else if is("x-liveweb-error") {
            header.liveweb_error = Some(value);
        } else if is("content-length") {
            length = value.parse().ok();
        }
    }
    header.content_length = length?;
    Some((end, header))
}

/// `YYYYMMDDhhmmss` from a `WARC-Date` (`2026-11-26T02:24:08.123Z`): the CDX date.
pub fn date14(warc_date: &str) -> Option<String> {
    let digits: String = warc_date
        .bytes()
        .take_while(|&b| b != b'.' && b != b'Z')
        .filter(u8::is_ascii_digit)
        .map(char::from)
        .collect();
    (digits.len() == 14).then_some(digits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at() -> UtcTime {
        UtcTime::from_unix_millis(1_764_123_848_123)
    }

    #[test]
    fn a_response_and_its_request_read_back() {
        let date = at();
        let target = Target {
            url: "http://example.com/",
            ip: Some([192, 0, 2, 7].into()),
            date: &date,
            warcinfo: "<urn:uuid:info>",
        };
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        let resp = response(&target, raw, "PAYLOAD");
        let req = request(&target, b"GET / HTTP/1.1\r\n\r\n", &resp.id);
        let (len, h) = parse_header(resp.head.as_bytes()).unwrap();
        assert_eq!(len, resp.head.len());
        assert_eq!(h.kind, "response");
        assert_eq!(h.target, Some("http://example.com/"));
        assert_eq!(h.date, Some("2025-11-26T02:24:08.123Z"));
        assert_eq!(h.content_length, raw.len() as u64);
        assert_eq!(h.payload_digest, Some("sha1:PAYLOAD"));
        assert!(resp.head.contains("WARC-IP-Address: 192.0.2.7\r\n"));
        assert!(resp.head.contains("WARC-Warcinfo-ID: <urn:uuid:info>\r\n"));
        assert!(resp
            .head
            .contains(&format!("WARC-Block-Digest: {}\r\n", sha1_digest(raw))));
        assert!(req
            .head
            .contains(&format!("WARC-Concurrent-To: {}\r\n", resp.id)));
        assert_ne!(req.id, resp.id);
        assert_eq!(date14(h.date.unwrap()).as_deref(), Some("20251126022408"));
    }

    #[test]
    fn header_blocks_that_are_not_whole_or_valid_are_refused() {
        assert!(parse_header(b"WARC/1.1\r\nWARC-Type: response\r\n").is_none());
        assert!(parse_header(b"WARC/1.1\r\nContent-Length: x\r\n\r\n").is_none());
        assert!(parse_header(b"WARC/1.1\r\nno colon\r\n\r\n").is_none());
        assert!(parse_header(b"http://a/ 1.2.3.4 20260101000000 text/html 5\n").is_none());
        let long = format!("WARC/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEADER_BLOCK));
        assert!(parse_header(long.as_bytes()).is_none());
    }
}
