//! liveweb's name in `Via` (RFC 9110 7.6.3): `1.1 liveweb-HOSTNAME`, one per node, so a
//! request or response that already passed through this node is known for a loop.

use std::sync::OnceLock;

/// The pseudonym, set once at start (`set_node`); plain `liveweb` until then (unit tests).
static PSEUDONYM: OnceLock<String> = OnceLock::new();
/// `Via: 1.1 <pseudonym>\r\n`, built on first use.
static VIA_LINE: OnceLock<String> = OnceLock::new();

/// Names this node `liveweb-<host>` (characters a `Via` pseudonym cannot hold are dropped).
/// Only the first call counts.
pub fn set_node(host: &str) {
    let host: String = host
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        .collect();
    let name = if host.is_empty() {
        "liveweb".to_string()
    } else {
        format!("liveweb-{host}")
    };
    let _ = PSEUDONYM.set(name);
}

/// This node's name in `Via`.
pub fn pseudonym() -> &'static str {
    PSEUDONYM.get().map_or("liveweb", String::as_str)
}

/// The header line liveweb adds to what it forwards, both ways.
pub fn via_line() -> &'static str {
    VIA_LINE.get_or_init(|| format!("Via: 1.1 {}\r\n", pseudonym()))
}

/// Whether a `Via` value lists this node: the message went through it already.
pub fn names_this_node(value: &[u8]) -> bool {
    let ours = pseudonym().as_bytes();
    value.split(|&b| b == b',').any(|hop| {
        // `received-protocol received-by [comment]`
        let mut words = hop
            .split(|b| b.is_ascii_whitespace())
            .filter(|w| !w.is_empty());
        let _protocol = words.next();
        words.next().is_some_and(|by| by.eq_ignore_ascii_case(ours))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_nodes_own_name_is_a_loop() {
        // Unit tests run with the default name.
        assert_eq!(pseudonym(), "liveweb");
        assert_eq!(via_line(), "Via: 1.1 liveweb\r\n");
        assert!(names_this_node(b"1.1 liveweb"));
        assert!(names_this_node(b"1.0 fred, 1.1 LIVEWEB (comment)"));
        assert!(names_this_node(b"HTTP/1.1 squid,1.1 liveweb"));
        assert!(!names_this_node(b"1.1 liveweb-other"));
        assert!(!names_this_node(b"1.1 varnish, liveweb"));
        assert!(!names_this_node(b""));
    }
}
