//! One index entry packed into 44 bytes: the key's 128-bit hash, where the record lies, when
//! it expires, its status and the few RFC 9111 facts a lookup decides on. Everything else
//! about a record (its URL, its response head, its validators) is on disk.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::archive::RecordLoc;
use crate::http::cache::Reuse;

/// A key's identity in the index: a 128-bit keyed hash of it (`Keyer`). Two keys are taken
/// for one only if all 128 bits agree (docs/architecture.md, "The index", for the odds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Id([u32; 4]);

impl Id {
    /// From the two 64-bit hashes of a key: `home` places it in a shard's table, `pick`
    /// chooses the shard. The lowest bit is set so no id is the empty slot's.
    pub fn new(home: u64, pick: u64) -> Id {
        let home = home | 1;
        Id([
            home as u32,
            (home >> 32) as u32,
            pick as u32,
            (pick >> 32) as u32,
        ])
    }

    pub fn home(self) -> u64 {
        u64::from(self.0[0]) | u64::from(self.0[1]) << 32
    }

    pub fn pick(self) -> u64 {
        u64::from(self.0[2]) | u64::from(self.0[3]) << 32
    }

    const EMPTY: Id = Id([0; 4]);
}

/// The RFC 9111 facts about a stored response that decide a lookup: who may have it and
/// for how long. What a reply needs beyond them (validators, Vary values) is read from the
/// record head when a request needs it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Facts {
    flags: u16,
    /// Freshness lifetime in seconds, already capped by `--ttl`.
    pub lifetime: u32,
}

/// `Facts::flags` (the same bits as `Slot::flags`).
const KNOWN: u16 = 1;
const SHAREABLE: u16 = 1 << 1;
const CREDENTIALED: u16 = 1 << 2;
const FORWARD_PRIVATE: u16 = 1 << 3;
const VALIDATE_ALWAYS: u16 = 1 << 4;
const VALIDATORS: u16 = 1 << 5;
const VARIES: u16 = 1 << 6;
const FACT_BITS: u16 = (1 << 7) - 1;
/// `Slot::flags` only: the record is stored but not yet confirmed (`Shard::pending`).
pub const UNCONFIRMED: u16 = 1 << 8;
/// `Slot::flags` only: the shard's `extras` hold more about it.
pub const EXTRAS: u16 = 1 << 9;

impl Facts {
    /// Facts not worked out (a record restored from disk): forward mode reads them from the
    /// record head before it answers with it.
    pub fn unknown() -> Facts {
        Facts::default()
    }

    pub fn of(reuse: &Reuse) -> Facts {
        let mut flags = KNOWN;
        for (set, bit) in [
            (reuse.shareable, SHAREABLE),
            (reuse.credentialed, CREDENTIALED),
            (reuse.forward_private, FORWARD_PRIVATE),
            (reuse.validate_always, VALIDATE_ALWAYS),
            (
                reuse.etag.is_some() || reuse.last_modified.is_some(),
                VALIDATORS,
            ),
            (reuse.vary.is_some(), VARIES),
        ] {
            if set {
                flags |= bit;
            }
        }
        Facts {
            flags,
            lifetime: u32::try_from(reuse.lifetime).unwrap_or(u32::MAX),
        }
    }

    fn has(self, bit: u16) -> bool {
        self.flags & bit != 0
    }

    pub fn known(self) -> bool {
        self.has(KNOWN)
    }
    /// May answer requests other than the one that fetched it (RFC 9111 3 and 3.5).
    pub fn shareable(self) -> bool {
        self.has(SHAREABLE)
    }
    /// The fetching request carried Authorization or Cookie.
    pub fn credentialed(self) -> bool {
        self.has(CREDENTIALED)
    }
    /// A forward-mode response meant for its client alone.
    pub fn forward_private(self) -> bool {
        self.has(FORWARD_PRIVATE)
    }
    /// The response said `no-cache`: validate before every reuse.
    pub fn validate_always(self) -> bool {
        self.has(VALIDATE_ALWAYS)
    }
    /// It has an ETag or a Last-Modified, so it can be revalidated.
    pub fn has_validators(self) -> bool {
        self.has(VALIDATORS)
    }
    /// The response said `Vary`: only a key that carries the varying values may find it.
    pub fn varies(self) -> bool {
        self.has(VARIES)
    }
}

