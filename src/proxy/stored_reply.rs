//! Forward-mode hits: the stored response is sent to the client as the origin sent it,
//! decoded from its ARC record (gzip member) as it goes, in bounded memory: compressed input
//! is read in chunks (from memory or the ARC file, through io_uring), inflated into a fixed
//! buffer, stripped of the ARC header line, re-headed for the client and framed for it.

use std::cell::RefCell;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use super::client_conn::ClientConn;
use bytes::Bytes;
use flate2::{Decompress, FlushDecompress, Status};

use super::hot::{HotShard, SENDFILE_FROM};
use super::send::write_all;
use crate::archive::format::{payload_at, PayloadAt};
use crate::archive::stored::stored_spans;
use crate::archive::{ArcFile, RecordLoc};
use crate::error::Error;
use crate::http::client_body::ResponseStreamer;
use crate::http::client_head::{ClientSide, ForwardTemplate};

/// Records up to this size (compressed, and again decoded) are kept decoded after a forward
/// hit.
const KEEP_DECODED_MAX: u64 = 8 << 20;
/// Members from `SENDFILE_FROM` up to this size that turn out to be stored blocks only are
/// kept as file spans (body sent with sendfile); bigger ones keep the decoded copy: on
/// loopback a 4 MiB body went out faster with one write from memory than with sendfile in
/// stored-block pieces, a 256 KiB one slower (`SIZE=4m` / `SIZE=256k loadtest/ab.sh`,
/// `loadtest/results/ab-20261125T221438Z.txt`, `...T221252Z.txt`).
const SPANS_MAX: u64 = 1 << 20;
/// Compressed bytes read from a file per step.
const FILE_CHUNK: usize = 256 * 1024;
/// Inflated bytes produced per step, and the size at which output is flushed.
const OUT_CHUNK: usize = 64 * 1024;

/// Where a record's gzip member is.
pub enum MemberSource {
    Memory(Bytes),
    File {
        file: Arc<ArcFile>,
        offset: u64,
        len: u64,
    },
}

/// Sends the response stored in a record. Returns whether the connection may carry another
/// request. An error after the head was sent means the client got a cut reply: the caller
/// closes the connection, so it never looks complete.
pub async fn send_stored(
    stream: &mut ClientConn,
    source: MemberSource,
    client: ClientSide,
    gzip: bool,
    keep_decoded: Option<(&RefCell<HotShard>, RecordLoc)>,
    timeout: Duration,
) -> io::Result<bool> {
    if !gzip {
        let source = match (source, keep_decoded) {
            // A small record read from its file is kept (its second request:
            // docs/architecture.md, "Hits"), so the next forward hit writes it from memory.
            (MemberSource::File { file, offset, len }, Some((hot, loc)))
                if !client.head_only && hot.borrow().would_keep(len) =>
            {
                let record = Bytes::from(file.reader()?.read_region(offset, len).await?);
                hot.borrow_mut().insert(&loc, record.clone());
                MemberSource::Memory(record)
            }
            (source, _) => source,
        };
        return send_plain(stream, source, client, timeout).await;
    }
    let head_only = client.head_only;
    let mut state = Decoder::new(client);
    // Keep the decoded record for the next forward hit, if it is small enough to be worth it.
    let record_len = match &source {
        MemberSource::Memory(m) => m.len() as u64,
        MemberSource::File { len, .. } => *len,
    };
    if keep_decoded.is_some() && !head_only && record_len <= KEEP_DECODED_MAX {
        state.decoded = Some(Vec::new());
    }
    let mut inflate = Decompress::new_gzip(15);
    let mut out = vec![0u8; OUT_CHUNK];
    let mut member_copy: Option<(Vec<u8>, u64)> = None;
    match source {
        MemberSource::Memory(member) => {
            inflate_chunk(&mut inflate, &member, &mut out, &mut state, stream, timeout).await?;
        }
        MemberSource::File { file, offset, len } => {
            // A big member is kept whole while it is sent: if it turns out to be stored
            // blocks only, the next hits send its body from the file (`stored_spans`).
            if state.decoded.is_some() && (SENDFILE_FROM..=SPANS_MAX).contains(&len) {
                member_copy = Some((Vec::with_capacity(len as usize), offset));
            }
            let reader = file.reader()?;
            let mut pos = 0u64;
            let mut buf = Vec::with_capacity(FILE_CHUNK);
            while pos < len && !state.finished() {
                let want = (len - pos).min(FILE_CHUNK as u64) as usize;
                buf = reader.read(buf, offset + pos, want).await?;
                pos += want as u64;
                if let Some((copy, _)) = member_copy.as_mut() {
                    copy.extend_from_slice(&buf);
                }
                inflate_chunk(&mut inflate, &buf, &mut out, &mut state, stream, timeout).await?;
            }
        }
    }
    let decoded = state.decoded.take();
    let keep = state.finish(stream, timeout).await?;
    if let (Some((hot, loc)), Some(plain)) = (keep_decoded, decoded) {
        let template = template_for_record(&plain);
        let spans = member_copy
            .and_then(|(member, offset)| stored_spans(&member, offset))
            .filter(|spans| spans.iter().map(|s| s.len).sum::<u64>() == plain.len() as u64);
        match (spans, template) {
            (Some(spans), Some(template)) => hot.borrow_mut().insert_spans(&loc, spans, template),
            (_, template) => hot
                .borrow_mut()
                .insert_decoded(&loc, Bytes::from(plain), template),
        }
    }
    Ok(keep)
}

