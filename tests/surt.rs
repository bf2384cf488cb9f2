//! CDX keys against the reference: liveweb's SURT keys must be byte-identical to the Python
//! `surt` package's (what pywb computes when it looks a URL up, and what archive-commons'
//! `WaybackURLKeyMaker` agrees with) for every URL liveweb can archive. The corpus: every
//! edge-case piece below on its own, thousands of generated combinations of them, and
//! realistic URLs; each goes through liveweb's own URL parser first (the key is computed on
//! the URL as archived).

use std::io::Write;
use std::process::{Command, Stdio};

use liveweb::archive::surt::surt;
use liveweb::http::url::parse_absolute;

const HOSTS: &[&str] = &[
    "example.com",
    "www.example.com",
    "WWW.Example.COM",
    "www2.example.co.uk",
    "www10.a.b",
    "wwwx.example.com",
    "www.www.example.com",
    "sub.www.example.com",
    "www",
    "www.",
    "127.0.0.1",
    "10.0.0.255",
    "2130706433",
    "0",
    "4294967297",
    "0123",
    "127.1",
    "1.2.3",
    "1.2.65535",
    "1.010.1.1",
    "0177.0.0.1",
    "0x7f.0.0.1",
    "1.08",
    "08.1",
    "256.1.1.1",
    "1.2.3.4.5",
    "a..b.com",
    "a...b.com",
    "example.com.",
    ".example.com",
    "a-b_c.example",
    "[::1]",
    "[2001:DB8::1]",
    "[::ffff:1.2.3.4]",
    "xn--bcher-kva.example",
    "localhost",
    "999999999999",
    "sid.example",
];

const PORTS: &[&str] = &["", ":80", ":443", ":8080", ":1", ":65535", ":0080"];

const PATHS: &[&str] = &[
    "",
    "/",
    "/index.html",
    "/dir/",
    "/dir//",
    "/a/./b/../c",
    "//double//slash",
    "/a%7Eb/c%2fd",
    "/%2541",
    "/%252541",
    "/UPPER/Case.HTML",
    "/%E2%82%AC",
    "/€uro/ünïcode",
    "/a/b/..",
    "/..",
    "/../a",
    "/./",
    "/a//",
    "/.",
    "/...",
    "/a/...b",
    "/(aaaaaaaaaaaaaaaaaaaaaaaa)/x.aspx",
    "/x/(s(abcdefghijklmnopqrstuvwx))/page.aspx",
    "/x/(s(abcdefghijklmnopqrstuvwx)f(012345678901234567890123))/p.ASPX?q",
    "/%",
    "/%zz",
    "/%%41",
    "/%4",
    "/a;b=c",
    "/~user/",
    "/a%23b",
    "/a%3Fb",
    "/a%2Fb",
    "/a%20b",
    "/%00x",
    "/%7f",
    "/😀",
    "/a+b",
    "/a|b^c`d{e}",
    "/\"quoted\"",
    "/'single'",
    "/a<b>c",
    "/a\\b",
    "/a[1]",
    "/a@b:c",
    "/A%2FB%2F",
];

const QUERIES: &[&str] = &[
    "",
    "?",
    "??",
    "?a=1",
    "?b=2&a=1",
    "?a=1&&b=2",
    "?A=B",
    "?a",
    "?a=",
    "?a&a=",
    "?a=&a",
    "?x=%41",
    "?q=%2541",
    "?PHPSESSID=0123456789abcdef0123456789ABCDEF",
    "?jsessionid=0123456789abcdef0123456789abcdef&x=1",
    "?x=1&sid=0123456789abcdef0123456789abcdef",
    "?foosid=0123456789abcdef0123456789abcdef",
    "?sid=0123456789abcdef0123456789abcde",
    "?sid=0123456789abcdef0123456789abcdef0",
    "?a=1&sid=0123456789abcdef0123456789abcdef&b=2",
    "?ASPSESSIONIDabcdefgh=abcdefghijklmnopqrstuvwx&z",
    "?cfid=1&cftoken=2&y",
    "?y&cfid=1&cftoken=2",
    "?utm_source=x&utm_medium=y&utm_campaign=z",
    "?q=caf%C3%A9",
    "?q=café",
    "?a=1#frag",
    "#frag",
    "?a=%26",
    "?a=b=c",
    "?&",
    "?&&",
    "?a=1&a=0",
    "?%7E",
    "?q=a+b",
    "?=x",
    "?a=%",
    "?a=%zz&b",
    "?a=%23",
    "?Z=1&z=1&Y",
    "?a[]=1&a[]=2",
    "?a=1;b=2",
    "?x=http://other.example/?y=1",
];

