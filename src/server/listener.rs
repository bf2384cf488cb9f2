//! Binds one SO_REUSEPORT listener per worker on the same address. The first bind resolves
//! port 0 to a real port so every worker shares it.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;

use socket2::{Domain, Protocol, Socket, Type};

pub(super) const BACKLOG: i32 = 4096;

/// Binds one listener; accepted connections inherit its options, TCP_NOTSENT_LOWAT included.
fn bind_one(addr: SocketAddr, notsent_lowat: u64) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nodelay(true)?;
    if notsent_lowat > 0 {
        set_notsent_lowat(&socket, notsent_lowat)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// Caps the reply data a connection keeps queued unsent in the kernel. Without a cap a
/// large reply fills the whole (autotuned, up to tcp_wmem max) send buffer, and the kernel
/// then transmits it from the softirq that handles the client's ACKs, on whatever CPU the
/// client runs; with it the worker sends as the socket drains, on its own CPU, while the
/// send buffer still autotunes for long-RTT clients (unlike a fixed SO_SNDBUF).
fn set_notsent_lowat(socket: &Socket, bytes: u64) -> io::Result<()> {
    let value = libc::c_int::try_from(bytes)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "notsent lowat too large"))?;
    // SAFETY: a valid socket descriptor and a c_int option value of the stated size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NOTSENT_LOWAT,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `count` listeners on `addr`; all on the same concrete port.
pub fn bind_all(
    addr: SocketAddr,
    count: usize,
    notsent_lowat: u64,
) -> io::Result<(Vec<TcpListener>, SocketAddr)> {
    let first = bind_one(addr, notsent_lowat)?;
    let local = first.local_addr()?;
    let mut all = vec![first];
    for _ in 1..count {
        all.push(bind_one(local, notsent_lowat)?);
    }
    Ok((all, local))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notsent_lowat_of(fd: std::os::fd::RawFd) -> libc::c_int {
        let mut value: libc::c_int = -1;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: valid descriptor, out-pointers sized for a c_int.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_NOTSENT_LOWAT,
                (&mut value as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        assert_eq!(rc, 0, "getsockopt: {}", io::Error::last_os_error());
        value
    }

    #[test]
    fn accepted_connections_inherit_the_notsent_lowat() {
        let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let (listeners, local) = bind_all(loopback, 2, 96 * 1024).unwrap();
        assert_eq!(listeners.len(), 2);
        let _client = std::net::TcpStream::connect(local).unwrap();
        // Either listener may get the connection (SO_REUSEPORT); poll both.
        for l in &listeners {
            l.set_nonblocking(true).unwrap();
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let accepted = loop {
            if let Some(s) = listeners.iter().find_map(|l| l.accept().ok()) {
                break s.0;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no connection accepted"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        assert_eq!(notsent_lowat_of(accepted.as_raw_fd()), 96 * 1024);
    }

    #[test]
    fn zero_keeps_the_system_setting() {
        let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let (listeners, _) = bind_all(loopback, 1, 0).unwrap();
        // 0 in the socket means "use net.ipv4.tcp_notsent_lowat".
        assert_eq!(notsent_lowat_of(listeners[0].as_raw_fd()), 0);
    }
}