/// Time on the process's monotonic clock in tenths of a second, so an entry's times fit in
/// 32 bits (13 years of uptime) and still honour sub-second `--ttl`s.
pub mod ticks {
    use super::*;

    /// Ticks per second.
    pub const PER_SECOND: i64 = 10;

    fn base() -> Instant {
        static BASE: OnceLock<Instant> = OnceLock::new();
        *BASE.get_or_init(Instant::now)
    }

    /// `at` in ticks since the base (negative before it), rounded down: an expiry comes a
    /// little early rather than late, an age counts a little more.
    pub fn of(at: Instant) -> i64 {
        let base = base();
        match at.checked_duration_since(base) {
            Some(after) => floor(after),
            None => -(ceil(base.duration_since(at))),
        }
    }

    pub fn now() -> i64 {
        of(Instant::now())
    }

    fn ceil(d: Duration) -> i64 {
        let t = d.as_nanos().div_ceil(1_000_000_000 / PER_SECOND as u128);
        i64::try_from(t).unwrap_or(i64::MAX)
    }

    fn floor(d: Duration) -> i64 {
        let t = d.as_nanos() / (1_000_000_000 / PER_SECOND as u128);
        i64::try_from(t).unwrap_or(i64::MAX)
    }

    /// The instant `t` ticks after the base (the base itself for earlier ones: only expiries
    /// are turned back into instants, and an expiry before the base has passed).
    pub fn instant(t: i64) -> Instant {
        let t = u64::try_from(t).unwrap_or(0);
        base() + Duration::from_millis(t.saturating_mul((1000 / PER_SECOND) as u64))
    }

    /// Whole ticks in `d`, rounded up.
    pub fn span(d: Duration) -> i64 {
        ceil(d)
    }
}

/// One entry of a shard's table. 44 bytes, every field 32 or 16 bits so none is padding.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct Slot {
    pub id: Id,
    /// File id (low 24 bits) and offset (40 bits) of the record.
    place: [u32; 2],
    len: u32,
    /// Ticks (`ticks::of`) at which it stops answering, clamped to 32 bits.
    expires: u32,
    /// Ticks at which the response was as fresh as new: stored, less its age then (RFC 9111
    /// 4.2.3); ages are counted from here.
    born: i32,
    lifetime: u32,
    status: u16,
    pub flags: u16,
}

/// The origin time as a slot holds it, and the lifetime counted from it. An origin time too
/// long ago to hold leaves a response that is stale anyway (its lifetime is capped by
/// --ttl): held as stale.
fn born_and_lifetime(born: i64, facts: Facts) -> (i32, u32) {
    match i32::try_from(born) {
        Ok(born) => (born, facts.lifetime),
        Err(_) => (0, 0),
    }
}

/// Largest file id and offset an entry can hold; a record beyond them is not indexed (a
/// later request fetches it again).
const FILE_ID_BITS: u32 = 24;
const OFFSET_BITS: u32 = 40;

impl Slot {
    pub const EMPTY: Slot = Slot {
        id: Id::EMPTY,
        place: [0; 2],
        len: 0,
        expires: 0,
        born: 0,
        lifetime: 0,
        status: 0,
        flags: 0,
    };

    pub fn is_empty(&self) -> bool {
        self.id == Id::EMPTY
    }

