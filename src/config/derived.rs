//! What the server derives from the command line: each section's values (limits, codec,
//! access, defaults taken from the machine), each on its own section so a subsystem can be
//! handed only that; the checks clap cannot make; the status page's summary.

use std::time::Duration;

use super::{Archive, Cache, Clients, Config, Fetching, Operations, Scheduling};
use crate::archive::format::Format;
use crate::archive::record::Codec;
use crate::archive::FsyncPolicy;

/// The machine's memory in bytes (0 if unknown).
fn physical_memory() -> u64 {
    // SAFETY: sysconf with constant names, no memory passed.
    let (pages, page) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    u64::try_from(pages).unwrap_or(0) * u64::try_from(page).unwrap_or(0)
}

impl Clients {
    /// Who may use the proxy and its admin endpoints.
    pub fn access(&self) -> crate::policy::AccessConfig {
        crate::policy::AccessConfig {
            allow_client: self.allow_client.clone(),
            client_table: self.client_table.clone(),
            allow_admin: self.allow_admin.clone(),
            allow_loopback: self.allow_loopback,
        }
    }

    /// `--max-connections` after defaulting from the open-file limit: each client connection
    /// may hold an upstream connection too, and files, listeners and the pools need a reserve.
    pub fn connection_limit(&self) -> usize {
        self.max_connections.unwrap_or_else(|| {
            let mut limit = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: getrlimit fills the struct we pass.
            let files = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
                usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX)
            } else {
                1024
            };
            (files.saturating_sub(256) / 2).max(16)
        })
    }
}

impl Archive {
    /// Whether captures are deduplicated: `--dedup on` and WARC (an ARC file has no
    /// revisit record).
    pub fn dedup_enabled(&self) -> bool {
        self.dedup && self.format == Format::Warc
    }

    /// `--dedup-ttl`, `None` for no limit.
    pub fn dedup_max_age(&self) -> Option<Duration> {
        (!self.dedup_ttl.is_zero()).then_some(self.dedup_ttl)
    }

    /// How records are encoded.
    pub fn codec(&self) -> Codec {
        if self.arc_gzip {
            Codec::Gzip(self.gzip_level)
        } else {
            Codec::Plain
        }
    }

    /// What a liveweb-mode reply carrying a record this run writes says it is.
    pub fn reply_content_type(&self) -> &'static str {
        self.format.content_type(self.codec())
    }
}

impl Operations {
    /// Worker count after defaulting to the number of CPUs.
    pub fn worker_count(&self) -> usize {
        self.workers.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
    }

    /// `--transfer-memory`, or its default: a sixteenth of physical memory, at least 64 MiB.
    pub fn transfer_memory(&self) -> u64 {
        self.transfer_memory
            .unwrap_or_else(|| (physical_memory() / 16).max(64 << 20))
    }
}

impl Cache {
    /// `--index-memory`, or its default: an eighth of physical memory, at least 64 MiB.
    pub fn index_memory(&self) -> u64 {
        self.index_memory
            .unwrap_or_else(|| (physical_memory() / 8).max(64 << 20))
    }
}

impl Fetching {
    /// `--user-agent`, or its default: `liveweb/<version>`.
    pub fn user_agent(&self) -> String {
        self.user_agent
            .clone()
            .unwrap_or_else(|| format!("liveweb/{}", env!("CARGO_PKG_VERSION")))
    }
}

impl Scheduling {
    /// The fetch scheduler's limits; `--max-fetches` defaults to 64 per worker
    /// (`Operations::worker_count`).
    pub fn limits(&self, workers: usize) -> crate::sched::Limits {
        crate::sched::Limits {
            max_running: self.max_fetches.unwrap_or(64 * workers),
            max_per_host: self.max_fetches_per_host,
            max_queued: self.max_queue,
            max_queued_per_client: self.max_queue_per_client,
        }
    }
}

impl Config {
    /// Checks what clap cannot: cross-field rules and not-yet-available features.
    pub fn validate(&self) -> Result<(), String> {
        if self.archive.arc_max_size < 4096 {
            return Err("--arc-max-size must be at least 4KB".into());
        }
        if self.ops.spill_threshold < 64 * 1024 {
            return Err(
                "--spill-threshold must be at least 64KB (a response head can take 64 KiB)".into(),
            );
        }
        if self.archive.arc_max_idle.is_zero() {
            return Err("--arc-max-idle must be greater than zero".into());
        }
        if self.ops.workers == Some(0) {
            return Err("--workers must be at least 1".into());
        }
        if self.ops.notsent_lowat > i32::MAX as u64 {
            return Err("--notsent-lowat must be below 2GB".into());
        }
        if self.clients.max_connections == Some(0) || self.clients.max_connections_per_client == 0 {
            return Err("connection limits must be at least 1".into());
        }
        if self.archive.format == Format::Warc && !self.archive.arc_gzip {
            return Err(
                "--format warc writes .warc.gz files: --arc-gzip false applies to ARC only".into(),
            );
        }
        if self.fetch.connect_ports.contains(&0) {
            return Err("--connect-ports: 0 is not a port".into());
        }
        if self.sched.max_fetches == Some(0) || self.sched.max_fetches_per_host == 0 {
            return Err("--max-fetches and --max-fetches-per-host must be at least 1".into());
        }
        if self.fetch.fetch_timeout.is_zero()
            || self.sched.queue_timeout.is_zero()
            || self.fetch.connect_timeout.is_zero()
            || self.fetch.read_timeout.is_zero()
            || self.clients.request_head_timeout.is_zero()
        {
            return Err("timeouts must be greater than zero".into());
        }
        Ok(())
    }

    /// What this process runs with, for the status page: the settings an operator checks
    /// first, each as `(flag, value)`.
    pub fn summary(&self, listening: Option<std::net::SocketAddr>) -> Vec<(&'static str, String)> {
        let mib = |b: u64| format!("{} MiB", b >> 20);
        let fsync = match self.archive.fsync {
            FsyncPolicy::Never => "never".to_string(),
            FsyncPolicy::Interval(d) => format!("interval:{d:?}"),
            FsyncPolicy::Always => "always".to_string(),
        };
        let format = match self.archive.format {
            Format::Arc if self.archive.arc_gzip => "arc (.arc.gz)",
            Format::Arc => "arc (.arc)",
            Format::Warc => "warc (.warc.gz)",
        };
        let workers = self.ops.worker_count();
        vec![
            ("--mode", format!("{:?}", self.clients.mode).to_lowercase()),
            (
                "--listen",
                listening.map_or_else(|| self.clients.listen.to_string(), |a| a.to_string()),
            ),
            ("--data-dir", self.archive.data_dir.display().to_string()),
            ("--format", format.to_string()),
            (
                "--dedup",
                (if self.archive.dedup_enabled() {
                    "on"
                } else {
                    "off"
                })
                .to_string(),
            ),
            ("--workers", workers.to_string()),
            ("--fsync", fsync),
            ("--ttl", format!("{:?}", self.cache.ttl)),
            ("--max-body", mib(self.fetch.max_body)),
            (
                "--max-fetches",
                self.sched.limits(workers).max_running.to_string(),
            ),
            ("--index-memory", mib(self.cache.index_memory())),
            ("--transfer-memory", mib(self.ops.transfer_memory())),
            ("--mem-cache", mib(self.cache.mem_cache)),
            (
                "--mitm-ca",
                self.tls
                    .mitm_ca
                    .as_ref()
                    .map_or_else(|| "off".into(), |p| p.display().to_string()),
            ),
        ]
    }
}
