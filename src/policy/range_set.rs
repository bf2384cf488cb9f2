//! `RangeSet`: address ranges in the unified 128-bit space (see [`to_point`]), laid out so a
//! lookup in a table of millions of ranges touches only a few cache lines.
//!
//! IPv4 (the part of each range inside ::ffff:0:0/96) is stored as the sorted addresses where
//! membership flips: each range's first address and the one just past its last. An address
//! is inside when an odd number of flips lie at or below it, so a lookup is one count, with no
//! second read for the end of a candidate range. A large table keeps its flips behind a bucket
//! index by the top 16 bits of the address, which leaves only the low 16 bits to store and a
//! few neighbours to search. Everything else is IPv6 proper, kept as sorted `u128` pairs and
//! binary-searched as one list; client tables are mostly IPv4, so that is where the size, and
//! the cache misses, would be.
//!
//! [`to_point`]: super::to_point

use std::net::IpAddr;

use super::ranges::Cidr;

/// First point of the IPv4-mapped block ::ffff:0:0/96.
const V4_FIRST: u128 = 0xffff_0000_0000;
/// Last point of the IPv4-mapped block, ::ffff:255.255.255.255.
const V4_LAST: u128 = 0xffff_ffff_ffff;

/// Buckets in the index of a large IPv4 table, one per /16. The index is then small enough to
/// stay cache-resident, and a bucket's flips differ only in their low 16 bits.
const BUCKETS: usize = 1 << 16;

/// A set of address ranges, merged and sorted, IPv4 and IPv6 in one space.
#[derive(Debug, Clone)]
pub struct RangeSet {
    /// The IPv4 ranges, as the addresses where membership flips.
    v4: V4Flips,
    /// IPv6 ranges outside ::ffff:0:0/96, inclusive, disjoint, non-adjacent and sorted.
    v6: Box<[(u128, u128)]>,
    /// Number of merged ranges in the unified space. A range that crosses an edge of the
    /// IPv4 block is stored in pieces but is still one range to the caller.
    len: usize,
}

/// The sorted, strictly increasing IPv4 addresses where membership flips: a range's first
/// address turns it on, the address after its last turns it off (left out for a range that
/// runs to 255.255.255.255, which nothing follows). Ranges never touch, so no two flips meet.
#[derive(Debug, Clone)]
enum V4Flips {
    /// Every flip as a full address. For tables too small to pay for the bucket index: the
    /// index alone would be larger than the flips.
    Flat(Box<[u32]>),
    /// Flips grouped by the /16 they fall in.
    Bucketed {
        /// `starts[b]` is the index in `low` of the first flip in /16 number `b`; the bucket
        /// runs to the next bucket's start, or to the end of `low` for the last bucket.
        /// Earlier flips, in earlier buckets, still count toward an address's parity.
        starts: Box<[u32]>,
        /// The low 16 bits of each flip; the bucket supplies the top 16.
        low: Box<[u16]>,
    },
}

impl V4Flips {
    /// The flips of sorted, disjoint, non-adjacent ranges packed as `first << 32 | last`.
    fn new(ranges: &[u64]) -> Self {
        let flips = ranges.iter().flat_map(|&range| {
            let (first, last) = ((range >> 32) as u32, range as u32);
            [Some(first), last.checked_add(1)].into_iter().flatten()
        });
        let count =
            2 * ranges.len() - usize::from(ranges.last().is_some_and(|&r| r as u32 == u32::MAX));
        if count <= BUCKETS {
            return V4Flips::Flat(flips.collect());
        }
        let mut starts = Vec::with_capacity(BUCKETS);
        let mut low = Vec::with_capacity(count);
        for flip in flips {
            let bucket = (flip >> 16) as usize;
            while starts.len() <= bucket {
                starts.push(index_u32(low.len()));
            }
            low.push(flip as u16);
        }
        starts.resize(BUCKETS, index_u32(low.len()));
        V4Flips::Bucketed {
            starts: starts.into_boxed_slice(),
            low: low.into_boxed_slice(),
        }
    }

    fn contains(&self, addr: u32) -> bool {
        let flips_at_or_below = match self {
            V4Flips::Flat(flips) => flips.partition_point(|flip| *flip <= addr),
            V4Flips::Bucketed { starts, low } => {
                let bucket = (addr >> 16) as usize;
                let first = starts[bucket] as usize;
                let end = starts
                    .get(bucket + 1)
                    .map_or(low.len(), |&next| next as usize);
                let key = addr as u16;
                first + low[first..end].partition_point(|flip| *flip <= key)
            }
        };
        flips_at_or_below % 2 == 1
    }
}

