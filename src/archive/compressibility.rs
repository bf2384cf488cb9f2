//! Whether a record is worth deflating: an order-0 entropy estimate over a sample of its
//! bytes. JPEG, PNG, video, archives and already-encoded bodies are close to 8 bits per
//! byte and deflate cannot shrink them, yet trying costs a miss more than everything else
//! it does (`cargo bench --bench arc_encode`); such records are stored in gzip members made
//! of stored blocks instead (still one valid gzip member per record). The same idea as the
//! compression heuristics of btrfs and ZFS.
//!
//! The estimate only sees byte frequencies, so data that is high-entropy byte by byte but
//! repeats itself at a distance (the same random block twice) is stored uncompressed: a
//! bigger file, never a wrong one.

/// Below this many bytes the record is always deflated: too few bytes for the estimate to
/// tell (its bias is about 255 / (2 n ln 2) bits) and too few for the work to matter.
const MIN_LEN: usize = 1024;
/// The sample: the whole record up to `SAMPLE_CHUNK * SAMPLE_CHUNKS` bytes, else that many
/// chunks spread evenly over it. 1 KiB is enough: random bytes still estimate near 7.8 bits
/// (the bias above), clear of `STORE_ABOVE_BITS`, and counting is most of the check's cost
/// (`cargo bench --bench arc_encode`, `random/record`).
const SAMPLE_CHUNK: usize = 64;
const SAMPLE_CHUNKS: usize = 16;
/// Above this many bits per byte deflate saves at most a few percent (Huffman coding alone
/// cannot beat the order-0 entropy, and such data rarely has long matches). Text, markup,
/// JSON and base64 lie well below; random and compressed bytes, sampled as here, above.
const STORE_ABOVE_BITS: f64 = 7.5;

/// Whether `data` should be deflated rather than stored.
pub fn worth_deflating(data: &[u8]) -> bool {
    if data.len() < MIN_LEN {
        return true;
    }
    // Four histograms so consecutive equal bytes do not wait on one counter.
    let mut counts = [[0u32; 256]; 4];
    let mut count = |chunk: &[u8]| {
        let mut quads = chunk.chunks_exact(4);
        for q in &mut quads {
            counts[0][usize::from(q[0])] += 1;
            counts[1][usize::from(q[1])] += 1;
            counts[2][usize::from(q[2])] += 1;
            counts[3][usize::from(q[3])] += 1;
        }
        for &b in quads.remainder() {
            counts[0][usize::from(b)] += 1;
        }
    };
    let budget = SAMPLE_CHUNK * SAMPLE_CHUNKS;
    let sampled = if data.len() <= budget {
        count(data);
        data.len()
    } else {
        let stride = (data.len() - SAMPLE_CHUNK) / (SAMPLE_CHUNKS - 1);
        for i in 0..SAMPLE_CHUNKS {
            let at = i * stride;
            count(&data[at..at + SAMPLE_CHUNK]);
        }
        budget
    };
    let mut histogram = [0u32; 256];
    for (b, total) in histogram.iter_mut().enumerate() {
        *total = counts[0][b] + counts[1][b] + counts[2][b] + counts[3][b];
    }
    bits_per_byte(&histogram, sampled) <= STORE_ABOVE_BITS
}

/// The order-0 entropy of `n` bytes with these byte counts.
/// H = -sum(p log2 p) = log2 n - sum(c log2 c) / n, with `c log2 c` from a table: a count is
/// at most the sample size, and random data has all 256 of them.
fn bits_per_byte(histogram: &[u32; 256], n: usize) -> f64 {
    let table = c_log2_c();
    let term = |c: u32| match table.get(c as usize) {
        Some(&v) => v,
        None => f64::from(c) * f64::from(c).log2(),
    };
    // Four running sums: one would make every addition wait on the one before.
    let mut sums = [0.0f64; 4];
    for quad in histogram.chunks_exact(4) {
        for (sum, &c) in sums.iter_mut().zip(quad) {
            *sum += term(c);
        }
    }
    let sum = (sums[0] + sums[1]) + (sums[2] + sums[3]);
    let n = n as f64;
    n.log2() - sum / n
}

