//! The writers of `Warcprox-Meta` `warc-prefix`es on one worker: one per prefix, made on
//! first use, its files named `PREFIX-<timestamp17>-<worker>-<serial>` and rolled, sealed
//! and indexed like the default writer's. At most `MAX_OPEN` stay open; past that the least
//! recently used one that no capture is using is closed (its file sealed).

use std::cell::RefCell;
use std::sync::Arc;

use crate::archive::files::FileTable;
use crate::archive::writer::{ArcWriter, WriterConfig};

/// Prefix writers kept open per worker.
pub const MAX_OPEN: usize = 32;

pub struct PrefixWriters {
    /// The default writer's configuration; a prefix writer differs in its prefix alone.
    template: WriterConfig,
    files: Arc<FileTable>,
    /// Least recently used first.
    open: RefCell<Vec<(String, ArcWriter)>>,
}

impl PrefixWriters {
    pub fn new(template: WriterConfig, files: Arc<FileTable>) -> Self {
        PrefixWriters {
            template,
            files,
            open: RefCell::new(Vec::new()),
        }
    }

    /// The writer for `prefix`, started if it is not running.
    pub fn get(&self, prefix: &str) -> ArcWriter {
        let mut open = self.open.borrow_mut();
        if let Some(at) = open.iter().position(|(p, _)| p == prefix) {
            let entry = open.remove(at);
            let writer = entry.1.clone();
            open.push(entry);
            return writer;
        }
        if open.len() >= MAX_OPEN {
            // A writer some capture still holds keeps its file open a little longer.
            if let Some(at) = open.iter().position(|(_, w)| w.handles() == 1) {
                let (_, idle) = open.remove(at);
                monoio::spawn(async move { idle.close().await });
            }
        }
        let config = WriterConfig {
            prefix: prefix.to_string(),
            first_serial: 0,
            ..self.template.clone()
        };
        let writer = ArcWriter::spawn(config, self.files.clone());
        open.push((prefix.to_string(), writer.clone()));
        writer
    }

    /// Closes every prefix writer (their files sealed), at shutdown.
    pub async fn close_all(&self) {
        let open = std::mem::take(&mut *self.open.borrow_mut());
        for (_, writer) in open {
            writer.close().await;
        }
    }
}
