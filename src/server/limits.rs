//! Connection limits: at most `--max-connections` client connections at once, and at most
//! `--max-connections-per-client` from one address, counted across all workers. A permit is
//! taken when a connection is accepted and given back when it closes; a load balancer's
//! connection counts against the client its PROXY header names. Also the process's
//! open-file limit, which the default `--max-connections` is derived from.

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

/// Raises the soft open-file limit to the hard one and returns `(before, after)` when it
/// changed. Every archive file in the data dir keeps a read descriptor (hits are sent from
/// it), so a shell's usual soft limit of 1024 would run out after days of rolls and seals.
pub fn raise_open_file_limit() -> Option<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and fill the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 || limit.rlim_cur >= limit.rlim_max
        {
            return None;
        }
        let before = limit.rlim_cur;
        limit.rlim_cur = limit.rlim_max;
        (libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0).then_some((before, limit.rlim_cur))
    }
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
    /// The client it counts against; `None` until a balancer's connection names its client.
    ip: Option<IpAddr>,
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
        let mut permit = self.acquire_total()?;
        permit.assign(ip)?;
        Ok(permit)
    }

    /// Takes a place in the total only: a load balancer's connection, which counts against
    /// its client once its PROXY header names it (`ConnPermit::assign`).
    pub fn acquire_total(self: &Arc<Self>) -> Result<ConnPermit, Refused> {
        if self.total.fetch_add(1, Ordering::AcqRel) >= self.max_total {
            self.total.fetch_sub(1, Ordering::AcqRel);
            return Err(Refused::Total);
        }
        Ok(ConnPermit {
            limits: self.clone(),
            ip: None,
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

impl ConnPermit {
    /// Counts the connection against client `ip` (IPv6 per /64), unless that client already
    /// has `--max-connections-per-client` open. A permit counts against one client at most.
    pub fn assign(&mut self, ip: IpAddr) -> Result<(), Refused> {
        if self.ip.is_some() {
            return Ok(());
        }
        let ip = client_key(ip);
        let mut counts = self
            .limits
            .shard(ip)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let count = counts.entry(ip).or_insert(0);
        if *count >= self.limits.max_per_client {
            return Err(Refused::PerClient);
        }
        *count += 1;
        self.ip = Some(ip);
        Ok(())
    }
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        if let Some(ip) = self.ip {
            let mut counts = self
                .limits
                .shard(ip)
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if let Some(count) = counts.get_mut(&ip) {
                *count -= 1;
                if *count == 0 {
                    counts.remove(&ip);
                }
            }
        }
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
    fn a_balancers_connection_counts_against_the_client_it_names() {
        let limits = Arc::new(ConnLimits::new(10, 1));
        let client: IpAddr = "192.0.2.9".parse().unwrap();
        let mut first = limits.acquire_total().unwrap();
        let mut second = limits.acquire_total().unwrap();
        assert_eq!(limits.open(), 2);
        first.assign(client).unwrap();
        assert_eq!(second.assign(client), Err(Refused::PerClient));
        second.assign("192.0.2.10".parse().unwrap()).unwrap();
        drop(first);
        let mut third = limits.acquire_total().unwrap();
        third.assign(client).unwrap();
        drop((second, third));
        assert_eq!(limits.open(), 0);
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
