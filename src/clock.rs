//! Wall-clock timestamps in the forms archives need: 14-digit record dates, 17-digit file
//! names, WARC dates.

use std::time::{SystemTime, UNIX_EPOCH};

/// A UTC calendar instant, to the millisecond.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtcTime {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub millis: u32,
}

impl UtcTime {
    /// The current time. A clock before 1970 is read as the epoch rather than failing a request.
    pub fn now() -> Self {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Self::from_unix_millis(since.as_millis() as i64)
    }

    /// Converts milliseconds since the Unix epoch (Howard Hinnant's days-to-civil algorithm).
    pub fn from_unix_millis(ms: i64) -> Self {
        let secs = ms.div_euclid(1000);
        let millis = ms.rem_euclid(1000) as u32;
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400) as u32;
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        UtcTime {
            year,
            month,
            day,
            hour: sod / 3600,
            minute: sod / 60 % 60,
            second: sod % 60,
            millis,
        }
    }

    /// `YYYYMMDDhhmmss`, the ARC record date.
    pub fn arc14(&self) -> String {
        format!(
            "{:04}{:02}{:02}{:02}{:02}{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }

    /// `YYYY-MM-DDThh:mm:ss.SSSZ`, a `WARC-Date` to the millisecond.
    pub fn warc_date(&self) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second, self.millis
        )
    }

    /// `YYYYMMDDhhmmssSSS`, the timestamp in ARC file names.
    pub fn stamp17(&self) -> String {
        format!("{}{:03}", self.arc14(), self.millis)
    }
}

/// Parses `YYYYMMDDhhmmss` (UTC) into seconds since the Unix epoch; `None` for anything
/// that is not a real date and time (30 February, hour 24...). A leap second (`60`) is read
/// as the next second, as the calendar has no place for it.
pub fn parse_arc14(s: &str) -> Option<i64> {
    if s.len() != 14 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s[r].parse::<u16>().ok();
    let (y, m, d) = (n(0..4)?, n(4..6)?, n(6..8)?);
    let (hh, mm, ss) = (n(8..10)?, n(10..12)?, n(12..14)?);
    let month = time::Month::try_from(u8::try_from(m).ok()?).ok()?;
    let date = time::Date::from_calendar_date(i32::from(y), month, u8::try_from(d).ok()?).ok()?;
    let leap = ss == 60;
    let clock = time::Time::from_hms(
        u8::try_from(hh).ok()?,
        u8::try_from(mm).ok()?,
        u8::try_from(if leap { 59 } else { ss }).ok()?,
    )
    .ok()?;
    let at = time::PrimitiveDateTime::new(date, clock).assume_utc();
    Some(at.unix_timestamp() + i64::from(leap))
}

/// Seconds since the Unix epoch now.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_and_known_dates() {
        assert_eq!(UtcTime::from_unix_millis(0).arc14(), "19700101000000");
        // 2000-02-29 23:59:59.123 UTC, a leap day.
        assert_eq!(
            UtcTime::from_unix_millis(951_868_799_123).stamp17(),
            "20000229235959123"
        );
        // 2026-11-22 03:58:00 UTC
        assert_eq!(
            UtcTime::from_unix_millis(1_795_319_880_000).arc14(),
            "20261122035800"
        );
    }

    #[test]
    fn arc14_roundtrip() {
        for secs in [0i64, 951_868_799, 1_795_319_880, 4_102_444_800] {
            let text = UtcTime::from_unix_millis(secs * 1000).arc14();
            assert_eq!(parse_arc14(&text), Some(secs), "{text}");
        }
        assert_eq!(parse_arc14("2026112203580"), None);
        assert_eq!(parse_arc14("20261322035800"), None);
        // Days a month does not have, and hours a day does not have.
        assert_eq!(parse_arc14("20260231120000"), None);
        assert_eq!(parse_arc14("20250229120000"), None);
        assert_eq!(parse_arc14("20261131000000"), None);
        assert_eq!(parse_arc14("20261122240000"), None);
        assert!(parse_arc14("20240229120000").is_some(), "a leap day");
        assert_eq!(
            parse_arc14("20261231235960"),
            parse_arc14("20270101000000"),
            "a leap second reads as the next second"
        );
        assert_eq!(parse_arc14("2026112203580x"), None);
    }
}
