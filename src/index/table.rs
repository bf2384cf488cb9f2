//! A shard's table of slots: open addressing with Robin Hood linear probing over one flat
//! array. Its capacity can be any size (a key's home is a multiply-shift of its hash), so it
//! grows by a quarter at a time: memory per entry stays within a quarter of the densest
//! fill, and a growth step copies little. Deletion shifts the following run back, so there
//! are no tombstones to sweep.

use super::slot::{Id, Slot};
use super::slots::SlotArray;

/// Fill at which the table grows (or, at its budget, evicts): nine tenths.
const MAX_FILL_NUM: usize = 9;
const MAX_FILL_DEN: usize = 10;
/// The smallest table that holds anything.
const MIN_CAPACITY: usize = 16;

#[derive(Debug, Default)]
pub struct SlotTable {
    slots: SlotArray,
    len: usize,
}

impl SlotTable {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Bytes its slots take.
    pub fn bytes(&self) -> usize {
        self.slots.len() * std::mem::size_of::<Slot>()
    }

    /// The most entries `capacity` slots hold before growing.
    pub fn holds(capacity: usize) -> usize {
        capacity.saturating_mul(MAX_FILL_NUM) / MAX_FILL_DEN
    }

    /// The smallest capacity that holds `entries`.
    pub fn capacity_for(entries: usize) -> usize {
        let mut capacity = (entries.saturating_mul(MAX_FILL_DEN) / MAX_FILL_NUM).max(MIN_CAPACITY);
        while Self::holds(capacity) < entries {
            capacity += 1;
        }
        capacity
    }

    /// Whether one more entry needs a bigger table.
    pub fn is_full(&self) -> bool {
        self.len + 1 > Self::holds(self.capacity())
    }

    /// The capacity of the next growth step, at most `limit`.
    pub fn next_capacity(&self, limit: usize) -> usize {
        let cap = self.capacity();
        (cap + cap / 4)
            .max(MIN_CAPACITY)
            .min(limit.max(MIN_CAPACITY))
    }

    fn home(&self, id: Id) -> usize {
        ((u128::from(id.home()) * self.slots.len() as u128) >> 64) as usize
    }

    /// How far slot `i` sits from its home.
    fn distance(&self, i: usize) -> usize {
        let home = self.home(self.slots[i].id);
        (i + self.slots.len() - home) % self.slots.len()
    }

    fn find(&self, id: Id) -> Option<usize> {
        let cap = self.slots.len();
        if cap == 0 {
            return None;
        }
        let mut i = self.home(id);
        for probed in 0..cap {
            let slot = &self.slots[i];
            // Robin Hood order: a key is never further from home than a key met before it
            // is found, so a richer slot (or a hole) ends the search.
            if slot.is_empty() || self.distance(i) < probed {
                return None;
            }
            if slot.id == id {
                return Some(i);
            }
            i = (i + 1) % cap;
        }
        None
    }

    pub fn get(&self, id: Id) -> Option<&Slot> {
        self.find(id).map(|i| &self.slots[i])
    }

    pub fn get_mut(&mut self, id: Id) -> Option<&mut Slot> {
        self.find(id).map(|i| &mut self.slots[i])
    }

    /// Stores `slot`, replacing the entry with its id. The caller makes room first
    /// (`is_full`, `grow`): a full table refuses (returns `false`).
    pub fn insert(&mut self, slot: Slot) -> bool {
        if let Some(i) = self.find(slot.id) {
            self.slots[i] = slot;
            return true;
        }
        if self.is_full() {
            return false;
        }
        self.place(slot);
        self.len += 1;
        true
    }

    /// Puts a new id in, displacing richer entries along its run.
    fn place(&mut self, mut slot: Slot) {
        let cap = self.slots.len();
        let mut i = self.home(slot.id);
        let mut dist = 0;
        loop {
            if self.slots[i].is_empty() {
                self.slots[i] = slot;
                return;
            }
            let theirs = self.distance(i);
            if theirs < dist {
                std::mem::swap(&mut self.slots[i], &mut slot);
                dist = theirs;
            }
            i = (i + 1) % cap;
            dist += 1;
        }
    }

    pub fn remove(&mut self, id: Id) -> Option<Slot> {
        let i = self.find(id)?;
        Some(self.remove_at(i))
    }

    fn remove_at(&mut self, mut i: usize) -> Slot {
        let cap = self.slots.len();
        let removed = self.slots[i];
        loop {
            let next = (i + 1) % cap;
            if self.slots[next].is_empty() || self.distance(next) == 0 {
                break;
            }
            self.slots[i] = self.slots[next];
            i = next;
        }
        self.slots[i] = Slot::EMPTY;
        self.len -= 1;
        removed
    }

