//! CIDR parsing, the unified address space (IPv4 lives at ::ffff:0:0/96, so an IPv4-mapped
//! IPv6 address is judged as its IPv4 self) and the upstream rules built on range sets.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use super::range_set::RangeSet;
use super::special_purpose;

/// An address block such as `10.0.0.0/8` or `fe80::/10`; a bare address is a /32 or /128.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    /// First and last address as points in the unified 128-bit space (see [`to_point`]).
    pub fn bounds(&self) -> (u128, u128) {
        let (base, bits) = match self.addr {
            IpAddr::V4(v4) => (to_point(IpAddr::V4(v4)), 96 + u32::from(self.prefix)),
            IpAddr::V6(v6) => (u128::from(v6), u32::from(self.prefix)),
        };
        // Shifting a u128 by its full width overflows; a full-length prefix has no host bits.
        let host_mask = if bits >= 128 { 0 } else { u128::MAX >> bits };
        (base & !host_mask, base | host_mask)
    }

    /// Whether `ip` is in the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let (first, last) = self.bounds();
        (first..=last).contains(&to_point(ip))
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (addr_part, prefix_part) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = match addr_part.parse() {
            Ok(addr) => addr,
            // Shorthand with a prefix: `10/8`, `100.64/10`, `127/8` (missing octets are 0).
            Err(_) if prefix_part.is_some() => {
                shorthand_v4(addr_part).ok_or_else(|| format!("invalid CIDR {s:?}: bad address"))?
            }
            Err(_) => return Err(format!("invalid CIDR {s:?}: bad address")),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix_part {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("invalid CIDR {s:?}: prefix must be 0..={max}"))?,
        };
        Ok(Cidr { addr, prefix })
    }
}

