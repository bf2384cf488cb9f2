//! What a request handler can reach: state shared by all workers, and the worker's own.

use std::cell::RefCell;
use std::sync::Arc;

use super::hot::HotShard;
use crate::archive::{ArcWriter, FileTable};
use crate::config::Config;
use crate::fetch::{DnsCache, FetchLimits, UpstreamPool};
use crate::http::request::Limits;
use crate::index::Index;
use crate::policy::UpstreamRules;

/// Read-mostly state shared by every worker.
pub struct Shared {
    pub config: Config,
    pub index: Index,
    pub files: Arc<FileTable>,
    pub upstream_rules: UpstreamRules,
    pub request_limits: Limits,
    pub fetch_limits: FetchLimits,
    /// User-Agent sent upstream when the client sent none.
    pub user_agent: String,
}

impl Shared {
    pub fn new(config: Config) -> Self {
        let fetch_limits = FetchLimits {
            connect_timeout: config.connect_timeout,
            read_timeout: config.read_timeout,
            fetch_timeout: config.fetch_timeout,
            max_body: config.max_body,
        };
        Shared {
            index: Index::new(),
            files: Arc::new(FileTable::new()),
            upstream_rules: UpstreamRules::new(&config.allow_upstream),
            request_limits: Limits::default(),
            fetch_limits,
            user_agent: config.user_agent(),
            config,
        }
    }
}

impl WorkerCtx {
    /// What this worker fetches through.
    pub fn upstream(&self) -> crate::fetch::Upstream<'_> {
        crate::fetch::Upstream {
            dns: &self.dns,
            pool: &self.pool,
            rules: &self.shared.upstream_rules,
            limits: &self.shared.fetch_limits,
            user_agent: &self.shared.user_agent,
        }
    }
}

/// One worker's state; lives in an `Rc` on that worker's thread.
pub struct WorkerCtx {
    pub id: usize,
    pub shared: Arc<Shared>,
    pub dns: DnsCache,
    /// Idle keep-alive connections to origins.
    pub pool: UpstreamPool,
    pub hot: RefCell<HotShard>,
    pub writer: ArcWriter,
}