/// `c * log2(c)` for every count a sample can give (0 for 0).
fn c_log2_c() -> &'static [f64; SAMPLE_CHUNK * SAMPLE_CHUNKS + 1] {
    static TABLE: std::sync::OnceLock<[f64; SAMPLE_CHUNK * SAMPLE_CHUNKS + 1]> =
        std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = [0.0; SAMPLE_CHUNK * SAMPLE_CHUNKS + 1];
        for (c, v) in t.iter_mut().enumerate().skip(1) {
            *v = c as f64 * (c as f64).log2();
        }
        t
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn random(len: usize, seed: u64) -> Vec<u8> {
        crate::archive::random_bytes(len, seed)
    }

    fn gzipped(data: &[u8]) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        gz.write_all(data).unwrap();
        gz.finish().unwrap()
    }

    fn markup(len: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut i = 0u64;
        while out.len() < len {
            i = i.wrapping_mul(6364136223846793005).wrapping_add(1);
            out.extend_from_slice(
                format!("<div class=\"c{}\">item {}</div>\n", i >> 50, i % 997).as_bytes(),
            );
        }
        out.truncate(len);
        out
    }

    #[test]
    fn the_table_gives_the_entropy_of_the_direct_formula() {
        for data in [
            random(2048, 7),
            markup(2048),
            vec![b'a'; 2048],
            random(1500, 3),
        ] {
            let mut histogram = [0u32; 256];
            for &b in &data {
                histogram[usize::from(b)] += 1;
            }
            let n = data.len() as f64;
            let direct: f64 = histogram
                .iter()
                .filter(|&&c| c > 0)
                .map(|&c| {
                    let p = f64::from(c) / n;
                    -p * p.log2()
                })
                .sum();
            let tabled = bits_per_byte(&histogram, data.len());
            assert!((direct - tabled).abs() < 1e-9, "{direct} vs {tabled}");
        }
    }

    #[test]
    fn random_and_already_compressed_bytes_are_stored() {
        for len in [MIN_LEN, 4096, 100_000, 3 << 20] {
            assert!(!worth_deflating(&random(len, len as u64)), "random {len}");
        }
        let packed = gzipped(&markup(200_000));
        assert!(packed.len() > MIN_LEN);
        assert!(!worth_deflating(&packed));
    }

    #[test]
    fn text_markup_and_base64_are_deflated() {
        for len in [MIN_LEN, 4096, 1 << 20] {
            assert!(worth_deflating(&markup(len)), "markup {len}");
        }
        // Base64 carries 6 bits per byte: deflate still saves about a quarter.
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let b64: Vec<u8> = random(50_000, 7)
            .iter()
            .map(|b| alphabet[usize::from(b % 64)])
            .collect();
        assert!(worth_deflating(&b64));
        assert!(worth_deflating(&vec![0u8; 1 << 20]));
    }

    #[test]
    fn a_text_head_before_a_random_body_does_not_hide_it() {
        let mut record = b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: 4096\r\nServer: nginx\r\nDate: Wed, 25 Nov 2026 20:00:00 GMT\r\n\r\n".to_vec();
        record.extend_from_slice(&random(4096, 3));
        assert!(!worth_deflating(&record));
    }

    #[test]
    fn short_records_are_always_deflated() {
        assert!(worth_deflating(&random(MIN_LEN - 1, 5)));
        assert!(worth_deflating(b""));
    }

    #[test]
    fn a_compressible_record_with_a_random_tail_is_judged_on_the_sample() {
        // Mostly markup, a random stretch at the end: still deflated.
        let mut record = markup(1 << 20);
        record.extend_from_slice(&random(64 * 1024, 9));
        assert!(worth_deflating(&record));
    }
}
