//! One liveweb per data directory and per address: an flock on `DATA/.lock` held for the
//! life of the process, and a check that nobody listens on the address already.
//!
//! Both matter because of SO_REUSEPORT: a second instance would bind the same port without
//! complaint and share its traffic, and on the same data directory its start-up recovery
//! would cut the first instance's open files as if they were torn.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::Path;

/// Held while the server runs; the kernel releases it when the process ends, however it ends.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

/// Takes the data directory's lock, or says which process holds it.
pub fn lock_data_dir(dir: &Path) -> io::Result<DataDirLock> {
    std::fs::create_dir_all(dir).map_err(|e| {
        let what = if dir.is_file() {
            "is a file, not a directory".to_string()
        } else {
            e.to_string()
        };
        io::Error::new(e.kind(), format!("data dir {}: {what}", dir.display()))
    })?;
    let path = dir.join(".lock");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    // SAFETY: flock on a descriptor we own; LOCK_NB so it never blocks.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(err);
        }
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!(
                "data dir {} is in use by another liveweb (pid {})",
                dir.display(),
                holder.trim()
            ),
        ));
    }
    file.set_len(0)?;
    file.rewind()?;
    writeln!(file, "{}", std::process::id())?;
    Ok(DataDirLock { _file: file })
}

/// Fails, naming `dir`, when something other than a directory has its name (liveweb would
/// otherwise fail to make it with a bare "File exists").
pub fn check_not_a_file(dir: &Path) -> io::Result<()> {
    match std::fs::metadata(dir) {
        Ok(m) if !m.is_dir() => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "{} is not a directory: liveweb keeps archive files there; move it away",
                dir.display()
            ),
        )),
        _ => Ok(()),
    }
}

/// Fails, naming `dir`, unless a file can be created in it.
pub fn check_writable(dir: &Path) -> io::Result<()> {
    let probe = dir.join(format!(".liveweb-write-check-{}", std::process::id()));
    let made = OpenOptions::new().write(true).create_new(true).open(&probe);
    match made {
        Ok(_) => std::fs::remove_file(&probe),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!(
                "{} is not writable: {e} (liveweb writes its archive files there)",
                dir.display()
            ),
        )),
    }
}

/// Fails if something already listens on `addr` (port 0 is always free). A plain bind is
/// refused where a SO_REUSEPORT one would quietly join the other listener.
///
/// Called with the data directory's lock held, so no other liveweb of this directory runs:
/// one that just died (kill -9) may still hold its listeners for a while (the kernel tears
/// its io_uring instances down after the process is gone, tens of milliseconds, longer under
/// load), so the address is tried again for up to `wait` before giving up, and the log says
/// so.
pub fn check_address_free(addr: SocketAddr, wait: std::time::Duration) -> io::Result<()> {
    if addr.port() == 0 {
        return Ok(());
    }
    let deadline = std::time::Instant::now() + wait;
    let mut said = false;
    loop {
        match std::net::TcpListener::bind(addr) {
            Ok(_probe) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                if std::time::Instant::now() >= deadline {
                    return Err(io::Error::new(
                        io::ErrorKind::AddrInUse,
                        format!("{addr} is already in use (another program, or another liveweb on another data dir)"),
                    ));
                }
                if !said {
                    log::info!(
                        "{addr} is still in use; waiting up to {wait:?} for a previous liveweb's sockets to close"
                    );
                    said = true;
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => return Err(io::Error::new(e.kind(), format!("--listen {addr}: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_dir_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock_data_dir(dir.path()).unwrap();
        let err = lock_data_dir(dir.path()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        assert!(
            err.to_string()
                .contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(first);
        lock_data_dir(dir.path()).expect("free again");
    }

    #[test]
    fn a_directory_that_cannot_be_written_is_named() {
        let dir = tempfile::tempdir().unwrap();
        assert!(check_writable(dir.path()).is_ok());
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "the probe is gone"
        );
        let missing = dir.path().join("gone");
        let err = check_writable(&missing).unwrap_err();
        assert!(err.to_string().contains("gone is not writable"), "{err}");
    }

    #[test]
    fn a_file_where_a_directory_goes_is_named() {
        let dir = tempfile::tempdir().unwrap();
        assert!(check_not_a_file(dir.path()).is_ok());
        assert!(check_not_a_file(&dir.path().join("absent")).is_ok());
        let file = dir.path().join("0");
        std::fs::write(&file, b"x").unwrap();
        let err = check_not_a_file(&file).unwrap_err().to_string();
        assert!(
            err.ends_with("/0 is not a directory: liveweb keeps archive files there; move it away"),
            "{err}"
        );
    }

    #[test]
    fn an_unusable_lock_path_names_itself() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(".lock")).unwrap();
        let err = lock_data_dir(dir.path()).unwrap_err();
        assert!(err.to_string().contains(".lock"), "{err}");
    }

    #[test]
    fn an_address_someone_listens_on_is_refused() {
        use std::time::Duration;
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        assert!(check_address_free(addr, Duration::ZERO).is_err());
        // Released while waited for: taken then.
        let (tx, rx) = std::sync::mpsc::channel();
        let releaser = std::thread::spawn(move || {
            rx.recv().unwrap();
            drop(taken);
        });
        tx.send(()).unwrap();
        assert!(check_address_free(addr, Duration::from_secs(10)).is_ok());
        releaser.join().unwrap();
        assert!(check_address_free("127.0.0.1:0".parse().unwrap(), Duration::ZERO).is_ok());
    }
}
