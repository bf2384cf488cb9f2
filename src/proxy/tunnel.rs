//! CONNECT tunnels (forward mode): check the port and the upstream address, connect, answer
//! `200 Connection Established`, then relay bytes both ways with splice(2) through a pipe (no
//! copy through user space), honouring half-close, until both sides are done or the tunnel
//! has been idle for `--tunnel-idle-timeout`. Tunnels are not archived.

use std::cell::Cell;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use monoio::io::splice::{SpliceDestination, SpliceSource};
use monoio::io::{AsyncWriteRent, Splitable};
use monoio::net::TcpStream;

use super::WorkerCtx;
use crate::error::Error;
use crate::http::request::RequestHead;
use crate::http::url::{parse_authority, unbracketed};

/// Bytes moved per splice.
const SPLICE_CHUNK: u32 = 64 * 1024;

/// Checks and opens the upstream side of a CONNECT.
pub async fn open(ctx: &WorkerCtx, req: &RequestHead) -> Result<TcpStream, Error> {
    let (host, port) = parse_authority(&req.target)?;
    if !ctx.shared.config.fetch.connect_ports.contains(&port) {
        return Err(Error::ConnectPortNotAllowed(port));
    }
    let shared = &ctx.shared;
    let limits = &shared.fetch_limits;
    let deadline = Instant::now() + limits.connect_timeout;
    let (stream, _ip) =
        crate::fetch::connect_upstream(ctx.upstream(), unbracketed(&host), port, deadline)
            .await
            .map_err(|fe| fe.error)?;
    Ok(stream)
}

/// Relays between the client and the origin after `200 Connection Established` was sent.
/// `early` holds bytes the client sent right behind its CONNECT head.
pub async fn relay(client: TcpStream, mut upstream: TcpStream, early: Vec<u8>, idle: Duration) {
    if !early.is_empty()
        && super::send::write_all(&mut upstream, early, idle)
            .await
            .is_err()
    {
        return;
    }
    let fds = [client.as_raw_fd(), upstream.as_raw_fd()];
    let activity = Rc::new(Cell::new(Instant::now()));
    let (client_read, client_write) = client.into_split();
    let (upstream_read, upstream_write) = upstream.into_split();
    let up = pump(client_read, upstream_write, activity.clone(), fds);
    let down = pump(upstream_read, client_write, activity.clone(), fds);
    let mut both = std::pin::pin!(futures_util::future::join(up, down));
    // The watchdog shuts the sockets down while the pumps still own them, then the pumps end
    // on their own: shutting down after they were dropped could hit a descriptor number
    // another connection has been given since.
    let watchdog = async {
        loop {
            monoio::time::sleep(idle.min(Duration::from_secs(1))).await;
            if activity.get().elapsed() >= idle {
                shutdown_both(fds);
                return;
            }
        }
    };
    monoio::select! {
        _ = &mut both => {}
        _ = watchdog => {
            // Shut down sockets end every pending splice; bounded anyway, and dropping the
            // pumps after the shutdown touches no descriptor.
            let _ = monoio::time::timeout(Duration::from_secs(5), both).await;
        }
    }
}

/// Moves one direction until end of stream, then half-closes the other side. On an error
/// the whole tunnel is torn down, which also ends the other direction.
async fn pump<R: SpliceSource, W: SpliceDestination + AsyncWriteRent>(
    mut from: R,
    mut to: W,
    activity: Rc<Cell<Instant>>,
    fds: [RawFd; 2],
) {
    let result: io::Result<()> = async {
        let (mut pipe_read, mut pipe_write) = monoio::net::unix::new_pipe()?;
        loop {
            let n = from.splice_to_pipe(&mut pipe_write, SPLICE_CHUNK).await?;
            if n == 0 {
                let _ = to.shutdown().await;
                return Ok(());
            }
            activity.set(Instant::now());
            let mut left = n;
            while left > 0 {
                let written = to.splice_from_pipe(&mut pipe_read, left).await?;
                if written == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "peer stopped reading",
                    ));
                }
                left -= written;
            }
        }
    }
    .await;
    if result.is_err() {
        shutdown_both(fds);
    }
}

fn shutdown_both(fds: [RawFd; 2]) {
    for fd in fds {
        // SAFETY: both descriptors belong to this tunnel's sockets, still open: every caller
        // holds (or runs inside a future that holds) both sockets' halves; shutdown only ends
        // their streams.
        unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
    }
}
