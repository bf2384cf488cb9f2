//! IP range tables that keep upstream connections (and later clients and admins) where they
//! belong.

mod ranges;

pub use ranges::{Cidr, RangeSet, UpstreamRules};
