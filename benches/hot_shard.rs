//! Hit ratio of the hot shard on a skewed trace: 1,000,000 requests over 200,000 records of
//! 2-16 KiB drawn from a Zipf(1.0) popularity, a shard of 64 MiB (about a sixth of the
//! records' bytes). A record is inserted on its second request, as a worker does (the first
//! request fetches it; a later one not found in the shard reads it from its file and keeps
//! it); also shown: inserting on the first request (the admission before 2026-11-26), and
//! plain FIFO eviction inserting on the first request (the policy before that).
//! Run: `cargo bench --bench hot_shard`.

use std::collections::{HashMap, HashSet, VecDeque};

use bytes::Bytes;
use liveweb::archive::RecordLoc;
use liveweb::proxy::hot::HotShard;

const RECORDS: u64 = 200_000;
const CAPACITY: usize = 64 << 20;

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn size_of(record: u64) -> usize {
    2048 + (record.wrapping_mul(2_654_435_761) % 14_336) as usize
}

/// Plain FIFO over the same sizes: the shard's eviction before reinsertion.
struct Fifo {
    used: usize,
    map: HashMap<u64, usize>,
    order: VecDeque<u64>,
}

impl Fifo {
    fn request(&mut self, record: u64) -> bool {
        if self.map.contains_key(&record) {
            return true;
        }
        let size = size_of(record);
        while self.used + size > CAPACITY {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(s) = self.map.remove(&old) {
                self.used -= s;
            }
        }
        self.used += size;
        self.map.insert(record, size);
        self.order.push_back(record);
        false
    }
}

fn main() {
    let requests: u64 = if std::env::args().any(|a| a == "--bench") {
        1_000_000
    } else {
        20_000
    };
    // Zipf(1.0) by inverse transform over the cumulative weights.
    let mut cumulative = Vec::with_capacity(RECORDS as usize);
    let mut total = 0.0;
    for rank in 1..=RECORDS {
        total += 1.0 / rank as f64;
        cumulative.push(total);
    }
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let trace: Vec<u64> = (0..requests)
        .map(|_| {
            let x = rng.unit() * total;
            cumulative.partition_point(|&c| c < x) as u64
        })
        .collect();
    let bodies: Vec<Bytes> = (0..16)
        .map(|i| Bytes::from(vec![i as u8; 16_384]))
        .collect();

    // Hits of the shard over the trace, and the time per request; `on_second` keeps a record
    // from its second request on, else from its first.
    let run_shard = |on_second: bool| {
        let mut shard = HotShard::new(CAPACITY);
        let mut seen = HashSet::new();
        let mut hits = 0u64;
        let started = std::time::Instant::now();
        for &record in &trace {
            let loc = RecordLoc {
                file_id: 0,
                offset: record * 16_384,
                len: size_of(record) as u64,
            };
            if shard.get(&loc).is_some() {
                hits += 1;
            } else if !on_second || !seen.insert(record) {
                let body = bodies[(record % 16) as usize].slice(..size_of(record));
                shard.insert(&loc, body);
            }
        }
        (hits, started.elapsed())
    };
    let (shard_hits, shard_time) = run_shard(true);
    let (first_hits, _) = run_shard(false);
    let mut fifo = Fifo {
        used: 0,
        map: HashMap::new(),
        order: VecDeque::new(),
    };
    let fifo_hits = trace.iter().filter(|&&r| fifo.request(r)).count() as u64;
    let pct = |h: u64| 100.0 * h as f64 / requests as f64;
    println!(
        "hot_shard: {requests} requests, Zipf(1.0) over {RECORDS} records of 2-16 KiB, {} MiB shard: \
         hit ratio {:.1}% (FIFO with reinsertion, kept on the second request) vs {:.1}% (kept on \
         the first) vs {:.1}% (plain FIFO, kept on the first); {:.0} ns per request",
        CAPACITY >> 20,
        pct(shard_hits),
        pct(first_hits),
        pct(fifo_hits),
        shard_time.as_nanos() as f64 / requests as f64
    );
}
