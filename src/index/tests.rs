//! Tests of the shared index: one fetcher per URL, settles and offers, invalidation races,
//! Vary keys, the sweep and the shards.

use super::*;
use crate::archive::RecordLoc;
use crate::http::reply::RecordStatus;
use std::time::Duration;

/// A record at a place that names `i`, so a lookup shows which record it found.
fn numbered(i: u64, expires_at: Instant) -> Arc<StoredRecord> {
    let loc = RecordLoc {
        file_id: 1,
        offset: i,
        len: 1,
    };
    let status = RecordStatus::new(200, "OK", None);
    Arc::new(StoredRecord::stored(
        loc,
        status,
        Instant::now(),
        expires_at,
        None,
    ))
}

/// A record; every one made so is at the same place.
fn record(expires_at: Instant) -> Arc<StoredRecord> {
    numbered(0, expires_at)
}

fn fresh(now: Instant, refetch: bool) -> impl Fn(&StoredRecord) -> bool {
    move |r| !refetch && r.is_fresh(now)
}

#[test]
fn claim_elects_one_fetcher() {
    let index = Index::new();
    let now = Instant::now();
    assert!(matches!(
        index.lookup("u", fresh(now, false)),
        Lookup::Absent
    ));
    let flight = index
        .claim("u", fresh(now, false))
        .expect("first claim wins")
        .flight;
    assert!(matches!(
        index.claim("u", fresh(now, false)),
        Err(Lookup::Wait(_))
    ));
    assert!(matches!(
        index.claim("u", fresh(now, true)),
        Err(Lookup::Wait(_))
    ));
    index.settle("u", &flight, Some(record(now + Duration::from_secs(60))));
    assert!(matches!(
        index.lookup("u", fresh(now, false)),
        Lookup::Hit(_)
    ));
    assert!(matches!(
        index.lookup("u", fresh(now, true)),
        Lookup::Absent
    ));
    assert!(matches!(
        index.claim("u", fresh(now, false)),
        Err(Lookup::Hit(_))
    ));
    // no-cache claims over a fresh record.
    let again = index.claim("u", fresh(now, true)).expect("refetch claims");
    assert!(
        again.previous.is_some(),
        "the replaced record is handed over"
    );
    index.settle("u", &again.flight, None);
    assert!(matches!(
        index.lookup("u", fresh(now, false)),
        Lookup::Absent
    ));
}

#[test]
fn stale_records_are_refetched_and_foreign_settles_ignored() {
    let index = Index::new();
    let now = Instant::now();
    let f = index.claim("u", fresh(now, false)).unwrap().flight;
    index.settle("u", &f, Some(record(now)));
    assert!(
        matches!(index.lookup("u", fresh(now, false)), Lookup::Absent),
        "expired"
    );
    let f2 = index
        .claim("u", fresh(now, false))
        .expect("stale record can be claimed")
        .flight;
    // Settling with the old flight must not clobber the new one.
    index.settle("u", &f, None);
    assert!(matches!(
        index.lookup("u", fresh(now, false)),
        Lookup::Wait(_)
    ));
    index.settle("u", &f2, None);
    assert!(index.is_empty());
}

#[test]
fn variants_have_their_own_keys_until_invalidated() {
    let index = Index::new();
    let h = |v: &str| Header {
        name: "Accept-Encoding".into(),
        value: v.as_bytes().to_vec(),
    };
    assert_eq!(index.variant_key("u", &[h("gzip")]), None);
    index.learn_vary("u", &["accept-encoding".to_string()]);
    let gzip = index.variant_key("u", &[h("gzip")]).unwrap();
    let br = index.variant_key("u", &[h("br")]).unwrap();
    assert_ne!(gzip, br);
    assert_ne!(index.variant_key("u", &[]).unwrap(), gzip);
    assert_eq!(index.variant_key("u", &[h(" gzip")]).unwrap(), gzip);
    // Learning the same names again keeps the keys; invalidation changes them.
    index.learn_vary("u", &["accept-encoding".to_string()]);
    assert_eq!(index.variant_key("u", &[h("gzip")]).unwrap(), gzip);
    let now = Instant::now();
    index.offer(
        &gzip,
        &record(now + Duration::from_secs(60)),
        index.epoch("u"),
    );
    assert!(matches!(
        index.lookup(&gzip, fresh(now, false)),
        Lookup::Hit(_)
    ));
    index.invalidate("u");
    assert_ne!(index.variant_key("u", &[h("gzip")]).unwrap(), gzip);
}

