//! Which request headers choose among a URL's stored variants (its responses' `Vary`), and
//! the key each variant is stored under.

use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::http::request::Header;

/// The request headers that choose among a URL's variants (its last response's `Vary`), and
/// a generation, part of every variant key, that changes when the URL is invalidated, so
/// variants stored before do not answer again.
#[derive(Debug, Clone)]
struct VaryNames {
    names: Arc<[Box<str>]>,
    /// Unique across the lists (`VaryLists::generations`): a list swept and learnt again
    /// never brings back a generation, so variants stored under an old list stay unreachable
    /// even if the URL was invalidated while it had no list.
    generation: u32,
    /// When a response last said so; lists not refreshed within `--ttl` are swept.
    learned_at: Instant,
}

/// Distinct name lists shared between URLs; past this many, a new list is kept by its URL
/// alone. The web uses a handful (`Accept-Encoding` above all).
const MAX_SHARED_LISTS: usize = 1024;
/// What one URL's list costs, with the map's own overhead (`loadtest/index_live.sh` with
/// `VARY=1`), for turning a byte budget into a count.
pub(super) const BYTES_PER_LIST: usize = 96;

/// URL -> the headers its responses vary on. Most of the web's text says `Vary`, so this
/// holds about every URL fetched within `--ttl`: each is kept by a 128-bit keyed hash of
/// its URL rather than the URL itself, and equal lists share one allocation.
#[derive(Debug)]
pub(super) struct VaryLists {
    map: papaya::HashMap<u128, VaryNames>,
    /// Most URLs kept; the sweep drops the lists learnt longest ago past it. A URL without
    /// its list is looked up as if it had none: a miss, fetched again, nothing wrong served.
    max_lists: usize,
    /// Two independent keys: a collision would give one URL another's list, so the hash is
    /// 128 bits wide and nobody outside can choose URLs that collide.
    keys: (RandomState, RandomState),
    shared: Mutex<hashbrown::HashSet<Arc<[Box<str>]>>>,
    /// The next generation to hand out.
    generations: AtomicU32,
}

impl Default for VaryLists {
    fn default() -> Self {
        VaryLists::with_limit(usize::MAX)
    }
}

impl VaryLists {
    /// Lists for at most `max_lists` URLs (between sweeps, what arrives in the meantime too).
    pub(super) fn with_limit(max_lists: usize) -> Self {
        VaryLists {
            map: Default::default(),
            max_lists,
            keys: Default::default(),
            shared: Default::default(),
            generations: Default::default(),
        }
    }

    /// The key for `request`'s variant of `url`, once a response for it said `Vary`: the URL,
    /// then `\u{1}`, the list's generation and the request's values of the varying headers.
    pub(super) fn variant_key(&self, url: &str, request: &[Header]) -> Option<String> {
        let map = self.map.pin();
        let names = map.get(&self.key_of(url))?;
        let mut key = format!("{url}\u{1}{}", names.generation);
        for name in names.names.iter() {
            key.push('\u{1}');
            key.push_str(name);
            for h in request.iter().filter(|h| h.name.eq_ignore_ascii_case(name)) {
                key.push('=');
                key.push_str(&String::from_utf8_lossy(h.value.trim_ascii()));
            }
        }
        Some(key)
    }

    fn key_of(&self, url: &str) -> u128 {
        let half = |keys: &RandomState| {
            let mut h = keys.build_hasher();
            h.write(url.as_bytes());
            h.finish()
        };
        (u128::from(half(&self.keys.0)) << 64) | u128::from(half(&self.keys.1))
    }

    /// The shared allocation of a list equal to `names`.
    fn shared_list<S: AsRef<str>>(&self, names: &[S]) -> Arc<[Box<str>]> {
        let list: Arc<[Box<str>]> = names.iter().map(|n| Box::from(n.as_ref())).collect();
        let mut shared = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(known) = shared.get(&list) {
            return known.clone();
        }
        if shared.len() < MAX_SHARED_LISTS {
            shared.insert(list.clone());
        }
        list
    }

    /// How many URLs have a list now.
    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    fn new_generation(&self) -> u32 {
        self.generations.fetch_add(1, Ordering::Relaxed)
    }

    /// Remembers which request headers `url`'s responses vary on (from its latest response).
    pub(super) fn learn<S: AsRef<str>>(&self, url: &str, names: &[S]) {
        self.learn_at(url, names, Instant::now());
    }

