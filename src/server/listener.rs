//! Binds one SO_REUSEPORT listener per worker on the same address. The first bind resolves
//! port 0 to a real port so every worker shares it.

use std::io;
use std::net::{SocketAddr, TcpListener};

use socket2::{Domain, Protocol, Socket, Type};

const BACKLOG: i32 = 4096;

fn bind_one(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nodelay(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// `count` listeners on `addr`; all on the same concrete port.
pub fn bind_all(addr: SocketAddr, count: usize) -> io::Result<(Vec<TcpListener>, SocketAddr)> {
    let first = bind_one(addr)?;
    let local = first.local_addr()?;
    let mut all = vec![first];
    for _ in 1..count {
        all.push(bind_one(local)?);
    }
    Ok((all, local))
}
