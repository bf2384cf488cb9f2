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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse_in_any_case_and_others_are_refused() {
        assert_eq!(parse_level("WARN"), Ok(log::LevelFilter::Warn));
        assert_eq!(parse_level("debug"), Ok(log::LevelFilter::Debug));
        assert!(parse_level("verbose")
            .unwrap_err()
            .contains("error, warn, info or debug"));
    }
}
