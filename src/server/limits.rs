//! Connection limits: at most `--max-connections` client connections at once, and at most
//! `--max-connections-per-client` from one address, counted across all workers. A permit is
//! taken when a connection is accepted and given back when it closes.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crossbeam_utils::CachePadded;

/// Shards of the per-address counts, so workers accepting at once rarely share a lock.
const SHARDS: usize = 64;

/// Open connections per client address, for one shard of addresses.
type Counts = Mutex<HashMap<IpAddr, usize>>;

/// Open connections, in total and per client address.
pub struct ConnLimits {
    max_total: usize,
    max_per_client: usize,
    total: CachePadded<AtomicUsize>,
    per_client: Box<[CachePadded<Counts>]>,
}

/// Which limit refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Total,
    PerClient,
}

/// One open connection's place in the counts; released on drop.
pub struct ConnPermit {
    limits: Arc<ConnLimits>,
    ip: IpAddr,
}

impl ConnLimits {
    pub fn new(max_total: usize, max_per_client: usize) -> ConnLimits {
        ConnLimits {
            max_total,
            max_per_client,
            total: CachePadded::new(AtomicUsize::new(0)),
            per_client: (0..SHARDS)
                .map(|_| CachePadded::new(Mutex::default()))
                .collect(),
        }
    }

    fn shard(&self, ip: IpAddr) -> &Counts {
        let h = match ip {
            IpAddr::V4(v4) => u32::from(v4) as usize,
            IpAddr::V6(v6) => (u128::from(v6) as usize) ^ ((u128::from(v6) >> 64) as usize),
        };
        &self.per_client[h.wrapping_mul(0x9E37_79B9) % SHARDS]
    }

    /// Takes a place for a connection from `ip`, or says which limit it would break. IPv6
    /// clients count per /64 (one host usually holds a whole /64).
    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Result<ConnPermit, Refused> {
        let ip = client_key(ip);
        if self.total.fetch_add(1, Ordering::AcqRel) >= self.max_total {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(Refused::Total);
        }
        let mut counts = self.shard(ip).lock().unwrap_or_else(|p| p.into_inner());
        let count = counts.entry(ip).or_insert(0);
        if *count >= self.max_per_client {
            drop(counts);
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(Refused::PerClient);
        }
        *count += 1;
        Ok(ConnPermit {
            limits: self.clone(),
            ip,
        })
    }

    /// Connections open now.
    #[cfg(test)]
    fn open(&self) -> usize {
        self.total.load(Ordering::Acquire)
    }
}

/// The address a connection counts against: IPv4 as is (also when IPv4-mapped), IPv6 cut to
/// its /64.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
        v4 => v4,
    }
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        let mut counts = self
            .limits
            .shard(self.ip)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(count) = counts.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
        drop(counts);
        self.limits.total.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn total_and_per_client_limits_and_release() {
        let limits = Arc::new(ConnLimits::new(3, 2));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = limits.acquire(a).unwrap();
        let _a2 = limits.acquire(a).unwrap();
        assert_eq!(limits.acquire(a).err(), Some(Refused::PerClient));
        let _b1 = limits.acquire(b).unwrap();
        assert_eq!(limits.acquire(b).err(), Some(Refused::Total));
        assert_eq!(limits.open(), 3);
        drop(a1);
        assert_eq!(limits.open(), 2);
        let _b2 = limits.acquire(b).unwrap();
        assert_eq!(limits.acquire(b).err(), Some(Refused::Total));
    }

    #[test]
    fn ipv6_clients_count_per_64() {
        let limits = Arc::new(ConnLimits::new(10, 1));
        let _a = limits.acquire("2001:db8::1".parse().unwrap()).unwrap();
        assert_eq!(
            limits.acquire("2001:db8::ffff:2".parse().unwrap()).err(),
            Some(Refused::PerClient)
        );
        assert!(limits.acquire("2001:db8:0:1::1".parse().unwrap()).is_ok());
        let _v4 = limits.acquire("10.0.0.1".parse().unwrap()).unwrap();
        assert_eq!(
            limits.acquire("::ffff:10.0.0.1".parse().unwrap()).err(),
            Some(Refused::PerClient)
        );
    }
}
