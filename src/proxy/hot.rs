//! A worker's hot shard: records asked for again kept in memory, bounded by bytes, evicted
//! oldest-first with a second chance for records hit since they were last looked at
//! (FIFO-reinsertion, the CLOCK family: a popular record stays, a record seen once leaves in
//! order). A record enters on its second request, not when it is fetched (a crawl fetches most
//! URLs once). Hits found here are answered with a plain write. A record can be held as stored
//! (its gzip member) and, for forward-mode hits, decoded (the plain record), so a forward hit
//! does not inflate the same record again and again; a decoded record also keeps its forward
//! reply prepared (`ForwardTemplate`), so such a hit parses nothing.

use std::cell::Cell;
use std::collections::VecDeque;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};

use crate::archive::stored::Span;
use crate::archive::RecordLoc;
use crate::http::client_head::ForwardTemplate;

/// File id, offset, and whether the bytes are the decoded form.
type Key = (u32, u64, bool);

/// Records up to this size are copied into shared slabs of `SLAB` bytes.
const PACK_LIMIT: usize = 16 * 1024;
/// Stored members from this size on are sent with sendfile, not kept in the shard.
pub const SENDFILE_FROM: u64 = 64 * 1024;
const SLAB: usize = 1 << 20;
/// Emptied slabs kept for reuse; more are freed, so slabs emptied by big records (which are
/// not packed) do not stay on top of the memory those records take.
const SPARE_SLABS: usize = 2;

/// A kept record and whether it was hit since eviction last passed it.
struct Kept {
    bytes: Bytes,
    /// For a decoded record: its forward reply, prepared.
    template: Option<Rc<ForwardTemplate>>,
    /// For a big record stored uncompressed: where its bytes lie in the file (`bytes` is
    /// then empty).
    spans: Option<Rc<[Span]>>,
    /// Bytes counted against the shard for it (record and template).
    size: usize,
    hit: Cell<bool>,
}

/// A decoded record and, when its response parses, its forward reply prepared (body range
/// relative to `plain`). A big record stored without compression is kept as the file spans
/// holding it instead (`plain` empty): its body goes out with sendfile.
pub struct Decoded {
    pub plain: Bytes,
    pub template: Option<Rc<ForwardTemplate>>,
    pub spans: Option<Rc<[Span]>>,
}

/// Byte-bounded cache of gzip members keyed by file id and offset, FIFO with reinsertion.
///
/// Small records are copied back to back into 1 MiB slabs instead of each keeping its own
/// allocation: the shard's memory is then close to what it counts (4 KiB misses, ~4.8 KB
/// records: RSS grew 5.9-6.1 KB per miss with per-record allocations, 5.2-5.3 KB with
/// slabs, index included). Eviction empties slabs in order, as a small record given a
/// second chance is copied into the current slab instead of pinning its old one; an emptied
/// slab is filled again (see `Slabs`).
pub struct HotShard {
    capacity: usize,
    used: usize,
    map: hashbrown::HashMap<Key, Kept>,
    order: VecDeque<Key>,
    slabs: Slabs,
}

/// The slab being filled and the filled ones, oldest first. Once eviction and every reply
/// have let go of all records in the oldest filled slab, its memory is filled again rather
/// than freed: the allocator would hand it back to the kernel, and the next slab would be
/// faulted in and zeroed page by page, a cost the miss profile showed
/// (`tuning/PROFILING.md`, misses).
struct Slabs {
    /// The rest of the slab being filled (until the first record, an empty handle that
    /// owns no slab: `started` tells them apart).
    current: BytesMut,
    started: bool,
    /// Each filled slab's empty tail handle, which can take back the whole slab once no
    /// record in it is referenced.
    filled: VecDeque<BytesMut>,
    /// At most this many filled slabs are held (the shard's bytes fill no more); past it the
    /// oldest is let go of, and freed once its last record and reply are.
    max_filled: usize,
}

impl HotShard {
    pub fn new(capacity: usize) -> Self {
        HotShard {
            capacity,
            used: 0,
            map: hashbrown::HashMap::new(),
            order: VecDeque::new(),
            slabs: Slabs {
                current: BytesMut::new(),
                started: false,
                filled: VecDeque::new(),
                max_filled: capacity / SLAB + 2,
            },
        }
    }

