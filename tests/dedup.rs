//! Dedup as warcprox does it: a crawler's forward-mode WARC capture whose payload was already
//! stored whole is archived as a `revisit` record (profile identical-payload-digest) naming
//! that capture, while its client gets the whole response; buckets from `Warcprox-Meta`
//! scope it, the digest store survives a restart, and `--dedup off` and the size floors turn
//! it off. Other clients' captures are stored whole, so the forward cache keeps serving a
//! page that did not change.

mod common;

use std::io::Read;
use std::path::Path;

use common::*;

const PAGE: &str = "<html>the same payload at every URL of this origin</html>";

fn origin() -> FnOrigin {
    FnOrigin::start(|_| {
        response(
            "200 OK",
            "Cache-Control: max-age=600\r\nContent-Type: text/html\r\n",
            PAGE,
        )
    })
}

/// Every WARC record under `dir`, as (header block, content block).
fn records(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    collect_arcs(dir, &mut files);
    let mut out = Vec::new();
    for f in files {
        let raw = std::fs::read(&f).unwrap();
        let mut plain = Vec::new();
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut plain)
            .unwrap();
        let mut rest = &plain[..];
        while let Some(at) = rest.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&rest[..at]).into_owned();
            let len: usize = header_in(&head, "content-length").unwrap().parse().unwrap();
            let body = rest[at + 4..at + 4 + len].to_vec();
            rest = &rest[at + 4 + len + 4..];
            out.push((head, body));
        }
    }
    out
}

/// The record of `kind` for `url`, with its content.
fn record<'a>(all: &'a [(String, Vec<u8>)], kind: &str, url: &str) -> Vec<&'a (String, Vec<u8>)> {
    all.iter()
        .filter(|(h, _)| {
            header_in(h, "warc-type").as_deref() == Some(kind)
                && header_in(h, "warc-target-uri").as_deref() == Some(url)
        })
        .collect()
}

/// What a crawler sends with each request: `Warcprox-Meta`, here naming nothing.
const CRAWLER: &str = "Warcprox-Meta: {}\r\n";

fn meta(buckets: &str) -> String {
    format!("Warcprox-Meta: {{\"dedup-buckets\":{buckets}}}\r\n")
}

