//! A TLS stream that refuses all further I/O once an operation on it was cancelled (its
//! future dropped, by a timeout or a select). monoio-rustls moves its buffers into the
//! pending read or write; a dropped future never gives them back, and the next call on the
//! stream would panic. After a cancelled operation the connection is only closed anyway.

use std::io;

use monoio::buf::{IoBuf, IoBufMut, IoVecBuf, IoVecBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent};
use monoio::BufResult;

pub struct CancelSafe<S> {
    inner: S,
    /// An operation started and did not finish: set before each await, cleared after it.
    interrupted: bool,
}

impl<S> CancelSafe<S> {
    pub fn new(inner: S) -> CancelSafe<S> {
        CancelSafe {
            inner,
            interrupted: false,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

fn interrupted() -> io::Error {
    io::Error::new(
        io::ErrorKind::BrokenPipe,
        "an earlier operation on this TLS stream was cancelled",
    )
}

/// Runs one operation on the inner stream, refusing it if an earlier one was cancelled.
macro_rules! guarded {
    ($self:ident, $buf:ident, $op:expr) => {{
        if $self.interrupted {
            return (Err(interrupted()), $buf);
        }
        $self.interrupted = true;
        let result = $op.await;
        $self.interrupted = false;
        result
    }};
}

impl<S: AsyncReadRent> AsyncReadRent for CancelSafe<S> {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        guarded!(self, buf, self.inner.read(buf))
    }

    async fn readv<T: IoVecBufMut>(&mut self, buf: T) -> BufResult<usize, T> {
        guarded!(self, buf, self.inner.readv(buf))
    }
}

impl<S: AsyncWriteRent> AsyncWriteRent for CancelSafe<S> {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        guarded!(self, buf, self.inner.write(buf))
    }

    async fn writev<T: IoVecBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        guarded!(self, buf, self.inner.writev(buf))
    }

    async fn flush(&mut self) -> io::Result<()> {
        if self.interrupted {
            return Err(interrupted());
        }
        self.interrupted = true;
        let result = self.inner.flush().await;
        self.interrupted = false;
        result
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        if self.interrupted {
            return Err(interrupted());
        }
        self.interrupted = true;
        let result = self.inner.shutdown().await;
        self.interrupted = false;
        result
    }
}
