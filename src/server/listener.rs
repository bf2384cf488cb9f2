//! Listening sockets: one SO_REUSEPORT listener per worker on the same address (the first
//! bind resolves port 0 to a real port so every worker shares it), and taking the
//! connections already queued on one.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;

use monoio::net::TcpStream;

use socket2::{Domain, Protocol, Socket, Type};

const BACKLOG: i32 = 4096;

/// Binds one listener; accepted connections inherit its options (TCP_NODELAY,
/// TCP_NOTSENT_LOWAT), so they are not set again per connection.
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

/// Connections taken from the listener's queue per accept, beyond the first: its whole
/// backlog, so the queue is empty after every pass.
const ACCEPT_BATCH: usize = BACKLOG as usize;

/// Takes connections already waiting in the (non-blocking) listener's queue without another
/// trip through the runtime. With one accept per scheduler pass, a storm of 10k connects
/// took seconds to be accepted while the first thousands were already being served, and
/// the waiting clients' first requests made the p99 (2.9 s at 10k connections, against
/// 1.0 s with 64 per pass and nginx's 0.2 s). `nonblocking` matches what the
/// runtime's own accept gives (blocking under io_uring, non-blocking under epoll).
pub(super) fn accept_pending(listener: &impl AsRawFd, nonblocking: bool) -> Vec<TcpStream> {
    let mut streams = Vec::new();
    // Close-on-exec and (under epoll) non-blocking from the start, in the accept itself.
    let flags = libc::SOCK_CLOEXEC | if nonblocking { libc::SOCK_NONBLOCK } else { 0 };
    let fd = borrowed(listener);
    let socket = socket2::SockRef::from(&fd);
    while streams.len() < ACCEPT_BATCH {
        let Ok((accepted, _)) = socket.accept4(flags) else {
            break; // EAGAIN (queue empty) or an error the next runtime accept will report
        };
        match TcpStream::from_std(accepted.into()) {
            Ok(stream) => streams.push(stream),
            Err(e) => log::warn!("could not register an accepted connection: {e}"),
        }
    }
    streams
}

/// Whether a socket has O_NONBLOCK set.
pub(super) fn is_nonblocking(stream: &TcpStream) -> bool {
    let fd = borrowed(stream);
    socket2::SockRef::from(&fd).nonblocking().unwrap_or(false)
}

/// A monoio socket's descriptor, borrowed for as long as the socket is (monoio's types
/// offer only `AsRawFd`).
fn borrowed(socket: &impl AsRawFd) -> std::os::fd::BorrowedFd<'_> {
    // SAFETY: the descriptor belongs to `socket`, which outlives the borrow.
    unsafe { std::os::fd::BorrowedFd::borrow_raw(socket.as_raw_fd()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp_option(fd: std::os::fd::RawFd, option: libc::c_int) -> libc::c_int {
        let mut value: libc::c_int = -1;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: valid descriptor, out-pointers sized for a c_int.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::IPPROTO_TCP,
                option,
                (&mut value as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        assert_eq!(rc, 0, "getsockopt: {}", io::Error::last_os_error());
        value
    }

    fn notsent_lowat_of(fd: std::os::fd::RawFd) -> libc::c_int {
        tcp_option(fd, libc::TCP_NOTSENT_LOWAT)
    }

    #[test]
    fn accepted_connections_inherit_nodelay_and_the_notsent_lowat() {
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
        // The connection loop relies on this too instead of setting it per connection.
        assert_ne!(tcp_option(accepted.as_raw_fd(), libc::TCP_NODELAY), 0);
    }

    #[test]
    fn zero_keeps_the_system_setting() {
        let loopback: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let (listeners, _) = bind_all(loopback, 1, 0).unwrap();
        // 0 in the socket means "use net.ipv4.tcp_notsent_lowat".
        assert_eq!(notsent_lowat_of(listeners[0].as_raw_fd()), 0);
    }

    #[test]
    fn pending_connections_are_taken_in_one_pass_without_blocking() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let clients: Vec<_> = (0..5)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .build()
            .unwrap();
        rt.block_on(async {
            // Connections complete in the kernel before they are accepted; wait for all five.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            let mut taken = Vec::new();
            while taken.len() < 5 && std::time::Instant::now() < deadline {
                taken.extend(accept_pending(&listener, false));
            }
            assert_eq!(taken.len(), 5);
            for stream in &taken {
                assert!(!is_nonblocking(stream));
            }
            // Empty queue: returns at once with nothing.
            assert!(accept_pending(&listener, true).is_empty());
            let _extra = std::net::TcpStream::connect(addr).unwrap();
            let mut more = Vec::new();
            while more.is_empty() && std::time::Instant::now() < deadline {
                more = accept_pending(&listener, true);
            }
            assert_eq!(more.len(), 1);
            assert!(is_nonblocking(&more[0]));
        });
        drop(clients);
    }
}