/// The forward reply prepared for a decoded record (ARC header line or WARC header block,
/// stored response, record end), its body range relative to the record.
pub fn template_for_record(plain: &[u8]) -> Option<ForwardTemplate> {
    let PayloadAt::Found { start, len } = payload_at(plain) else {
        return None;
    };
    let len = usize::try_from(len).ok()?;
    let response = plain.get(start..start.checked_add(len)?)?;
    let mut template = ForwardTemplate::new(response)?;
    template.body = template.body.start + start..template.body.end + start;
    Some(template)
}

/// A plain (`.arc`) record: the head is read and rewritten, then the body goes from the file
/// to the socket with sendfile when it passes through unchanged and its pages are resident
/// (read through io_uring otherwise, which makes them resident for the next hit).
async fn send_plain(
    stream: &mut ClientConn,
    source: MemberSource,
    client: ClientSide,
    timeout: Duration,
) -> io::Result<bool> {
    let mut state = Decoder::new(client);
    let (file, offset, len) = match source {
        MemberSource::Memory(record) => {
            // Head first; then a body that passes through unchanged is written straight
            // from the shared bytes.
            let head_part = record.len().min(OUT_CHUNK);
            state.push(&record[..head_part]).map_err(invalid)?;
            if state.body_passes_through() && state.payload_left > 0 {
                let rest = state.payload_left as usize;
                state.flush(stream, timeout).await?;
                let body = record.slice(head_part..(head_part + rest).min(record.len()));
                write_all(stream, body, timeout).await?;
                state.skip_rest();
            } else {
                state.push(&record[head_part..]).map_err(invalid)?;
            }
            return state.finish(stream, timeout).await;
        }
        MemberSource::File { file, offset, len } => (file, offset, len),
    };
    let reader = file.reader()?;
    let mut pos = 0u64;
    let mut buf = Vec::with_capacity(OUT_CHUNK);
    // Residency is checked once, when the head is out: if the body is not in the page cache
    // then, reading it through io_uring is the way, not another mmap + mincore per chunk.
    let mut sendfile_checked = false;
    while pos < len && !state.finished() {
        let want = (len - pos).min(OUT_CHUNK as u64) as usize;
        buf = reader.read(buf, offset + pos, want).await?;
        pos += want as u64;
        state.push(&buf).map_err(invalid)?;
        if !sendfile_checked && state.body_passes_through() && state.payload_left > 0 {
            sendfile_checked = true;
            let rest = state.payload_left;
            state.flush(stream, timeout).await?;
            let fd = file.fd.as_raw_fd();
            let plain_socket = stream
                .plain_socket()
                .filter(|_| crate::archive::reader::is_resident(&file.fd, offset + pos, rest));
            if let Some(socket) = plain_socket {
                super::send::sendfile_all(socket, fd, offset + pos, rest, timeout).await?;
                stream.count_written(rest);
                state.skip_rest();
                break;
            }
        }
        state.flush_if_full(stream, timeout).await?;
    }
    state.finish(stream, timeout).await
}

