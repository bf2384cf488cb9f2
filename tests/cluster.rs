//! Three liveweb nodes behind HAProxy, configured by `cluster/haproxy.cfg.template`: 2,000
//! URLs fetched through the front by several clients are each fetched once cluster-wide and
//! answered from the store the second time; a node killed with -9 mid-run moves only its own
//! URLs (clients see correct replies or clean 502/503s meanwhile), and once restarted and
//! recovered it serves its old records again. Then `cluster/merge-cdx.sh` merges the nodes'
//! CDX files into one sorted index.

mod common;

use common::*;
use std::collections::HashMap;
use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const URLS: usize = 2000;
const CLIENTS: usize = 4;

fn haproxy(nodes: &[SocketAddr], dir: &Path) -> Service {
    let front = free_addr();
    let template = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("cluster/haproxy.cfg.template"),
    )
    .unwrap();
    let servers: String = nodes
        .iter()
        .enumerate()
        .map(|(i, a)| format!("    server node{} {a}\n", i + 1))
        .collect();
    let config = template
        .replace("@FRONT@", &front.to_string())
        // Fast checks, so the test sees a node go down and come back within a second.
        .replace("@CHECK@", "check inter 100ms fall 2 rise 1")
        .replace("@SERVERS@\n", &servers);
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, config).unwrap();
    let mut command = Command::new("haproxy");
    command.args(["-db", "-f"]).arg(&path);
    Service::start(command, front, "haproxy")
}

fn body_of(path: &str) -> Vec<u8> {
    format!("the page at {path}\n").repeat(20).into_bytes()
}

/// One client's view of one request.
#[derive(Debug, Clone)]
struct Seen {
    status: u16,
    cache: Option<String>,
    node: Option<String>,
}

/// Requests `paths` through the front on one keep-alive connection (a fresh one after any
/// close), checking every 200 carries the page's record; `after_each` runs after each reply.
fn client(
    front: SocketAddr,
    origin: &FnOrigin,
    paths: &[String],
    after_each: &dyn Fn(),
) -> Vec<(String, Seen)> {
    let mut conn: Option<BufReader<TcpStream>> = None;
    let mut seen = Vec::with_capacity(paths.len());
    for path in paths {
        let url = origin.url(path);
        let host = url.split('/').nth(2).unwrap();
        let c = conn.get_or_insert_with(|| connect(front));
        let request = format!("GET {url} HTTP/1.1\r\nHost: {host}\r\n\r\n");
        let reply = match c.get_mut().write_all(request.as_bytes()) {
            Ok(()) => read_any_reply(c, false).0,
            Err(_) => {
                conn = None;
                seen.push((
                    path.clone(),
                    Seen {
                        status: 0,
                        cache: None,
                        node: None,
                    },
                ));
                continue;
            }
        };
        if reply.status == 200 {
            let (_, payload) = reply.record();
            assert!(payload.ends_with(&body_of(path)), "{path}: wrong record");
        }
        if reply
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
            || reply.status != 200
        {
            conn = None;
        }
        seen.push((
            path.clone(),
            Seen {
                status: reply.status,
                cache: reply.header("x-cache"),
                node: reply.header("x-liveweb-node"),
            },
        ));
        after_each();
    }
    seen
}

/// Every path, split between `CLIENTS` threads.
fn pass(
    front: SocketAddr,
    origin: &Arc<FnOrigin>,
    paths: &[String],
    after_each: Arc<dyn Fn() + Send + Sync>,
) -> HashMap<String, Seen> {
    let chunks: Vec<Vec<String>> = paths.chunks(URLS / CLIENTS).map(|c| c.to_vec()).collect();
    let threads: Vec<_> = chunks
        .into_iter()
        .map(|chunk| {
            let (origin, after_each) = (origin.clone(), after_each.clone());
            std::thread::spawn(move || client(front, &origin, &chunk, &*after_each))
        })
        .collect();
    threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect()
}