/// `10`, `100.64`, `192.168.1`: the leading octets of an IPv4 address, the rest zero.
pub(super) fn shorthand_v4(text: &str) -> Option<IpAddr> {
    let octets: Vec<u8> = text
        .split('.')
        .map(|o| {
            (!o.is_empty() && o.len() <= 3 && o.bytes().all(|b| b.is_ascii_digit()))
                .then(|| o.parse().ok())
                .flatten()
        })
        .collect::<Option<_>>()?;
    if octets.is_empty() || octets.len() >= 4 {
        return None;
    }
    let mut full = [0u8; 4];
    full[..octets.len()].copy_from_slice(&octets);
    Some(IpAddr::from(full))
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// An address as a point in the unified 128-bit space: IPv6 as itself, IPv4 as its
/// IPv4-mapped form, so `10.0.0.1` and `::ffff:10.0.0.1` are the same point.
pub fn to_point(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// Where liveweb may connect: everything globally reachable, minus the default deny list
/// (also when it hides inside an IPv6 address that wraps IPv4), plus what the operator
/// allowed with `--allow-upstream`.
#[derive(Debug, Clone)]
pub struct UpstreamRules {
    deny: RangeSet,
    /// Blocks the registries call globally reachable inside denied ones (e.g. 192.0.0.9/32
    /// in 192.0.0.0/24): the more specific row wins.
    reachable: RangeSet,
    allow: RangeSet,
}

impl UpstreamRules {
    /// The default deny list is every block of the special-purpose registries that is not
    /// globally reachable, and multicast (`special_purpose`).
    pub fn new(allow: &[Cidr]) -> Self {
        let rows = |reachable: bool| -> Vec<Cidr> {
            special_purpose::all_blocks()
                .filter(|b| b.globally_reachable == Some(reachable))
                // IPv4 itself lives there in the unified space: an IPv4-mapped address is
                // judged as the IPv4 address it maps.
                .filter(|b| b.cidr != special_purpose::IPV4_MAPPED)
                .filter_map(|b| b.cidr.parse().ok())
                .collect()
        };
        UpstreamRules {
            deny: RangeSet::new(&rows(false)),
            reachable: RangeSet::new(&rows(true)),
            allow: RangeSet::new(allow),
        }
    }

    /// Whether the default rules deny `ip` (before `--allow-upstream`).
    fn denied_by_default(&self, ip: IpAddr) -> bool {
        self.deny.contains(ip) && !self.reachable.contains(ip)
    }

    pub fn allows(&self, ip: IpAddr) -> bool {
        if self.allow.contains(ip) {
            return true;
        }
        if self.denied_by_default(ip) {
            return false;
        }
        // An IPv6 address that a translator or tunnel turns back into IPv4 reaches that IPv4
        // host, so it gets the IPv4 host's verdict.
        match ip {
            IpAddr::V6(v6) => match embedded_ipv4(v6) {
                Some(v4) => self.allow.contains(v4.into()) || !self.denied_by_default(v4.into()),
                None => true,
            },
            IpAddr::V4(_) => true,
        }
    }
}

/// The IPv4 address inside an IPv6 address that wraps one: IPv4-compatible `::a.b.c.d`,
/// NAT64 `64:ff9b::/96` (RFC 6052) and `64:ff9b:1::/48` (RFC 8215, read as its common /96
/// layout; by default the whole /48 is denied, whatever RFC 6052 layout a local translator
/// uses in it), and 6to4 `2002:AABB:CCDD::/48`. IPv4-mapped addresses need no unwrapping: they
/// already share the IPv4 points (see [`to_point`]).
fn embedded_ipv4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let bits = u128::from(v6);
    let low32 = Ipv4Addr::from(bits as u32);
    if bits >> 32 == 0 || bits >> 32 == 0x0064_ff9b_0000_0000_0000_0000 {
        return Some(low32);
    }
    if bits >> 80 == 0x0064_ff9b_0001 {
        return Some(low32);
    }
    if bits >> 112 == 0x2002 {
        return Some(Ipv4Addr::from((bits >> 80) as u32));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn ipv4_shorthand_with_a_prefix_fills_the_missing_octets() {
        let c = |s: &str| s.parse::<Cidr>().map(|c| c.to_string());
        assert_eq!(c("127/8"), Ok("127.0.0.0/8".into()));
        assert_eq!(c("100.64/10"), Ok("100.64.0.0/10".into()));
        assert_eq!(c("192.168.1/24"), Ok("192.168.1.0/24".into()));
        for bad in ["10", "256/8", "1..2/8", "/8", "1.2.3.4.5/8", "a/8", "10/33"] {
            assert!(c(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cidr_parsing() {
        assert_eq!(
            "10.0.0.0/8".parse::<Cidr>(),
            Ok(Cidr {
                addr: ip("10.0.0.0"),
                prefix: 8
            })
        );
        assert_eq!("::1".parse::<Cidr>().map(|c| c.prefix), Ok(128));
        assert_eq!("1.2.3.4".parse::<Cidr>().map(|c| c.prefix), Ok(32));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("fe80::/129".parse::<Cidr>().is_err());
        assert!("nonsense/8".parse::<Cidr>().is_err());
        assert!("10.0.0.0/".parse::<Cidr>().is_err());
    }

    #[test]
    fn bounds_and_points_share_one_space() {
        let cidr: Cidr = "10.0.0.0/8".parse().unwrap();
        assert_eq!(
            cidr.bounds(),
            (to_point(ip("10.0.0.0")), to_point(ip("10.255.255.255")))
        );
        assert_eq!(to_point(ip("10.0.0.1")), to_point(ip("::ffff:10.0.0.1")));
        let all: Cidr = "::/0".parse().unwrap();
        assert_eq!(all.bounds(), (0, u128::MAX));
    }

    #[test]
    fn default_upstream_rules() {
        let rules = UpstreamRules::new(&[]);
        for denied in [
            "127.0.0.1",
            "10.2.3.4",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "169.254.169.254",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.251",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            // What the registries add beyond the private ranges.
            "192.0.0.1",
            "192.0.0.170",
            "192.0.2.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "2001::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "2001:2::1",
            "2001:db8::1",
            "2001:10::1",
            "3fff::1",
            "5f00::1",
            "100::1",
            "64:ff9b:1::5db8:d822",
        ] {
            assert!(!rules.allows(ip(denied)), "{denied} must be denied");
        }
        // Globally reachable rows inside denied blocks, and blocks around them.
        for allowed in [
            "192.0.0.9",
            "192.0.0.10",
            "192.31.196.1",
            "192.88.99.1",
            "2001:1::1",
            "2001:3::1",
            "2001:4:112::1",
            "2001:20::1",
            "2620:4f:8000::1",
            "198.20.0.1",
            "203.0.114.1",
            "2001:200::1",
        ] {
            assert!(rules.allows(ip(allowed)), "{allowed} must be allowed");
        }
        assert!(!rules.allows(IpAddr::V4(std::net::Ipv4Addr::BROADCAST)));
        for allowed in ["93.184.216.34", "172.32.0.1", "100.128.0.1", "2606:4700::1"] {
            assert!(rules.allows(ip(allowed)), "{allowed} must be allowed");
        }
    }

    #[test]
    fn ipv6_wrapping_a_denied_ipv4_is_denied() {
        let rules = UpstreamRules::new(&[]);
        for denied in [
            "::127.0.0.1",
            "::10.0.0.1",
            "::169.254.169.254",
            "64:ff9b::7f00:1",
            "64:ff9b::a00:1",
            "64:ff9b:1::a9fe:a9fe",
            "64:ff9b:1:ffff::c0a8:1",
            "2002:7f00:1::1",
            "2002:a00:1::",
            "2002:c0a8:101::1",
            "2002:a9fe:a9fe:ffff:ffff:ffff:ffff:ffff",
        ] {
            assert!(!rules.allows(ip(denied)), "{denied} must be denied");
        }
        for allowed in [
            "64:ff9b::5db8:d822",
            "2002:5db8:d822::1",
            "::93.184.216.34",
            "2606:4700::a00:1",
            "64:ff9a::a00:1",
        ] {
            assert!(rules.allows(ip(allowed)), "{allowed} must be allowed");
        }
    }

    #[test]
    fn allow_of_the_ipv4_or_the_ipv6_lifts_the_wrapped_deny() {
        let rules = UpstreamRules::new(&["127.0.0.0/8".parse().unwrap()]);
        assert!(rules.allows(ip("64:ff9b::7f00:1")));
        assert!(rules.allows(ip("2002:7f00:1::1")));
        assert!(rules.allows(ip("::127.0.0.1")));
        assert!(!rules.allows(ip("64:ff9b::a00:1")));
        let rules = UpstreamRules::new(&["64:ff9b::a00:0/120".parse().unwrap()]);
        assert!(rules.allows(ip("64:ff9b::a00:1")));
        assert!(!rules.allows(ip("64:ff9b::a00:101")));
        assert!(
            !rules.allows(ip("10.0.0.1")),
            "allowing the IPv6 form lifts only that form"
        );
    }

    #[test]
    fn allow_lifts_deny() {
        let rules = UpstreamRules::new(&["127.0.0.0/8".parse().unwrap()]);
        assert!(rules.allows(ip("127.0.0.1")));
        assert!(!rules.allows(ip("10.0.0.1")));
        assert!(!rules.allows(ip("::1")));
        let rules = UpstreamRules::new(&[
            "192.0.2.0/24".parse().unwrap(),
            "2001::/32".parse().unwrap(),
        ]);
        assert!(rules.allows(ip("192.0.2.1")));
        assert!(rules.allows(ip("2001::1")));
        assert!(!rules.allows(ip("2001:2::1")));
        assert!(!rules.allows(ip("198.51.100.1")));
    }

    #[test]
    fn every_ipv4_address_outside_the_table_is_allowed_by_default() {
        // The IPv4-mapped row is not a deny of IPv4 as a whole.
        let rules = UpstreamRules::new(&[]);
        for public in ["1.1.1.1", "8.8.8.8", "93.184.216.34", "223.255.255.255"] {
            assert!(rules.allows(ip(public)), "{public}");
            assert!(rules.allows(ip(&format!("::ffff:{public}"))), "{public}");
        }
    }
}