    fn learn_at<S: AsRef<str>>(&self, url: &str, names: &[S], now: Instant) {
        let map = self.map.pin();
        map.compute(self.key_of(url), |current| {
            let same = current.is_some_and(|(_, v)| {
                v.names
                    .iter()
                    .map(|n| &**n)
                    .eq(names.iter().map(AsRef::as_ref))
            });
            let names = match current {
                Some((_, v)) if same => v.names.clone(),
                _ => self.shared_list(names),
            };
            papaya::Operation::<_, ()>::Insert(VaryNames {
                names,
                generation: current.map_or_else(|| self.new_generation(), |(_, v)| v.generation),
                learned_at: now,
            })
        });
    }

    /// Moves `url`'s list to a new generation, so no variant stored before answers again.
    pub(super) fn invalidate(&self, url: &str) {
        let map = self.map.pin();
        map.compute(self.key_of(url), |current| match current {
            Some((_, v)) => papaya::Operation::Insert(VaryNames {
                names: v.names.clone(),
                generation: self.new_generation(),
                learned_at: v.learned_at,
            }),
            None => papaya::Operation::Abort(()),
        });
    }

    /// Drops lists not refreshed for `ttl`, then, past `max_lists`, the eighth learnt
    /// longest ago, until within it.
    pub(super) fn sweep(&self, now: Instant, ttl: Duration) {
        self.map
            .pin()
            .retain(|_, v| now.saturating_duration_since(v.learned_at) < ttl);
        self.trim();
    }

    /// Past `max_lists`, drops the eighth learnt longest ago until within it (cheap when
    /// within: the sweeper asks every second).
    pub(super) fn trim(&self) {
        let map = self.map.pin();
        while map.len() > self.max_lists {
            let mut learned: Vec<Instant> = map.iter().map(|(_, v)| v.learned_at).collect();
            let over = learned.len() - self.max_lists;
            let leave = over.max(learned.len() / 8).clamp(1, learned.len());
            let (_, &mut cut, _) = learned.select_nth_unstable(leave - 1);
            map.retain(|_, v| v.learned_at > cut);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_with_equal_lists_share_one_and_keep_their_own_generations() {
        let lists = VaryLists::default();
        lists.learn("http://a/1", &["accept-encoding"]);
        lists.learn("http://a/2", &["accept-encoding"]);
        lists.learn("http://a/3", &["accept-encoding", "user-agent"]);
        let map = lists.map.pin();
        let names = |url: &str| map.get(&lists.key_of(url)).unwrap().names.clone();
        assert!(Arc::ptr_eq(&names("http://a/1"), &names("http://a/2")));
        assert!(!Arc::ptr_eq(&names("http://a/1"), &names("http://a/3")));
        assert_eq!(lists.len(), 3);
        assert_eq!(lists.shared.lock().unwrap().len(), 2);
        // The variant keys still name the URL and the request's values.
        let h = [Header {
            name: "Accept-Encoding".into(),
            value: b"gzip".to_vec(),
        }];
        let one = lists.variant_key("http://a/1", &h).unwrap();
        assert!(one.starts_with("http://a/1\u{1}") && one.ends_with("accept-encoding=gzip"));
        assert_ne!(one, lists.variant_key("http://a/2", &h).unwrap());
        assert_eq!(lists.variant_key("http://a/4", &h), None);
    }

    #[test]
    fn past_the_limit_the_sweep_keeps_the_lists_learnt_last() {
        let lists = VaryLists::with_limit(4);
        let t0 = Instant::now();
        for n in 0..10u64 {
            let at = t0 + Duration::from_millis(n);
            lists.learn_at(&format!("http://a/{n}"), &["accept-encoding"], at);
        }
        assert_eq!(lists.len(), 10, "only the sweep trims");
        lists.sweep(t0 + Duration::from_millis(10), Duration::from_secs(3600));
        assert_eq!(lists.len(), 4);
        for n in 6..10 {
            assert!(
                lists.variant_key(&format!("http://a/{n}"), &[]).is_some(),
                "{n}"
            );
        }
        assert_eq!(lists.variant_key("http://a/5", &[]), None);
    }

    #[test]
    fn a_list_learnt_again_never_brings_back_old_variant_keys() {
        // The list is swept, the URL invalidated while it has none, then a response says
        // Vary again: the variants stored under the first list must not answer.
        let lists = VaryLists::default();
        let h = [Header {
            name: "Accept".into(),
            value: b"text/html".to_vec(),
        }];
        lists.learn("u", &["accept"]);
        let first = lists.variant_key("u", &h).unwrap();
        lists.sweep(Instant::now(), Duration::ZERO);
        assert_eq!(lists.variant_key("u", &h), None);
        lists.invalidate("u");
        lists.learn("u", &["accept"]);
        assert_ne!(lists.variant_key("u", &h).unwrap(), first);
    }
}
