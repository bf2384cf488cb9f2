//! Where log lines go: stderr, one line each, `2026-11-26T00:23:00.123Z INFO  liveweb: ...`,
//! at or above `--log-level`. Code logs with the `log` crate's macros; this is their sink.

use std::io::Write;

struct Stderr;

impl log::Log for Stderr {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            write_line(record.level(), record.args());
        }
    }

    fn flush(&self) {}
}

/// A line written whatever `--log-level` says: where liveweb listens (operators and scripts
/// read the address from it).
pub fn always(args: std::fmt::Arguments<'_>) {
    write_line(log::Level::Info, &args);
}

fn write_line(level: log::Level, args: &std::fmt::Arguments<'_>) {
    let now = time::OffsetDateTime::now_utc();
    // One write per line, so lines from several threads never interleave.
    let line = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z {:<5} liveweb: {}\n",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        now.millisecond(),
        level,
        args
    );
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

static LOGGER: Stderr = Stderr;

/// Installs the stderr sink at `level` (once; later calls only change the level).
pub fn init(level: log::LevelFilter) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

/// Parses `--log-level`: `error`, `warn`, `info` or `debug` (any case).
pub fn parse_level(s: &str) -> Result<log::LevelFilter, String> {
    match s.to_ascii_lowercase().as_str() {
        "error" => Ok(log::LevelFilter::Error),
        "warn" | "warning" => Ok(log::LevelFilter::Warn),
        "info" => Ok(log::LevelFilter::Info),
        "debug" => Ok(log::LevelFilter::Debug),
        _ => Err(format!("{s:?}: use error, warn, info or debug")),
    }
}

/// A log line at most once a second per worker thread; the lines dropped meanwhile are
/// counted in the next one. For lines one per request would repeat: a flood of refusals
/// must not become a flood of log (a full disk would refuse every miss, and log each).
#[derive(Default)]
pub struct LogLimit {
    last: std::cell::Cell<Option<std::time::Instant>>,
    dropped: std::cell::Cell<u64>,
}

impl LogLimit {
    pub const fn new() -> LogLimit {
        LogLimit {
            last: std::cell::Cell::new(None),
            dropped: std::cell::Cell::new(0),
        }
    }

    /// Whether a line may go out now, and how many were dropped since the last one.
    fn admit(&self, now: std::time::Instant) -> Option<u64> {
        if self
            .last
            .get()
            .is_some_and(|t| now.duration_since(t) < std::time::Duration::from_secs(1))
        {
            self.dropped.set(self.dropped.get() + 1);
            return None;
        }
        self.last.set(Some(now));
        Some(self.dropped.replace(0))
    }
}

/// `line` as a warning, limited by `limit`.
pub fn log_limited(limit: &'static std::thread::LocalKey<LogLimit>, line: impl FnOnce() -> String) {
    log_limited_at(log::Level::Warn, limit, line);
}

/// `line` at `level`, limited by `limit`.
pub fn log_limited_at(
    level: log::Level,
    limit: &'static std::thread::LocalKey<LogLimit>,
    line: impl FnOnce() -> String,
) {
    limit.with(|l| match l.admit(std::time::Instant::now()) {
        None => {}
        Some(0) => log::log!(level, "{}", line()),
        Some(dropped) => log::log!(
            level,
            "{} ({dropped} more like it in the last second)",
            line()
        ),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limited_line_goes_out_once_a_second_and_counts_the_rest() {
        let limit = LogLimit::new();
        let t0 = std::time::Instant::now();
        assert_eq!(limit.admit(t0), Some(0));
        for ms in [1, 500, 999] {
            assert_eq!(limit.admit(t0 + std::time::Duration::from_millis(ms)), None);
        }
        assert_eq!(limit.admit(t0 + std::time::Duration::from_secs(1)), Some(3));
        assert_eq!(limit.admit(t0 + std::time::Duration::from_secs(3)), Some(0));
    }

    #[test]
    fn levels_parse_in_any_case_and_others_are_refused() {
        assert_eq!(parse_level("WARN"), Ok(log::LevelFilter::Warn));
        assert_eq!(parse_level("debug"), Ok(log::LevelFilter::Debug));
        assert!(parse_level("verbose")
            .unwrap_err()
            .contains("error, warn, info or debug"));
    }
}
