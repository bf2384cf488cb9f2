//! Which request headers choose among a URL's stored variants (its responses' `Vary`), and
//! the key each variant is stored under.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
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

/// URL -> the headers its responses vary on.
#[derive(Debug, Default)]
pub(super) struct VaryLists {
    map: papaya::HashMap<Box<str>, VaryNames>,
    /// The next generation to hand out.
    generations: AtomicU32,
}

impl VaryLists {
    /// The key for `request`'s variant of `url`, once a response for it said `Vary`: the URL,
    /// then `\u{1}`, the list's generation and the request's values of the varying headers.
    pub(super) fn variant_key(&self, url: &str, request: &[Header]) -> Option<String> {
        let map = self.map.pin();
        let names = map.get(url)?;
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

    fn new_generation(&self) -> u32 {
        self.generations.fetch_add(1, Ordering::Relaxed)
    }

    /// Remembers which request headers `url`'s responses vary on (from its latest response).
    pub(super) fn learn<S: AsRef<str>>(&self, url: &str, names: &[S]) {
        let map = self.map.pin();
        let now = Instant::now();
        map.compute(Box::from(url), |current| {
            let same = current.is_some_and(|(_, v)| {
                v.names
                    .iter()
                    .map(|n| &**n)
                    .eq(names.iter().map(AsRef::as_ref))
            });
            let names = match current {
                Some((_, v)) if same => v.names.clone(),
                _ => names.iter().map(|n| Box::from(n.as_ref())).collect(),
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
        map.compute(Box::from(url), |current| match current {
            Some((_, v)) => papaya::Operation::Insert(VaryNames {
                names: v.names.clone(),
                generation: self.new_generation(),
                learned_at: v.learned_at,
            }),
            None => papaya::Operation::Abort(()),
        });
    }

    /// Drops lists not refreshed for `ttl`.
    pub(super) fn sweep(&self, now: Instant, ttl: Duration) {
        self.map
            .pin()
            .retain(|_, v| now.saturating_duration_since(v.learned_at) < ttl);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
