//! Sealed files leave the machine: `cluster/s3-upload.sh` as `--on-seal` uploads each sealed
//! ARC file and its CDX with rclone to a real S3-compatible server (s3s-fs, an S3 server on a
//! file system, built from crates.io by scripts/test), checks them and deletes the local
//! copies; while the store is down the hook fails, nothing is deleted, and liveweb retries
//! until the store is back.

mod common;

use common::*;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const ACCESS: &str = "liveweb-test";
const SECRET: &str = "liveweb-test-secret";

fn s3_server(root: &Path, addr: SocketAddr) -> Service {
    let mut command = Command::new("s3s-fs");
    command
        .args(["--host", "127.0.0.1", "--port", &addr.port().to_string()])
        .args(["--access-key", ACCESS, "--secret-key", SECRET])
        .arg(root);
    Service::start(command, addr, "s3s-fs (under target/tools)")
}

/// rclone's settings for the remote `s3`, as environment variables.
fn rclone_env(addr: SocketAddr) -> Vec<(String, String)> {
    [
        ("RCLONE_CONFIG_S3_TYPE", "s3".to_string()),
        ("RCLONE_CONFIG_S3_PROVIDER", "Other".to_string()),
        ("RCLONE_CONFIG_S3_ENDPOINT", format!("http://{addr}")),
        ("RCLONE_CONFIG_S3_ACCESS_KEY_ID", ACCESS.to_string()),
        ("RCLONE_CONFIG_S3_SECRET_ACCESS_KEY", SECRET.to_string()),
        ("LIVEWEB_S3_REMOTE", "s3:archive/node1".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn rclone(env: &[(String, String)], args: &[&str]) -> Output {
    let out = Command::new("rclone")
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env_remove("AWS_CA_BUNDLE")
        .output()
        .expect("rclone must be installed (scripts/test installs it)");
    assert!(out.status.success(), "rclone {args:?}: {out:?}");
    out
}

/// Names of the objects under the node's prefix.
fn stored(env: &[(String, String)]) -> Vec<String> {
    // One low-level try: rclone first asks whether the prefix is an object, which s3s-fs
    // answers with an error rather than a 404, and rclone would retry that for minutes.
    let out = rclone(
        env,
        &["lsf", "--low-level-retries", "1", "s3:archive/node1/"],
    );
    let mut names: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    names.sort();
    names
}

fn sealed_arcs(data: &Path) -> Vec<PathBuf> {
    files_ending(&data.join("sealed"), ".arc.gz")
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn on_seal_failures(proxy: &Proxy) -> f64 {
    let reply = send_raw(
        proxy.addr,
        b"GET /_liveweb/metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    String::from_utf8_lossy(&reply.body)
        .lines()
        .find_map(|l| l.strip_prefix("liveweb_on_seal_failures_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn sealed_files_are_uploaded_checked_and_deleted_and_kept_while_the_store_is_down() {
    let root = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let s3 = s3_server(root.path(), addr);
    let env = rclone_env(addr);
    rclone(&env, &["mkdir", "s3:archive"]);

    let origin = Origin::start();
    for i in 0..5 {
        origin.ok(
            &format!("/p{i}"),
            "text/plain",
            format!("page {i}").as_bytes(),
        );
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("cluster/s3-upload.sh");
    let script = script.to_str().unwrap();
    let proxy_env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    // Files seal after 2 s without records: each batch of requests below lands in one file.
    let args = [
        "--workers",
        "1",
        "--arc-max-idle",
        "2s",
        "--on-seal",
        script,
    ];
    let proxy = Proxy::start_env(&args, &proxy_env);
    for i in 0..3 {
        assert_eq!(
            get(proxy.addr, &origin.url(&format!("/p{i}")), "").status,
            200
        );
    }
    wait_until("the first file uploaded and deleted here", || {
        sealed_arcs(&proxy.data_dir).is_empty() && stored(&env).len() == 2
    });
    let names = stored(&env);
    let arc = names.iter().find(|n| n.ends_with(".arc.gz")).unwrap();
    let cdx = names.iter().find(|n| n.ends_with(".cdx")).unwrap();
    // What the store holds is the whole file: every record, and the CDX naming it.
    let object = rclone(&env, &["cat", &format!("s3:archive/node1/{arc}")]).stdout;
    let text = String::from_utf8_lossy(&gunzip_all(&object)).into_owned();
    for i in 0..3 {
        assert!(
            text.contains(&origin.url(&format!("/p{i}"))),
            "record {i} in {arc}"
        );
    }
    let index =
        String::from_utf8(rclone(&env, &["cat", &format!("s3:archive/node1/{cdx}")]).stdout)
            .unwrap();
    assert_eq!(index.lines().count(), 4, "{index}");
    assert!(index
        .lines()
        .skip(1)
        .all(|l| l.ends_with(&format!(" {arc}"))));

    // The store goes away: the next file is sealed, the hook fails, nothing is deleted.
    drop(s3);
    for i in 3..5 {
        assert_eq!(
            get(proxy.addr, &origin.url(&format!("/p{i}")), "").status,
            200
        );
    }
    wait_until("a failed upload", || on_seal_failures(&proxy) >= 1.0);
    let kept = sealed_arcs(&proxy.data_dir);
    assert_eq!(kept.len(), 1, "the file stays while its upload fails");
    // Back on the same address and data: the retry uploads it and then deletes it here.
    let _s3 = s3_server(root.path(), addr);
    wait_until("the second file uploaded after the store came back", || {
        sealed_arcs(&proxy.data_dir).is_empty() && stored(&env).len() == 4
    });
    let _ = proxy.finish();
}
