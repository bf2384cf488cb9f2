//! An ARC or WARC record whose payload is in a file (a response that spilled to disk as it
//! arrived), encoded into another unnamed file in bounded memory: the payload is read in
//! chunks, compressed as a stream (one gzip member, or plain), and digested on the way. Runs
//! on the blocking pool. The record's length (and a WARC record's digests) go in its header,
//! before the payload: they are known because the whole response is in the file before this
//! starts.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use flate2::{Compression, GzBuilder};
use sha1::{Digest, Sha1};

use super::payload_digest::PayloadDigester;

use super::compressibility::worth_deflating;
use super::record::{Codec, PRIVATE_SUBFIELD};

/// Bytes read from the payload file at a time.
const CHUNK: usize = 256 << 10;

/// An encoded record in a file of its own.
#[derive(Debug)]
pub struct FileMember {
    /// Unnamed; gone when the last descriptor closes.
    pub file: File,
    /// The member's length (the whole file).
    pub len: u64,
    /// How many bytes at the end of the file are the records written with it (a WARC
    /// response's request record), as `AppendRecord::trailer_len`.
    pub trailer_len: u64,
    /// The payload digest (of the body from `digest_from` on, chunked framing taken off):
    /// the CDX's.
    pub digest: String,
    /// A WARC response's `WARC-Record-ID`.
    pub record_id: Option<String>,
}

/// An unnamed temporary file in `dir` (`O_TMPFILE`), read-write, close-on-exec. On a file
/// system without `O_TMPFILE`, a file created under a fresh name and unlinked at once: the
/// same, but for the moment between the two.
pub fn unnamed_file(dir: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let shown = |e: io::Error| {
        io::Error::new(
            e.kind(),
            format!("temporary file in {}: {e}", dir.display()),
        )
    };
    let unnamed = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_TMPFILE)
        .open(dir);
    match unnamed {
        Ok(file) => Ok(file),
        Err(e) if lacks_tmpfile(&e) => named_then_unlinked(dir).map_err(shown),
        Err(e) => Err(shown(e)),
    }
}

/// A file made under a fresh name in `dir` and unlinked at once.
fn named_then_unlinked(dir: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = dir.join(format!(".spill-{}-{n}", std::process::id()));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    std::fs::remove_file(&path)?;
    Ok(file)
}

/// Whether an `O_TMPFILE` open failed because the file system (or the kernel: then it reads
/// as `O_DIRECTORY`) has no such thing.
fn lacks_tmpfile(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EOPNOTSUPP) | Some(libc::EISDIR) | Some(libc::EINVAL)
    )
}

/// Encodes `header` + the `len` bytes of `payload` + `\n` as one ARC record (a gzip member,
/// marked private when asked, or plain) into an unnamed file in `dir`; the payload is
/// digested from `digest_from` on as it is read.
#[allow(clippy::too_many_arguments)]
fn encode_file_record(
    header: &[u8],
    payload: &File,
    len: u64,
    digest_from: u64,
    chunked: bool,
    codec: Codec,
    private: bool,
    dir: &Path,
) -> io::Result<FileMember> {
    let mut sha = PayloadDigester::new(chunked);
    let parts = Parts {
        head: header,
        payload,
        len,
        tail: b"\n",
        follow: &[],
    };
    let (file, written) = write_member(&parts, codec, private, dir, |pos, chunk| {
        let skip = digest_from.saturating_sub(pos).min(chunk.len() as u64) as usize;
        sha.update(&chunk[skip..]);
    })?;
    Ok(FileMember {
        record_id: None,
        file,
        len: written,
        trailer_len: 0,
        digest: sha.finish(),
    })
}

/// The base32 SHA-1 of the `len` bytes of `payload` (a WARC block digest) and the payload
/// digest of those from `digest_from` on, in one read.
fn digests(
    payload: &File,
    len: u64,
    digest_from: u64,
    chunked: bool,
) -> io::Result<(String, String)> {
    let (mut block, mut body) = (Sha1::new(), PayloadDigester::new(chunked));
    let mut buf = vec![0u8; CHUNK];
    let mut pos = 0u64;
    while pos < len {
        let want = (len - pos).min(CHUNK as u64) as usize;
        payload.read_exact_at(&mut buf[..want], pos)?;
        block.update(&buf[..want]);
        let skip = digest_from.saturating_sub(pos).min(want as u64) as usize;
        body.update(&buf[skip..want]);
        pos += want as u64;
    }
    Ok((super::cdx::base32(&block.finalize()), body.finish()))
}

