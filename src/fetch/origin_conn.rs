//! A connection to an origin, plain TCP or TLS: one type for the pool, the exchange and
//! pass-through, so nothing past the connect step cares which it is.

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent};
use monoio::net::TcpStream;
use monoio::BufResult;

use super::cancel_safe::CancelSafe;
use super::tls::TlsStream;

pub enum OriginConn {
    Plain(TcpStream),
    /// Boxed: the TLS state is large and most connections are plain.
    Tls(Box<CancelSafe<TlsStream>>),
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
            OriginConn::Tls(s) => Box::pin(s.read(buf)).await,
        }
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            OriginConn::Plain(s) => s.readv(buf).await,
            OriginConn::Tls(s) => Box::pin(s.readv(buf)).await,
        }
    }
}

impl AsyncWriteRent for OriginConn {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            OriginConn::Plain(s) => s.write(buf).await,
            OriginConn::Tls(s) => Box::pin(s.write(buf)).await,
        }
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            OriginConn::Plain(s) => s.writev(buf).await,
            OriginConn::Tls(s) => Box::pin(s.writev(buf)).await,
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        match self {
            OriginConn::Plain(s) => s.flush().await,
            OriginConn::Tls(s) => s.flush().await,
        }
    }

    async fn shutdown(&mut self) -> std::io::Result<()> {
        match self {
            OriginConn::Plain(s) => s.shutdown().await,
            OriginConn::Tls(s) => s.shutdown().await,
        }
    }
}
