//! The command line's value parsers: durations, sizes, listen addresses, on/off, the
//! archive format, fsync policies, CPU affinities and file-name prefixes. Each names the
//! bad value and what to write instead.

use std::net::SocketAddr;
use std::time::Duration;

use crate::archive::FsyncPolicy;

/// Parses `arc` or `warc`.
pub fn parse_format(s: &str) -> Result<crate::archive::format::Format, String> {
    match s.to_ascii_lowercase().as_str() {
        "arc" => Ok(crate::archive::format::Format::Arc),
        "warc" => Ok(crate::archive::format::Format::Warc),
        _ => Err(format!("invalid --format {s:?}: use arc or warc")),
    }
}

/// Parses `never`, `always` or `interval:DURATION` (`interval:0` is `always`).
pub fn parse_fsync(s: &str) -> Result<FsyncPolicy, String> {
    match s.trim() {
        "never" => Ok(FsyncPolicy::Never),
        "always" => Ok(FsyncPolicy::Always),
        other => match other.strip_prefix("interval:") {
            Some(d) => match parse_duration(d)? {
                d if d.is_zero() => Ok(FsyncPolicy::Always),
                d => Ok(FsyncPolicy::Interval(d)),
            },
            None => Err(format!(
                "invalid --fsync {s:?}: use never, always or interval:1s"
            )),
        },
    }
}

/// How worker threads are placed on CPUs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CpuAffinity {
    /// Worker N on the Nth CPU the process may use.
    Each,
    /// No pinning.
    Off,
    /// Workers take these CPU ids in turn.
    Cpus(Vec<usize>),
}

/// Parses `off`, `each` (`auto` is the same) or a CPU list such as `0,2-3`.
pub fn parse_affinity(s: &str) -> Result<CpuAffinity, String> {
    match s.trim() {
        "each" | "auto" => return Ok(CpuAffinity::Each),
        "off" | "none" => return Ok(CpuAffinity::Off),
        _ => {}
    }
    let bad = || format!("invalid --cpu-affinity {s:?}: use off, each or a CPU list such as 0,2-3");
    let mut cpus = Vec::new();
    for part in s.split(',').map(str::trim) {
        let (lo, hi) = match part.split_once('-') {
            Some((lo, hi)) => (lo.trim(), hi.trim()),
            None => (part, part),
        };
        let lo: usize = lo.parse().map_err(|_| bad())?;
        let hi: usize = hi.parse().map_err(|_| bad())?;
        if lo > hi || hi - lo >= 4096 {
            return Err(bad());
        }
        cpus.extend(lo..=hi);
    }
    Ok(CpuAffinity::Cpus(cpus))
}

/// Splits `123unit` into its leading number and the unit after it.
fn number_and_unit(s: &str) -> Option<(u64, &str)> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    Some((digits.parse().ok()?, unit))
}

/// Parses `IP:port`, `[IPv6]:port`, or `name:port` (resolved once, at start: `localhost:8080`
/// listens on the name's first address).
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = s.parse() {
        return Ok(addr);
    }
    let hint = "expected IP:port, e.g. 127.0.0.1:8080, [::1]:8080, or :8080 for all addresses";
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(format!("{s:?} has no port: {hint}"));
    };
    let Ok(port) = port.parse::<u16>() else {
        return Err(format!("{s:?}: bad port: {hint}"));
    };
    // `:PORT`, as other servers take it: every address (IPv4; `[::]:PORT` for IPv6 too).
    if host.is_empty() {
        return Ok(SocketAddr::from(([0, 0, 0, 0], port)));
    }
    use std::net::ToSocketAddrs;
    let mut addrs = s
        .to_socket_addrs()
        .map_err(|e| format!("{s:?}: {host} does not resolve ({e}): {hint}"))?;
    addrs
        .next()
        .ok_or_else(|| format!("{s:?}: {host} has no address: {hint}"))
}

/// Parses `on` or `off` (also `true`/`false`, `yes`/`no`, `1`/`0`).
pub fn parse_on_off(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" => Ok(true),
        "off" | "false" | "no" | "0" => Ok(false),
        _ => Err(format!("{s:?}: expected on or off")),
    }
}