    pub fn get(&self, loc: &RecordLoc) -> Option<Bytes> {
        self.hit((loc.file_id, loc.offset, false))
            .map(|k| k.bytes.clone())
    }

    /// The decoded (plain) form of a gzip record, if kept.
    pub fn get_decoded(&self, loc: &RecordLoc) -> Option<Decoded> {
        self.hit((loc.file_id, loc.offset, true)).map(|k| Decoded {
            plain: k.bytes.clone(),
            template: k.template.clone(),
            spans: k.spans.clone(),
        })
    }

    fn hit(&self, key: Key) -> Option<&Kept> {
        let kept = self.map.get(&key)?;
        kept.hit.set(true);
        Some(kept)
    }

    /// Keeps the decoded form of a gzip record, with its forward reply prepared.
    pub fn insert_decoded(
        &mut self,
        loc: &RecordLoc,
        plain: Bytes,
        template: Option<ForwardTemplate>,
    ) {
        self.put(
            (loc.file_id, loc.offset, true),
            plain,
            template.map(Rc::new),
            None,
        );
    }

    /// Keeps where a record stored uncompressed lies in its file, with its forward reply
    /// prepared: a forward hit then sends the body from the page cache.
    pub fn insert_spans(&mut self, loc: &RecordLoc, spans: Vec<Span>, template: ForwardTemplate) {
        self.put(
            (loc.file_id, loc.offset, true),
            Bytes::new(),
            Some(Rc::new(template)),
            Some(spans.into()),
        );
    }

    /// Whether `insert` would keep a stored member of `len` bytes.
    pub fn would_keep(&self, len: u64) -> bool {
        len < SENDFILE_FROM && len <= (self.capacity / 4) as u64
    }

    /// Keeps `member`, unless it is `SENDFILE_FROM` or bigger: those are cheaper to send
    /// from the page cache with sendfile than from memory (`cargo bench --bench hit_paths`;
    /// `SIZE=256k loadtest/ab.sh`), so the shard leaves them to the page cache. (Records over
    /// a quarter of the shard are never kept: one would evict most of it for little gain.)
    pub fn insert(&mut self, loc: &RecordLoc, member: Bytes) {
        if !self.would_keep(member.len() as u64) {
            return;
        }
        self.put((loc.file_id, loc.offset, false), member, None, None);
    }

    fn put(
        &mut self,
        key: Key,
        member: Bytes,
        template: Option<Rc<ForwardTemplate>>,
        spans: Option<Rc<[Span]>>,
    ) {
        let size = member.len()
            + template.as_ref().map_or(0, |t| t.size())
            + spans
                .as_ref()
                .map_or(0, |s| std::mem::size_of_val::<[Span]>(s));
        if size > self.capacity / 4 || self.map.contains_key(&key) {
            return;
        }
        // Each record is passed over at most once per eviction run before it can go, so
        // this ends even when every record was hit.
        let mut passes = self.order.len();
        let mut evicted_any = false;
        while self.used + size > self.capacity {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            let second_chance = passes > 0
                && self
                    .map
                    .get(&old)
                    .is_some_and(|kept| kept.hit.replace(false));
            if second_chance {
                passes -= 1;
                // Re-packed, so the slab it sat in can empty in order.
                if let Some(kept) = self.map.get_mut(&old) {
                    kept.bytes = self.slabs.pack(kept.bytes.clone());
                }
                self.order.push_back(old);
                continue;
            }
            if let Some(evicted) = self.map.remove(&old) {
                self.used -= evicted.size;
                evicted_any = true;
            }
        }
        if evicted_any {
            self.slabs.free_spares();
        }
        self.used += size;
        let bytes = self.slabs.pack(member);
        self.map.insert(
            key,
            Kept {
                bytes,
                template,
                spans,
                size,
                hit: Cell::new(false),
            },
        );
        self.order.push_back(key);
    }

    pub fn used_bytes(&self) -> usize {
        self.used
    }
}

