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
        // A writer some capture still holds keeps its file open a little longer, so the list
        // may pass MAX_OPEN while captures run; it comes back down as soon as they end,
        // instead of staying at its high-water mark.
        while open.len() >= MAX_OPEN {
            let Some(at) = open.iter().position(|(_, w)| w.handles() == 1) else {
                break;
            };
            let (_, idle) = open.remove(at);
            monoio::spawn(async move { idle.close().await });
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::writer::FsyncPolicy;
    use std::time::Duration;

    #[test]
    fn writers_over_the_cap_close_once_their_captures_end() {
        let dir = std::env::temp_dir().join(format!("lw-prefix-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let template = WriterConfig {
            dir: dir.clone(),
            sealed_dir: dir.join("sealed"),
            prefix: "L".into(),
            worker: 0,
            codec: crate::archive::record::Codec::Plain,
            format: crate::archive::format::Format::Warc,
            first_serial: 0,
            max_size: 1 << 20,
            max_idle: Duration::from_secs(600),
            fsync: FsyncPolicy::Never,
            min_free: 0,
            handoff: None,
            stats: Default::default(),
        };
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .attach_thread_pool(Box::new(monoio::blocking::DefaultThreadPool::new(1)))
            .build()
            .expect("runtime");
        rt.block_on(async {
            let writers = PrefixWriters::new(template, Arc::new(FileTable::new()));
            // Captures hold every writer, so none may close: the list passes the cap.
            let held: Vec<ArcWriter> = (0..MAX_OPEN + 8)
                .map(|n| writers.get(&format!("p{n}")))
                .collect();
            assert_eq!(writers.open.borrow().len(), MAX_OPEN + 8);
            drop(held);
            // The captures ended: the next new prefix brings the list back under the cap.
            let _next = writers.get("next");
            assert_eq!(writers.open.borrow().len(), MAX_OPEN);
            writers.close_all().await;
        });
        let _ = std::fs::remove_dir_all(&dir);
    }
}
