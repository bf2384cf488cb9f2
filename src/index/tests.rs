//! Tests of the shared index: one fetcher per URL, settles and offers, invalidation races,
//! Vary keys, the sweep and the shards.

use super::*;
use std::time::Duration;

fn record(expires_at: Instant) -> Arc<StoredRecord> {
    Arc::new(StoredRecord {
        loc: RecordLoc {
            file_id: 0,
            offset: 0,
            len: 1,
        },
        status: RecordStatus::new(200, "OK", None),
        expires_at,
        stored_at: Instant::now(),
        reuse: None,
        unconfirmed: Default::default(),
    })
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
    index.offer(&gzip, record(now + Duration::from_secs(60)));
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
    copy.mark_unconfirmed(epoch);
    index.offer("u\u{1}v", copy.clone());
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
    assert_eq!(
        StoredRecord::clone(&copy)
            .unconfirmed
            .load(Ordering::SeqCst),
        0
    );
}

#[test]
fn offer_never_replaces_a_fetch_in_flight() {
    let index = Index::new();
    let now = Instant::now();
    let claim = index.claim("u", fresh(now, false)).unwrap();
    index.offer("u", record(now + Duration::from_secs(60)));
    assert!(matches!(
        index.lookup("u", fresh(now, false)),
        Lookup::Wait(_)
    ));
    index.settle("u", &claim.flight, None);
    index.offer("u", record(now + Duration::from_secs(60)));
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
    offered.mark_unconfirmed(epoch);
    index.offer("u", offered.clone());
    // Unconfirmed, but nothing invalidated it yet: it answers.
    assert!(matches!(
        index.lookup("u", fresh(now, false)),
        Lookup::Hit(_)
    ));
    index.invalidate("u");
    index.offer("u", offered.clone());
    assert!(matches!(
        index.lookup("u", fresh(now, false)),
        Lookup::Absent
    ));
    // The same under a variant key of the URL.
    index.offer("u\u{1}w", offered.clone());
    assert!(matches!(
        index.lookup("u\u{1}w", fresh(now, false)),
        Lookup::Absent
    ));
    // Nor is it the record a new fetch would revalidate.
    let variant = record(long);
    variant.mark_unconfirmed(epoch);
    index.offer("u\u{1}v", variant.clone());
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
    kept.mark_unconfirmed(epoch);
    index.offer("u", kept.clone());
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
    assert_eq!(
        index.len(),
        2,
        "the fresh record and the fetch in flight stay"
    );
    assert!(matches!(
        index.lookup("flying", fresh(now, false)),
        Lookup::Wait(_)
    ));
    assert!(index.variant_key("new", &[]).is_some());
    index.sweep(now + Duration::from_secs(61), Duration::from_secs(60));
    assert_eq!(index.len(), 1);
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
        .filter(|shard| !shard.is_empty())
        .count();
    assert_eq!(used, SHARDS, "keys spread over every shard");
    assert_eq!(index.len(), keys.len());
    assert!(keys
        .iter()
        .all(|k| matches!(index.lookup(k, |_| true), Lookup::Hit(_))));
    assert_eq!(index.sweep(now, Duration::from_secs(60)), keys.len());
    assert!(index.is_empty());
}
