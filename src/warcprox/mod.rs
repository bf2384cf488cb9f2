//! Compatibility with warcprox, the archiving proxy web-archiving crawlers (Brozzler and
//! others) steer per request: its `Warcprox-Meta` request header (JSON), read here, and the
//! rules in it that block URLs (`rules`). The header itself never reaches the origin nor
//! the archive (`http::is_end_to_end`). Pure: no I/O.

mod rules;

use serde::Deserialize;

pub use rules::BlockRule;

use crate::error::Error;
use crate::http::request::RequestHead;
use crate::http::url::TargetUrl;

/// What a request's `Warcprox-Meta` asks. Fields warcprox knows and liveweb does not act on
/// yet are ignored, as unknown fields are (warcprox's own rule).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct WarcproxMeta {
    /// Records of this request go to files whose names start with it (warcprox refuses one
    /// with a path separator).
    #[serde(rename = "warc-prefix")]
    pub warc_prefix: Option<String>,
    /// URLs the crawl must not fetch: a match is refused with `403`, nothing fetched.
    pub blocks: Vec<BlockRule>,
    /// The same rules, zlib-compressed and base64-encoded; they replace `blocks`.
    pub compressed_blocks: Option<String>,
    /// What the client accepts back: `capture-metadata` asks for the capture's timestamp.
    pub accept: Vec<String>,
    /// Dedup buckets by name, each `"rw"` (looked up and recorded in) or `"ro"` (looked up
    /// only); any other string is read-write, as warcprox reads it.
    #[serde(rename = "dedup-buckets")]
    pub dedup_buckets: serde_json::Map<String, serde_json::Value>,
    /// warcprox's older form: one read-write bucket.
    #[serde(rename = "dedup-bucket")]
    pub dedup_bucket: Option<String>,
    /// What the crawler says of the URL, for the crawl log (`hop_path`, `brozzled_url`,
    /// `hop_via_url`, `seed`).
    pub metadata: CrawlMetadata,
    /// Statistics buckets: `{"buckets": ["name", {"bucket": "name", "tally-domains": [...]}]}`.
    pub stats: StatsSpec,
    /// `BUCKET/SUB/STAT` -> number: refused with `420` once reached.
    pub limits: serde_json::Map<String, serde_json::Value>,
    /// The same, refused with `430`.
    #[serde(rename = "soft-limits")]
    pub soft_limits: serde_json::Map<String, serde_json::Value>,
}

/// `stats` in `Warcprox-Meta`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct StatsSpec {
    pub buckets: Vec<StatsBucketSpec>,
}

/// A statistics bucket: a name, or a name with domains to tally apart.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum StatsBucketSpec {
    Name(String),
    WithDomains {
        bucket: String,
        #[serde(rename = "tally-domains", default)]
        tally_domains: Vec<String>,
    },
}

/// The crawl-log fields a crawler passes in `Warcprox-Meta`'s `metadata`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct CrawlMetadata {
    pub hop_path: Option<String>,
    pub brozzled_url: Option<String>,
    pub hop_via_url: Option<String>,
    pub seed: Option<String>,
}

impl CrawlMetadata {
    /// The crawl log's hop path and via for a capture of `url` with this `referer`, as
    /// warcprox derives them: the Referer wins; a URL other than the page the crawler
    /// browsed (an embed or a redirect) is reached from that page, hop `B`.
    pub fn hop_and_via(&self, url: &str, referer: Option<&str>) -> (String, String) {
        let none =
            self.hop_path.is_none() && self.brozzled_url.is_none() && self.hop_via_url.is_none();
        if none {
            return ("-".into(), referer.unwrap_or("-").into());
        }
        let mut hop = self.hop_path.clone().unwrap_or_else(|| "-".into());
        let mut via = match hop.as_str() {
            "-" => "-".to_string(),
            _ => referer
                .map(str::to_string)
                .or_else(|| self.hop_via_url.clone())
                .unwrap_or_else(|| "-".into()),
        };
        if let Some(page) = self.brozzled_url.as_deref().filter(|p| *p != url) {
            via = page.to_string();
            hop = if hop == "-" {
                "B".into()
            } else {
                format!("{hop}B")
            };
        }
        (hop, via)
    }
}