#[test]
fn a_copy_of_a_stored_record_is_confirmed_on_its_own() {
    let index = Index::new();
    let now = Instant::now();
    let long = now + Duration::from_secs(60);
    let claim = index.claim("u", fresh(now, false)).unwrap();
    let epoch = index.epoch("u");
    let stored = record(long);
    index.settle_unless_invalidated("u", &claim.flight, Some(stored.clone()), "u", epoch);
    // Another URL in the same bucket invalidated before the variant's offer checks
    // again: the variant is withdrawn, the record under the URL still answers.
    let copy = Arc::new(StoredRecord::clone(&stored));
    index.offer("u\u{1}v", &copy, epoch);
    index.epoch_bucket("u").fetch_add(1, Ordering::SeqCst);
    index.confirm_or_withdraw("u\u{1}v", &copy, "u", epoch);
    assert!(matches!(
        index.lookup("u\u{1}v", fresh(now, false)),
        Lookup::Absent
    ));
    assert!(matches!(
        index.lookup("u", fresh(now, false)),
        Lookup::Hit(_)
    ));
}

#[test]
fn offer_never_replaces_a_fetch_in_flight() {
    let index = Index::new();
    let now = Instant::now();
    let claim = index.claim("u", fresh(now, false)).unwrap();
    index.offer(
        "u",
        &record(now + Duration::from_secs(60)),
        index.epoch("u"),
    );
    assert!(matches!(
        index.lookup("u", fresh(now, false)),
        Lookup::Wait(_)
    ));
    index.settle("u", &claim.flight, None);
    index.offer(
        "u",
        &record(now + Duration::from_secs(60)),
        index.epoch("u"),
    );
    assert!(matches!(
        index.lookup("u", fresh(now, false)),
        Lookup::Hit(_)
    ));
}

#[test]
fn an_invalidated_fetch_in_flight_is_neither_settled_nor_offered() {
    let index = Index::new();
    let now = Instant::now();
    let long = now + Duration::from_secs(60);
    // A claimed fetch whose URL is invalidated while it runs stores nothing.
    let claim = index.claim("u", fresh(now, false)).unwrap();
    let epoch = index.epoch("u");
    index.invalidate("u");
    assert!(matches!(
        index.lookup("u", fresh(now, false)),
        Lookup::Absent
    ));
    index.settle("u", &claim.flight, Some(record(long)));
    assert!(matches!(
        index.lookup("u", fresh(now, false)),
        Lookup::Absent
    ));
    // Nor settled under a variant key, which invalidation does not remove.
    let variant = index.claim("u\u{1}v", fresh(now, false)).unwrap();
    index.settle_unless_invalidated("u\u{1}v", &variant.flight, Some(record(long)), "u", epoch);
    assert!(index.is_empty());
    // Nor is its result offered, under the URL or a variant key.
    index.offer_unless_invalidated("u", "u", epoch, record(long));
    index.offer_unless_invalidated("u\u{1}v", "u", epoch, record(long));
    assert!(index.is_empty());
    // A fetch that started after the invalidation offers as usual.
    index.offer_unless_invalidated("u", "u", index.epoch("u"), record(long));
    assert!(matches!(
        index.lookup("u", fresh(now, false)),
        Lookup::Hit(_)
    ));
    // Other URLs' epochs move only if they share the bucket.
    let other = index.epoch("other");
    index.invalidate("u");
    let shared = std::ptr::eq(index.epoch_bucket("u"), index.epoch_bucket("other"));
    assert_eq!(index.invalidated_since("other", other), shared);
}

