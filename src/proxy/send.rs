//! Writes a `Response` to the client: memory bodies with a plain write, file bodies with
//! sendfile(2) straight from the page cache when the record's pages are resident, otherwise
//! read once with io_uring (never a blocking read on the worker) and kept in the hot shard.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use super::client_conn::ClientConn;
use monoio::io::AsyncWriteRentExt;
use monoio::net::TcpStream;

use super::{Body, Response, WorkerCtx};
use crate::archive::reader::is_resident;
use crate::archive::ArcFile;
use crate::fetch::{TapItem, TapReader};
use crate::http::client_body::ResponseStreamer;
use crate::http::client_head::ClientSide;
use crate::http::reply::ConnState;

/// Bodies up to this size are copied behind the head and sent in one write.
const COALESCE_LIMIT: usize = 64 * 1024;

/// Sends the whole response; any single write may wait at most `timeout`. Returns whether
/// the connection may carry another request (some forward replies end by closing it).
pub async fn write_response(
    ctx: &WorkerCtx,
    stream: &mut ClientConn,
    resp: Response,
    timeout: Duration,
) -> io::Result<bool> {
    let Response { head, body, .. } = resp;
    match body {
        Body::Forward {
            source,
            client,
            gzip,
            loc,
        } => {
            let keep = Some((&ctx.hot, loc));
            super::stored_reply::send_stored(stream, source, client, gzip, keep, timeout).await
        }
        Body::Live { reader, client } => send_live(stream, reader, client, timeout).await,
        body => write_record(ctx, stream, head, body, timeout)
            .await
            .map(|()| true),
    }
}

/// Streams a forward-mode miss from its tap. A failure before anything was sent becomes an
/// error reply; after that, the connection is closed so the reply never looks complete.
async fn send_live(
    stream: &mut ClientConn,
    reader: TapReader,
    client: ClientSide,
    timeout: Duration,
) -> io::Result<bool> {
    let version = client.version;
    let mut response = ResponseStreamer::new(client, None);
    let mut out = Vec::with_capacity(COALESCE_LIMIT);
    let mut sent = false;
    loop {
        let step = match reader.next().await {
            TapItem::Chunk(bytes) => response.push(&bytes, &mut out),
            TapItem::End(Ok(())) => response.finish(&mut out),
            TapItem::End(Err(e)) => Err(e),
        };
        if let Err(e) = step {
            if sent || !out.is_empty() {
                return Err(io::Error::other(e.to_string()));
            }
            let conn = ConnState {
                keep_alive: false,
                version,
            };
            let reply = super::error_response(&e, conn, false);
            write_all(stream, reply.head, timeout).await?;
            return Ok(false);
        }
        if !out.is_empty() {
            write_all(stream, std::mem::take(&mut out), timeout).await?;
            sent = true;
        }
        if response.is_done() {
            return Ok(!response.must_close());
        }
    }
}

async fn write_record(
    ctx: &WorkerCtx,
    stream: &mut ClientConn,
    head: Vec<u8>,
    body: Body,
    timeout: Duration,
) -> io::Result<()> {
    match body {
        Body::Forward { .. } | Body::Live { .. } => Ok(()),
        Body::None => write_all(stream, head, timeout).await.map(drop),
        Body::Memory(bytes) => write_memory(stream, head, bytes, timeout).await,
        Body::FileRanges { file, ranges } => {
            write_all(stream, head, timeout).await?;
            let whole = match (ranges.first(), ranges.last()) {
                (Some(first), Some(last)) => Some((first.0, last.0 + last.1 - first.0)),
                _ => None,
            };
            let plain_socket = stream
                .plain_socket()
                .filter(|_| whole.is_some_and(|(at, len)| is_resident(&file.fd, at, len)));
            if let Some(socket) = plain_socket {
                sendfile_ranges(socket, file.fd.as_raw_fd(), &ranges, timeout).await?;
                stream.count_written(ranges.iter().map(|r| r.1).sum());
                return Ok(());
            }
            for (offset, len) in ranges {
                send_in_pieces(stream, &file, offset, len, timeout).await?;
            }
            Ok(())
        }
        Body::File { file, record } => {
            let (offset, len) = (record.loc.offset, record.loc.len);
            // A small record the shard keeps (one dropped from it, or from before a restart)
            // is read back into it even when its pages are resident: sendfile costs more than
            // a write from memory below `SENDFILE_FROM`, and a record left out of the shard
            // would take that path on every hit after. One the shard would not keep (a tiny
            // or disabled shard) goes by sendfile.
            let resident = !ctx.hot.borrow().would_keep(len)
                && stream.plain_socket().is_some()
                && is_resident(&file.fd, offset, len);
            if resident {
                write_all(stream, head, timeout).await?;
                if let Some(socket) = stream.plain_socket() {
                    sendfile_all(socket, file.fd.as_raw_fd(), offset, len, timeout).await?;
                }
                stream.count_written(len);
                return Ok(());
            }
            if len > COLD_WHOLE_LIMIT {
                // Too big to hold whole per connection: read and sent piece by piece (the
                // buffered reads leave it resident for sendfile next time).
                write_all(stream, head, timeout).await?;
                send_in_pieces(stream, &file, offset, len, timeout).await
            } else {
                let member = bytes::Bytes::from(file.reader()?.read_region(offset, len).await?);
                ctx.hot.borrow_mut().insert(&record.loc, member.clone());
                write_memory(stream, head, member, timeout).await
            }
        }
    }
}

