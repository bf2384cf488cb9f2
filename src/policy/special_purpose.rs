//! The IANA IPv4 and IPv6 Special-Purpose Address Registries, as a table: every block with
//! its registry name and whether the registry calls it globally reachable. The default
//! upstream deny list is built from it (every block that is not globally reachable, minus the
//! reachable blocks inside them), plus the few ranges an open proxy must not reach that the
//! registries do not list (multicast). Sources: iana.org/assignments/iana-ipv4-special-registry
//! and iana-ipv6-special-registry (RFC 6890 and the RFCs each row names).

/// One registry row.
#[derive(Debug, Clone, Copy)]
pub struct SpecialBlock {
    pub cidr: &'static str,
    /// The registry's name for the block.
    pub name: &'static str,
    /// The registry's "Globally Reachable" column; `None` where it says N/A (deprecated or
    /// not applicable). Such blocks are judged by the block they lie in.
    pub globally_reachable: Option<bool>,
}

const fn block(cidr: &'static str, name: &'static str, reachable: Option<bool>) -> SpecialBlock {
    SpecialBlock {
        cidr,
        name,
        globally_reachable: reachable,
    }
}

const NO: Option<bool> = Some(false);
const YES: Option<bool> = Some(true);
const NA: Option<bool> = None;

/// The IPv4 registry.
pub const IPV4_SPECIAL: &[SpecialBlock] = &[
    block("0.0.0.0/8", "\"This network\" (RFC 791)", NO),
    block("0.0.0.0/32", "\"This host on this network\" (RFC 1122)", NO),
    block("10.0.0.0/8", "Private-Use (RFC 1918)", NO),
    block("100.64.0.0/10", "Shared Address Space (RFC 6598)", NO),
    block("127.0.0.0/8", "Loopback (RFC 1122)", NO),
    block("169.254.0.0/16", "Link Local (RFC 3927)", NO),
    block("172.16.0.0/12", "Private-Use (RFC 1918)", NO),
    block("192.0.0.0/24", "IETF Protocol Assignments (RFC 6890)", NO),
    block(
        "192.0.0.0/29",
        "IPv4 Service Continuity Prefix (RFC 7335)",
        NO,
    ),
    block("192.0.0.8/32", "IPv4 dummy address (RFC 7600)", NO),
    block(
        "192.0.0.9/32",
        "Port Control Protocol Anycast (RFC 7723)",
        YES,
    ),
    block(
        "192.0.0.10/32",
        "Traversal Using Relays around NAT Anycast (RFC 8155)",
        YES,
    ),
    block(
        "192.0.0.170/32",
        "NAT64/DNS64 Discovery (RFC 8880, RFC 7050)",
        NO,
    ),
    block(
        "192.0.0.171/32",
        "NAT64/DNS64 Discovery (RFC 8880, RFC 7050)",
        NO,
    ),
    block("192.0.2.0/24", "Documentation (TEST-NET-1) (RFC 5737)", NO),
    block("192.31.196.0/24", "AS112-v4 (RFC 7535)", YES),
    block("192.52.193.0/24", "AMT (RFC 7450)", YES),
    block(
        "192.88.99.0/24",
        "Deprecated (6to4 Relay Anycast) (RFC 7526)",
        NA,
    ),
    block("192.168.0.0/16", "Private-Use (RFC 1918)", NO),
    block(
        "192.175.48.0/24",
        "Direct Delegation AS112 Service (RFC 7534)",
        YES,
    ),
    block("198.18.0.0/15", "Benchmarking (RFC 2544)", NO),
    block(
        "198.51.100.0/24",
        "Documentation (TEST-NET-2) (RFC 5737)",
        NO,
    ),
    block(
        "203.0.113.0/24",
        "Documentation (TEST-NET-3) (RFC 5737)",
        NO,
    ),
    block("240.0.0.0/4", "Reserved (RFC 1112)", NO),
    block(
        "255.255.255.255/32",
        "Limited Broadcast (RFC 8190, RFC 919)",
        NO,
    ),
];

