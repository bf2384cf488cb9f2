//! Finds where a chunked body ends, byte by byte, without decoding it: liveweb archives the
//! chunked framing as received, so it only needs to know when the last chunk and trailers are
//! in. Every line is bounded so a hostile origin cannot make it buffer without end.

use crate::error::Error;

/// Longest chunk-size line (size, extensions) or trailer line accepted.
const MAX_LINE: usize = 4096;
/// Most trailer bytes accepted after the last chunk.
const MAX_TRAILERS: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading hex digits of a chunk size.
    Size {
        value: u64,
        digits: u32,
        line: usize,
    },
    /// In chunk extensions, waiting for the end of the size line.
    SizeRest { value: u64, line: usize },
    /// Inside chunk data.
    Data { remaining: u64 },
    /// Expecting CR or LF right after chunk data.
    DataEnd { seen_cr: bool },
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    /// Inside a trailer field line.
    TrailerLine { line: usize },
    /// The final empty line has been seen.
    Done,
}

/// Incremental end-of-body finder for the chunked transfer coding.
#[derive(Debug, Clone)]
pub struct ChunkedScanner {
    state: State,
    trailer_bytes: usize,
    /// Decoded payload bytes seen so far, for the size limit.
    pub payload_len: u64,
}

impl Default for ChunkedScanner {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedScanner {
    pub fn new() -> Self {
        ChunkedScanner {
            state: State::Size {
                value: 0,
                digits: 0,
                line: 0,
            },
            trailer_bytes: 0,
            payload_len: 0,
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Consumes `input`; returns `Some(n)` when the body ends after the first `n` bytes of it.
    pub fn feed(&mut self, input: &[u8]) -> Result<Option<usize>, Error> {
        self.feed_with(input, |_| {})
    }

    /// As `feed`, also handing each piece of chunk data (the decoded body) to `data`.
    pub fn feed_with(
        &mut self,
        input: &[u8],
        mut data: impl FnMut(&[u8]),
    ) -> Result<Option<usize>, Error> {
        let bad = |what: &str| Error::InvalidResponse(format!("invalid chunked body: {what}"));
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            self.state = match self.state {
                State::Done => return Ok(Some(i)),
                State::Size {
                    value,
                    digits,
                    line,
                } => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        let d = (b as char).to_digit(16).unwrap_or(0) as u64;
                        if digits >= 15 {
                            return Err(bad("chunk size too large"));
                        }
                        State::Size {
                            value: value * 16 + d,
                            digits: digits + 1,
                            line: line + 1,
                        }
                    }
                    b';' | b' ' | b'\t' | b'\r' if digits > 0 => State::SizeRest {
                        value,
                        line: line + 1,
                    },
                    b'\n' if digits > 0 => self.after_size_line(value),
                    _ => return Err(bad("bad chunk size")),
                },
                State::SizeRest { value, line } => match b {
                    b'\n' => self.after_size_line(value),
                    _ if line >= MAX_LINE => return Err(bad("chunk size line too long")),
                    _ => State::SizeRest {
                        value,
                        line: line + 1,
                    },
                },
                State::Data { remaining } => {
                    let take = remaining.min((input.len() - i) as u64);
                    data(&input[i..i + take as usize]);
                    i += take as usize;
                    let left = remaining - take;
                    self.state = if left == 0 {
                        State::DataEnd { seen_cr: false }
                    } else {
                        State::Data { remaining: left }
                    };
                    continue;
                }
                State::DataEnd { seen_cr } => match b {
                    b'\r' if !seen_cr => State::DataEnd { seen_cr: true },
                    b'\n' => State::Size {
                        value: 0,
                        digits: 0,
                        line: 0,
                    },
                    _ => return Err(bad("missing CRLF after chunk data")),
                },
                State::TrailerStart => match b {
                    b'\r' => State::TrailerStart,
                    b'\n' => {
                        i += 1;
                        self.state = State::Done;
                        return Ok(Some(i));
                    }
                    _ => State::TrailerLine { line: 1 },
                },
                State::TrailerLine { line } => match b {
                    b'\n' => State::TrailerStart,
                    _ if line >= MAX_LINE => return Err(bad("trailer line too long")),
                    _ => State::TrailerLine { line: line + 1 },
                },
            };
            if matches!(self.state, State::TrailerStart | State::TrailerLine { .. }) {
                self.trailer_bytes += 1;
                if self.trailer_bytes > MAX_TRAILERS {
                    return Err(bad("trailers too large"));
                }
            }
            i += 1;
        }
        Ok(if self.state == State::Done {
            Some(input.len())
        } else {
            None
        })
    }

    fn after_size_line(&mut self, size: u64) -> State {
        if size == 0 {
            State::TrailerStart
        } else {
            self.payload_len = self.payload_len.saturating_add(size);
            State::Data { remaining: size }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end_of(body: &[u8]) -> Result<Option<usize>, Error> {
        ChunkedScanner::new().feed(body)
    }

    #[test]
    fn finds_end_whole_and_split() {
        let body = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\nNEXT";
        assert_eq!(end_of(body), Ok(Some(body.len() - 4)));
        // Byte by byte gives the same answer.
        let mut s = ChunkedScanner::new();
        let mut end = None;
        for (i, b) in body.iter().enumerate() {
            if let Some(n) = s.feed(std::slice::from_ref(b)).unwrap() {
                end = Some(i + n);
                break;
            }
        }
        assert_eq!(end, Some(body.len() - 4));
        assert_eq!(s.payload_len, 11);
    }

    #[test]
    fn decodes_data_across_splits() {
        let body = b"5\r\nhello\r\n7;x=y\r\n, world\r\n0\r\n\r\n";
        for split in 1..body.len() {
            let mut s = ChunkedScanner::new();
            let mut out = Vec::new();
            let first = s
                .feed_with(&body[..split], |d| out.extend_from_slice(d))
                .unwrap();
            if first.is_none() {
                s.feed_with(&body[split..], |d| out.extend_from_slice(d))
                    .unwrap();
            }
            assert_eq!(out, b"hello, world", "split at {split}");
            assert!(s.is_done());
        }
    }

    #[test]
    fn trailers_and_bare_lf() {
        let body = b"3\nabc\n0\nExpires: never\r\nX: y\n\r\n";
        assert_eq!(end_of(body), Ok(Some(body.len())));
        assert_eq!(end_of(b"0\r\n"), Ok(None), "final CRLF still missing");
    }

    #[test]
    fn rejects_garbage_and_overflow() {
        assert!(end_of(b"zz\r\n").is_err());
        assert!(end_of(b"\r\n").is_err());
        assert!(end_of(b"3\r\nabcXY").is_err());
        assert!(end_of(b"ffffffffffffffffff\r\n").is_err());
        let long_ext = format!("1;{}", "x".repeat(MAX_LINE + 1));
        assert!(end_of(long_ext.as_bytes()).is_err());
    }
}
