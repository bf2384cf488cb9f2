//! Where the bytes of one group-commit write go, and how many records of a batch go into the
//! open file before it rolls: the pure arithmetic of the writer (no I/O), so it can be tested
//! case by case. A write starts at the file's last block boundary with
//! the kept partial block, then the filedesc record when the file is new, then the members;
//! under `--fsync always` it ends on a block boundary (see `writer.rs` for why).

use super::aligned::BLOCK;
use super::record::MIN_PAD;

/// How a write is made to end on a block boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pad {
    /// Not padded: the partial last block is kept and rewritten by the next write.
    None,
    /// The last gzip member grows by this many bytes (a filler extra field).
    Member(usize),
    /// This many blank lines follow the last plain record.
    BlankLines(usize),
}

/// The plan for one write, offsets relative to the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupLayout {
    /// File offset of each member, in order.
    pub offsets: Vec<u64>,
    pub pad: Pad,
    /// Valid bytes from the write's start (`tail_start`): kept tail, filedesc, members, pad.
    pub data_len: usize,
    /// Where, from the write's start, the partial block to keep begins (a block multiple).
    pub keep_from: usize,
}

/// How the write ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Zero-padded to the block; the partial block is kept for the next write.
    Partial,
    /// On a block boundary, by growing the last gzip member.
    PadMember,
    /// On a block boundary, by blank lines after the last plain record.
    PadBlankLines,
}

/// Lays out a write starting at `tail_start` (a block boundary) that carries `tail_len`
/// kept bytes, a `header_len`-byte filedesc record, then members of the given sizes.
pub fn plan(
    tail_start: u64,
    tail_len: usize,
    header_len: usize,
    members: &[usize],
    ending: Ending,
) -> GroupLayout {
    let mut at = tail_len + header_len;
    let mut offsets = Vec::with_capacity(members.len());
    for len in members {
        offsets.push(tail_start + at as u64);
        at += len;
    }
    let to_boundary = (BLOCK - at % BLOCK) % BLOCK;
    let pad = match ending {
        Ending::Partial => Pad::None,
        _ if to_boundary == 0 || members.is_empty() => Pad::None,
        Ending::PadBlankLines => Pad::BlankLines(to_boundary),
        // Growing a member takes at least MIN_PAD bytes: when fewer are left before the
        // boundary, it goes on to the next one.
        Ending::PadMember if to_boundary < MIN_PAD => Pad::Member(to_boundary + BLOCK),
        Ending::PadMember => Pad::Member(to_boundary),
    };
    let data_len = at
        + match pad {
            Pad::None => 0,
            Pad::Member(n) | Pad::BlankLines(n) => n,
        };
    GroupLayout {
        offsets,
        pad,
        data_len,
        keep_from: data_len / BLOCK * BLOCK,
    }
}

/// How many records from the front of a batch (member sizes `members`) go into a file that
/// holds `used` bytes: all that fit under `max_size`, at least one if the file holds no
/// record yet (`empty`; a record bigger than a file still has to go somewhere), none when
/// the next one would overflow (the file rolls first).
pub fn fitting(
    used: u64,
    empty: bool,
    members: impl IntoIterator<Item = usize>,
    max_size: u64,
) -> usize {
    let mut total = used;
    let mut n = 0;
    for len in members {
        total += len as u64;
        if total > max_size && !(empty && n == 0) {
            break;
        }
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_fills_the_file_up_to_its_size_and_rolls_before_overflowing() {
        assert_eq!(fitting(0, true, [40, 40, 40], 100), 2);
        assert_eq!(
            fitting(60, false, [40, 1], 100),
            1,
            "exactly full still fits"
        );
        assert_eq!(fitting(70, false, [40, 10], 100), 0, "roll first");
        assert_eq!(
            fitting(0, true, [500, 10], 100),
            1,
            "an oversized record goes alone"
        );
        assert_eq!(
            fitting(500, false, [10], 100),
            0,
            "a file already past its size takes nothing more"
        );
        assert_eq!(fitting(0, true, [], 100), 0);
    }

    #[test]
    fn members_follow_the_kept_tail_and_the_header_back_to_back() {
        let l = plan(8192, 100, 50, &[10, 20, 30], Ending::Partial);
        assert_eq!(l.offsets, vec![8192 + 150, 8192 + 160, 8192 + 180]);
        assert_eq!(l.pad, Pad::None);
        assert_eq!(l.data_len, 210);
        assert_eq!(
            l.keep_from, 0,
            "the partial block is kept for the next write"
        );
        let l = plan(0, 4000, 0, &[5000], Ending::Partial);
        assert_eq!((l.data_len, l.keep_from), (9000, 8192));
    }

    #[test]
    fn a_padded_write_ends_on_a_block_boundary() {
        for ending in [Ending::PadMember, Ending::PadBlankLines] {
            for tail in [0, 1, 4000, 4095] {
                for member in [1, 100, 4090, 4096, 10_000] {
                    let l = plan(4096, tail, 0, &[member], ending);
                    assert_eq!(l.data_len % BLOCK, 0, "{ending:?} {tail} {member}");
                    assert_eq!(l.keep_from, l.data_len, "nothing is kept to rewrite");
                    assert!(l.data_len >= tail + member);
                    if let Pad::Member(n) = l.pad {
                        assert!(n >= MIN_PAD, "{n}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_member_too_close_to_the_boundary_grows_into_the_next_block() {
        let l = plan(0, 0, 0, &[BLOCK - 3], Ending::PadMember);
        assert_eq!(l.pad, Pad::Member(3 + BLOCK));
        assert_eq!(l.data_len, 2 * BLOCK);
        let l = plan(0, 0, 0, &[BLOCK - 3], Ending::PadBlankLines);
        assert_eq!(l.pad, Pad::BlankLines(3));
        let l = plan(0, 0, 0, &[BLOCK], Ending::PadMember);
        assert_eq!(l.pad, Pad::None, "already on the boundary");
    }
}