/// Parses `500ms`, `30s`, `10m`, `1h`, `7d`, `1.5h` (units in any case); a bare number is
/// seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let invalid = || format!("invalid duration {s:?}: expected e.g. 30s, 10m, 1.5h, 7d");
    if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
        return Err(invalid());
    }
    let n: f64 = number.parse().map_err(|_| invalid())?;
    let unit_ms: f64 = match unit.to_ascii_lowercase().as_str() {
        "ms" => 1.0,
        "" | "s" => 1000.0,
        "m" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        _ => {
            return Err(format!(
                "invalid duration unit in {s:?}: use ms, s, m, h or d (e.g. 30s, 1.5h)"
            ))
        }
    };
    let ms = n * unit_ms;
    // Years of duration are a typo, and an f64 past 2^53 ms is no longer exact.
    if !ms.is_finite() || ms > 1e15 {
        return Err(format!("duration {s:?} is too large"));
    }
    Ok(Duration::from_millis(ms.round() as u64))
}

/// Parses `4096`, `64KB`, `100MB`, `2GB` (powers of 1024; `KiB` spellings too).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (n, unit) = number_and_unit(s)
        .ok_or_else(|| format!("invalid size {s:?}: expected e.g. 64KB, 100MB"))?;
    let mult: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        "T" | "TB" | "TIB" => 1 << 40,
        _ => {
            return Err(format!(
                "invalid size unit in {s:?}: use B, KB, MB, GB or TB"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

pub(super) fn parse_prefix(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.');
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!(
            "invalid prefix {s:?}: use 1-64 letters, digits, '_' or '.'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("10x").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert!(
            parse_listen("localhost:8080").is_ok_and(|a| a.ip().is_loopback() && a.port() == 8080)
        );
        assert_eq!(parse_listen("[::1]:80").map(|a| a.port()), Ok(80));
        assert!(parse_listen("localhost").unwrap_err().contains("no port"));
        assert_eq!(
            parse_listen(":23095").map(|a| a.to_string()),
            Ok("0.0.0.0:23095".into())
        );
        assert!(parse_listen(":http")
            .unwrap_err()
            .contains(":8080 for all addresses"));
        assert!(parse_listen("localhost:http")
            .unwrap_err()
            .contains("bad port"));
        assert_eq!(parse_duration("30S"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("0.25s"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2MS"), Ok(Duration::from_millis(2)));
        for bad in [".5s", "1.s", "1..2s", "1.2.3s", "nan", "inf"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn affinities() {
        assert_eq!(parse_affinity("auto"), Ok(CpuAffinity::Each));
        assert_eq!(parse_affinity("each"), Ok(CpuAffinity::Each));
        assert_eq!(parse_affinity("off"), Ok(CpuAffinity::Off));
        assert_eq!(parse_affinity("0"), Ok(CpuAffinity::Cpus(vec![0])));
        assert_eq!(
            parse_affinity("0, 2-4"),
            Ok(CpuAffinity::Cpus(vec![0, 2, 3, 4]))
        );
        assert!(parse_affinity("").is_err());
        assert!(parse_affinity("3-1").is_err());
        assert!(parse_affinity("0,x").is_err());
        assert!(parse_affinity("-1").is_err());
        assert!(parse_affinity("0-99999999").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64KB"), Ok(64 * 1024));
        assert_eq!(parse_size("100MB"), Ok(100 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("1 mb"), Ok(1 << 20));
        assert!(parse_size("MB").is_err());
        assert!(parse_size("12XB").is_err());
        assert!(parse_size("99999999999TB").is_err());
    }

    #[test]
    fn fsync_policies() {
        assert_eq!(parse_fsync("never"), Ok(FsyncPolicy::Never));
        assert_eq!(parse_fsync("always"), Ok(FsyncPolicy::Always));
        assert_eq!(
            parse_fsync("interval:250ms"),
            Ok(FsyncPolicy::Interval(Duration::from_millis(250)))
        );
        assert!(parse_fsync("interval:").is_err());
        assert!(parse_fsync("sometimes").is_err());
    }
}
