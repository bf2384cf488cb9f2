//! A client connection, plain TCP or TLS (inside an intercepted CONNECT tunnel): one type for
//! the connection loop and the reply writers; only sendfile asks which it is.

use std::io::Cursor;

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, PrefixedReadIo};
use monoio::net::TcpStream;
use monoio::BufResult;

use crate::fetch::CancelSafe;

/// The socket under an intercepted tunnel's TLS: bytes the client sent right behind its
/// CONNECT head (already read) come first.
pub type TunnelSocket = PrefixedReadIo<TcpStream, Cursor<Vec<u8>>>;
/// The TLS side liveweb terminates for an intercepted tunnel.
pub type TlsClient = monoio_rustls::ServerTlsStream<TunnelSocket>;

pub enum ClientConn {
    Plain(TcpStream),
    /// Boxed: the TLS state is large and most connections are plain.
    Tls(Box<CancelSafe<TlsClient>>),
}

impl ClientConn {
    /// The socket, when bytes may be sent to it straight from a file (not through TLS).
    pub fn plain_socket(&self) -> Option<&TcpStream> {
        match self {
            ClientConn::Plain(s) => Some(s),
            ClientConn::Tls(_) => None,
        }
    }
}

impl AsyncReadRent for ClientConn {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            ClientConn::Plain(s) => s.read(buf).await,
            ClientConn::Tls(s) => s.read(buf).await,
        }
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            ClientConn::Plain(s) => s.readv(buf).await,
            ClientConn::Tls(s) => s.readv(buf).await,
        }
    }
}

impl AsyncWriteRent for ClientConn {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            ClientConn::Plain(s) => s.write(buf).await,
            ClientConn::Tls(s) => s.write(buf).await,
        }
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            ClientConn::Plain(s) => s.writev(buf).await,
            ClientConn::Tls(s) => s.writev(buf).await,
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        match self {
            ClientConn::Plain(s) => s.flush().await,
            ClientConn::Tls(s) => s.flush().await,
        }
    }

    async fn shutdown(&mut self) -> std::io::Result<()> {
        match self {
            ClientConn::Plain(s) => s.shutdown().await,
            ClientConn::Tls(s) => s.shutdown().await,
        }
    }
}
