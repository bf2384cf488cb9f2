//! Fetch scheduling: slots in all and per origin, observed at slow origins the tests run;
//! clients served in turn however big one's backlog; waiting bounded, with `503` E60 and a
//! Retry-After past it.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{read_reply, Proxy, Reply};

/// Requests being served now, and the most there ever were at once.
#[derive(Default)]
struct Concurrency {
    now: AtomicUsize,
    most: AtomicUsize,
}

impl Concurrency {
    fn enter(&self) {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
    }

    fn leave(&self) {
        self.now.fetch_sub(1, Ordering::SeqCst);
    }

    fn now(&self) -> usize {
        self.now.load(Ordering::SeqCst)
    }

    fn most(&self) -> usize {
        self.most.load(Ordering::SeqCst)
    }
}

/// An origin that takes `delay` over every request (keep-alive, a thread per connection),
/// recording the paths in the order they arrived and how many it served at once (alone and
/// together with the origins sharing `all`).
struct SlowOrigin {
    addr: SocketAddr,
    arrived: Arc<Mutex<Vec<String>>>,
    load: Arc<Concurrency>,
}

impl SlowOrigin {
    fn start(delay: Duration) -> SlowOrigin {
        Self::start_counted(delay, Arc::default())
    }

    fn start_on(port: u16, delay: Duration) -> SlowOrigin {
        Self::start_at(("127.0.0.1", port), delay, Arc::default())
    }

    fn start_counted(delay: Duration, all: Arc<Concurrency>) -> SlowOrigin {
        Self::start_at(("127.0.0.1", 0), delay, all)
    }

    fn start_at(bind: (&str, u16), delay: Duration, all: Arc<Concurrency>) -> SlowOrigin {
        let listener = TcpListener::bind(bind).unwrap();
        let addr = listener.local_addr().unwrap();
        let arrived: Arc<Mutex<Vec<String>>> = Arc::default();
        let load: Arc<Concurrency> = Arc::default();
        let (log, mine) = (arrived.clone(), load.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let counts = [mine.clone(), all.clone()];
                let log = log.clone();
                std::thread::spawn(move || serve_slowly(conn, delay, log, counts));
            }
        });
        SlowOrigin {
            addr,
            arrived,
            load,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn arrivals(&self) -> Vec<String> {
        self.arrived.lock().unwrap().clone()
    }
}

fn serve_slowly(
    conn: TcpStream,
    delay: Duration,
    log: Arc<Mutex<Vec<String>>>,
    counts: [Arc<Concurrency>; 2],
) {
    let mut reader = BufReader::new(conn);
    loop {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            head.push_str(&line);
            if line == "\r\n" {
                break;
            }
        }
        let path = head.split(' ').nth(1).unwrap_or("").to_string();
        counts.iter().for_each(|c| c.enter());
        log.lock().unwrap().push(path.clone());
        std::thread::sleep(delay);
        counts.iter().for_each(|c| c.leave());
        let body = format!("slow {path}");
        let reply = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nCache-Control: max-age=600\r\n\r\n{body}",
            body.len()
        );
        if reader.get_mut().write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

/// A connection to `proxy` from the loopback address `from`.
fn connect_from(from: &str, proxy: SocketAddr) -> BufReader<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let source: IpAddr = from.parse().unwrap();
    socket.bind(&SocketAddr::new(source, 0).into()).unwrap();
    socket.connect(&proxy.into()).unwrap();
    let stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    BufReader::new(stream)
}

