//! Appending a record whose member is in a file of its own (a big response, encoded from the
//! file it spilled to): copied into the archive in bounded chunks, never whole in memory.

use std::io;

use monoio::buf::{IoBuf, IoBufMut};

use super::{Appended, RecordLoc, Writer};
use crate::archive::aligned::{AlignedBuf, BLOCK};
use crate::archive::cdx::CdxEntry;
use crate::archive::from_file::FileMember;
use crate::archive::layout::{plan, Pad};
use crate::archive::record::{pad_member, MIN_PAD};
use crate::archive::writer::FsyncPolicy;
use crate::error::Error;

/// A record whose member is in a file of its own (a big response, encoded from the file it
/// spilled to): copied into the archive in bounded chunks.
pub struct AppendFileRecord {
    pub member: FileMember,
    pub cdx: CdxEntry,
}

/// Bytes of a file member copied per write.
const FILE_CHUNK: usize = 256 << 10;

impl Writer {
    /// Appends one file member (`AppendFileRecord`), rolling first if it does not fit.
    pub(super) async fn append_file(
        &mut self,
        record: AppendFileRecord,
    ) -> Result<Appended, Error> {
        if self.space.is_paused() {
            return Err(Error::Storage("disk full, archiving paused".into()));
        }
        let len = usize::try_from(record.member.len)
            .map_err(|_| Error::Storage("record too big".into()))?;
        if self.fitting([len]) == 0 {
            self.seal_open().await;
        }
        let before = self.open.as_ref().map_or(0, |o| o.logical);
        let result = match self.write_file_member(&record).await {
            Ok(loc) if self.config.fsync == FsyncPolicy::Always => {
                self.sync_group(before).await.map(|()| loc)
            }
            other => other,
        };
        let loc = result.map_err(|e| self.write_failed(&e, record.member.len))?;
        self.wrote(1, loc.len + record.member.trailer_len);
        self.index(record.cdx, loc);
        self.seal_if_full().await;
        Ok(Appended { loc, padded: None })
    }

    /// Copies a file member after the current end, `FILE_CHUNK` at a time: each write carries
    /// the kept partial block and the whole blocks that follow; the last one ends as
    /// `write_group`'s do (padded to a block boundary under `--fsync always`, the member's
    /// gzip header grown in its first chunk, since the padding needed is known from the
    /// member's length before anything is written).
    async fn write_file_member(&mut self, record: &AppendFileRecord) -> io::Result<RecordLoc> {
        let (header, ending) = self.prepare_write().await?;
        let Some(open) = self.open.as_mut() else {
            return Err(io::Error::other("no open ARC file"));
        };
        let header_len = header.as_ref().map_or(0, Vec::len);
        let len = record.member.len as usize;
        let layout = plan(open.tail_start, open.tail.len(), header_len, &[len], ending);
        let offset = layout.offsets.first().copied().unwrap_or(open.tail_start);
        let member = monoio::fs::File::from_std(record.member.file.try_clone()?)?;
        let mut buf = self
            .scratch
            .take()
            .unwrap_or_else(|| AlignedBuf::with_capacity(FILE_CHUNK + 2 * BLOCK))
            .reserve_total(FILE_CHUNK + 3 * BLOCK + MIN_PAD + BLOCK);
        buf.clear();
        buf.extend_from_slice(&open.tail);
        if let Some(h) = &header {
            buf.extend_from_slice(h);
        }
        let mut write_at = open.tail_start;
        let mut pos = 0usize;
        let mut member_len = len;
        let mut chunk = Vec::new();
        while pos < len {
            let want = (len - pos).min(FILE_CHUNK);
            chunk.clear();
            chunk.reserve(want);
            // Bounded by a slice: a read fills a Vec up to its capacity, not its length.
            let slice = std::mem::take(&mut chunk).slice_mut(0..want);
            let (read, back) = member.read_exact_at(slice, pos as u64).await;
            chunk = back.into_inner();
            read?;
            let grown = match layout.pad {
                Pad::Member(grow) if pos == 0 => pad_member(&chunk, grow),
                _ => None,
            };
            if let Some(g) = &grown {
                member_len += g.len() - chunk.len();
            }
            buf.extend_from_slice(grown.as_deref().unwrap_or(&chunk));
            pos += want;
            if pos < len {
                // Whole blocks out; the partial one stays for the next chunk.
                let whole = buf.len() / BLOCK * BLOCK;
                let (written, back) = open.file.write_all_at(buf.slice(0..whole), write_at).await;
                buf = back.into_inner();
                written?;
                self.space.wrote(whole as u64);
                let rest = buf.as_slice()[whole..].to_vec();
                buf.clear();
                buf.extend_from_slice(&rest);
                write_at += whole as u64;
            }
        }
        if let Pad::BlankLines(n) = layout.pad {
            buf.extend_from_slice(&[b'\n'; BLOCK][..n]);
        }
        let data_len = buf.len();
        let keep_from = data_len / BLOCK * BLOCK;
        buf.pad_to_block();
        self.space.wrote(buf.len() as u64);
        let (written, buf) = open.file.write_all_at(buf, write_at).await;
        let outcome = written.map(|()| {
            open.tail = buf.as_slice()[keep_from..data_len].to_vec();
            open.logical = write_at + data_len as u64;
            open.tail_start = write_at + keep_from as u64;
            open.dirty = true;
            RecordLoc {
                file_id: open.id,
                offset,
                len: (member_len as u64).saturating_sub(record.member.trailer_len),
            }
        });
        if buf.capacity() <= 8 << 20 {
            self.scratch = Some(buf);
        }
        outcome
    }
}
