//! The scheduler's bookkeeping, without locks or wakers: fetches running (in all and per
//! origin host), and the fetches waiting, one queue per client, granted round-robin over the
//! clients as slots free up. Pure, so the fairness rules are unit-tested and benched alone.

use std::collections::VecDeque;

use hashbrown::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

/// A client as the fair queue sees it: an IPv4 address, or an IPv6 /64 (one site's hosts
/// share a /64, and a client can take any number of addresses inside its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey(u128);

impl ClientKey {
    pub fn of(ip: IpAddr) -> ClientKey {
        match ip {
            IpAddr::V4(v4) => ClientKey(u128::from(u32::from(v4))),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => ClientKey(u128::from(u32::from(v4))),
                None => ClientKey((u128::from(v6) & !((1u128 << 64) - 1)) | 1),
            },
        }
    }
}

/// How much may run and wait.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Fetches running at once, all origins.
    pub max_running: usize,
    /// Fetches running at once to one origin (host:port).
    pub max_per_host: usize,
    /// Fetches waiting, all clients.
    pub max_queued: usize,
    /// Fetches waiting for one client.
    pub max_queued_per_client: usize,
}

/// Why a fetch could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// The client has `max_queued_per_client` waiting.
    Client,
    /// `max_queued` are waiting in all.
    All,
}

struct Waiting<T> {
    id: u64,
    host: Arc<str>,
    payload: T,
}

/// How far into one client's queue the round-robin looks for a fetch whose origin has a
/// free slot (the ones ahead wait for their busy origin).
const SCAN: usize = 16;

pub struct Queues<T> {
    limits: Limits,
    running: usize,
    per_host: HashMap<Arc<str>, usize>,
    queues: HashMap<ClientKey, VecDeque<Waiting<T>>>,
    /// Clients with something queued, in round-robin order (each appears once).
    order: VecDeque<ClientKey>,
    queued: usize,
    next_id: u64,
}

impl<T> Queues<T> {
    pub fn new(limits: Limits) -> Queues<T> {
        Queues {
            limits,
            running: 0,
            per_host: HashMap::new(),
            queues: HashMap::new(),
            order: VecDeque::new(),
            queued: 0,
            next_id: 0,
        }
    }

    pub fn running(&self) -> usize {
        self.running
    }

    pub fn queued(&self) -> usize {
        self.queued
    }

    /// Fetches waiting for `client`.
    pub fn queued_for(&self, client: ClientKey) -> usize {
        self.queues.get(&client).map_or(0, VecDeque::len)
    }

    fn has_room(&self, host: &str) -> bool {
        self.running < self.limits.max_running
            && self.per_host.get(host).copied().unwrap_or(0) < self.limits.max_per_host
    }

    /// Starts a fetch to `host` at once when nobody waits and there is room for it.
    pub fn try_start(&mut self, host: &str) -> Option<Arc<str>> {
        if self.queued > 0 {
            return None;
        }
        self.start_if_room(host)
    }

    /// Starts a fetch to `host` if there is room for it, whoever waits: for a fetch the
    /// queue has no place for, once every waiting fetch that could start has started (the
    /// ones left wait for their busy origins, not for this one's).
    pub fn start_if_room(&mut self, host: &str) -> Option<Arc<str>> {
        self.has_room(host).then(|| self.count_start(host))
    }

    fn count_start(&mut self, host: &str) -> Arc<str> {
        self.running += 1;
        match self.per_host.get_key_value_mut(host) {
            Some((key, n)) => {
                *n += 1;
                key.clone()
            }
            None => {
                let key: Arc<str> = Arc::from(host);
                self.per_host.insert(key.clone(), 1);
                key
            }
        }
    }

    /// A fetch to `host` ended.
    pub fn finish(&mut self, host: &str) {
        self.running = self.running.saturating_sub(1);
        if let Some(n) = self.per_host.get_mut(host) {
            *n -= 1;
            if *n == 0 {
                self.per_host.remove(host);
            }
        }
    }

    /// Queues a fetch for `client` to `host`; its id (for `cancel`).
    pub fn enqueue(&mut self, client: ClientKey, host: &str, payload: T) -> Result<u64, Full> {
        if self.queued_for(client) >= self.limits.max_queued_per_client {
            return Err(Full::Client);
        }
        if self.queued >= self.limits.max_queued {
            return Err(Full::All);
        }
        let id = self.next_id;
        self.next_id += 1;
        let queue = self.queues.entry(client).or_default();
        if queue.is_empty() {
            self.order.push_back(client);
        }
        queue.push_back(Waiting {
            id,
            host: Arc::from(host),
            payload,
        });
        self.queued += 1;
        Ok(id)
    }

    /// Removes a waiting fetch; false when it is no longer queued (it was granted).
    pub fn cancel(&mut self, client: ClientKey, id: u64) -> bool {
        let Some(queue) = self.queues.get_mut(&client) else {
            return false;
        };
        let Some(at) = queue.iter().position(|w| w.id == id) else {
            return false;
        };
        queue.remove(at);
        self.queued -= 1;
        if queue.is_empty() {
            self.queues.remove(&client);
            self.order.retain(|c| *c != client);
        }
        true
    }

