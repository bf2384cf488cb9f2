//! Where the bytes of a record stored without compression lie in its ARC file. A gzip
//! member of stored deflate blocks (what `compressibility` makes of images, video and other
//! incompressible content) carries the record verbatim, cut every 64 KiB by a 5-byte block
//! header: mapping a range of the record to file ranges lets a forward-mode hit send the
//! body with sendfile from the page cache instead of inflating it into memory.

/// A run of the record's bytes lying verbatim in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// Offset in the decoded record.
    pub plain: u64,
    /// Offset in the ARC file.
    pub file: u64,
    pub len: u64,
}

/// Bits of a gzip header's flags byte (RFC 1952 2.3.1).
const FHCRC: u8 = 0x02;
const FEXTRA: u8 = 0x04;
const FNAME: u8 = 0x08;
const FCOMMENT: u8 = 0x10;

/// The spans of a gzip member made only of stored blocks that starts at `file_offset`, or
/// `None` when any block is compressed or the member is not well formed (then it must be
/// inflated). The spans cover the decoded record exactly, in order.
pub fn stored_spans(member: &[u8], file_offset: u64) -> Option<Vec<Span>> {
    if member.len() < 18 || member[..3] != [0x1f, 0x8b, 8] || member[3] & 0xe0 != 0 {
        return None;
    }
    let flags = member[3];
    let mut at = 10usize;
    if flags & FEXTRA != 0 {
        let xlen = usize::from(u16::from_le_bytes([*member.get(10)?, *member.get(11)?]));
        at = 12 + xlen;
    }
    for flag in [FNAME, FCOMMENT] {
        if flags & flag != 0 {
            at += member.get(at..)?.iter().position(|&b| b == 0)? + 1;
        }
    }
    if flags & FHCRC != 0 {
        at += 2;
    }
    let mut spans = Vec::new();
    let mut plain = 0u64;
    loop {
        // A stored block starts on a byte: BFINAL, BTYPE 00, then padding to the byte's end.
        let header = *member.get(at)?;
        if header & 0b110 != 0 {
            return None;
        }
        let field = |i: usize| Some(u16::from_le_bytes([*member.get(i)?, *member.get(i + 1)?]));
        let (len, nlen) = (field(at + 1)?, field(at + 3)?);
        if len != !nlen {
            return None;
        }
        let data = at + 5;
        let len = usize::from(len);
        member.get(data..data + len)?;
        if len > 0 {
            spans.push(Span {
                plain,
                file: file_offset + data as u64,
                len: len as u64,
            });
        }
        plain += len as u64;
        at = data + len;
        if header & 1 == 1 {
            break;
        }
    }
    // The trailer: CRC-32 and the decoded size mod 2^32, and nothing after it.
    let isize = u32::from_le_bytes(member.get(at + 4..at + 8)?.try_into().ok()?);
    (at + 8 == member.len() && u64::from(isize) == plain & 0xffff_ffff).then_some(spans)
}

/// The file ranges `(offset, len)` holding `range` of the decoded record, or `None` if the
/// spans do not cover it.
pub fn file_ranges(spans: &[Span], range: std::ops::Range<u64>) -> Option<Vec<(u64, u64)>> {
    let mut out = Vec::new();
    let mut pos = range.start;
    // Spans are in order: start at the one holding `pos`.
    let first = spans.partition_point(|s| s.plain + s.len <= pos);
    for span in &spans[first..] {
        if pos >= range.end {
            break;
        }
        if span.plain > pos {
            return None;
        }
        let skip = pos - span.plain;
        let take = (span.len - skip).min(range.end - pos);
        out.push((span.file + skip, take));
        pos += take;
    }
    (pos >= range.end).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::record::{mark_private, pad_member, Codec};

    fn random(len: usize) -> Vec<u8> {
        crate::archive::random_bytes(len, 0x1234_5678_9abc_def1)
    }

    /// The bytes the spans point at, read from `file` (the member placed at `base`).
    fn gather(file: &[u8], spans: &[Span]) -> Vec<u8> {
        spans
            .iter()
            .flat_map(|s| file[s.file as usize..(s.file + s.len) as usize].to_vec())
            .collect()
    }

    fn record(content: &[u8]) -> Vec<u8> {
        let mut plain = b"h\n".to_vec();
        plain.extend_from_slice(content);
        plain.push(b'\n');
        plain
    }

    #[test]
    fn a_stored_member_maps_to_the_record_verbatim() {
        for len in [0, 1, 65_535, 65_536, 300_000] {
            let content = random(len);
            let member = Codec::gzip(0, "h\n", &content);
            let base = 4096u64;
            let mut file = vec![0u8; base as usize];
            file.extend_from_slice(&member);
            let spans = stored_spans(&member, base).expect("stored");
            assert_eq!(gather(&file, &spans), record(&content), "len {len}");
            // The streaming encoder (records over 8 MiB) at level 0 too.
            let streamed = crate::archive::record::encode_member("h\n", &content, 0);
            let spans = stored_spans(&streamed, 0).expect("streamed stored");
            assert_eq!(gather(&streamed, &spans), record(&content));
        }
    }

    #[test]
    fn extra_fields_from_marks_and_padding_are_skipped() {
        let content = random(100_000);
        let member = Codec::gzip(0, "h\n", &content);
        for marked in [
            mark_private(member.clone()),
            pad_member(&member, 777).unwrap(),
        ] {
            let spans = stored_spans(&marked, 0).expect("stored");
            assert_eq!(gather(&marked, &spans), record(&content));
        }
    }

    #[test]
    fn compressed_or_damaged_members_are_refused() {
        let text = b"<p>markup</p>".repeat(10_000);
        assert!(stored_spans(&Codec::gzip(1, "h\n", &text), 0).is_none());
        let member = Codec::gzip(0, "h\n", &random(70_000));
        assert!(stored_spans(&member[..member.len() - 1], 0).is_none());
        let mut longer = member.clone();
        longer.push(0);
        assert!(stored_spans(&longer, 0).is_none());
        let mut bad_nlen = member.clone();
        bad_nlen[13] ^= 1;
        assert!(stored_spans(&bad_nlen, 0).is_none());
        assert!(stored_spans(b"not gzip at all, not at all", 0).is_none());
    }

    #[test]
    fn ranges_of_the_record_map_to_file_ranges() {
        let spans = [
            Span {
                plain: 0,
                file: 100,
                len: 10,
            },
            Span {
                plain: 10,
                file: 115,
                len: 10,
            },
            Span {
                plain: 20,
                file: 130,
                len: 5,
            },
        ];
        assert_eq!(file_ranges(&spans, 3..8), Some(vec![(103, 5)]));
        assert_eq!(
            file_ranges(&spans, 8..22),
            Some(vec![(108, 2), (115, 10), (130, 2)])
        );
        assert_eq!(file_ranges(&spans, 20..25), Some(vec![(130, 5)]));
        assert_eq!(file_ranges(&spans, 5..5), Some(vec![]));
        assert_eq!(file_ranges(&spans, 20..26), None);
    }
}