/// A record to write from a file: `head`, the `len` bytes of `payload`, `tail`, as one
/// member; then `follow` as it is (the members written with it: a WARC response's request
/// record).
struct Parts<'a> {
    head: &'a [u8],
    payload: &'a File,
    len: u64,
    tail: &'a [u8],
    follow: &'a [u8],
}

/// Encodes `parts` into an unnamed file in `dir`, whose payload digest is `digest` (worked
/// out beforehand: a WARC header block carries it).
fn encode_parts(
    parts: &Parts<'_>,
    codec: Codec,
    private: bool,
    dir: &Path,
    digest: String,
) -> io::Result<FileMember> {
    let (file, len) = write_member(parts, codec, private, dir, |_, _| {})?;
    Ok(FileMember {
        record_id: None,
        file,
        len,
        trailer_len: parts.follow.len() as u64,
        digest,
    })
}

fn write_member(
    parts: &Parts<'_>,
    codec: Codec,
    private: bool,
    dir: &Path,
    mut seen: impl FnMut(u64, &[u8]),
) -> io::Result<(File, u64)> {
    let out = unnamed_file(dir)?;
    let mut sink = Counting {
        inner: BufWriter::with_capacity(256 << 10, &out),
        written: 0,
    };
    let mut buf = vec![0u8; CHUNK];
    let (payload, len) = (parts.payload, parts.len);
    let mut copy = |w: &mut dyn Write| -> io::Result<()> {
        let mut pos = 0u64;
        while pos < len {
            let want = (len - pos).min(CHUNK as u64) as usize;
            payload.read_exact_at(&mut buf[..want], pos)?;
            seen(pos, &buf[..want]);
            w.write_all(&buf[..want])?;
            pos += want as u64;
        }
        Ok(())
    };
    match codec {
        Codec::Gzip(level) => {
            // Judged on a sample from the start, as an in-memory record is.
            let mut sample = vec![0u8; (len.min(64 << 10)) as usize];
            payload.read_exact_at(&mut sample, 0)?;
            let level = if level > 0 && !worth_deflating(&sample) {
                0
            } else {
                level
            };
            let mut builder = GzBuilder::new();
            if private {
                builder = builder.extra(PRIVATE_SUBFIELD.to_vec());
            }
            let mut gz = builder.write(&mut sink, Compression::new(level));
            gz.write_all(parts.head)?;
            copy(&mut gz)?;
            gz.write_all(parts.tail)?;
            gz.finish()?;
        }
        Codec::Plain => {
            sink.write_all(parts.head)?;
            copy(&mut sink)?;
            sink.write_all(parts.tail)?;
        }
    }
    sink.write_all(parts.follow)?;
    sink.flush()?;
    let written = sink.written;
    drop(sink);
    Ok((out, written))
}

/// The record a response in a file becomes, less its payload.
pub enum FileRecord {
    /// An ARC record: its header line.
    Arc { header: String },
    /// A WARC response record and its request record.
    Warc {
        url: String,
        ip: std::net::IpAddr,
        date: crate::clock::UtcTime,
        request: bytes::Bytes,
        /// `WARC-Warcinfo-ID`.
        warcinfo: String,
    },
}

/// A record's payload in a file: its `len` bytes, digested from `digest_from` on (with
/// chunked framing taken off, if `chunked`).
pub struct Payload<'a> {
    pub file: &'a File,
    pub len: u64,
    pub digest_from: u64,
    pub chunked: bool,
}

/// Encodes `record` with its payload into an unnamed file in `dir`, in bounded memory: an
/// ARC record in one read of the payload, a WARC response record in two (its header block
/// carries the digests) with its request record after it.
pub fn encode_record(
    record: &FileRecord,
    payload: &Payload<'_>,
    codec: Codec,
    private: bool,
    dir: &Path,
) -> io::Result<FileMember> {
    let Payload {
        file,
        len,
        digest_from,
        chunked,
    } = *payload;
    match record {
        FileRecord::Arc { header } => encode_file_record(
            header.as_bytes(),
            file,
            len,
            digest_from,
            chunked,
            codec,
            private,
            dir,
        ),
        FileRecord::Warc {
            url,
            ip,
            date,
            request,
            warcinfo,
        } => {
            use super::warc;
            let (block, payload_digest) = digests(file, len, digest_from, chunked)?;
            let target = warc::Target {
                url,
                ip: Some(*ip),
                date,
                warcinfo,
            };
            let block = warc::Block {
                digest: &format!("sha1:{block}"),
                len,
            };
            let resp = warc::response_of(&target, &block, &payload_digest);
            let req = warc::request(&target, request, &resp.id);
            let follow = codec.encode_parts(req.head.as_bytes(), request, warc::RECORD_END);
            let parts = Parts {
                head: resp.head.as_bytes(),
                payload: file,
                len,
                tail: warc::RECORD_END,
                follow: &follow,
            };
            let member = encode_parts(&parts, codec, private, dir, payload_digest)?;
            Ok(FileMember {
                record_id: Some(resp.id),
                ..member
            })
        }
    }
}

