//! The last errors answered, for the status page: a bounded ring shared by every worker,
//! written only when a request ends in an error code (never on a hit or a clean miss).

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::SystemTime;

/// Errors kept.
pub const KEPT: usize = 100;
/// Longest URL or message kept per error (the rest is cut, marked with `...`).
const MAX_TEXT: usize = 512;

#[derive(Debug, Clone, PartialEq)]
pub struct RecentError {
    pub at: SystemTime,
    pub client: IpAddr,
    pub url: String,
    /// The code line, e.g. `E30 connection refused`.
    pub code: &'static str,
    /// What the reply said, when liveweb made it (the record's text is in the archive).
    pub message: String,
}

#[derive(Default)]
pub struct RecentErrors {
    ring: Mutex<VecDeque<RecentError>>,
}

fn clipped(text: &str) -> String {
    if text.len() <= MAX_TEXT {
        return text.to_string();
    }
    let mut end = MAX_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

impl RecentErrors {
    pub fn push(&self, client: IpAddr, url: &str, code: &'static str, message: &str) {
        let entry = RecentError {
            at: SystemTime::now(),
            client,
            url: clipped(url),
            code,
            message: clipped(message),
        };
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        if ring.len() == KEPT {
            ring.pop_front();
        }
        ring.push_back(entry);
    }

    /// The kept errors, newest first.
    pub fn newest_first(&self) -> Vec<RecentError> {
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        ring.iter().rev().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_hundred_newest_first_with_long_text_cut() {
        let recent = RecentErrors::default();
        let ip: IpAddr = [127, 0, 0, 1].into();
        for i in 0..150 {
            recent.push(
                ip,
                &format!("http://a/{i}"),
                "E30 connection refused",
                "refused",
            );
        }
        let kept = recent.newest_first();
        assert_eq!(kept.len(), KEPT);
        assert_eq!(kept[0].url, "http://a/149");
        assert_eq!(kept[KEPT - 1].url, "http://a/50");
        recent.push(ip, &"é".repeat(400), "E10 invalid URL", "x");
        let long = &recent.newest_first()[0].url;
        assert!(
            long.ends_with("...") && long.len() <= MAX_TEXT + 3,
            "{long}"
        );
    }
}