    /// Moves every entry into a table of `capacity` slots (at least what holds them).
    pub fn resize(&mut self, capacity: usize) {
        let capacity = capacity.max(Self::capacity_for(self.len));
        let old = std::mem::replace(&mut self.slots, SlotArray::empty(capacity));
        for slot in old.iter().filter(|s| !s.is_empty()) {
            self.place(*slot);
        }
    }

    /// Keeps the entries `keep` says yes to; returns those it took out.
    pub fn retain(&mut self, mut keep: impl FnMut(&Slot) -> bool) -> Vec<Slot> {
        let mut gone = Vec::new();
        let mut i = 0;
        while i < self.slots.len() {
            let slot = self.slots[i];
            if !slot.is_empty() && !keep(&slot) {
                gone.push(self.remove_at(i));
                // The run shifted back into `i`: look at it again.
                continue;
            }
            i += 1;
        }
        // A shift only moves entries back to `i` or wraps already-judged ones from the start
        // of the array to its end: none is skipped.
        gone
    }

    pub fn iter(&self) -> impl Iterator<Item = &Slot> {
        self.slots.iter().filter(|s| !s.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::RecordLoc;
    use crate::index::slot::Facts;

    fn slot(home: u64, pick: u64, expires: i64) -> Slot {
        let loc = RecordLoc {
            file_id: 1,
            offset: pick,
            len: 1,
        };
        Slot::pack(Id::new(home, pick), loc, 200, expires, 0, Facts::unknown()).expect("fits")
    }

    fn grown(t: &mut SlotTable) {
        if t.is_full() {
            let next = t.next_capacity(usize::MAX);
            t.resize(next);
        }
    }

    /// Entries that all share one home (the worst collisions a hash can give) are still told
    /// apart by their ids, found, replaced and removed, with the rest intact.
    #[test]
    fn colliding_homes_stay_distinct_through_inserts_and_removals() {
        let mut t = SlotTable::default();
        for pick in 0..200 {
            grown(&mut t);
            assert!(t.insert(slot(42, pick, pick as i64)));
        }
        assert_eq!(t.len(), 200);
        for pick in (0..200).step_by(3) {
            assert_eq!(
                t.remove(Id::new(42, pick)).map(|s| s.loc().offset),
                Some(pick)
            );
        }
        for pick in 0..200u64 {
            let found = t.get(Id::new(42, pick)).map(|s| s.loc().offset);
            assert_eq!(found, (pick % 3 != 0).then_some(pick), "{pick}");
        }
        assert!(t.insert(slot(42, 1, 999)));
        assert_eq!(t.get(Id::new(42, 1)).map(|s| s.expires()), Some(999));
        assert!(t.get(Id::new(44, 1)).is_none());
    }

    /// A model check against a HashMap over random operations, with homes crowded into few
    /// values so runs are long and wrap around the end of the array.
    #[test]
    fn behaves_like_a_map_under_random_operations() {
        let mut t = SlotTable::default();
        let mut model = std::collections::HashMap::new();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for step in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Homes near the top of the hash range land at the end of the array.
            let home = [u64::MAX - (x % 5), x % 3, x][(x >> 60) as usize % 3];
            let pick = x % 500;
            let id = Id::new(home, pick);
            match x % 4 {
                0 => {
                    assert_eq!(
                        t.remove(id).is_some(),
                        model.remove(&id).is_some(),
                        "{step}"
                    );
                }
                1 if step % 50 == 0 => {
                    let cut = (x % 1000) as i64;
                    let gone = t.retain(|s| s.expires() >= cut);
                    model.retain(|_, e: &mut i64| *e >= cut);
                    assert!(gone.iter().all(|s| s.expires() < cut));
                }
                _ => {
                    grown(&mut t);
                    let e = (x % 1000) as i64;
                    assert!(t.insert(slot(home, pick, e)));
                    model.insert(id, e);
                }
            }
            assert_eq!(t.len(), model.len());
        }
        for (id, e) in &model {
            assert_eq!(t.get(*id).map(|s| s.expires()), Some(*e));
        }
        assert_eq!(t.iter().count(), model.len());
    }

    #[test]
    fn a_full_table_refuses_and_grows_by_a_quarter() {
        let mut t = SlotTable::default();
        t.resize(20);
        assert_eq!(t.capacity(), 20);
        for pick in 0..SlotTable::holds(20) as u64 {
            assert!(t.insert(slot(pick * 7919, pick, 0)));
        }
        assert!(t.is_full());
        assert!(!t.insert(slot(1, 999, 0)));
        assert_eq!(t.next_capacity(usize::MAX), 25);
        assert_eq!(t.next_capacity(22), 22);
    }
}