#[test]
fn one_fetch_per_url_across_nodes_and_a_node_lost_and_back() {
    let origin = Arc::new(FnOrigin::start(|head| {
        let path = head.split(' ').nth(1).unwrap_or("/").to_string();
        let body = body_of(&path);
        let mut r = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        r.extend_from_slice(&body);
        r
    }));
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    // HAProxy names each client in a PROXY protocol header.
    let logs: Vec<String> = dirs
        .iter()
        .map(|d| d.path().join("access.log").to_string_lossy().into_owned())
        .collect();
    let node_args = |k: usize| {
        vec![
            "--proxy-protocol-from",
            "127.0.0.1/32",
            "--access-log",
            logs[k].as_str(),
        ]
    };
    let mut nodes: Vec<Option<Proxy>> = dirs
        .iter()
        .enumerate()
        .map(|(k, d)| Some(Proxy::start_in(d.path(), &node_args(k))))
        .collect();
    let addrs: Vec<SocketAddr> = nodes.iter().flatten().map(|p| p.addr).collect();
    let work = tempfile::tempdir().unwrap();
    let front = haproxy(&addrs, work.path());
    let paths: Vec<String> = (0..URLS).map(|i| format!("/u/{i}")).collect();
    let nothing: Arc<dyn Fn() + Send + Sync> = Arc::new(|| {});

    // Twice through the front: fetched once, then answered from the store.
    let first = pass(front.addr, &origin, &paths, nothing.clone());
    let second = pass(front.addr, &origin, &paths, nothing.clone());
    let mut per_node: HashMap<String, usize> = HashMap::new();
    for path in &paths {
        let (a, b) = (&first[path], &second[path]);
        assert_eq!((a.status, b.status), (200, 200), "{path}");
        assert_eq!(b.cache.as_deref(), Some("HIT"), "{path}: {b:?}");
        assert_eq!(a.node, b.node, "{path}: one home node");
        assert_eq!(origin.requests_for(path).len(), 1, "{path} fetched once");
        *per_node.entry(a.node.clone().unwrap()).or_default() += 1;
    }
    assert_eq!(
        per_node.len(),
        3,
        "URLs spread over every node: {per_node:?}"
    );
    // Another spelling of the same URL (liveweb lowercases the scheme) reaches its home node.
    let mut conn = connect(front.addr);
    for path in &paths[..50] {
        let url = origin.url(path).replacen("http://", "HTTP://", 1);
        let host = url.split('/').nth(2).unwrap();
        conn.get_mut()
            .write_all(format!("GET {url} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
            .unwrap();
        let reply = read_any_reply(&mut conn, false).0;
        assert_eq!(reply.header("x-liveweb-node"), first[path].node, "{url}");
        assert_eq!(reply.header("x-cache").as_deref(), Some("HIT"), "{url}");
    }
    drop(conn);

    // Node 2 is killed a third of the way through a pass.
    let done = Arc::new(AtomicUsize::new(0));
    let victim = Arc::new(Mutex::new(nodes[1].take()));
    let kill: Arc<dyn Fn() + Send + Sync> = {
        let (done, victim) = (done.clone(), victim.clone());
        Arc::new(move || {
            if done.fetch_add(1, Ordering::SeqCst) == URLS / 3 {
                if let Some(node) = victim.lock().unwrap().take() {
                    node.kill9();
                }
            }
        })
    };
    let third = pass(front.addr, &origin, &paths, kill);
    for path in &paths {
        let (home, now) = (&second[path].node, &third[path]);
        assert!(
            matches!(now.status, 200 | 502 | 503),
            "{path}: only correct replies or clean errors, got {now:?}"
        );
        // The other nodes keep their URLs.
        if now.status == 200 && home.as_deref() != Some("node2") {
            assert_eq!(&now.node, home, "{path} moved although its node is up");
            assert_eq!(now.cache.as_deref(), Some("HIT"), "{path}");
        }
    }

    // Back on the same address with the same data: recovered, and home to its URLs again.
    nodes[1] = Some(Proxy::start_at(addrs[1], dirs[1].path(), &node_args(1)));
    let home_of_2 = paths
        .iter()
        .find(|p| second[*p].node.as_deref() == Some("node2"))
        .unwrap()
        .clone();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let seen = client(
            front.addr,
            &origin,
            std::slice::from_ref(&home_of_2),
            &|| {},
        );
        if seen[0].1.node.as_deref() == Some("node2") {
            break;
        }
        assert!(Instant::now() < deadline, "HAProxy never saw node2 back");
        std::thread::sleep(Duration::from_millis(100));
    }
    let fourth = pass(front.addr, &origin, &paths, nothing);
    for path in &paths {
        let (home, now) = (&second[path], &fourth[path]);
        assert_eq!(now.status, 200, "{path}");
        assert_eq!(now.node, home.node, "{path} is back on its home node");
        assert_eq!(
            now.cache.as_deref(),
            Some("HIT"),
            "{path}: served from the store"
        );
        let fetches = origin.requests_for(path).len();
        if home.node.as_deref() == Some("node2") {
            // Asked for while its node was down, another node fetched it once more.
            assert!(fetches <= 2, "{path} fetched {fetches} times");
        } else {
            assert_eq!(
                fetches, 1,
                "{path} fetched again although its node stayed up"
            );
        }
    }
    // The node sees the client, not HAProxy: a request from 127.0.0.2 is logged as such.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&SocketAddr::from(([127, 0, 0, 2], 0)).into())
        .unwrap();
    socket.connect(&front.addr.into()).unwrap();
    let mut from_2 = BufReader::new(TcpStream::from(socket));
    let url = origin.url("/u/7");
    let host = url.split('/').nth(2).unwrap().to_string();
    from_2
        .get_mut()
        .write_all(
            format!("GET {url} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .unwrap();
    let reply = read_any_reply(&mut from_2, false).0;
    assert_eq!(reply.status, 200);
    let node = reply.header("x-liveweb-node").unwrap();
    let k: usize = node.trim_start_matches("node").parse::<usize>().unwrap() - 1;
    drop(front);

    // The nodes' CDX files, merged into one sorted index.
    let mut cdx_dirs = Vec::new();
    for (node, dir) in nodes.into_iter().zip(&dirs) {
        let _ = node.unwrap().finish();
        cdx_dirs.push(dir.path().join("sealed"));
    }
    let log = std::fs::read_to_string(&logs[k]).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains(" 127.0.0.2 ") && l.contains(&url)),
        "the client's own address in {node}'s access log"
    );
    let merged = work.path().join("all.cdx");
    let out = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("cluster/merge-cdx.sh"))
        .arg(&merged)
        .args(&cdx_dirs)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = std::fs::read_to_string(&merged).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], " CDX N b a m s k r M S V g");
    assert!(
        lines[1..].windows(2).all(|w| w[0] <= w[1]),
        "sorted bytewise"
    );
    let captured: std::collections::HashSet<&str> = lines[1..]
        .iter()
        .filter_map(|l| l.split(' ').nth(2))
        .collect();
    assert_eq!(captured.len(), URLS, "every URL in the merged index");
}