/// Head and an in-memory body: one write when the body is small, two otherwise.
async fn write_memory(
    stream: &mut ClientConn,
    mut head: Vec<u8>,
    body: bytes::Bytes,
    timeout: Duration,
) -> io::Result<()> {
    if body.len() <= COALESCE_LIMIT {
        head.extend_from_slice(&body);
        return write_all(stream, head, timeout).await.map(drop);
    }
    write_all(stream, head, timeout).await?;
    write_all(stream, body, timeout).await.map(drop)
}

/// Writes all of `buf` to a client or origin, waiting at most `timeout`; hands the buffer
/// back (rent-style) so callers can reuse its allocation.
pub(crate) async fn write_all<B: monoio::buf::IoBuf + 'static>(
    stream: &mut impl AsyncWriteRentExt,
    buf: B,
    timeout: Duration,
) -> io::Result<B> {
    match monoio::time::timeout(timeout, stream.write_all(buf)).await {
        Ok((res, buf)) => res.map(|_| buf),
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "write timed out")),
    }
}

/// Cold records up to this size are read whole and kept in the hot shard; bigger ones are
/// streamed in `COLD_PIECE` reads, so a connection holds at most one piece.
const COLD_WHOLE_LIMIT: u64 = 1 << 20;
const COLD_PIECE: u64 = 256 * 1024;

/// Sends a file region read through io_uring one piece at a time, reusing one buffer.
async fn send_in_pieces(
    stream: &mut ClientConn,
    file: &ArcFile,
    offset: u64,
    len: u64,
    timeout: Duration,
) -> io::Result<()> {
    let reader = file.reader()?;
    let mut buf = Vec::with_capacity(COLD_PIECE as usize);
    let mut pos = 0;
    while pos < len {
        let want = (len - pos).min(COLD_PIECE) as usize;
        buf = reader.read(buf, offset + pos, want).await?;
        buf = write_all(stream, buf, timeout).await?;
        pos += want as u64;
    }
    Ok(())
}

/// Restores a descriptor's file status flags when dropped.
struct FlagsGuard {
    fd: RawFd,
    flags: libc::c_int,
}

impl Drop for FlagsGuard {
    fn drop(&mut self) {
        // SAFETY: restoring flags we read from the same open descriptor.
        unsafe { libc::fcntl(self.fd, libc::F_SETFL, self.flags) };
    }
}

/// Sends `len` bytes of `file_fd` from `offset` with sendfile(2). The socket is made
/// non-blocking for the duration (sockets accepted through io_uring are blocking) and EAGAIN
/// waits for writability on the runtime instead of blocking the worker.
pub(super) async fn sendfile_all(
    stream: &TcpStream,
    file_fd: RawFd,
    offset: u64,
    len: u64,
    timeout: Duration,
) -> io::Result<()> {
    sendfile_ranges(stream, file_fd, &[(offset, len)], timeout).await
}

/// Sends the file ranges `(offset, len)` in order with sendfile(2), switching the socket to
/// non-blocking once for all of them (see `sendfile_all`).
pub(super) async fn sendfile_ranges(
    stream: &TcpStream,
    file_fd: RawFd,
    ranges: &[(u64, u64)],
    timeout: Duration,
) -> io::Result<()> {
    let sock = stream.as_raw_fd();
    // SAFETY: plain fcntl calls on the connection's own descriptor.
    let flags = unsafe { libc::fcntl(sock, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    let _restore = FlagsGuard { fd: sock, flags };
    // SAFETY: as above.
    if unsafe { libc::fcntl(sock, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    for &(offset, len) in ranges {
        sendfile_nonblocking(stream, sock, file_fd, offset, len, timeout).await?;
    }
    Ok(())
}

async fn sendfile_nonblocking(
    stream: &TcpStream,
    sock: RawFd,
    file_fd: RawFd,
    offset: u64,
    len: u64,
    timeout: Duration,
) -> io::Result<()> {
    let mut off = libc::off_t::try_from(offset).map_err(io::Error::other)?;
    let mut remaining = len;
    while remaining > 0 {
        let want = remaining.min(1 << 30) as usize;
        // SAFETY: valid descriptors; `off` is ours and updated by the kernel.
        let n = unsafe { libc::sendfile(sock, file_fd, &mut off, want) };
        if n > 0 {
            remaining -= n as u64;
            continue;
        }
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "ARC file shorter than its index entry",
            ));
        }
        let err = io::Error::last_os_error();
        match err.kind() {
            io::ErrorKind::WouldBlock => {
                match monoio::time::timeout(timeout, stream.writable(false)).await {
                    Ok(r) => r?,
                    Err(_) => {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "client write timed out",
                        ))
                    }
                }
            }
            io::ErrorKind::Interrupted => {}
            _ => return Err(err),
        }
    }
    Ok(())
}
