//! warcprox's block rules (urlcanon's match rules): each names conditions on the URL, all of
//! which must hold: `domain` (the host or a subdomain of it), `substring`, `surt` and `ssurt`
//! (prefixes of those forms of the URL), `regex` (the whole URL), or the older `url_match`
//! (`STRING_MATCH`, `SURT_MATCH`, `REGEX_MATCH`) with `value`; `exact` turns the prefix
//! tests into equality. Matched against the URL as liveweb normalizes it (scheme and host
//! lowercased, default port and fragment dropped).

use std::io::Read;

use serde::Deserialize;

use crate::http::url::TargetUrl;

/// Most a `compressed_blocks` value may inflate to: rules, not a bomb.
const MAX_RULES_JSON: u64 = 1 << 20;

/// One rule, as sent (echoed back in the refusal) and as understood.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "serde_json::Value")]
pub struct BlockRule {
    sent: serde_json::Value,
    domain: Option<String>,
    substring: Option<String>,
    surt: Option<String>,
    ssurt: Option<String>,
    regex: Option<regex_lite::Regex>,
    exact: bool,
    /// A condition on the page that linked the URL, which an archiving proxy never knows:
    /// such a rule matches nothing (as in warcprox).
    needs_parent: bool,
}

impl TryFrom<serde_json::Value> for BlockRule {
    type Error = String;

    fn try_from(sent: serde_json::Value) -> Result<Self, String> {
        let obj = sent
            .as_object()
            .ok_or_else(|| format!("a block rule must be an object, not {sent}"))?;
        let text = |name: &str| -> Result<Option<String>, String> {
            match obj.get(name) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
                Some(other) => Err(format!(
                    "block rule field {name} must be a string, not {other}"
                )),
            }
        };
        let mut substring = text("substring")?;
        let mut surt = text("surt")?;
        let mut regex = text("regex")?;
        if let Some(kind) = text("url_match")? {
            let value = text("value")?.ok_or("a block rule with url_match needs a value")?;
            match kind.as_str() {
                "STRING_MATCH" => substring = Some(value),
                "SURT_MATCH" => surt = Some(value),
                "REGEX_MATCH" => regex = Some(value),
                other => {
                    return Err(format!(
                        "block rule url_match {other:?} is none of STRING_MATCH, SURT_MATCH, REGEX_MATCH"
                    ))
                }
            }
        }
        let regex = regex
            .map(|r| regex_lite::Regex::new(&format!("^(?:{r})$")))
            .transpose()
            .map_err(|e| format!("block rule regex: {e}"))?;
        Ok(BlockRule {
            domain: text("domain")?.map(|d| d.to_ascii_lowercase()),
            substring,
            surt,
            ssurt: text("ssurt")?,
            regex,
            exact: obj.get("exact").and_then(serde_json::Value::as_bool) == Some(true),
            needs_parent: obj.contains_key("parent_url_regex"),
            sent,
        })
    }
}

impl BlockRule {
    /// A rule with no condition would block every URL: refused as a mistake.
    pub fn check(&self) -> Result<(), String> {
        let any = self.domain.is_some()
            || self.substring.is_some()
            || self.surt.is_some()
            || self.ssurt.is_some()
            || self.regex.is_some()
            || self.needs_parent;
        if any {
            Ok(())
        } else {
            Err(format!("block rule {} has no condition", self.sent))
        }
    }

    pub fn matches(&self, url: &TargetUrl) -> bool {
        let prefix = |form: &str, rule: &str| {
            if self.exact {
                form == rule
            } else {
                form.starts_with(rule)
            }
        };
        !self.needs_parent
            && self
                .domain
                .as_deref()
                .is_none_or(|d| on_domain(url, d, self.exact))
            && self
                .substring
                .as_deref()
                .is_none_or(|s| url.normalized.contains(s))
            && self.surt.as_deref().is_none_or(|s| prefix(&surt(url), s))
            && self.ssurt.as_deref().is_none_or(|s| prefix(&ssurt(url), s))
            && self
                .regex
                .as_ref()
                .is_none_or(|r| r.is_match(&url.normalized))
    }

    /// The rule as the client sent it, in compact JSON.
    pub fn to_json(&self) -> String {
        self.sent.to_string()
    }
}

/// The host, or with `exact` only the host itself, is `domain` or under it (an IP address
/// only itself); the port does not count.
fn on_domain(url: &TargetUrl, domain: &str, exact: bool) -> bool {
    let host = url.host.trim_start_matches('[').trim_end_matches(']');
    let domain = domain.trim_start_matches('[').trim_end_matches(']');
    host == domain
        || (!exact
            && host.parse::<std::net::IpAddr>().is_err()
            && host.len() > domain.len()
            && host.ends_with(domain)
            && host.as_bytes()[host.len() - domain.len() - 1] == b'.')
}

/// The host's labels reversed, each followed by a comma (`com,example,www,`); an address
/// as it is.
fn reversed_host(url: &TargetUrl) -> String {
    if url.host.starts_with('[') || url.host.parse::<std::net::IpAddr>().is_ok() {
        return url.host.clone();
    }
    let mut out = String::with_capacity(url.host.len() + 1);
    for label in url.host.rsplit('.') {
        out.push_str(label);
        out.push(',');
    }
    out
}

/// The port, when it is not the scheme's.
fn explicit_port(url: &TargetUrl) -> Option<u16> {
    (url.port != url.scheme.default_port()).then_some(url.port)
}

