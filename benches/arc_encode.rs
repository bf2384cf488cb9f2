//! ARC record encoding + gzip throughput at levels 1 and 6 for 16 KiB and 1 MiB payloads.
//! Run: `cargo bench --bench arc_encode`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use liveweb::archive::record::{encode_member, header_line};

/// A response that compresses like real HTML: markup with varying words and numbers.
fn html_like(len: usize) -> Vec<u8> {
    let mut out =
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body>".to_vec();
    let words = [
        "archive", "liveweb", "record", "proxy", "href", "class", "div", "span", "item",
    ];
    let mut i: u64 = 0;
    while out.len() < len {
        i = i
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let w = words[(i >> 33) as usize % words.len()];
        out.extend_from_slice(
            format!("<{w} id=\"n{}\">{w} {}</{w}>\n", i >> 40, i % 9973).as_bytes(),
        );
    }
    out.truncate(len);
    out
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("arc_encode_gzip");
    for size in [16 * 1024, 1024 * 1024] {
        let payload = html_like(size);
        let header = header_line(
            "http://example.com/page",
            None,
            "20261122000000",
            "text/html",
            payload.len(),
        );
        group.throughput(Throughput::Bytes(size as u64));
        for level in [1u32, 6] {
            let out = encode_member(&header, &payload, level).len();
            println!(
                "arc_encode: {size} bytes at level {level} -> {out} bytes ({:.1}%)",
                100.0 * out as f64 / size as f64
            );
            group.bench_with_input(
                BenchmarkId::new(format!("level{level}"), size),
                &payload,
                |b, p| b.iter(|| encode_member(&header, p, level)),
            );
        }
    }
    group.finish();
}

criterion_group!(benches, encode);
criterion_main!(benches);