/// Inflates one compressed chunk, pushing everything it yields through the decoder.
async fn inflate_chunk(
    inflate: &mut Decompress,
    input: &[u8],
    out: &mut [u8],
    state: &mut Decoder,
    stream: &mut ClientConn,
    timeout: Duration,
) -> io::Result<()> {
    let mut used = 0;
    while used < input.len() && !state.finished() {
        let (in_before, out_before) = (inflate.total_in(), inflate.total_out());
        let status = inflate
            .decompress(&input[used..], out, FlushDecompress::None)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let consumed = (inflate.total_in() - in_before) as usize;
        let produced = (inflate.total_out() - out_before) as usize;
        used += consumed;
        if let Some(d) = state.decoded.as_mut() {
            d.extend_from_slice(&out[..produced]);
            if d.len() as u64 > KEEP_DECODED_MAX {
                state.decoded = None;
            }
        }
        state.push(&out[..produced]).map_err(invalid)?;
        state.flush_if_full(stream, timeout).await?;
        if status == Status::StreamEnd {
            break;
        }
        if consumed == 0 && produced == 0 {
            return Err(invalid(Error::InvalidResponse(
                "record does not inflate".into(),
            )));
        }
    }
    Ok(())
}

fn invalid(e: Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

/// Decodes an inflated record: the ARC header line or WARC header block (which gives the
/// payload length), then the payload, which is the origin's response.
struct Decoder {
    client: ClientSide,
    /// The record's head while it is incomplete (empty until a chunk ends inside it); `None`
    /// once the payload has begun.
    record_head: Option<Vec<u8>>,
    /// Payload bytes still to come.
    payload_left: u64,
    response: Option<ResponseStreamer>,
    /// Client bytes not yet written.
    pending: Vec<u8>,
    /// The whole inflated record, when it is to be kept decoded.
    decoded: Option<Vec<u8>>,
}

impl Decoder {
    fn new(client: ClientSide) -> Self {
        Decoder {
            client,
            record_head: Some(Vec::new()),
            payload_left: 0,
            response: None,
            // Grows to what the reply needs (flushed at OUT_CHUNK): a 1 KiB hit should not
            // reserve 64 KiB.
            pending: Vec::new(),
            decoded: None,
        }
    }

    fn finished(&self) -> bool {
        self.response
            .as_ref()
            .is_some_and(ResponseStreamer::is_done)
    }

    /// The head is out and the rest of the payload is the client's body unchanged.
    fn body_passes_through(&self) -> bool {
        self.response
            .as_ref()
            .is_some_and(ResponseStreamer::passes_body_through)
    }

    /// The caller sent the remaining payload itself.
    fn skip_rest(&mut self) {
        self.payload_left = 0;
        if let Some(r) = self.response.as_mut() {
            r.skip_rest();
        }
    }

    fn push(&mut self, data: &[u8]) -> Result<(), Error> {
        let mut carried = None;
        let mut data = data;
        if let Some(head) = self.record_head.as_mut() {
            // The head is usually whole in the first chunk: looked for there, copied only
            // when a chunk ends inside it.
            let buffered = !head.is_empty();
            if buffered {
                head.extend_from_slice(data);
            }
            let seen: &[u8] = if buffered { head } else { data };
            let (start, len) = match payload_at(seen) {
                PayloadAt::Incomplete => {
                    if !buffered {
                        head.extend_from_slice(data);
                    }
                    return Ok(());
                }
                PayloadAt::Invalid => {
                    return Err(Error::InvalidResponse("unreadable record head".into()))
                }
                PayloadAt::Found { start, len } => (start, len),
            };
            if buffered {
                carried = Some(head.split_off(start));
            } else {
                data = &data[start..];
            }
            self.record_head = None;
            self.payload_left = len;
            self.response = Some(ResponseStreamer::new(self.client.clone(), Some(len)));
        }
        let data = carried.as_deref().unwrap_or(data);
        let take = (self.payload_left as usize).min(data.len());
        self.payload_left -= take as u64;
        if let Some(r) = self.response.as_mut() {
            r.push(&data[..take], &mut self.pending)?;
            if self.payload_left == 0 {
                r.finish(&mut self.pending)?;
            }
        }
        Ok(())
    }

    async fn flush_if_full(
        &mut self,
        stream: &mut ClientConn,
        timeout: Duration,
    ) -> io::Result<()> {
        if self.pending.len() >= OUT_CHUNK {
            self.flush(stream, timeout).await?;
        }
        Ok(())
    }

    async fn flush(&mut self, stream: &mut ClientConn, timeout: Duration) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let mut buf = write_all(stream, std::mem::take(&mut self.pending), timeout).await?;
        buf.clear();
        self.pending = buf;
        Ok(())
    }

    /// Writes what is left; the record must have yielded a whole reply.
    async fn finish(mut self, stream: &mut ClientConn, timeout: Duration) -> io::Result<bool> {
        if !self.finished() {
            return Err(invalid(Error::Storage("stored record ended early".into())));
        }
        self.flush(stream, timeout).await?;
        Ok(!self
            .response
            .as_ref()
            .is_some_and(ResponseStreamer::must_close))
    }
}