    /// Packs a record's entry; `None` when its place or times do not fit.
    pub fn pack(
        id: Id,
        loc: RecordLoc,
        status: u16,
        expires: i64,
        born: i64,
        facts: Facts,
    ) -> Option<Slot> {
        if loc.file_id >> FILE_ID_BITS != 0 || loc.offset >> OFFSET_BITS != 0 {
            return None;
        }
        let place = u64::from(loc.file_id) << OFFSET_BITS | loc.offset;
        let (born, lifetime) = born_and_lifetime(born, facts);
        Some(Slot {
            id,
            place: [place as u32, (place >> 32) as u32],
            len: u32::try_from(loc.len).ok()?,
            expires: u32::try_from(expires.max(0)).unwrap_or(u32::MAX),
            born,
            lifetime,
            status,
            flags: facts.flags & FACT_BITS,
        })
    }

    pub fn loc(&self) -> RecordLoc {
        let place = u64::from(self.place[0]) | u64::from(self.place[1]) << 32;
        RecordLoc {
            file_id: (place >> OFFSET_BITS) as u32,
            offset: place & ((1 << OFFSET_BITS) - 1),
            len: u64::from(self.len),
        }
    }

    pub fn expires(&self) -> i64 {
        i64::from(self.expires)
    }

    pub fn born(&self) -> i64 {
        i64::from(self.born)
    }

    pub fn status(&self) -> u16 {
        self.status
    }

    pub fn facts(&self) -> Facts {
        Facts {
            flags: self.flags & FACT_BITS,
            lifetime: self.lifetime,
        }
    }

    /// Replaces the facts (and the origin time they count from), keeping the other flags.
    pub fn set_facts(&mut self, facts: Facts, born: i64) {
        let (born, lifetime) = born_and_lifetime(born, facts);
        self.born = born;
        self.lifetime = lifetime;
        self.flags = (self.flags & !FACT_BITS) | (facts.flags & FACT_BITS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_is_44_bytes_and_round_trips() {
        assert_eq!(std::mem::size_of::<Slot>(), 44);
        let loc = RecordLoc {
            file_id: (1 << 24) - 1,
            offset: (1 << 40) - 1,
            len: u64::from(u32::MAX),
        };
        let facts = Facts {
            flags: KNOWN | SHAREABLE | VARIES,
            lifetime: 600,
        };
        let slot = Slot::pack(Id::new(7, 9), loc, 404, 1234, -56, facts).expect("fits");
        assert_eq!(slot.loc(), loc);
        assert_eq!(
            (slot.status(), slot.expires(), slot.born()),
            (404, 1234, -56)
        );
        assert_eq!(slot.facts(), facts);
        assert!(slot.facts().varies() && !slot.facts().credentialed());
        assert!(!slot.is_empty());
    }

    #[test]
    fn records_beyond_what_a_slot_holds_are_refused() {
        let id = Id::new(1, 1);
        let at = |file_id, offset, len| RecordLoc {
            file_id,
            offset,
            len,
        };
        let f = Facts::unknown();
        assert!(Slot::pack(id, at(1 << 24, 0, 1), 200, 0, 0, f).is_none());
        assert!(Slot::pack(id, at(0, 1 << 40, 1), 200, 0, 0, f).is_none());
        assert!(Slot::pack(id, at(0, 0, 1 << 32), 200, 0, 0, f).is_none());
        // A far-future expiry is clamped; an origin time out of range makes it stale.
        let s = Slot::pack(id, at(0, 0, 1), 200, i64::MAX, i64::MIN, f).expect("fits");
        assert_eq!(s.expires(), i64::from(u32::MAX));
        assert_eq!(s.facts().lifetime, 0);
    }

    #[test]
    fn ticks_round_down_and_turn_back_into_instants() {
        let now = Instant::now();
        let t = ticks::of(now + Duration::from_millis(250));
        assert!(ticks::instant(t) <= now + Duration::from_millis(250));
        assert!(ticks::instant(t) > now + Duration::from_millis(150));
        assert!(ticks::instant(ticks::of(now)) <= now);
        assert_eq!(ticks::span(Duration::from_millis(1)), 1);
        assert_eq!(ticks::span(Duration::from_secs(3)), 30);
    }
}
