//! Archive write throughput per `--fsync` policy: the real per-worker writer (O_DIRECT,
//! group commit) on one io_uring runtime, 64 tasks appending pre-encoded records at once.
//! Run: `cargo bench --bench archive_write` (writes ~1.5 GB under target/ and removes it).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use liveweb::archive::cdx::CdxEntry;
use liveweb::archive::FsyncPolicy;
use liveweb::archive::{AppendRecord, ArcWriter, FileTable, WriterConfig};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const TASKS: usize = 64;

fn cdx() -> CdxEntry {
    CdxEntry {
        urlkey: "com,example)/".into(),
        date14: "20261122000000".into(),
        url: "http://example.com/".into(),
        mime: "text/html".into(),
        status: 200,
        digest: "X".into(),
        length: 0,
        offset: 0,
        private: false,
        failure: false,
    }
}

fn run(policy: FsyncPolicy, member_size: usize, total_bytes: usize) -> (f64, f64) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let records = (total_bytes / member_size).max(TASKS);
    let member = Bytes::from(vec![0x5au8; member_size]);
    let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .attach_thread_pool(Box::new(monoio::blocking::DefaultThreadPool::new(2)))
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let config = WriterConfig {
            dir: dir.path().join("0"),
            sealed_dir: dir.path().join("sealed"),
            prefix: "BENCH".into(),
            worker: 0,
            codec: liveweb::archive::record::Codec::Gzip(1),
            format: Default::default(),
            first_serial: 0,
            max_size: 100 << 20,
            max_idle: Duration::from_secs(600),
            fsync: policy,
            min_free: 0,
            handoff: None,
            stats: Arc::default(),
        };
        std::fs::create_dir_all(&config.dir).expect("mkdir");
        let writer = ArcWriter::spawn(config, Arc::new(FileTable::new()));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..TASKS {
            let (writer, member) = (writer.clone(), member.clone());
            tasks.push(monoio::spawn(async move {
                for _ in 0..records / TASKS {
                    writer
                        .append(AppendRecord {
                            trailer_len: 0,
                            member: member.clone(),
                            cdx: cdx(),
                        })
                        .await
                        .expect("append");
                }
            }));
        }
        for t in tasks {
            t.await;
        }
        let secs = started.elapsed().as_secs_f64();
        writer.close().await;
        let done = (records / TASKS * TASKS) as f64;
        (done / secs, done * member_size as f64 / secs / 1e6)
    })
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let total = if bench { 512 << 20 } else { 4 << 20 };
    for size in [4 * 1024, 64 * 1024] {
        for (name, policy) in [
            ("never", FsyncPolicy::Never),
            ("interval:1s", FsyncPolicy::Interval(Duration::from_secs(1))),
            ("always", FsyncPolicy::Always),
        ] {
            let bytes = if policy == FsyncPolicy::Always {
                total / 4
            } else {
                total
            };
            let (rps, mbps) = run(policy, size, bytes);
            println!("archive_write: {size:>6} B records, --fsync {name:<12} {rps:>9.0} records/s {mbps:>8.1} MB/s");
        }
    }
}