/// GETs `url` from `from` on a connection of its own, on a thread; the reply comes back
/// on the handle.
fn get_from(from: &str, proxy: SocketAddr, url: String) -> std::thread::JoinHandle<Reply> {
    let from = from.to_string();
    std::thread::spawn(move || {
        let mut conn = connect_from(&from, proxy);
        let raw = format!("GET {url} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        conn.get_mut().write_all(raw.as_bytes()).unwrap();
        read_reply(&mut conn, false)
    })
}

/// Waits until `cond` holds (polled; the condition is an event the test cannot be told of).
fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn fetches_are_capped_per_origin_and_in_all() {
    let both: Arc<Concurrency> = Arc::default();
    let a = SlowOrigin::start_counted(Duration::from_millis(100), both.clone());
    let b = SlowOrigin::start_counted(Duration::from_millis(100), both.clone());
    let proxy = Proxy::start(&["--max-fetches-per-host", "3", "--max-fetches", "4"]);
    let fetch_all = |urls: Vec<String>| {
        let replies: Vec<_> = urls
            .into_iter()
            .map(|u| get_from("127.0.0.1", proxy.addr, u))
            .collect();
        for r in replies {
            let r = r.join().unwrap();
            assert_eq!(r.status, 200, "{}", r.head);
        }
    };
    // One origin alone: the per-origin cap is what binds.
    fetch_all((0..12).map(|i| a.url(&format!("/a{i}"))).collect());
    assert_eq!(a.arrivals().len(), 12);
    assert_eq!(a.load.most(), 3, "per-origin cap");
    // Both at once: the cap in all binds (how the four slots split between the two origins
    // depends on arrival order; neither ever has more than three).
    let urls = (0..12)
        .flat_map(|i| [a.url(&format!("/a2-{i}")), b.url(&format!("/b{i}"))])
        .collect();
    fetch_all(urls);
    assert_eq!(b.arrivals().len(), 12);
    assert_eq!(both.most(), 4, "cap in all");
    assert!(a.load.most() <= 3 && b.load.most() <= 3);
}

#[test]
fn a_client_with_a_backlog_does_not_starve_another() {
    let origin = SlowOrigin::start(Duration::from_millis(100));
    let proxy = Proxy::start(&["--max-fetches-per-host", "4"]);
    // Client A queues 100 fetches (one connection each).
    let mut flood = Vec::new();
    for i in 0..100 {
        flood.push(get_from(
            "127.0.0.2",
            proxy.addr,
            origin.url(&format!("/a/{i}")),
        ));
    }
    wait_for("the origin to be busy with A", || origin.load.now() == 4);
    // Client B asks for 10 URLs once A's backlog waits.
    let joined = origin.arrivals().len();
    let mut asks = Vec::new();
    for i in 0..10 {
        asks.push(get_from(
            "127.0.0.3",
            proxy.addr,
            origin.url(&format!("/b/{i}")),
        ));
    }
    for r in asks {
        assert_eq!(r.join().unwrap().status, 200);
    }
    // How many of A's fetches went to the origin between B joining and B's last fetch.
    let arrivals = origin.arrivals();
    let last_b = arrivals.iter().rposition(|p| p.starts_with("/b/")).unwrap();
    let a_between = arrivals[joined..last_b]
        .iter()
        .filter(|p| p.starts_with("/a/"))
        .count();
    // Taking turns: about one of A's per one of B's (plus those A had queued before B's
    // requests reached liveweb); first come, first served would be most of A's 100.
    assert!(
        a_between <= 30,
        "{a_between} of A's fetches ran before B's 10 were done"
    );
    for r in flood {
        assert_eq!(r.join().unwrap().status, 200);
    }
}

#[test]
fn past_the_queue_a_miss_is_503_busy_with_retry_after() {
    let origin = SlowOrigin::start(Duration::from_millis(1500));
    let proxy = Proxy::start(&[
        "--max-fetches",
        "1",
        "--max-queue-per-client",
        "2",
        "--read-timeout",
        "10s",
    ]);
    let first = get_from("127.0.0.4", proxy.addr, origin.url("/q0"));
    wait_for("the first fetch", || origin.load.now() == 1);
    // One running, room for two waiting: of three more, whichever comes last is refused.
    let more: Vec<_> = (1..4)
        .map(|i| get_from("127.0.0.4", proxy.addr, origin.url(&format!("/q{i}"))))
        .collect();
    let replies: Vec<Reply> = more.into_iter().map(|r| r.join().unwrap()).collect();
    let refused: Vec<&Reply> = replies.iter().filter(|r| r.status == 503).collect();
    assert_eq!(refused.len(), 1, "{replies:?}");
    assert_eq!(replies.iter().filter(|r| r.status == 200).count(), 2);
    let refused = refused[0];
    assert_eq!(
        refused.header("x-liveweb-error").as_deref(),
        Some("E60 busy"),
        "{}",
        refused.head
    );
    let retry: u32 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=3600).contains(&retry), "{retry}");
    assert_eq!(first.join().unwrap().status, 200);
    assert_eq!(
        origin.arrivals().len(),
        3,
        "the refused one never reached the origin"
    );
}

#[test]
fn a_fetch_waiting_past_the_queue_timeout_is_503_busy() {
    let origin = SlowOrigin::start(Duration::from_millis(1500));
    let proxy = Proxy::start(&[
        "--max-fetches",
        "1",
        "--queue-timeout",
        "300ms",
        "--read-timeout",
        "10s",
    ]);
    let first = get_from("127.0.0.1", proxy.addr, origin.url("/long"));
    wait_for("the first fetch", || origin.load.now() == 1);
    let started = Instant::now();
    let waited = get_from("127.0.0.1", proxy.addr, origin.url("/behind"))
        .join()
        .unwrap();
    assert_eq!(waited.status, 503, "{}", waited.head);
    assert_eq!(
        waited.header("x-liveweb-error").as_deref(),
        Some("E60 busy")
    );
    assert!(started.elapsed() < Duration::from_millis(1400));
    assert!(!origin.arrivals().contains(&"/behind".to_string()));
    // Not archived, not cached: asked again once the slot is free, it is fetched.
    assert_eq!(first.join().unwrap().status, 200);
    let again = get_from("127.0.0.1", proxy.addr, origin.url("/behind"))
        .join()
        .unwrap();
    assert_eq!(again.status, 200, "{}", again.head);
}