#[test]
fn a_record_stored_while_its_url_is_invalidated_never_answers_afterwards() {
    // The interleaving a second epoch check alone leaves open: the store lands after
    // `invalidate` removed the key, and a lookup comes before the fetch checks again.
    let index = Index::new();
    let now = Instant::now();
    let long = now + Duration::from_secs(60);
    let epoch = index.epoch("u");
    let offered = record(long);
    index.offer("u", &offered, epoch);
    // Unconfirmed, but nothing invalidated it yet: it answers.
    assert!(matches!(
        index.lookup("u", fresh(now, false)),
        Lookup::Hit(_)
    ));
    index.invalidate("u");
    index.offer("u", &offered, epoch);
    assert!(matches!(
        index.lookup("u", fresh(now, false)),
        Lookup::Absent
    ));
    // The same under a variant key of the URL.
    index.offer("u\u{1}w", &offered, epoch);
    assert!(matches!(
        index.lookup("u\u{1}w", fresh(now, false)),
        Lookup::Absent
    ));
    // Nor is it the record a new fetch would revalidate.
    let variant = record(long);
    index.offer("u\u{1}v", &variant, epoch);
    let claim = index.claim("u\u{1}v", fresh(now, false)).unwrap();
    assert!(claim.previous.is_none());
    // The fetch's own check then takes it out.
    index.confirm_or_withdraw("u", &offered, "u", epoch);
    assert!(matches!(
        index.lookup("u", fresh(now, false)),
        Lookup::Absent
    ));
    // Once confirmed, a record answers whatever happens to its bucket's epoch later
    // (another URL in the bucket being invalidated).
    let epoch = index.epoch("u");
    let kept = record(long);
    index.offer("u", &kept, epoch);
    index.confirm_or_withdraw("u", &kept, "u", epoch);
    index.epoch_bucket("u").fetch_add(1, Ordering::SeqCst);
    assert!(matches!(
        index.lookup("u", fresh(now, false)),
        Lookup::Hit(_)
    ));
}

#[test]
fn sweep_drops_expired_records_and_old_vary_lists_only() {
    let index = Index::new();
    let now = Instant::now();
    let long = now + Duration::from_secs(60);
    for (key, expires) in [("old", now), ("new", long)] {
        let c = index.claim(key, fresh(now, false)).unwrap();
        index.settle(key, &c.flight, Some(record(expires)));
    }
    let in_flight = index.claim("flying", fresh(now, false)).unwrap();
    index.learn_vary("new", &["accept".to_string()]);
    assert_eq!(index.sweep(now, Duration::from_secs(60)), 1);
    assert_eq!(index.len(), 1, "the fresh record stays");
    assert!(matches!(
        index.lookup("flying", fresh(now, false)),
        Lookup::Wait(_)
    ));
    assert!(index.variant_key("new", &[]).is_some());
    index.sweep(now + Duration::from_secs(61), Duration::from_secs(60));
    assert_eq!(index.len(), 0);
    assert!(
        index.variant_key("new", &[]).is_none(),
        "vary list not refreshed in time"
    );
    index.settle("flying", &in_flight.flight, None);
}

#[test]
fn every_shard_is_counted_and_swept() {
    let index = Index::new();
    let now = Instant::now();
    let keys: Vec<String> = (0..SHARDS * 16).map(|i| format!("http://h/{i}")).collect();
    for key in &keys {
        let c = index.claim(key, fresh(now, false)).unwrap();
        index.settle(key, &c.flight, Some(record(now)));
    }
    let used = index
        .shards
        .iter()
        .filter(|shard| shard.lock().unwrap().table.len() > 0)
        .count();
    assert_eq!(used, SHARDS, "keys spread over every shard");
    assert_eq!(index.len(), keys.len());
    assert!(keys
        .iter()
        .all(|k| matches!(index.lookup(k, |_| true), Lookup::Hit(_))));
    assert_eq!(index.sweep(now, Duration::from_secs(60)), keys.len());
    assert!(index.is_empty());
}

fn store(index: &Index, key: &str, record: Arc<StoredRecord>) {
    let claim = index.claim(key, |_| false).expect("no fetch in flight");
    index.settle(key, &claim.flight, Some(record));
}

