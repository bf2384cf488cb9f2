//! Who may use the proxy: the client ranges (loopback, `--allow-client`, `--client-table`) and
//! the admin ranges (loopback, `--allow-admin`), built once and swapped whole on reload.

use std::net::IpAddr;
use std::path::PathBuf;

use super::{load_table, Cidr, RangeSet, TableError};

/// Allowed as clients and as admins unless `--allow-loopback false`: the machine itself.
const LOOPBACK: &[&str] = &["127.0.0.0/8", "::1/128"];

/// What builds the tables; kept to rebuild them on reload.
#[derive(Debug, Clone)]
pub struct AccessConfig {
    pub allow_client: Vec<Cidr>,
    pub client_table: Option<PathBuf>,
    pub allow_admin: Vec<Cidr>,
    /// Loopback is a client and an admin (the default).
    pub allow_loopback: bool,
}

/// The client and admin tables in force.
#[derive(Debug, Default)]
pub struct ClientAccess {
    /// Loopback plus `--allow-client`.
    clients: RangeSet,
    /// `--client-table`, if given.
    table: Option<RangeSet>,
    /// Loopback plus `--allow-admin`.
    admins: RangeSet,
}

impl ClientAccess {
    /// Builds the tables, reading the client table file if there is one. A bad file is an
    /// error naming its line; nothing partial is ever built.
    pub fn load(config: &AccessConfig) -> Result<ClientAccess, TableError> {
        let loopback: &[&str] = if config.allow_loopback { LOOPBACK } else { &[] };
        let with_loopback = |extra: &[Cidr]| {
            let mut cidrs: Vec<Cidr> = loopback.iter().filter_map(|s| s.parse().ok()).collect();
            cidrs.extend_from_slice(extra);
            RangeSet::new(&cidrs)
        };
        let table = match &config.client_table {
            Some(path) => Some(load_table(path)?),
            None => None,
        };
        Ok(ClientAccess {
            clients: with_loopback(&config.allow_client),
            table,
            admins: with_loopback(&config.allow_admin),
        })
    }

    /// May send proxy requests.
    pub fn is_client(&self, ip: IpAddr) -> bool {
        self.clients.contains(ip) || self.table.as_ref().is_some_and(|t| t.contains(ip))
    }

    /// May use `/_liveweb/...`.
    pub fn is_admin(&self, ip: IpAddr) -> bool {
        self.admins.contains(ip)
    }

    /// Ranges in the client table file (after merging), for the reload log line.
    pub fn table_ranges(&self) -> usize {
        self.table.as_ref().map_or(0, RangeSet::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn loopback_by_default_plus_what_is_given() {
        let defaults = AccessConfig {
            allow_client: Vec::new(),
            client_table: None,
            allow_admin: Vec::new(),
            allow_loopback: true,
        };
        let none = ClientAccess::load(&defaults).unwrap();
        for local in ["127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.1"] {
            assert!(
                none.is_client(ip(local)) && none.is_admin(ip(local)),
                "{local}"
            );
        }
        assert!(!none.is_client(ip("10.0.0.1")) && !none.is_admin(ip("10.0.0.1")));

        let dir = tempfile::tempdir().unwrap();
        let table = dir.path().join("clients.txt");
        std::fs::write(
            &table,
            "# office\n192.0.2.0/24\n198.51.100.1-198.51.100.9\n",
        )
        .unwrap();
        let config = AccessConfig {
            allow_client: vec!["10.0.0.0/8".parse().unwrap()],
            client_table: Some(table.clone()),
            allow_admin: vec!["10.1.0.0/16".parse().unwrap()],
            allow_loopback: true,
        };
        let access = ClientAccess::load(&config).unwrap();
        assert!(access.is_client(ip("10.2.3.4")) && !access.is_admin(ip("10.2.3.4")));
        assert!(access.is_admin(ip("10.1.3.4")));
        assert!(access.is_client(ip("192.0.2.77")) && access.is_client(ip("198.51.100.9")));
        assert!(!access.is_client(ip("198.51.100.10")));
        assert!(
            !access.is_admin(ip("192.0.2.77")),
            "the client table is not an admin table"
        );
        assert_eq!(access.table_ranges(), 2);

        let strict = ClientAccess::load(&AccessConfig {
            allow_loopback: false,
            ..config.clone()
        })
        .unwrap();
        assert!(!strict.is_client(ip("127.0.0.1")) && !strict.is_admin(ip("::1")));
        assert!(strict.is_client(ip("10.2.3.4")));

        std::fs::write(&table, "192.0.2.0/24\nnot an address\n").unwrap();
        let err = ClientAccess::load(&config).unwrap_err();
        assert_eq!(err.line, 2, "{err}");
    }
}
