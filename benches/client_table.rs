//! A client table of a million disjoint IPv4 ranges: how long the file takes to parse, and
//! what one `RangeSet::contains` costs on a mix of hits and misses.
//! Run: `cargo bench --bench client_table`.

use std::fmt::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use liveweb::policy::{parse_table, RangeSet};

const RANGES: u32 = 1_000_000;
const LOOKUPS: usize = 1 << 16;

/// splitmix64: deterministic, so every run measures the same table and the same lookups.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u32) -> u32 {
        (self.next() % u64::from(n)) as u32
    }
}

/// One range per slot of the IPv4 space, each ending well before the next slot starts, so
/// none touch and the parsed set keeps all of them.
fn random_ranges(rng: &mut Rng) -> Vec<(u32, u32)> {
    let slot = u32::MAX / RANGES;
    (0..RANGES)
        .map(|i| {
            let first = i * slot + rng.below(slot / 2);
            (first, first + rng.below(slot / 4))
        })
        .collect()
}

/// The table as an operator might write it: mostly `first-last`, some bare addresses, a
/// comment now and then, in no particular order.
fn table_text(ranges: &[(u32, u32)], rng: &mut Rng) -> String {
    let mut order: Vec<usize> = (0..ranges.len()).collect();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i as u32 + 1) as usize);
    }
    let mut text = String::with_capacity(ranges.len() * 32);
    for (n, &i) in order.iter().enumerate() {
        let (first, last) = ranges[i];
        let (a, b) = (Ipv4Addr::from(first), Ipv4Addr::from(last));
        let _ = match (first == last, n % 10) {
            (true, _) => writeln!(text, "{a}"),
            (false, 0) => writeln!(text, "{a} - {b}  # customer {n}"),
            (false, _) => writeln!(text, "{a}-{b}"),
        };
    }
    text
}

/// Half the addresses fall inside a range, half anywhere (which mostly misses).
fn lookup_addresses(ranges: &[(u32, u32)], rng: &mut Rng) -> Vec<IpAddr> {
    (0..LOOKUPS)
        .map(|i| {
            let v4 = if i % 2 == 0 {
                let (first, last) = ranges[rng.below(ranges.len() as u32) as usize];
                first + rng.below(last - first + 1)
            } else {
                rng.next() as u32
            };
            IpAddr::V4(Ipv4Addr::from(v4))
        })
        .collect()
}

fn client_table(c: &mut Criterion) {
    let mut rng = Rng(0x1157_0b5e_55ed);
    let ranges = random_ranges(&mut rng);
    let text = table_text(&ranges, &mut rng);

    let started = Instant::now();
    let set: RangeSet = parse_table(&text, Path::new("bench-clients.txt")).expect("valid table");
    let parse_time = started.elapsed();
    assert_eq!(
        set.len(),
        ranges.len(),
        "generated ranges must stay disjoint"
    );
    println!(
        "parse_table: {} lines, {} bytes in {:.1} ms",
        ranges.len(),
        text.len(),
        parse_time.as_secs_f64() * 1e3
    );

    let addresses = lookup_addresses(&ranges, &mut rng);
    let hits = addresses.iter().filter(|a| set.contains(**a)).count();
    println!(
        "lookups: {:.1}% of the addresses are in the table",
        100.0 * hits as f64 / addresses.len() as f64
    );

    let mut g = c.benchmark_group("client_table");
    g.throughput(Throughput::Elements(1));
    g.bench_function("contains_1m_ranges", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % addresses.len();
            set.contains(addresses[i])
        })
    });
    g.finish();
}

criterion_group!(benches, client_table);
criterion_main!(benches);