#[test]
fn an_identical_payload_is_archived_as_a_revisit_naming_the_first_capture() {
    let origin = origin();
    let proxy = Proxy::start(&["--format", "warc", "--mode", "forward"]);
    let first = origin.url("/first");
    let again = origin.url("/again");
    let r = fwd(&proxy, &first, "");
    assert_eq!((r.status, &r.body[..]), (200, PAGE.as_bytes()));
    wait_stored(&proxy, &first, "");
    // Another URL with the same payload, asked for by a crawler: the client gets it whole,
    // the archive a revisit.
    for _ in 0..2 {
        let r = fwd(&proxy, &again, CRAWLER);
        assert_eq!(
            (r.status, &r.body[..]),
            (200, PAGE.as_bytes()),
            "{}",
            r.head
        );
        assert_eq!(cache(&r), "MISS");
    }
    // A revisit holds no body: the URL is not kept in the cache, each request fetches it.
    assert_eq!(origin.requests_for("/again").len(), 2);
    // A browser's capture of it is stored whole, and then answered from the cache.
    assert_eq!(cache(&fwd(&proxy, &again, "")), "MISS");
    wait_stored(&proxy, &again, "");
    assert_eq!(cache(&fwd(&proxy, &again, "")), "HIT");
    assert_eq!(origin.requests_for("/again").len(), 3);

    // Buckets: "other" has nothing yet, so its first capture is stored whole and recorded
    // there; a read-only lookup in "other" finds it; "third" is only read, never recorded.
    let c = origin.url("/c");
    fwd(&proxy, &c, &meta(r#"{"other":"rw"}"#));
    wait_stored(&proxy, &c, &meta(r#"{"other":"rw"}"#));
    fwd(&proxy, &origin.url("/d"), &meta(r#"{"other":"ro"}"#));
    let e = origin.url("/e");
    fwd(&proxy, &e, &meta(r#"{"third":"ro"}"#));
    wait_stored(&proxy, &e, &meta(r#"{"third":"ro"}"#));
    fwd(&proxy, &origin.url("/f"), &meta(r#"{"third":"rw"}"#));
    let status = get(proxy.addr, "/_liveweb/status.json", "");
    let json = String::from_utf8_lossy(&status.body).into_owned();
    assert!(json.contains("\"revisits\":3"), "{json}");
    let data = proxy.data_dir.clone();
    let _keep = proxy.finish();

    let all = records(&data);
    let original = record(&all, "response", &first);
    assert_eq!(original.len(), 1);
    let (orig_head, _) = original[0];
    let revisits = record(&all, "revisit", &again);
    assert_eq!(
        revisits.len(),
        2,
        "both of the crawler's fetches are revisits"
    );
    assert_eq!(
        record(&all, "response", &again).len(),
        1,
        "the browser's, whole"
    );
    for (head, block) in revisits {
        let field = |name| header_in(head, name).unwrap_or_else(|| panic!("{name} in {head}"));
        assert_eq!(
            field("warc-profile"),
            "http://netpreserve.org/warc/1.1/revisit/identical-payload-digest"
        );
        assert_eq!(field("warc-refers-to-target-uri"), first);
        assert_eq!(
            field("warc-refers-to"),
            header_in(orig_head, "warc-record-id").unwrap()
        );
        assert_eq!(
            field("warc-refers-to-date"),
            header_in(orig_head, "warc-date").unwrap()
        );
        assert_eq!(
            field("warc-payload-digest"),
            header_in(orig_head, "warc-payload-digest").unwrap()
        );
        // The block is the response's HTTP head alone.
        let text = String::from_utf8_lossy(block);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\n") && !text.contains(PAGE), "{text}");
        assert_eq!(field("content-length"), block.len().to_string());
    }
    // Their request records are there too (and the browser's capture's).
    assert_eq!(record(&all, "request", &again).len(), 3);
    let kinds = |path: &str| -> Vec<String> {
        let url = origin.url(path);
        all.iter()
            .filter(|(h, _)| header_in(h, "warc-target-uri").as_deref() == Some(url.as_str()))
            .filter_map(|(h, _)| header_in(h, "warc-type"))
            .filter(|k| k != "request")
            .collect()
    };
    assert_eq!(kinds("/c"), ["response"], "a bucket of its own");
    assert_eq!(kinds("/d"), ["revisit"], "read-only lookup in that bucket");
    assert_eq!(kinds("/e"), ["response"], "nothing in the read-only bucket");
    assert_eq!(
        kinds("/f"),
        ["response"],
        "a read-only capture records nothing"
    );

    // The CDX lists revisits as pywb's indexer does: mime warc/revisit, the payload digest.
    let cdx: String = files_ending(&data.join("sealed"), ".cdx")
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    let line = cdx
        .lines()
        .find(|l| l.split(' ').nth(2) == Some(again.as_str()) && l.contains(" warc/revisit "))
        .unwrap_or_else(|| panic!("{cdx}"));
    let fields: Vec<&str> = line.split(' ').collect();
    assert_eq!((fields[3], fields[4]), ("warc/revisit", "200"), "{line}");
    let digest = header_in(orig_head, "warc-payload-digest").unwrap();
    assert_eq!(Some(fields[5]), digest.strip_prefix("sha1:"));

    // The digest store survives a restart, and revisit lines do not become a URL's entry
    // (a revisit has no body to answer with): /d has only a revisit, /again its whole copy.
    let proxy = Proxy::start_in(&data, &["--format", "warc", "--mode", "forward"]);
    let r = fwd(&proxy, &origin.url("/after-restart"), CRAWLER);
    assert_eq!(&r.body[..], PAGE.as_bytes());
    let r = fwd(&proxy, &origin.url("/d"), "");
    assert_eq!((cache(&r).as_str(), &r.body[..]), ("MISS", PAGE.as_bytes()));
    let r = fwd(&proxy, &again, "");
    assert_eq!((cache(&r).as_str(), &r.body[..]), ("HIT", PAGE.as_bytes()));
    let _ = proxy.finish();
    let all = records(&data);
    assert_eq!(
        record(&all, "revisit", &origin.url("/after-restart")).len(),
        1
    );
}

#[test]
fn dedup_off_and_the_size_floors_store_payloads_whole() {
    let origin = origin();
    let cases: [(&[&str], usize); 3] = [
        (&["--dedup", "off"], 0),
        (&["--dedup-min-text-size", "1KB"], 0),
        // The floor for other types does not apply to text/html.
        (&["--dedup-min-binary-size", "1KB"], 1),
    ];
    for (flags, revisits) in cases {
        let mut args = vec!["--format", "warc", "--mode", "forward"];
        args.extend_from_slice(flags);
        let proxy = Proxy::start(&args);
        let a = origin.url("/one");
        fwd(&proxy, &a, "");
        wait_stored(&proxy, &a, "");
        let r = fwd(&proxy, &origin.url("/two"), CRAWLER);
        assert_eq!(&r.body[..], PAGE.as_bytes());
        let data = proxy.data_dir.clone();
        let _keep = proxy.finish();
        let all = records(&data);
        let kinds: Vec<_> = all
            .iter()
            .filter_map(|(h, _)| header_in(h, "warc-type"))
            .filter(|k| k == "revisit")
            .collect();
        assert_eq!(kinds.len(), revisits, "{flags:?}");
        assert_eq!(data.join("dedup").exists(), flags[1] != "off");
    }
}

/// A browser's page that did not change stays cached: once its copy expires it is fetched
/// again and stored whole (not as a revisit, which holds no body to answer from), and the
/// next request is a hit again.
#[test]
fn an_unchanged_page_stays_cached_for_browsers_after_it_expires() {
    let origin = origin();
    // Forward-mode freshness counts whole seconds (Date, Age, max-age).
    let proxy = Proxy::start(&["--format", "warc", "--mode", "forward", "--ttl", "2s"]);
    let page = origin.url("/page");
    assert_eq!(cache(&fwd(&proxy, &page, "")), "MISS");
    wait_stored(&proxy, &page, "");
    assert_eq!(cache(&fwd(&proxy, &page, "")), "HIT");
    // Past --ttl the copy is stale (the passing of time is the event waited for).
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let r = fwd(&proxy, &page, "");
    assert_eq!((cache(&r).as_str(), &r.body[..]), ("MISS", PAGE.as_bytes()));
    wait_stored(&proxy, &page, "");
    let r = fwd(&proxy, &page, "");
    assert_eq!((cache(&r).as_str(), &r.body[..]), ("HIT", PAGE.as_bytes()));
    assert_eq!(origin.requests_for("/page").len(), 2);
    let data = proxy.data_dir.clone();
    let _keep = proxy.finish();
    let all = records(&data);
    assert_eq!(record(&all, "response", &page).len(), 2);
    assert_eq!(record(&all, "revisit", &page).len(), 0);
}
