//! Wall-clock timestamps in the forms ARC needs: 14-digit record dates, 17-digit file names.

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

    /// `YYYYMMDDhhmmssSSS`, the timestamp in ARC file names.
    pub fn stamp17(&self) -> String {
        format!("{}{:03}", self.arc14(), self.millis)
    }
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
}