/// What one capture asks of the archive besides the fetch (from `Warcprox-Meta`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capture {
    /// Its records go to files named with this prefix (`warc-prefix`).
    pub warc_prefix: Option<String>,
    /// A forward-mode reply says when its response was captured (`capture-metadata`).
    pub metadata: bool,
    /// The dedup buckets named, each read-write (`true`) or read-only; none named: the
    /// default bucket, read-write.
    pub dedup_buckets: Vec<(String, bool)>,
    /// For the crawl log.
    pub crawl: CrawlMetadata,
    /// The request sent `Warcprox-Meta`: its capture is tallied in the crawl statistics.
    pub tallied: bool,
    /// Statistics buckets named, each with the domains tallied apart (lowercased).
    pub stats_buckets: Vec<(String, Vec<String>)>,
    /// `limits` and `soft-limits`, keys with their domain part lowercased.
    pub limits: Vec<(String, u64)>,
    pub soft_limits: Vec<(String, u64)>,
}

impl Capture {
    /// The statistics buckets a capture of `url` is tallied in, as warcprox unravels
    /// them: `__all__`, the named buckets (or `__unspecified__`), and `BUCKET:DOMAIN` for
    /// each tallied domain the URL's host is or lies under.
    pub fn stats_buckets_for(&self, url: &TargetUrl) -> Vec<String> {
        use crate::crawl_stats::{ALL, UNSPECIFIED};
        let mut out = vec![ALL.to_string()];
        if self.stats_buckets.is_empty() {
            out.push(UNSPECIFIED.to_string());
        }
        let host = url
            .host
            .trim_matches(|c| c == '[' || c == ']')
            .to_ascii_lowercase();
        for (bucket, domains) in &self.stats_buckets {
            out.push(bucket.clone());
            for domain in domains {
                let under = host.len() > domain.len()
                    && host.ends_with(domain.as_str())
                    && host.as_bytes()[host.len() - domain.len() - 1] == b'.';
                if host == *domain || under {
                    out.push(format!("{bucket}:{domain}"));
                }
            }
        }
        out
    }

    /// Where the payload digest is looked up, in order.
    pub fn lookup_buckets(&self) -> Vec<&str> {
        if self.dedup_buckets.is_empty() {
            return vec![crate::dedup::DEFAULT_BUCKET];
        }
        self.dedup_buckets.iter().map(|(b, _)| b.as_str()).collect()
    }

    /// Where a payload stored whole is recorded.
    pub fn record_buckets(&self) -> Vec<&str> {
        if self.dedup_buckets.is_empty() {
            return vec![crate::dedup::DEFAULT_BUCKET];
        }
        let rw = self.dedup_buckets.iter().filter(|(_, rw)| *rw);
        rw.map(|(b, _)| b.as_str()).collect()
    }
}

impl WarcproxMeta {
    /// The request's `Warcprox-Meta`, if it sent one; a header that is not a JSON object of
    /// the expected shape is the client's error, said in words.
    pub fn of(req: &RequestHead) -> Result<Option<WarcproxMeta>, Error> {
        let Some(raw) = req.header(crate::http::WARCPROX_META) else {
            return Ok(None);
        };
        let bad = |why: String| Error::BadWarcproxMeta(why);
        let value: serde_json::Value =
            serde_json::from_slice(raw).map_err(|e| bad(e.to_string()))?;
        if !value.is_object() {
            return Err(bad(format!("a JSON object is expected, not {value}")));
        }
        let mut meta: WarcproxMeta =
            serde_json::from_value(value).map_err(|e| bad(e.to_string()))?;
        if let Some(prefix) = &meta.warc_prefix {
            // A file name, and a field of CDX lines (space-separated): stricter than
            // warcprox (which refuses only path separators), and said so.
            let name_char = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-');
            if prefix.is_empty() || prefix.len() > 64 || !prefix.bytes().all(name_char) {
                return Err(bad(format!(
                    "warc-prefix {prefix:?} must be 1-64 letters, digits, '_', '.' or '-' (without / or \\)"
                )));
            }
        }
        if let Some(packed) = meta.compressed_blocks.take() {
            meta.blocks = rules::decompress(&packed).map_err(bad)?;
        }
        for rule in &meta.blocks {
            rule.check().map_err(bad)?;
        }
        for (name, value) in meta.limits.iter().chain(&meta.soft_limits) {
            if name.rsplitn(3, '/').count() != 3 {
                return Err(bad(format!(
                    "limit {name:?}: expected BUCKET/SUB-BUCKET/STATISTIC, e.g. job1/total/urls"
                )));
            }
            if value.as_u64().is_none() && !value.as_f64().is_some_and(|f| f >= 0.0) {
                return Err(bad(format!("limit {name:?}: {value} is not a number >= 0")));
            }
        }
        for (name, mode) in &meta.dedup_buckets {
            if !mode.is_string() {
                return Err(bad(format!(
                    "dedup-buckets: {name:?} must be \"rw\" or \"ro\", not {mode}"
                )));
            }
        }
        Ok(Some(meta))
    }