/// urlcanon's SURT: `http://(com,example,)/path?q`, the port after the host's last comma.
fn surt(url: &TargetUrl) -> String {
    let port = explicit_port(url)
        .map(|p| format!(":{p}"))
        .unwrap_or_default();
    format!(
        "{}://({}{port}){}",
        url.scheme.as_str(),
        reversed_host(url),
        url.path_and_query
    )
}

/// urlcanon's SSURT: `com,example,//http:/path?q`, or `com,example,//8080:http:/path` with a
/// port.
fn ssurt(url: &TargetUrl) -> String {
    let port = explicit_port(url)
        .map(|p| format!("{p}:"))
        .unwrap_or_default();
    format!(
        "{}//{port}{}:{}",
        reversed_host(url),
        url.scheme.as_str(),
        url.path_and_query
    )
}

/// `compressed_blocks`: base64 (standard alphabet) of zlib-compressed JSON rules.
pub fn decompress(packed: &str) -> Result<Vec<BlockRule>, String> {
    let packed: String = packed
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let zlib = data_encoding::BASE64
        .decode(packed.as_bytes())
        .or_else(|_| data_encoding::BASE64_NOPAD.decode(packed.as_bytes()))
        .map_err(|e| format!("compressed_blocks is not base64: {e}"))?;
    let mut json = Vec::new();
    flate2::read::ZlibDecoder::new(&zlib[..])
        .take(MAX_RULES_JSON + 1)
        .read_to_end(&mut json)
        .map_err(|e| format!("compressed_blocks does not inflate: {e}"))?;
    if json.len() as u64 > MAX_RULES_JSON {
        return Err(format!(
            "compressed_blocks inflates past {MAX_RULES_JSON} bytes"
        ));
    }
    serde_json::from_slice(&json).map_err(|e| format!("compressed_blocks: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::url::parse_absolute;

    fn rule(json: &str) -> BlockRule {
        let rule: BlockRule = serde_json::from_str(json).unwrap();
        rule.check().unwrap();
        rule
    }

    fn blocks(json: &str, url: &str) -> bool {
        rule(json).matches(&parse_absolute(url).unwrap())
    }

    #[test]
    fn each_condition_matches_as_warcprox_does() {
        // domain: the host and its subdomains, whatever the port; not a longer name.
        let d = r#"{"domain":"Example.com"}"#;
        assert!(blocks(d, "http://example.com/"));
        assert!(blocks(d, "https://www.example.com:8443/x"));
        assert!(!blocks(d, "http://badexample.com/"));
        assert!(!blocks(
            r#"{"domain":"example.com","exact":true}"#,
            "http://www.example.com/"
        ));
        assert!(blocks(
            r#"{"domain":"127.0.0.1"}"#,
            "http://127.0.0.1:8080/"
        ));
        // substring, regex (the whole URL) and the older url_match forms.
        assert!(blocks(
            r#"{"substring":"/private/"}"#,
            "http://a.org/private/x"
        ));
        assert!(blocks(
            r#"{"regex":"https?://a\\.org/\\d+"}"#,
            "http://a.org/42"
        ));
        assert!(!blocks(
            r#"{"regex":"https?://a\\.org/\\d+"}"#,
            "http://a.org/42/more"
        ));
        assert!(blocks(
            r#"{"url_match":"STRING_MATCH","value":"ads"}"#,
            "http://ads.a.org/"
        ));
        assert!(blocks(
            r#"{"url_match":"REGEX_MATCH","value":".*\\.js"}"#,
            "http://a.org/x.js"
        ));
        // surt and ssurt: prefixes of those forms; an http SURT does not match https.
        let s = r#"{"url_match":"SURT_MATCH","value":"http://(org,a,"}"#;
        assert!(blocks(s, "http://www.a.org/x"));
        assert!(!blocks(s, "https://www.a.org/x"));
        assert!(blocks(
            r#"{"surt":"http://(org,a,:8080)/x"}"#,
            "http://a.org:8080/x/y"
        ));
        assert!(blocks(r#"{"ssurt":"org,a,//http:/x"}"#, "http://a.org/x?q"));
        assert!(blocks(
            r#"{"ssurt":"org,a,//8080:http:/"}"#,
            "http://a.org:8080/"
        ));
        assert!(!blocks(
            r#"{"ssurt":"org,a,//http:/x","exact":true}"#,
            "http://a.org/x?q"
        ));
        // All conditions must hold; a parent-URL condition never does here.
        assert!(!blocks(
            r#"{"domain":"a.org","substring":"zzz"}"#,
            "http://a.org/x"
        ));
        assert!(!blocks(
            r#"{"domain":"a.org","parent_url_regex":".*"}"#,
            "http://a.org/x"
        ));
        // Echoed as sent, compactly.
        assert_eq!(
            rule(r#"{ "domain" : "a.org" }"#).to_json(),
            r#"{"domain":"a.org"}"#
        );
    }

    #[test]
    fn compressed_rules_are_zlib_then_base64_and_bounded() {
        use std::io::Write;
        let pack = |json: &[u8]| {
            let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
            z.write_all(json).unwrap();
            data_encoding::BASE64.encode(&z.finish().unwrap())
        };
        let rules = decompress(&pack(br#"[{"domain":"a.org"},{"substring":"x"}]"#)).unwrap();
        assert_eq!(rules.len(), 2);
        let bomb = pack(&vec![b' '; (MAX_RULES_JSON + 10) as usize]);
        assert!(decompress(&bomb).unwrap_err().contains("inflates past"));
    }
}
