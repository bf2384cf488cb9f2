//! IP range tables that keep upstream connections (and later clients and admins) where they
//! belong.

mod ranges;

pub use ranges::{to_point, Cidr, RangeSet, UpstreamRules};
