//! The ways a hit's bytes can reach a client socket, on loopback TCP with a reader thread
//! draining the other end: write from memory (hot shard), sendfile(2) from a page-cache
//! resident file, splice(2) file -> pipe -> socket, and pread + write (the copy we avoid);
//! and the residency check that picks sendfile: cachestat(2) against mmap + mincore(2).
//! Run: `cargo bench --bench hit_paths`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use liveweb::archive::reader;

fn drained_socket() -> TcpStream {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 1 << 20];
        while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
    });
    let s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

fn sendfile_all(sock: &TcpStream, file: &std::fs::File, offset: u64, len: usize) {
    let mut off = offset as libc::off_t;
    let mut left = len;
    while left > 0 {
        // SAFETY: valid descriptors, blocking socket.
        let n = unsafe { libc::sendfile(sock.as_raw_fd(), file.as_raw_fd(), &mut off, left) };
        assert!(n > 0, "sendfile failed");
        left -= n as usize;
    }
}

fn splice_all(sock: &TcpStream, file: &std::fs::File, pipe: (i32, i32), offset: u64, len: usize) {
    let mut off = offset as libc::loff_t;
    let mut left = len;
    while left > 0 {
        // SAFETY: valid descriptors; the pipe is ours.
        let n = unsafe {
            libc::splice(
                file.as_raw_fd(),
                &mut off,
                pipe.1,
                std::ptr::null_mut(),
                left.min(1 << 20),
                0,
            )
        };
        assert!(n > 0, "splice in failed");
        let mut inpipe = n as usize;
        while inpipe > 0 {
            // SAFETY: as above.
            let m = unsafe {
                libc::splice(
                    pipe.0,
                    std::ptr::null_mut(),
                    sock.as_raw_fd(),
                    std::ptr::null_mut(),
                    inpipe,
                    0,
                )
            };
            assert!(m > 0, "splice out failed");
            inpipe -= m as usize;
        }
        left -= n as usize;
    }
}

fn hit_paths(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut group = c.benchmark_group("hit_send");
    for size in [1024usize, 64 * 1024, 4 * 1024 * 1024] {
        let record: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
        let path = dir.path().join(format!("r{size}"));
        // An unaligned offset, as records have inside ARC files.
        let offset = 777u64;
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(&vec![0u8; offset as usize]).unwrap();
        f.write_all(&record).unwrap();
        drop(f);
        let file = std::fs::File::open(&path).unwrap();
        let mut warm = vec![0u8; size];
        file.read_exact_at(&mut warm, offset).unwrap();
        group.throughput(Throughput::Bytes(size as u64));

        let mut sock = drained_socket();
        group.bench_function(BenchmarkId::new("memory_write", size), |b| {
            b.iter(|| sock.write_all(&record).unwrap())
        });
        let sock = drained_socket();
        group.bench_function(BenchmarkId::new("sendfile", size), |b| {
            b.iter(|| sendfile_all(&sock, &file, offset, size))
        });
        let sock = drained_socket();
        let mut fds = [0i32; 2];
        // SAFETY: fds is a two-element array.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: our own pipe.
        unsafe { libc::fcntl(fds[1], libc::F_SETPIPE_SZ, 1 << 20) };
        group.bench_function(BenchmarkId::new("splice", size), |b| {
            b.iter(|| splice_all(&sock, &file, (fds[0], fds[1]), offset, size))
        });
        let mut sock = drained_socket();
        let mut buf = vec![0u8; size];
        group.bench_function(BenchmarkId::new("pread_write", size), |b| {
            b.iter(|| {
                file.read_exact_at(&mut buf, offset).unwrap();
                sock.write_all(&buf).unwrap()
            })
        });
    }
    group.finish();

    // What deciding "sendfile or read it first" costs per hit: cachestat(2) against the
    // mmap + mincore + munmap it replaced.
    let mut group = c.benchmark_group("residency_check");
    for size in [64 * 1024u64, 4 * 1024 * 1024] {
        let path = dir.path().join(format!("r{size}"));
        let file = std::fs::File::open(&path).unwrap();
        let offset = 777;
        assert!(reader::is_resident(&file, offset, size));
        group.bench_function(BenchmarkId::new("cachestat", size), |b| {
            b.iter(|| reader::is_resident(&file, offset, size))
        });
        group.bench_function(BenchmarkId::new("mmap_mincore", size), |b| {
            b.iter(|| reader::mincore_resident(file.as_raw_fd(), offset, size))
        });
    }
    group.finish();
}

criterion_group!(benches, hit_paths);
criterion_main!(benches);