/// Realistic URLs: common site layouts, assets, search pages, tracking parameters.
const REALISTIC: &[&str] = &[
    "http://www.bbc.co.uk/news/world-europe-67523812",
    "https://www.nytimes.com/2024/11/25/technology/ai-chips.html?smid=nytcore-ios-share&referringSource=articleShare",
    "https://en.wikipedia.org/wiki/Web_archiving",
    "https://en.wikipedia.org/w/index.php?title=Special:Search&search=surt+format&ns0=1",
    "https://en.wikipedia.org/wiki/Caf%C3%A9",
    "https://www.youtube.com/watch?v=dQw4w9WgXcQ&t=42s&list=PL1234",
    "https://github.com/internetarchive/surt/blob/master/surt/surt.py#L10",
    "https://cdn.jsdelivr.net/npm/bootstrap@5.3.2/dist/css/bootstrap.min.css",
    "https://fonts.googleapis.com/css2?family=Roboto:wght@400;700&display=swap",
    "https://example.org/wp-content/uploads/2024/05/image-1024x768.jpg?ver=6.4.1",
    "https://shop.example.com/products/12345?ref=home&utm_source=newsletter&utm_medium=email",
    "https://api.example.com/v1/items?page=2&per_page=50&sort=-created_at",
    "http://www.example.com/cgi-bin/search.pl?q=web+archive;lang=en",
    "http://www.example.com/Default.aspx?ID=5&Lang=EN",
    "http://www.example.com/shop/cart.php?PHPSESSID=9f8e7d6c5b4a39281706f5e4d3c2b1a0&item=3",
    "http://www.example.com/app;jsessionid=0123456789ABCDEF0123456789ABCDEF?x=1",
    "https://www.google.com/search?q=%22exact+phrase%22&hl=en&source=hp",
    "https://twitter.com/i/web/status/1234567890123456789",
    "https://www.reddit.com/r/rust/comments/abc123/title_of_post/?utm_source=share",
    "https://archive.org/details/texts?and%5B%5D=subject%3A%22history%22",
    "https://web.archive.org/web/20240101000000*/example.com",
    "http://www2.dept.university.edu/~prof/courses/cs101/",
    "http://192.168.1.10:8080/admin/login.jsp?next=%2Fadmin%2F",
    "https://static.example.net/assets/app.8f3a9c.js",
    "https://img.example.net/i/abc/def.png?w=640&h=480&fit=crop&auto=format",
    "https://news.ycombinator.com/item?id=38412345",
    "https://docs.rs/tokio/latest/tokio/net/struct.TcpStream.html",
    "https://www.amazon.com/dp/B08N5WRWNW/ref=sr_1_1?keywords=kindle&qid=1700000000&sr=8-1",
    "http://example.com/index.php?option=com_content&view=article&id=42&Itemid=7",
    "https://maps.example.com/@51.5074,-0.1278,12z",
    "http://example.com/%7Euser/page%20one.html",
    "http://EXAMPLE.com/Index.HTML?B=2&A=1",
    "https://example.com:8443/secure/path/",
    "http://[2001:db8::1]:8080/ipv6/",
];

/// A small deterministic generator: the corpus is the same on every run.
struct Lcg(u64);

impl Lcg {
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        items[((self.0 >> 33) as usize) % items.len()]
    }
}

fn corpus() -> Vec<String> {
    let mut urls: Vec<String> = Vec::new();
    for host in HOSTS {
        for port in PORTS {
            urls.push(format!("http://{host}{port}/"));
            urls.push(format!("https://{host}{port}/x"));
        }
    }
    for path in PATHS {
        urls.push(format!("http://example.com{path}"));
        urls.push(format!("http://www.example.com{path}?b=1&a=2"));
    }
    for query in QUERIES {
        urls.push(format!("http://example.com/p{query}"));
        urls.push(format!("https://example.com/dir/{query}"));
    }
    let mut rng = Lcg(0x5eed);
    for _ in 0..4000 {
        let scheme = rng.pick(&["http", "https", "HTTP"]);
        let (host, port) = (rng.pick(HOSTS), rng.pick(PORTS));
        let (path, query) = (rng.pick(PATHS), rng.pick(QUERIES));
        let extra = rng.pick(&["", "", "&z=9", "&A=1&b", "/sub"]);
        urls.push(format!("{scheme}://{host}{port}{path}{query}{extra}"));
    }
    urls.extend(REALISTIC.iter().map(|u| u.to_string()));
    // The key is computed on the URL as liveweb archives it.
    let mut normalized: Vec<String> = urls
        .iter()
        .filter_map(|u| parse_absolute(u).ok())
        .map(|u| u.normalized)
        .collect();
    normalized.sort();
    normalized.dedup();
    normalized
}

/// The Python package's key for each URL (one per line), or why it could not run.
fn reference_keys(urls: &[String]) -> Vec<String> {
    let script = "import sys, surt\n\
                  for line in sys.stdin.buffer:\n\
                  \x20   url = line.rstrip(b'\\n')\n\
                  \x20   try:\n\
                  \x20       key = surt.surt(url)\n\
                  \x20   except Exception as e:\n\
                  \x20       key = b'!' + type(e).__name__.encode()\n\
                  \x20   sys.stdout.buffer.write(key + b'\\n')\n";
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 must be on PATH");
    let mut input = Vec::new();
    for u in urls {
        input.extend_from_slice(u.as_bytes());
        input.push(b'\n');
    }
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(
        out.status.success(),
        "the surt package is needed (scripts/test installs it into target/test-venv): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn keys_match_the_python_surt_package_on_thousands_of_urls() {
    let urls = corpus();
    assert!(urls.len() > 3000, "corpus of {} URLs", urls.len());
    let want = reference_keys(&urls);
    assert_eq!(want.len(), urls.len());
    let mut wrong = Vec::new();
    for (url, want) in urls.iter().zip(&want) {
        assert!(
            !want.starts_with('!'),
            "the reference failed on {url}: {want}"
        );
        let got = surt(url);
        if &got != want {
            wrong.push(format!("{url}\n   liveweb {got}\n   surt    {want}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} keys differ:\n{}",
        wrong.len(),
        urls.len(),
        wrong[..wrong.len().min(30)].join("\n")
    );
}