/// A bucket start as stored in the index: the number of flips below its /16. Fewer than 2^32
/// addresses lie below the last /16, and empty buckets after the last flip exist only when
/// that flip is below 255.255.255.255, so every start fits and the fallback is never taken.
fn index_u32(position: usize) -> u32 {
    u32::try_from(position).unwrap_or(u32::MAX)
}

impl Default for RangeSet {
    fn default() -> Self {
        Self::from_ranges(Vec::new())
    }
}

impl RangeSet {
    pub fn new(cidrs: &[Cidr]) -> Self {
        Self::from_ranges(cidrs.iter().map(Cidr::bounds).collect())
    }

    /// Builds a set from inclusive `(first, last)` points in the unified space (see
    /// [`to_point`](super::to_point)), in any order, overlapping or not. A pair whose first
    /// point is past its last is empty and contributes nothing.
    pub fn from_ranges(mut ranges: Vec<(u128, u128)>) -> Self {
        ranges.retain(|(start, end)| start <= end);

        // IPv4 pieces go out as `first << 32 | last`, which sorts like the pair and at a
        // quarter of the size; the rest stay in `ranges`, which client tables of millions
        // of IPv4 lines leave nearly empty.
        let v4_count = ranges
            .iter()
            .filter(|&&(start, end)| start <= V4_LAST && end >= V4_FIRST)
            .count();
        let mut v4: Vec<u64> = Vec::with_capacity(v4_count);
        let mut above_v4 = Vec::new();
        ranges.retain_mut(|range| {
            let (start, end) = *range;
            if start <= V4_LAST && end >= V4_FIRST {
                let first = (start.max(V4_FIRST) - V4_FIRST) as u64;
                let last = (end.min(V4_LAST) - V4_FIRST) as u64;
                v4.push(first << 32 | last);
            }
            if end > V4_LAST && start < V4_FIRST {
                // Crosses the whole block: the part above it is a range of its own.
                above_v4.push((V4_LAST + 1, end));
            }
            if start < V4_FIRST {
                range.1 = end.min(V4_FIRST - 1);
                true
            } else if end > V4_LAST {
                range.0 = start.max(V4_LAST + 1);
                true
            } else {
                false
            }
        });
        ranges.append(&mut above_v4);

        ranges.sort_unstable();
        merge_sorted(
            &mut ranges,
            |(start, end)| (*start, *end),
            |range, end| range.1 = end,
        );
        v4.sort_unstable();
        merge_sorted(
            &mut v4,
            |packed| (*packed >> 32, *packed & 0xffff_ffff),
            |packed, end| *packed = *packed & !0xffff_ffff | end,
        );

        // Pieces that were one range before the split count once.
        let below = ranges.partition_point(|(start, _)| *start < V4_FIRST);
        let joined_below = below > 0
            && ranges[below - 1].1 == V4_FIRST - 1
            && v4.first().is_some_and(|packed| packed >> 32 == 0);
        let joined_above = ranges.get(below).is_some_and(|r| r.0 == V4_LAST + 1)
            && v4.last().is_some_and(|&packed| packed as u32 == u32::MAX);
        let len = ranges.len() + v4.len() - usize::from(joined_below) - usize::from(joined_above);

        RangeSet {
            v4: V4Flips::new(&v4),
            v6: ranges.into_boxed_slice(),
            len,
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(v4) => self.v4.contains(u32::from(v4)),
            IpAddr::V6(v6) => {
                let point = u128::from(v6);
                if (V4_FIRST..=V4_LAST).contains(&point) {
                    self.v4.contains((point - V4_FIRST) as u32)
                } else {
                    // Index of the first range starting after `point`; the one before it
                    // may hold it.
                    let idx = self.v6.partition_point(|(start, _)| *start <= point);
                    idx > 0 && point <= self.v6[idx - 1].1
                }
            }
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Merges overlapping and adjacent ranges of a sorted vector in place: a client table can
/// hold millions of ranges, so no second vector.
fn merge_sorted<T: Copy, P: Copy + Ord + std::ops::Add<Output = P> + From<u8>>(
    ranges: &mut Vec<T>,
    bounds: impl Fn(&T) -> (P, P),
    set_end: impl Fn(&mut T, P),
) {
    let mut kept = 0;
    for i in 0..ranges.len() {
        let range = ranges[i];
        let (start, end) = bounds(&range);
        if kept > 0 {
            let (_, last) = bounds(&ranges[kept - 1]);
            // `last + 1` is only reached when `start > last`, so it cannot overflow.
            if start <= last || start == last + P::from(1) {
                set_end(&mut ranges[kept - 1], last.max(end));
                continue;
            }
        }
        ranges[kept] = range;
        kept += 1;
    }
    ranges.truncate(kept);
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;
    use crate::policy::{to_point, Cidr};

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    /// The plain layout the bucketed one must agree with: one sorted, merged `u128` list and
    /// one binary search over it.
    struct Reference(Vec<(u128, u128)>);

    impl Reference {
        fn new(mut ranges: Vec<(u128, u128)>) -> Self {
            ranges.retain(|(start, end)| start <= end);
            ranges.sort_unstable();
            let mut merged: Vec<(u128, u128)> = Vec::new();
            for (start, end) in ranges {
                match merged.last_mut() {
                    Some(last) if start <= last.1.saturating_add(1) => last.1 = last.1.max(end),
                    _ => merged.push((start, end)),
                }
            }
            Reference(merged)
        }

        fn contains(&self, point: u128) -> bool {
            let idx = self.0.partition_point(|(start, _)| *start <= point);
            idx > 0 && point <= self.0[idx - 1].1
        }
    }

    /// splitmix64, so a failing case comes back on every run.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        fn wide(&mut self) -> u128 {
            u128::from(self.next()) << 64 | u128::from(self.next())
        }
    }

    /// A point where lookups go wrong if anything does: next to the edge of a /16 (where
    /// buckets meet) or of a wider aligned block, next to an edge of the IPv4 block or of the
    /// whole space, or anywhere at all.
    fn tricky_point(rng: &mut Rng) -> u128 {
        let wobble = |rng: &mut Rng, at: u128| {
            let offset = u128::from(rng.below(5));
            if rng.below(2) == 0 {
                at.wrapping_add(offset)
            } else {
                at.wrapping_sub(offset)
            }
        };
        match rng.below(8) {
            0 | 1 => V4_FIRST + u128::from(rng.next() as u32),
            2 | 3 => {
                let bits = 16 + rng.below(16) as u32;
                let edge = u128::from(rng.next() as u32 >> bits << bits);
                wobble(rng, V4_FIRST + edge)
            }
            4 => {
                let edge = [V4_FIRST, V4_LAST + 1, 0, u128::MAX][rng.below(4) as usize];
                wobble(rng, edge)
            }
            5 => rng.wide(),
            6 => rng.wide() >> 80,
            _ => {
                let edge = V4_FIRST + (u128::from(rng.below(1 << 16)) << 16);
                wobble(rng, edge)
            }
        }
    }

    /// `count` ranges, most of them short enough that a large table stays a large table
    /// instead of merging into a few ranges that cover everything.
    fn random_ranges(rng: &mut Rng, count: usize) -> Vec<(u128, u128)> {
        let span_bits = 30 - count.max(1).ilog2();
        (0..count)
            .map(|_| {
                let start = tricky_point(rng);
                let span = match rng.below(8) {
                    0 | 1 => 0,
                    2 | 3 => u128::from(rng.below(16)),
                    4..=6 => {
                        let bits = rng.below(u64::from(span_bits) + 1);
                        u128::from(rng.below(1 << bits))
                    }
                    // Now and then one wide enough to swallow the whole IPv4 block.
                    _ if rng.below(count as u64) == 0 => rng.wide() >> (40 + rng.below(88)),
                    _ => u128::from(rng.below(1 << 16)),
                };
                (start, start.saturating_add(span))
            })
            .collect()
    }

    /// Every form an address can take at `point`: IPv6 always, IPv4 as well inside the
    /// mapped block, where both must get the same answer.
    fn forms(point: u128) -> Vec<IpAddr> {
        let mut forms = vec![IpAddr::V6(Ipv6Addr::from(point))];
        if (V4_FIRST..=V4_LAST).contains(&point) {
            forms.push(IpAddr::V4(Ipv4Addr::from((point - V4_FIRST) as u32)));
        }
        forms
    }

    fn is_bucketed(set: &RangeSet) -> bool {
        matches!(set.v4, V4Flips::Bucketed { .. })
    }

    /// Checks `RangeSet` against [`Reference`] on `ranges` and returns it for more checks.
    fn assert_agrees(ranges: Vec<(u128, u128)>, probes: &[u128]) -> RangeSet {
        let set = RangeSet::from_ranges(ranges.clone());
        let reference = Reference::new(ranges);
        assert_eq!(set.len(), reference.0.len(), "merged range count");
        assert_eq!(set.is_empty(), reference.0.is_empty());
        // Both ends of every range and their outside neighbours, then the probes.
        let edges = reference
            .0
            .iter()
            .flat_map(|&(start, end)| [start.wrapping_sub(1), start, end, end.wrapping_add(1)]);
        for point in edges.chain(probes.iter().copied()) {
            for addr in forms(point) {
                assert_eq!(
                    set.contains(addr),
                    reference.contains(point),
                    "{addr} in {:?}",
                    reference.0
                );
            }
        }
        set
    }

    #[test]
    fn random_tables_agree_with_one_binary_search() {
        let mut rng = Rng(0x5eed_0f7a_b1e5);
        let mut layouts = [false, false];
        for count in [0, 1, 2, 3, 7, 30, 200, 3_000, 40_000, 100_000] {
            let rounds = if count > 1_000 { 2 } else { 40 };
            for _ in 0..rounds {
                let ranges = random_ranges(&mut rng, count);
                let probes: Vec<u128> = (0..2_000).map(|_| tricky_point(&mut rng)).collect();
                let set = assert_agrees(ranges, &probes);
                layouts[usize::from(is_bucketed(&set))] = true;
            }
        }
        assert_eq!(layouts, [true, true], "both IPv4 layouts were tried");
    }

    #[test]
    fn ranges_spanning_many_buckets() {
        let mut rng = Rng(0x0b0c_4e75);
        let v4 = |a: u32| V4_FIRST + u128::from(a);
        // Many small ranges so the table is bucketed, and long ones that run across thousands
        // of buckets between them, starting and ending on bucket edges and off them.
        let mut ranges = random_ranges(&mut rng, 200_000);
        ranges.retain(|&(start, _)| start < v4(0x4000_0000) || start > v4(0xc000_0000));
        ranges.extend([
            (v4(0x4000_0000), v4(0x5fff_ffff)),
            (v4(0x6000_0001), v4(0x7000_ffff)),
            (v4(0x7001_ffff), v4(0x7fff_0000)),
            (v4(0x9000_1234), v4(0xbfff_5678)),
        ]);
        let probes: Vec<u128> = (0..200_000)
            .map(|i| match i % 2 {
                0 => tricky_point(&mut rng),
                _ => v4(0x4000_0000 + rng.next() as u32 % 0x8000_0000),
            })
            .collect();
        assert!(is_bucketed(&assert_agrees(ranges, &probes)));
    }

    #[test]
    fn edges_of_the_ipv4_block() {
        let v4 = |s: &str| to_point(ip(s));
        let edges = [
            V4_FIRST - 2,
            V4_FIRST - 1,
            V4_FIRST,
            V4_FIRST + 1,
            V4_LAST - 1,
            V4_LAST,
            V4_LAST + 1,
            V4_LAST + 2,
            0,
            u128::MAX,
        ];
        let tables = [
            vec![(v4("0.0.0.0"), v4("0.0.0.0"))],
            vec![(v4("255.255.255.255"), v4("255.255.255.255"))],
            vec![(v4("0.0.0.0"), v4("255.255.255.255"))],
            vec![(V4_FIRST - 10, V4_FIRST)],
            vec![(V4_LAST, V4_LAST + 10)],
            vec![(V4_FIRST - 10, V4_LAST + 10)],
            vec![(0, u128::MAX)],
            vec![(V4_FIRST - 10, V4_FIRST - 1), (V4_LAST + 1, V4_LAST + 10)],
            vec![(V4_FIRST - 10, V4_FIRST - 2), (V4_LAST + 2, V4_LAST + 10)],
            vec![
                (V4_FIRST - 10, V4_FIRST - 1),
                (V4_FIRST, V4_FIRST + 5),
                (V4_LAST - 5, V4_LAST),
                (V4_LAST + 1, V4_LAST + 10),
            ],
        ];
        // Single addresses two apart, far from the edges, to make the same tables bucketed.
        let filler = (0..33_000u128).map(|i| {
            let point = v4("10.0.0.0") + 2 * i;
            (point, point)
        });
        for ranges in tables {
            assert!(!is_bucketed(&assert_agrees(ranges.clone(), &edges)));
            let filled = ranges.into_iter().chain(filler.clone()).collect();
            let set = assert_agrees(filled, &edges);
            // Tables that cover all of IPv4 swallow the filler and stay small.
            assert_eq!(is_bucketed(&set), set.len() >= 33_000);
        }
    }

    #[test]
    fn all_of_ipv4_plus_some_ipv6_is_one_range() {
        let cidrs: Vec<Cidr> = [
            "0.0.0.0/0",
            "::fffe:0:0/95",
            "::1:0:0:0/96",
            "2001:db8::/32",
        ]
        .iter()
        .map(|s| s.parse().expect("test CIDR"))
        .collect();
        let set = RangeSet::new(&cidrs);
        assert_eq!(
            set.len(),
            2,
            "::fffe:0:0 to ::1:0:ffff:ffff, and 2001:db8::/32"
        );
        for inside in [
            "0.0.0.0",
            "255.255.255.255",
            "::ffff:0.0.0.0",
            "::ffff:255.255.255.255",
            "::fffe:0:0",
            "::1:0:0:0",
            "::1:0:ffff:ffff",
            "2001:db8::1",
        ] {
            assert!(set.contains(ip(inside)), "{inside} must be in the set");
        }
        for outside in ["::fffd:ffff:ffff", "::1:1:0:0", "::1", "2001:db9::"] {
            assert!(
                !set.contains(ip(outside)),
                "{outside} must not be in the set"
            );
        }
        let probes: Vec<u128> = cidrs
            .iter()
            .flat_map(|c| [c.bounds().0, c.bounds().1])
            .collect();
        assert_agrees(cidrs.iter().map(Cidr::bounds).collect(), &probes);
    }

    #[test]
    fn empty_sets_hold_nothing() {
        let probes = [0, V4_FIRST, V4_LAST, u128::MAX, to_point(ip("10.0.0.1"))];
        for set in [
            RangeSet::default(),
            RangeSet::from_ranges(Vec::new()),
            RangeSet::new(&[]),
            RangeSet::from_ranges(vec![(5, 4), (V4_LAST, V4_FIRST)]),
        ] {
            assert!(set.is_empty());
            assert_eq!(set.len(), 0);
            for point in probes {
                for addr in forms(point) {
                    assert!(!set.contains(addr), "{addr} in an empty set");
                }
            }
        }
    }

    #[test]
    fn range_set_merges_and_finds_edges() {
        let set = RangeSet::new(&[
            "10.0.0.0/8".parse().unwrap(),
            "10.1.0.0/16".parse().unwrap(),
            "11.0.0.0/8".parse().unwrap(),
            "2001:db8::/32".parse().unwrap(),
        ]);
        assert_eq!(set.len(), 2, "10/8 and 11/8 are adjacent and merge");
        assert!(set.contains(ip("10.0.0.0")));
        assert!(set.contains(ip("11.255.255.255")));
        assert!(!set.contains(ip("9.255.255.255")));
        assert!(!set.contains(ip("12.0.0.0")));
        assert!(set.contains(ip("2001:db8:ffff::1")));
        assert!(!set.contains(ip("2001:db9::")));
        assert!(!RangeSet::default().contains(ip("1.1.1.1")));
    }

    #[test]
    fn from_ranges_sorts_merges_and_drops_empty_pairs() {
        let v4 = |s: &str| to_point(ip(s));
        let set = RangeSet::from_ranges(vec![
            (v4("10.0.0.20"), v4("10.0.0.30")),
            (v4("10.0.0.1"), v4("10.0.0.9")),
            (v4("10.0.0.10"), v4("10.0.0.12")),
            (v4("10.0.0.5"), v4("10.0.0.7")),
            (v4("10.0.0.50"), v4("10.0.0.40")),
            (u128::MAX - 1, u128::MAX),
            (u128::MAX, u128::MAX),
        ]);
        assert_eq!(
            set.len(),
            3,
            "adjacent and nested merge, the reversed pair is dropped"
        );
        assert!(set.contains(ip("10.0.0.1")));
        assert!(set.contains(ip("10.0.0.12")));
        assert!(!set.contains(ip("10.0.0.13")));
        assert!(!set.contains(ip("10.0.0.0")));
        assert!(!set.contains(ip("10.0.0.45")));
        assert!(set.contains(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")));
        assert!(RangeSet::from_ranges(Vec::new()).is_empty());
    }
}
