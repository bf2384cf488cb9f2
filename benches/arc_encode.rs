//! ARC record encoding + gzip throughput at levels 1 and 6: HTML-like 16 KiB and 1 MiB
//! payloads and an incompressible 4 KiB one, through the encoder records use (libdeflate,
//! one call) and the streaming zlib-rs encoder (used above 8 MiB), and what records get:
//! `Codec::encode`, which stores content deflate cannot shrink (the `record/` cases: the
//! incompressible one pays for the entropy check and a stored member, not for deflate).
//! Run: `cargo bench --bench arc_encode`.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use liveweb::archive::record::{encode_member, header_line, Codec};

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

/// Bytes that do not compress (images, archives): xorshift output.
fn incompressible(len: usize) -> Vec<u8> {
    let mut x: u64 = 88_172_645_463_325_252;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// zlib-rs with one reused compressor state (reset per record), as records were encoded
/// before libdeflate; `encode_member` (used above 8 MiB) allocates a fresh state instead.
fn zlib_reused(z: &mut flate2::Compress, header: &str, payload: &[u8]) -> Vec<u8> {
    z.reset();
    let mut out = Vec::with_capacity(payload.len() + header.len() + 1024);
    for (part, flush) in [
        (header.as_bytes(), flate2::FlushCompress::None),
        (payload, flate2::FlushCompress::None),
        (&b"\n"[..], flate2::FlushCompress::Finish),
    ] {
        let mut input = part;
        loop {
            if out.capacity() - out.len() < 1024 {
                out.reserve(out.capacity());
            }
            let before = z.total_in();
            let status = z.compress_vec(input, &mut out, flush).expect("deflate");
            input = &input[(z.total_in() - before) as usize..];
            let finished = matches!(flush, flate2::FlushCompress::Finish);
            if (finished && status == flate2::Status::StreamEnd) || (!finished && input.is_empty())
            {
                break;
            }
        }
    }
    out
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("arc_encode_gzip");
    let cases = [
        ("html", html_like(16 * 1024)),
        ("html", html_like(1024 * 1024)),
        ("random", incompressible(4 * 1024)),
    ];
    for (kind, payload) in cases {
        let size = payload.len();
        let header = header_line(
            "http://example.com/page",
            None,
            "20261122000000",
            "text/html",
            payload.len(),
        );
        group.throughput(Throughput::Bytes(size as u64));
        for level in [1u32, 6] {
            let libdeflate = Codec::gzip(level, &header, &payload).len();
            let record = Codec::Gzip(level).encode(&header, &payload).len();
            let zlib = encode_member(&header, &payload, level).len();
            let mut z = flate2::Compress::new_gzip(flate2::Compression::new(level), 15);
            println!(
                "arc_encode: {kind} {size} bytes at level {level} -> record {record} bytes ({:.1}%), libdeflate {libdeflate} ({:.1}%), zlib-rs {zlib} ({:.1}%)",
                100.0 * record as f64 / size as f64,
                100.0 * libdeflate as f64 / size as f64,
                100.0 * zlib as f64 / size as f64
            );
            group.bench_with_input(
                BenchmarkId::new(format!("{kind}/record/level{level}"), size),
                &payload,
                |b, p| b.iter(|| Codec::Gzip(level).encode(&header, p)),
            );
            group.bench_with_input(
                BenchmarkId::new(format!("{kind}/libdeflate/level{level}"), size),
                &payload,
                |b, p| b.iter(|| Codec::gzip(level, &header, p)),
            );
            group.bench_with_input(
                BenchmarkId::new(format!("{kind}/zlib-rs-reused/level{level}"), size),
                &payload,
                |b, p| b.iter(|| zlib_reused(&mut z, &header, p)),
            );
        }
    }
    group.finish();
}

criterion_group!(benches, encode);
criterion_main!(benches);