    /// The next fetch to start, if a slot is free: clients take turns (one fetch each per
    /// turn); within a client, the first of its fetches whose origin has room. The fetch is
    /// counted as running; its host and payload are returned.
    pub fn next_grant(&mut self) -> Option<(Arc<str>, T)> {
        if self.running >= self.limits.max_running {
            return None;
        }
        for _ in 0..self.order.len() {
            let client = self.order.pop_front()?;
            let Some(queue) = self.queues.get_mut(&client) else {
                continue;
            };
            let pick = queue.iter().take(SCAN).position(|w| {
                self.per_host.get(&w.host).copied().unwrap_or(0) < self.limits.max_per_host
            });
            let Some(at) = pick else {
                // Every fetch it could start is for a busy origin: next client.
                self.order.push_back(client);
                continue;
            };
            let Some(waiting) = queue.remove(at) else {
                continue;
            };
            if queue.is_empty() {
                self.queues.remove(&client);
            } else {
                self.order.push_back(client);
            }
            self.queued -= 1;
            let host = self.count_start(&waiting.host);
            return Some((host, waiting.payload));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(running: usize, per_host: usize) -> Limits {
        Limits {
            max_running: running,
            max_per_host: per_host,
            max_queued: 100,
            max_queued_per_client: 10,
        }
    }

    fn client(n: u8) -> ClientKey {
        ClientKey::of(IpAddr::from([10, 0, 0, n]))
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(ClientKey::of(a), ClientKey::of(b));
        assert_ne!(ClientKey::of(a), ClientKey::of(c));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(ClientKey::of(mapped), client(1));
        assert_ne!(ClientKey::of("::1".parse().unwrap()), client(1));
    }

    #[test]
    fn fetches_start_at_once_within_the_limits_only() {
        let mut q: Queues<()> = Queues::new(limits(3, 2));
        assert!(q.try_start("a:80").is_some());
        assert!(q.try_start("a:80").is_some());
        assert!(q.try_start("a:80").is_none(), "per-host cap");
        assert!(q.try_start("b:80").is_some());
        assert!(q.try_start("c:80").is_none(), "global cap");
        q.finish("b:80");
        assert!(q.try_start("c:80").is_some());
        assert_eq!(q.running(), 3);
    }

    #[test]
    fn clients_take_turns_whatever_their_backlog() {
        let mut q: Queues<(u8, u32)> = Queues::new(limits(1, 10));
        let busy = q.try_start("o:80").unwrap();
        for i in 0..8 {
            q.enqueue(client(1), "o:80", (1, i)).unwrap();
        }
        q.enqueue(client(2), "o:80", (2, 0)).unwrap();
        q.enqueue(client(2), "o:80", (2, 1)).unwrap();
        let mut served = Vec::new();
        let mut host = busy;
        loop {
            q.finish(&host);
            let Some((h, who)) = q.next_grant() else {
                break;
            };
            served.push(who);
            host = h;
        }
        assert_eq!(
            served[..5],
            [(1, 0), (2, 0), (1, 1), (2, 1), (1, 2)],
            "round-robin, each in its own order"
        );
        assert_eq!(served.len(), 10);
        assert_eq!(q.queued(), 0);
    }

    #[test]
    fn a_busy_origin_does_not_hold_up_fetches_to_others() {
        let mut q: Queues<&str> = Queues::new(limits(10, 1));
        q.try_start("slow:80").unwrap();
        q.enqueue(client(1), "slow:80", "slow-1").unwrap();
        q.enqueue(client(1), "fast:80", "fast-1").unwrap();
        q.enqueue(client(2), "slow:80", "slow-2").unwrap();
        assert_eq!(q.next_grant().map(|g| g.1), Some("fast-1"));
        assert_eq!(q.next_grant().map(|g| g.1), None, "slow:80 is at its cap");
        q.finish("slow:80");
        assert_eq!(
            q.next_grant().map(|g| g.1),
            Some("slow-2"),
            "client 2's turn"
        );
        q.finish("slow:80");
        assert_eq!(q.next_grant().map(|g| g.1), Some("slow-1"));
    }

    #[test]
    fn queues_are_bounded_per_client_and_in_all_and_cancel_removes() {
        let mut q: Queues<()> = Queues::new(Limits {
            max_running: 0,
            max_per_host: 1,
            max_queued: 3,
            max_queued_per_client: 2,
        });
        let first = q.enqueue(client(1), "o", ()).unwrap();
        q.enqueue(client(1), "o", ()).unwrap();
        assert_eq!(q.enqueue(client(1), "o", ()), Err(Full::Client));
        q.enqueue(client(2), "o", ()).unwrap();
        assert_eq!(q.enqueue(client(3), "o", ()), Err(Full::All));
        assert!(q.cancel(client(1), first));
        assert!(!q.cancel(client(1), first));
        assert_eq!(q.queued(), 2);
        q.enqueue(client(3), "o", ()).unwrap();
        assert!(q.next_grant().is_none(), "no slot at all");
    }

    #[test]
    fn a_fetch_the_queue_cannot_hold_still_starts_where_its_origin_has_room() {
        let mut q: Queues<()> = Queues::new(Limits {
            max_running: 4,
            max_per_host: 1,
            max_queued: 1,
            max_queued_per_client: 1,
        });
        q.try_start("slow").unwrap();
        q.enqueue(client(1), "slow", ()).unwrap();
        assert_eq!(q.enqueue(client(1), "fast", ()), Err(Full::Client));
        assert!(q.try_start("fast").is_none(), "others wait");
        assert!(q.start_if_room("fast").is_some());
        assert!(q.start_if_room("slow").is_none(), "at its cap");
    }
}
