//! IP range tables for upstreams, clients and admins (CIDR parsing, sorted range sets, table
//! files), plus proxy authentication from an htpasswd file of bcrypt hashes.

mod access;
mod auth;
mod range_set;
mod ranges;
pub mod special_purpose;
mod table;

pub use access::{AccessConfig, ClientAccess};
pub use auth::ProxyAuth;
pub use range_set::RangeSet;
pub use ranges::{to_point, Cidr, UpstreamRules};
pub use table::{load_table, parse_table, TableError};