/// The IPv4-mapped block: where the rules keep IPv4 itself (`ranges::to_point`), so it is
/// judged as the IPv4 addresses it maps rather than denied as a block.
pub const IPV4_MAPPED: &str = "::ffff:0:0/96";

/// The IPv6 registry.
pub const IPV6_SPECIAL: &[SpecialBlock] = &[
    block("::1/128", "Loopback Address (RFC 4291)", NO),
    block("::/128", "Unspecified Address (RFC 4291)", NO),
    block(IPV4_MAPPED, "IPv4-mapped Address (RFC 4291)", NO),
    block("64:ff9b::/96", "IPv4-IPv6 Translat. (RFC 6052)", YES),
    block("64:ff9b:1::/48", "IPv4-IPv6 Translat. (RFC 8215)", NO),
    block("100::/64", "Discard-Only Address Block (RFC 6666)", NO),
    block("100:0:0:1::/64", "Dummy IPv6 Prefix (RFC 9780)", NO),
    block("2001::/23", "IETF Protocol Assignments (RFC 2928)", NO),
    block("2001::/32", "TEREDO (RFC 4380, RFC 8190)", NA),
    block(
        "2001:1::1/128",
        "Port Control Protocol Anycast (RFC 7723)",
        YES,
    ),
    block(
        "2001:1::2/128",
        "Traversal Using Relays around NAT Anycast (RFC 8155)",
        YES,
    ),
    block(
        "2001:1::3/128",
        "DNS-SD Service Registration Protocol Anycast (RFC 9665)",
        YES,
    ),
    block(
        "2001:2::/48",
        "Benchmarking (RFC 5180, RFC Errata 1752)",
        NO,
    ),
    block("2001:3::/32", "AMT (RFC 7450)", YES),
    block("2001:4:112::/48", "AS112-v6 (RFC 7535)", YES),
    block(
        "2001:10::/28",
        "Deprecated (previously ORCHID) (RFC 4843)",
        NA,
    ),
    block("2001:20::/28", "ORCHIDv2 (RFC 7343)", YES),
    block(
        "2001:30::/28",
        "Drone Remote ID Protocol Entity Tags (DETs) Prefix (RFC 9374)",
        YES,
    ),
    block("2001:db8::/32", "Documentation (RFC 3849)", NO),
    block("2002::/16", "6to4 (RFC 3056)", NA),
    block(
        "2620:4f:8000::/48",
        "Direct Delegation AS112 Service (RFC 7534)",
        YES,
    ),
    block("3fff::/20", "Documentation (RFC 9637)", NO),
    block("5f00::/16", "Segment Routing (SRv6) SIDs (RFC 9602)", NO),
    block("fc00::/7", "Unique-Local (RFC 4193, RFC 8190)", NO),
    block("fe80::/10", "Link-Local Unicast (RFC 4291)", NO),
];

/// Denied besides the registries: not unicast destinations at all.
pub const NOT_UNICAST: &[SpecialBlock] = &[
    block("224.0.0.0/4", "IPv4 multicast (RFC 5771)", NO),
    block("ff00::/8", "IPv6 multicast (RFC 4291)", NO),
];

/// Every row: both registries, then the extra ranges.
pub fn all_blocks() -> impl Iterator<Item = &'static SpecialBlock> {
    IPV4_SPECIAL.iter().chain(IPV6_SPECIAL).chain(NOT_UNICAST)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Cidr;

    #[test]
    fn every_row_parses_and_is_named() {
        for b in all_blocks() {
            let cidr: Cidr = b.cidr.parse().unwrap_or_else(|e| panic!("{}: {e}", b.cidr));
            // Written as the block's first address.
            let (first, _) = cidr.bounds();
            assert_eq!(
                first,
                crate::policy::ranges::to_point(cidr.addr),
                "{}",
                b.cidr
            );
            assert!(b.name.contains("(RFC"), "{} names its RFC", b.cidr);
        }
    }
}
