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

/// A client connection, and the bytes written to it so far.
pub struct ClientConn {
    io: Io,
    written: u64,
    read: u64,
    /// The status of the last response head written (1xx skipped), for the access log.
    status: u16,
}

enum Io {
    Plain(TcpStream),
    /// Boxed: the TLS state is large and most connections are plain.
    Tls(Box<CancelSafe<TlsClient>>),
}

impl ClientConn {
    pub fn plain(socket: TcpStream) -> ClientConn {
        ClientConn {
            io: Io::Plain(socket),
            written: 0,
            read: 0,
            status: 0,
        }
    }

    pub fn tls(stream: TlsClient) -> ClientConn {
        ClientConn {
            io: Io::Tls(Box::new(CancelSafe::new(stream))),
            written: 0,
            read: 0,
            status: 0,
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self.io, Io::Tls(_))
    }

    /// The socket, when bytes may be sent to it straight from a file (not through TLS).
    pub fn plain_socket(&self) -> Option<&TcpStream> {
        match &self.io {
            Io::Plain(s) => Some(s),
            Io::Tls(_) => None,
        }
    }

    /// The plain socket itself (a CONNECT becoming a blind tunnel).
    pub fn into_plain(self) -> Option<TcpStream> {
        match self.io {
            Io::Plain(s) => Some(s),
            Io::Tls(_) => None,
        }
    }

    /// `n` bytes were sent to the socket around this type (sendfile).
    pub fn count_written(&mut self, n: u64) {
        self.written += n;
    }

    /// Bytes written since the last call.
    pub fn take_written(&mut self) -> u64 {
        std::mem::take(&mut self.written)
    }

    /// Bytes read since the last call.
    pub fn take_read(&mut self) -> u64 {
        std::mem::take(&mut self.read)
    }

    /// The status of the last final response head written since the last call (0: none).
    pub fn take_status(&mut self) -> u16 {
        std::mem::take(&mut self.status)
    }

    /// Notes the status when `bytes` begin a response head (`HTTP/1.x NNN`).
    fn note_status(&mut self, bytes: &[u8]) {
        if let Some(code) = bytes
            .strip_prefix(b"HTTP/1.")
            .and_then(|rest| rest.get(2..5))
            .and_then(|d| std::str::from_utf8(d).ok()?.parse::<u16>().ok())
        {
            // The first final head since the last call: a body that happens to begin like
            // a head (message/http) does not replace it.
            if code >= 200 && self.status == 0 {
                self.status = code;
            }
        }
    }
}

impl AsyncReadRent for ClientConn {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        let result = match &mut self.io {
            Io::Plain(s) => s.read(buf).await,
            Io::Tls(s) => s.read(buf).await,
        };
        if let Ok(n) = result.0 {
            self.read += n as u64;
        }
        result
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        match &mut self.io {
            Io::Plain(s) => s.readv(buf).await,
            Io::Tls(s) => s.readv(buf).await,
        }
    }
}

impl AsyncWriteRent for ClientConn {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        // SAFETY: `read_ptr` and `bytes_init` describe the initialized bytes of a buffer we
        // own for this call; the slice is dropped before the buffer is handed on.
        let start = unsafe { std::slice::from_raw_parts(buf.read_ptr(), buf.bytes_init().min(16)) };
        self.note_status(start);
        let result = match &mut self.io {
            Io::Plain(s) => s.write(buf).await,
            Io::Tls(s) => s.write(buf).await,
        };
        if let Ok(n) = result.0 {
            self.written += n as u64;
        }
        result
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        let result = match &mut self.io {
            Io::Plain(s) => s.writev(buf).await,
            Io::Tls(s) => s.writev(buf).await,
        };
        if let Ok(n) = result.0 {
            self.written += n as u64;
        }
        result
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.io {
            Io::Plain(s) => s.flush().await,
            Io::Tls(s) => s.flush().await,
        }
    }

    async fn shutdown(&mut self) -> std::io::Result<()> {
        match &mut self.io {
            Io::Plain(s) => s.shutdown().await,
            Io::Tls(s) => s.shutdown().await,
        }
    }
}