#[test]
fn prefer_respond_async_is_202_until_the_record_is_stored() {
    let origin = SlowOrigin::start(Duration::from_millis(300));
    let proxy = Proxy::start(&[]);
    let url = origin.url("/later");
    let ask = |extra: &str| {
        let mut conn = connect_from("127.0.0.1", proxy.addr);
        let raw = format!("GET {url} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}\r\n");
        conn.get_mut().write_all(raw.as_bytes()).unwrap();
        read_reply(&mut conn, false)
    };
    let first = ask("Prefer: respond-async, wait=10\r\n");
    assert_eq!(first.status, 202, "{}", first.head);
    assert_eq!(
        first.header("preference-applied").as_deref(),
        Some("respond-async")
    );
    let retry: u32 = first.header("retry-after").unwrap().parse().unwrap();
    assert!(retry >= 1);
    // Still in flight: 202 again, and no second fetch.
    wait_for("the fetch to reach the origin", || origin.load.now() == 1);
    assert_eq!(ask("Prefer: respond-async\r\n").status, 202);
    // Once stored, the record, with or without the preference.
    wait_for("the record", || {
        ask("Prefer: respond-async\r\n").status == 200
    });
    let stored = ask("");
    assert_eq!(stored.status, 200);
    assert_eq!(stored.header("x-cache").as_deref(), Some("HIT"));
    let (header, payload) = stored.record();
    assert!(header.starts_with(&url), "{header}");
    assert!(payload.ends_with(b"slow /later"));
    assert_eq!(origin.arrivals(), vec!["/later".to_string()]);
}

/// A loopback port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn an_unreachable_origin_fails_fast_until_the_bad_host_ttl_passes() {
    let proxy = Proxy::start(&["--bad-host-ttl", "1s"]);
    let port = closed_port();
    let url = |path: &str| format!("http://127.0.0.1:{port}{path}");
    let get = |path: &str| get_from("127.0.0.1", proxy.addr, url(path)).join().unwrap();
    let refused = get("/a");
    assert_eq!(refused.status, 502);
    let code = refused.header("x-liveweb-error");
    assert_eq!(code.as_deref(), Some("E30 connection refused"));
    // The origin comes up: within the TTL, another URL on it still fails the same way
    // without a connection reaching it.
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("port still free");
    listener.set_nonblocking(true).unwrap();
    let remembered = get("/b");
    assert_eq!(remembered.header("x-liveweb-error"), code);
    assert!(listener.accept().is_err(), "the origin was contacted");
    // After the TTL it is tried again.
    drop(listener);
    let origin = SlowOrigin::start_on(port, Duration::ZERO);
    // (A new URL each time: a failure answered in the meantime is archived and cached for
    // its own URL.)
    let tries = AtomicUsize::new(0);
    wait_for("the origin to be tried again", || {
        let n = tries.fetch_add(1, Ordering::SeqCst);
        get(&format!("/c{n}")).status == 200
    });
    let last = tries.load(Ordering::SeqCst) - 1;
    assert_eq!(origin.arrivals(), vec![format!("/c{last}")]);
}

#[test]
fn a_name_whose_first_address_refuses_is_fetched_from_the_next() {
    let origin = SlowOrigin::start(Duration::ZERO);
    let port = origin.addr.port();
    // Nothing listens on 127.0.0.9: its connect is refused, then 127.0.0.1 answers.
    let proxy = Proxy::start_env(
        &[],
        &[("LIVEWEB_TEST_HOSTS", "two.test=127.0.0.9,127.0.0.1")],
    );
    for path in ["/first", "/second"] {
        let url = format!("http://two.test:{port}{path}");
        let reply = get_from("127.0.0.1", proxy.addr, url.clone())
            .join()
            .unwrap();
        assert_eq!(reply.status, 200, "{}", reply.head);
        let (header, _) = reply.record();
        assert!(header.starts_with(&format!("{url} 127.0.0.1 ")), "{header}");
    }
    assert_eq!(origin.arrivals(), vec!["/first", "/second"]);
}
