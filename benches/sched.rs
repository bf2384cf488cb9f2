//! The fetch scheduler's cost per fetch: a slot taken and given back with nobody waiting
//! (every miss pays this), and a fetch queued then granted round-robin among 100 clients'
//! backlogs (what a fetch pays when the slots are full). Run: `cargo bench --bench sched`.

use std::net::IpAddr;

use criterion::{criterion_group, criterion_main, Criterion};
use liveweb::sched::{ClientKey, Limits, Queues};

fn limits() -> Limits {
    Limits {
        max_running: 128,
        max_per_host: 64,
        max_queued: 100_000,
        max_queued_per_client: 1_000,
    }
}

fn scheduling(c: &mut Criterion) {
    let mut g = c.benchmark_group("sched");
    g.bench_function("start+finish, nobody waiting", |b| {
        let mut q: Queues<()> = Queues::new(limits());
        b.iter(|| {
            let host = q.try_start("origin.example:443").expect("room");
            q.finish(&host);
        })
    });
    g.bench_function("enqueue+grant+finish, 100 clients waiting", |b| {
        let mut q: Queues<u64> = Queues::new(limits());
        // Every slot busy, then ten fetches queued for each of 100 clients.
        let mut running = Vec::new();
        for _ in 0..128 {
            running.push(q.try_start("busy.example:80").unwrap_or_else(|| "x".into()));
        }
        let clients: Vec<ClientKey> = (0..100u32)
            .map(|i| ClientKey::of(IpAddr::from((0x0a00_0000 + i).to_be_bytes())))
            .collect();
        for (n, client) in clients.iter().enumerate() {
            for i in 0..10 {
                let _ = q.enqueue(*client, &format!("site{}.example:80", (n + i) % 40), 0);
            }
        }
        let mut turn = 0usize;
        b.iter(|| {
            // One fetch joins, one slot frees and goes to the next in turn.
            let client = clients[turn % clients.len()];
            turn += 1;
            let _ = q.enqueue(client, "site7.example:80", turn as u64);
            let done = running.pop().unwrap_or_else(|| "x".into());
            q.finish(&done);
            if let Some((host, _)) = q.next_grant() {
                running.push(host);
            }
        })
    });
    g.finish();
}

criterion_group!(benches, scheduling);
criterion_main!(benches);