fn found(index: &Index, key: &str) -> Option<u64> {
    match index.lookup(key, |_| true) {
        Lookup::Hit(r) => Some(r.loc.offset),
        _ => None,
    }
}

/// Keys whose hashes put them all in one shard at one home (a test hasher) are told apart
/// by the rest of their ids: each finds its own record, through stores, replacements and
/// removals.
#[test]
fn colliding_keys_each_find_their_own_record() {
    let index = Index::crowded(usize::MAX);
    let long = Instant::now() + Duration::from_secs(60);
    let keys: Vec<String> = (0..2000).map(|i| format!("http://h/{i}")).collect();
    for (i, key) in keys.iter().enumerate() {
        store(&index, key, numbered(i as u64, long));
    }
    for (i, key) in keys.iter().enumerate().step_by(7) {
        index.invalidate(key);
        assert_eq!(found(&index, key), None, "{i}");
    }
    store(&index, &keys[1], numbered(99_999, long));
    for (i, key) in keys.iter().enumerate() {
        let want = match i {
            1 => Some(99_999),
            i if i % 7 == 0 => None,
            i => Some(i as u64),
        };
        assert_eq!(found(&index, key), want, "{key}");
    }
}

/// At its budget the index lets the entries closest to expiry go: a lookup of one of them
/// is a miss (a refetch), never another record; the tables stay within the budget.
#[test]
fn at_the_budget_the_soonest_to_expire_leave_and_no_lookup_goes_wrong() {
    // One shard takes every key; its share of the budget is 64 slots.
    let budget = SHARDS * 64 * std::mem::size_of::<Slot>();
    let index = Index::crowded(budget);
    let now = Instant::now();
    let n = 1000u64;
    for i in 0..n {
        // Later keys expire later, except every tenth, which expires soonest of all.
        let secs = if i % 10 == 0 { 1 } else { 100 + i };
        store(
            &index,
            &format!("k{i}"),
            numbered(i, now + Duration::from_secs(secs)),
        );
    }
    let m = index.memory();
    assert!(m.table_bytes <= 64 * std::mem::size_of::<Slot>(), "{m:?}");
    assert!(m.entries <= SlotTable::holds(64) && m.entries > 0, "{m:?}");
    assert_eq!(m.evictions + m.entries as u64, n, "{m:?}");
    for i in 0..n {
        let got = found(&index, &format!("k{i}"));
        assert!(got.is_none() || got == Some(i), "k{i} found record {got:?}");
    }
    // The latest stored (and latest to expire) are there; the soon-to-expire early ones are not.
    assert_eq!(found(&index, &format!("k{}", n - 1)), Some(n - 1));
    assert_eq!(found(&index, "k10"), None);
    assert_eq!(found(&index, "k1"), None);
}

/// Records restored from disk carry no forward facts until they are learnt from the head.
#[test]
fn facts_of_a_restored_record_are_learnt_once() {
    let index = Index::new();
    let now = Instant::now();
    let restored = numbered(7, now + Duration::from_secs(60));
    let expires = ticks::of(restored.expires_at);
    index.restore("u", restored.loc, 200, expires, restored.born);
    let r = index
        .without_facts("u", now)
        .expect("restored, facts unknown");
    assert!(!r.facts.known());
    let reuse = crate::http::cache::reuse_for(
        200,
        &crate::http::cache::response_facts(
            b"HTTP/1.1 200 OK\r\nCache-Control: max-age=30\r\n\r\n",
        ),
        &[],
        std::time::SystemTime::now(),
        Duration::from_secs(3600),
    );
    index.learn_facts("u", r.loc, Facts::of(&reuse), r.born);
    assert!(index.without_facts("u", now).is_none());
    let Lookup::Hit(r) = index.lookup("u", |_| true) else {
        panic!("still stored")
    };
    assert!(r.facts.known() && r.facts.shareable() && r.facts.lifetime == 30);
    assert!(r.is_fresh_for(Default::default(), now));
    // A stale record's facts are not asked for.
    let old = numbered(8, now);
    index.restore("old", old.loc, 200, ticks::of(now), old.born);
    assert!(index
        .without_facts("old", now + Duration::from_secs(1))
        .is_none());
}
