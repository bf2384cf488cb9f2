//! A connection to an origin, plain TCP or TLS: one type for the pool, the exchange and
//! pass-through, so nothing past the connect step cares which it is.

use std::os::fd::{AsRawFd, RawFd};

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent};
use monoio::net::TcpStream;
use monoio::BufResult;

use super::cancel_safe::CancelSafe;
use super::tls::TlsStream;

pub enum OriginConn {
    Plain(TcpStream),
    Tls {
        /// Boxed: the TLS state is large and most connections are plain.
        stream: Box<CancelSafe<TlsStream>>,
        /// The TCP socket under it (monoio-rustls does not lend it out), owned by `stream`.
        fd: RawFd,
    },
}

impl OriginConn {
    /// A TLS connection; `fd` is the TCP socket it runs over.
    pub fn tls(stream: TlsStream, fd: RawFd) -> OriginConn {
        OriginConn::Tls {
            stream: Box::new(CancelSafe::new(stream)),
            fd,
        }
    }

    fn raw_fd(&self) -> RawFd {
        match self {
            OriginConn::Plain(s) => s.as_raw_fd(),
            OriginConn::Tls { fd, .. } => *fd,
        }
    }

    /// Whether nothing is waiting to be read on the socket: no byte and no close since the
    /// last response ended. An idle connection that is not quiet must not carry a request:
    /// what is waiting would be taken for its response. (Over TLS, any record at all, an
    /// alert or a late session ticket too, counts: dropping such a connection costs one
    /// handshake, reusing a desynchronised one costs a client someone else's response.)
    pub fn is_quiet(&self) -> bool {
        socket_is_quiet(self.raw_fd())
    }
}

/// A non-blocking one-byte peek: quiet only if it would block.
fn socket_is_quiet(fd: RawFd) -> bool {
    let mut byte = 0u8;
    // SAFETY: `fd` is a socket owned by a live OriginConn (the caller's `&self`), and the
    // buffer is one valid, writable byte. MSG_PEEK leaves any data in place; MSG_DONTWAIT
    // keeps the call from blocking the worker on a blocking socket.
    let n = unsafe {
        libc::recv(
            fd,
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    n < 0 && {
        let e = std::io::Error::last_os_error().raw_os_error();
        e == Some(libc::EAGAIN) || e == Some(libc::EWOULDBLOCK)
    }
}

// The TLS operations' futures are boxed: they are large, and every future that awaits one
// (the exchange, the fetch, the fetch task) would be sized for them, plain connections
// included, and copied whole when created.
impl AsyncReadRent for OriginConn {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            OriginConn::Plain(s) => s.read(buf).await,
            // A TCP close without close_notify stays an error (UnexpectedEof), not an end
            // of stream: over TLS only close_notify proves a close-delimited body whole, so
            // such a body is never archived or passed on as complete.
            OriginConn::Tls { stream: s, .. } => Box::pin(s.read(buf)).await,
        }
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            OriginConn::Plain(s) => s.readv(buf).await,
            OriginConn::Tls { stream: s, .. } => Box::pin(s.readv(buf)).await,
        }
    }
}

impl AsyncWriteRent for OriginConn {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            OriginConn::Plain(s) => s.write(buf).await,
            OriginConn::Tls { stream: s, .. } => Box::pin(s.write(buf)).await,
        }
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            OriginConn::Plain(s) => s.writev(buf).await,
            OriginConn::Tls { stream: s, .. } => Box::pin(s.writev(buf)).await,
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        match self {
            OriginConn::Plain(s) => s.flush().await,
            OriginConn::Tls { stream: s, .. } => s.flush().await,
        }
    }

    async fn shutdown(&mut self) -> std::io::Result<()> {
        match self {
            OriginConn::Plain(s) => s.shutdown().await,
            OriginConn::Tls { stream: s, .. } => s.shutdown().await,
        }
    }
}