/// Counts what goes through to the file.
struct Counting<W> {
    inner: W,
    written: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn without_o_tmpfile_a_named_file_is_unlinked_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let file = named_then_unlinked(dir.path()).unwrap();
        file.write_all_at(b"spilled", 0).unwrap();
        let mut back = [0u8; 7];
        file.read_exact_at(&mut back, 0).unwrap();
        assert_eq!(&back, b"spilled");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "nothing left by name"
        );
        for errno in [libc::EOPNOTSUPP, libc::EISDIR, libc::EINVAL] {
            assert!(lacks_tmpfile(&io::Error::from_raw_os_error(errno)));
        }
        assert!(!lacks_tmpfile(&io::Error::from_raw_os_error(libc::EACCES)));
    }

    #[test]
    fn a_record_from_a_file_is_the_record_encoded_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let mut response = b"HTTP/1.1 200 OK\r\nContent-Length: 3000000\r\n\r\n".to_vec();
        let head_len = response.len() as u64;
        // Compressible and not, past the chunk size.
        response.extend((0..3_000_000u32).map(|i| (i % 251) as u8));
        let payload = unnamed_file(dir.path()).unwrap();
        payload.write_all_at(&response, 0).unwrap();
        let header = format!(
            "http://a/ 127.0.0.1 20260101000000 text/plain {}\n",
            response.len()
        );
        for (codec, private) in [
            (Codec::Gzip(1), false),
            (Codec::Gzip(6), true),
            (Codec::Plain, false),
        ] {
            let m = encode_file_record(
                header.as_bytes(),
                &payload,
                response.len() as u64,
                head_len,
                false,
                codec,
                private,
                dir.path(),
            )
            .unwrap();
            assert_eq!(m.file.metadata().unwrap().len(), m.len);
            let mut bytes = vec![0u8; m.len as usize];
            m.file.read_exact_at(&mut bytes, 0).unwrap();
            let plain = match codec {
                Codec::Gzip(_) => {
                    let mut out = Vec::new();
                    flate2::read::GzDecoder::new(&bytes[..])
                        .read_to_end(&mut out)
                        .unwrap();
                    let flags = bytes[3];
                    assert_eq!(flags & 0x04 != 0, private, "FEXTRA only when private");
                    if private {
                        assert!(super::super::record::extra_marks_private(&bytes[12..16]));
                    }
                    out
                }
                Codec::Plain => bytes,
            };
            assert_eq!(plain, [header.as_bytes(), &response, b"\n"].concat());
            assert_eq!(m.digest, super::super::cdx::payload_digest(&response));
        }
    }

    /// A spilled chunked response digests as the spec says (framing off), as one held in
    /// memory does, whatever the read steps.
    #[test]
    fn a_spilled_chunked_response_digests_without_its_framing() {
        let dir = tempfile::tempdir().unwrap();
        let mut response = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        let head_len = response.len() as u64;
        let body: Vec<u8> = (0..600_000u32).map(|i| (i % 253) as u8).collect();
        for piece in body.chunks(70_001) {
            response.extend(format!("{:x}\r\n", piece.len()).bytes());
            response.extend_from_slice(piece);
            response.extend_from_slice(b"\r\n");
        }
        response.extend_from_slice(b"0\r\n\r\n");
        let payload = unnamed_file(dir.path()).unwrap();
        payload.write_all_at(&response, 0).unwrap();
        let m = encode_file_record(
            b"h\n",
            &payload,
            response.len() as u64,
            head_len,
            true,
            Codec::Plain,
            false,
            dir.path(),
        )
        .unwrap();
        let expected = super::super::cdx::base32_sha1(&body);
        assert_eq!(m.digest, expected);
        assert_eq!(super::super::cdx::payload_digest(&response), expected);
        let (_, spilled) = digests(&payload, response.len() as u64, head_len, true).unwrap();
        assert_eq!(spilled, expected);
    }
}