impl Slabs {
    /// A copy of a small record inside the current slab (the next one when it is full).
    fn pack(&mut self, record: Bytes) -> Bytes {
        if record.len() > PACK_LIMIT || record.is_empty() {
            return record;
        }
        if self.current.capacity() < record.len() {
            let next = self
                .reclaim()
                .unwrap_or_else(|| BytesMut::with_capacity(SLAB));
            let full = std::mem::replace(&mut self.current, next);
            if full.capacity() > 0 || self.started {
                self.filled.push_back(full);
            }
            self.started = true;
            if self.filled.len() > self.max_filled {
                self.filled.pop_front();
            }
        }
        self.current.extend_from_slice(&record);
        self.current.split().freeze()
    }

    /// Frees emptied slabs at the front beyond `SPARE_SLABS` (eviction empties them oldest
    /// first).
    fn free_spares(&mut self) {
        let mut empty = 0;
        for slab in self.filled.iter_mut() {
            if !slab.try_reclaim(SLAB) {
                break;
            }
            empty += 1;
        }
        for _ in SPARE_SLABS..empty {
            self.filled.pop_front();
        }
    }

    /// The oldest filled slab as a whole, empty slab, if nothing refers to it any more.
    fn reclaim(&mut self) -> Option<BytesMut> {
        let oldest = self.filled.front_mut()?;
        if !oldest.try_reclaim(SLAB) {
            return None;
        }
        self.filled.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(offset: u64) -> RecordLoc {
        RecordLoc {
            file_id: 1,
            offset,
            len: 0,
        }
    }

    #[test]
    fn members_sent_by_sendfile_are_left_to_the_page_cache() {
        let mut shard = HotShard::new(16 << 20);
        let big = SENDFILE_FROM as usize;
        shard.insert(&loc(0), Bytes::from(vec![0; big - 1]));
        shard.insert(&loc(1), Bytes::from(vec![1; big]));
        assert!(shard.get(&loc(0)).is_some());
        assert!(shard.get(&loc(1)).is_none());
        // Decoded copies (forward hits inflate them) are kept whatever their size.
        shard.insert_decoded(&loc(1), Bytes::from(vec![1; big * 4]), None);
        assert!(shard.get_decoded(&loc(1)).is_some());
    }

    #[test]
    fn evicts_oldest_and_respects_bound() {
        let mut shard = HotShard::new(100);
        shard.insert(&loc(0), Bytes::from(vec![0; 20]));
        shard.insert(&loc(1), Bytes::from(vec![1; 20]));
        shard.insert(&loc(2), Bytes::from(vec![2; 26])); // over a quarter: skipped
        assert!(shard.get(&loc(2)).is_none());
        for i in 3..8 {
            shard.insert(&loc(i), Bytes::from(vec![i as u8; 20]));
        }
        assert!(shard.used_bytes() <= 100);
        assert!(shard.get(&loc(0)).is_none() && shard.get(&loc(1)).is_none());
        assert_eq!(shard.get(&loc(7)).unwrap()[0], 7);
        shard.insert_decoded(&loc(7), Bytes::from(vec![9; 10]), None);
        assert_eq!(
            shard.get_decoded(&loc(7)).unwrap().plain[0],
            9,
            "decoded kept apart"
        );
        assert_eq!(shard.get(&loc(7)).unwrap()[0], 7);
        assert!(shard.used_bytes() <= 100);
    }

    #[test]
    fn small_records_share_slabs_and_keep_their_bytes() {
        let mut shard = HotShard::new(64 << 20);
        let records: Vec<Vec<u8>> = (0..600u32)
            .map(|i| (0..4000 + i % 50).map(|j| (i ^ j) as u8).collect())
            .collect();
        for (i, r) in records.iter().enumerate() {
            shard.insert(&loc(i as u64), Bytes::from(r.clone()));
        }
        let big = vec![7u8; PACK_LIMIT + 1];
        shard.insert(&loc(10_000), Bytes::from(big.clone()));
        for (i, r) in records.iter().enumerate() {
            assert_eq!(
                &shard.get(&loc(i as u64)).unwrap()[..],
                &r[..],
                "record {i}"
            );
        }
        assert_eq!(&shard.get(&loc(10_000)).unwrap()[..], &big[..]);
        // Neighbours sit back to back in one slab (no allocation of their own).
        let (a, b) = (shard.get(&loc(1)).unwrap(), shard.get(&loc(2)).unwrap());
        assert_eq!(a.as_ptr() as usize + a.len(), b.as_ptr() as usize);
    }

    #[test]
    fn slabs_emptied_by_big_records_are_freed_but_a_few() {
        let mut shard = HotShard::new(8 * SLAB);
        for i in 0..700u64 {
            shard.insert(&loc(i), Bytes::from(vec![1; 10_000]));
        }
        assert!(shard.slabs.filled.len() >= 6);
        // Records over PACK_LIMIT are not packed: they evict every small one.
        for i in 1000..1500u64 {
            shard.insert(&loc(i), Bytes::from(vec![2; PACK_LIMIT + 1]));
        }
        assert!(shard.get(&loc(0)).is_none());
        assert!(
            shard.slabs.filled.len() <= SPARE_SLABS,
            "{}",
            shard.slabs.filled.len()
        );
    }

    #[test]
    fn an_emptied_slab_is_filled_again_unless_a_reply_still_holds_it() {
        // Room for about two slabs of records: the third slab's records evict the first's.
        let mut shard = HotShard::new(2 * SLAB + SLAB / 2);
        let record = |i: u64| Bytes::from(vec![i as u8; 10_000]);
        let per_slab = (SLAB / 10_000) as u64;
        shard.insert(&loc(0), record(0));
        // Looked at without counting as a hit (a hit would give it a second chance).
        let peek =
            |shard: &HotShard, i: u64| shard.map.get(&(1, i, false)).map(|k| k.bytes.clone());
        let first_slab = peek(&shard, 0).unwrap().as_ptr() as usize;
        // Slabs 0-3 filled; by the time slab 4 is needed, slab 0's records are long evicted
        // (the shard holds about two and a half slabs), so slab 0 becomes slab 4.
        let i = 4 * per_slab;
        for j in 1..=i {
            shard.insert(&loc(j), record(j));
        }
        assert!(peek(&shard, 0).is_none());
        let now = peek(&shard, i).unwrap();
        assert_eq!(now[0], i as u8);
        let reused = (first_slab..first_slab + SLAB).contains(&(now.as_ptr() as usize));
        assert!(reused, "the emptied first slab was filled again");

        // A reply holding a record keeps its slab from being reused; its bytes stay intact.
        let mut shard = HotShard::new(2 * SLAB + SLAB / 2);
        shard.insert(&loc(0), record(0));
        let reply = shard.get(&loc(0)).unwrap();
        let first_slab = reply.as_ptr() as usize;
        for i in 1..(6 * per_slab) {
            shard.insert(&loc(i), record(i));
            let last = peek(&shard, i).unwrap();
            let in_first = (first_slab..first_slab + SLAB).contains(&(last.as_ptr() as usize));
            assert_eq!(in_first, i < per_slab, "record {i}");
        }
        assert!(reply.iter().all(|&b| b == 0));
        assert!(shard.used_bytes() <= 2 * SLAB + SLAB / 2);
    }

    #[test]
    fn a_record_hit_since_it_came_in_gets_a_second_chance() {
        let mut shard = HotShard::new(100);
        for i in 0..5 {
            shard.insert(&loc(i), Bytes::from(vec![i as u8; 20]));
        }
        assert!(
            shard.get(&loc(0)).is_some(),
            "hit: kept past the next eviction"
        );
        shard.insert(&loc(5), Bytes::from(vec![5; 20]));
        assert!(shard.get(&loc(0)).is_some());
        assert!(
            shard.get(&loc(1)).is_none(),
            "the oldest record not hit went instead"
        );
        // Every record hit: eviction still ends, and the bound holds.
        for i in 2..6 {
            shard.get(&loc(i));
        }
        shard.insert(&loc(6), Bytes::from(vec![6; 20]));
        assert!(shard.used_bytes() <= 100);
        assert!(shard.get(&loc(6)).is_some());
    }
}