    /// What the capture asks besides the fetch.
    pub fn capture(&self) -> Capture {
        let mut dedup_buckets: Vec<(String, bool)> = self
            .dedup_buckets
            .iter()
            .map(|(name, mode)| (name.clone(), mode.as_str() != Some("ro")))
            .collect();
        if let Some(name) = &self.dedup_bucket {
            if !dedup_buckets.iter().any(|(b, _)| b == name) {
                dedup_buckets.push((name.clone(), true));
            }
        }
        let stats_buckets = self
            .stats
            .buckets
            .iter()
            .map(|b| match b {
                StatsBucketSpec::Name(name) => (name.clone(), Vec::new()),
                StatsBucketSpec::WithDomains {
                    bucket,
                    tally_domains,
                } => (
                    bucket.clone(),
                    tally_domains
                        .iter()
                        .map(|d| d.to_ascii_lowercase())
                        .collect(),
                ),
            })
            .collect();
        let limits = |m: &serde_json::Map<String, serde_json::Value>| -> Vec<(String, u64)> {
            m.iter()
                .map(|(key, v)| {
                    let n = v
                        .as_u64()
                        .unwrap_or_else(|| v.as_f64().unwrap_or(0.0).ceil() as u64);
                    (normalize_limit_key(key), n)
                })
                .collect()
        };
        Capture {
            warc_prefix: self.warc_prefix.clone(),
            metadata: self.wants_capture_metadata(),
            dedup_buckets,
            crawl: self.metadata.clone(),
            tallied: true,
            stats_buckets,
            limits: limits(&self.limits),
            soft_limits: limits(&self.soft_limits),
        }
    }

    /// The first rule that blocks `url`, as the JSON to send back in the refusal.
    pub fn blocked(&self, url: &TargetUrl) -> Option<String> {
        self.blocks
            .iter()
            .find(|rule| rule.matches(url))
            .map(BlockRule::to_json)
    }

    /// Whether the client asked for the capture's metadata in the response.
    pub fn wants_capture_metadata(&self) -> bool {
        self.accept.iter().any(|a| a == "capture-metadata")
    }
}

/// A limit key with the domain of a `BUCKET:DOMAIN` bucket lowercased, as buckets are
/// named when tallied.
fn normalize_limit_key(key: &str) -> String {
    let mut parts = key.rsplitn(3, '/');
    let (Some(stat), Some(sub), Some(bucket)) = (parts.next(), parts.next(), parts.next()) else {
        return key.to_string();
    };
    let bucket = match bucket.split_once(':') {
        Some((b, domain)) => format!("{b}:{}", domain.to_ascii_lowercase()),
        None => bucket.to_string(),
    };
    format!("{bucket}/{sub}/{stat}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::request::{parse_request_head, Limits};

    fn meta(value: &str) -> Result<Option<WarcproxMeta>, Error> {
        let raw = format!("GET http://a/ HTTP/1.1\r\nWarcprox-Meta: {value}\r\n\r\n");
        let (req, _) = parse_request_head(raw.as_bytes(), &Limits::default())
            .unwrap()
            .unwrap();
        WarcproxMeta::of(&req)
    }

    #[test]
    fn dedup_buckets_say_where_digests_are_looked_up_and_recorded() {
        let capture = |v: &str| meta(v).unwrap().unwrap().capture();
        let none = capture(r#"{"warc-prefix":"p"}"#);
        assert_eq!(none.lookup_buckets(), [""]);
        assert_eq!(none.record_buckets(), [""]);
        let both = capture(r#"{"dedup-buckets":{"mine":"rw","theirs":"ro"}}"#);
        assert_eq!(both.lookup_buckets(), ["mine", "theirs"]);
        assert_eq!(both.record_buckets(), ["mine"]);
        let read_only = capture(r#"{"dedup-buckets":{"theirs":"ro"}}"#);
        assert!(read_only.record_buckets().is_empty());
        let old = capture(r#"{"dedup-bucket":"job"}"#);
        assert_eq!(old.dedup_buckets, [("job".to_string(), true)]);
    }

    #[test]
    fn stats_buckets_unravel_as_warcprox_s_and_limits_are_read() {
        let capture = |v: &str| meta(v).unwrap().unwrap().capture();
        let url = crate::http::url::parse_absolute("http://WWW.Foo.Bar.com/x").unwrap();
        let none = capture(r#"{"warc-prefix":"p"}"#);
        assert!(none.tallied);
        assert_eq!(none.stats_buckets_for(&url), ["__all__", "__unspecified__"]);
        let c = capture(concat!(
            r#"{"stats":{"buckets":["b1",{"bucket":"b2","tally-domains":["foo.bar.com","Bar.com","oo.bar.com","192.168.10.20"]}]},"#,
            r#""limits":{"b1/total/urls":10},"soft-limits":{"b2:FOO.bar.com/new/wire_bytes":1.5}}"#
        ));
        assert_eq!(
            c.stats_buckets_for(&url),
            ["__all__", "b1", "b2", "b2:foo.bar.com", "b2:bar.com"]
        );
        assert_eq!(c.limits, [("b1/total/urls".to_string(), 10)]);
        assert_eq!(
            c.soft_limits,
            [("b2:foo.bar.com/new/wire_bytes".to_string(), 2)]
        );
    }

    #[test]
    fn fields_are_read_unknown_ones_ignored_and_bad_ones_refused_in_words() {
        let m = meta(r#"{"warc-prefix":"job1","accept":["capture-metadata"],"stats":{"buckets":["b"]},"future":1}"#)
            .unwrap()
            .unwrap();
        assert_eq!(m.warc_prefix.as_deref(), Some("job1"));
        assert!(m.wants_capture_metadata() && m.blocks.is_empty());
        for (bad, says) in [
            ("{not json", "key must be a string"),
            (r#"["a list"]"#, "a JSON object is expected"),
            (r#"{"accept":"capture-metadata"}"#, "invalid type"),
            (r#"{"warc-prefix":"a/b"}"#, "without / or"),
            (r#"{"warc-prefix":"a b"}"#, "letters, digits"),
            (
                r#"{"blocks":[{"url_match":"NO_SUCH_MATCH","value":"x"}]}"#,
                "url_match",
            ),
            (r#"{"blocks":[{}]}"#, "no condition"),
            (r#"{"compressed_blocks":"!!"}"#, "base64"),
            (r#"{"dedup-buckets":{"b":1}}"#, "must be \"rw\" or \"ro\""),
            (
                r#"{"limits":{"job/urls":1}}"#,
                "BUCKET/SUB-BUCKET/STATISTIC",
            ),
            (
                r#"{"soft-limits":{"job/total/urls":"ten"}}"#,
                "not a number",
            ),
            (r#"{"stats":{"buckets":[7]}}"#, "did not match"),
            (r#"{"dedup-buckets":["b"]}"#, "invalid type"),
        ] {
            match meta(bad) {
                Err(Error::BadWarcproxMeta(why)) => assert!(why.contains(says), "{bad}: {why}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
    }
}
