//! An ARC record whose payload is in a file (a response that spilled to disk as it arrived),
//! encoded into another unnamed file in bounded memory: the payload is read in chunks,
//! compressed as a stream (one gzip member, or plain), and digested on the way. Runs on the
//! blocking pool. The record's length goes in its header line, before the payload: it is
//! known because the whole response is in the file before this starts.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use flate2::{Compression, GzBuilder};
use sha1::{Digest, Sha1};

use super::compressibility::worth_deflating;
use super::record::{Codec, PRIVATE_SUBFIELD};

/// Bytes read from the payload file at a time.
const CHUNK: usize = 1 << 20;

/// An encoded record in a file of its own.
#[derive(Debug)]
pub struct FileMember {
    /// Unnamed; gone when the last descriptor closes.
    pub file: File,
    /// The member's length (the whole file).
    pub len: u64,
    /// The payload digest (base32 SHA-1 of the payload from `digest_from` on): the CDX's.
    pub digest: String,
}

/// An unnamed temporary file in `dir` (`O_TMPFILE`), read-write, close-on-exec.
pub fn unnamed_file(dir: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_TMPFILE)
        .open(dir)
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("temporary file in {}: {e}", dir.display()),
            )
        })
}

/// Encodes `header` + the `len` bytes of `payload` + `\n` as one record (a gzip member,
/// marked private when asked, or plain) into an unnamed file in `dir`.
pub fn encode_file_record(
    header: &[u8],
    payload: &File,
    len: u64,
    digest_from: u64,
    codec: Codec,
    private: bool,
    dir: &Path,
) -> io::Result<FileMember> {
    let out = unnamed_file(dir)?;
    let mut sink = Counting {
        inner: BufWriter::with_capacity(256 << 10, &out),
        written: 0,
    };
    let mut sha = Sha1::new();
    let mut buf = vec![0u8; CHUNK];
    let mut copy = |w: &mut dyn Write| -> io::Result<()> {
        let mut pos = 0u64;
        while pos < len {
            let want = (len - pos).min(CHUNK as u64) as usize;
            payload.read_exact_at(&mut buf[..want], pos)?;
            let skip = digest_from.saturating_sub(pos).min(want as u64) as usize;
            sha.update(&buf[skip..want]);
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
            gz.write_all(header)?;
            copy(&mut gz)?;
            gz.write_all(b"\n")?;
            gz.finish()?;
        }
        Codec::Plain => {
            sink.write_all(header)?;
            copy(&mut sink)?;
            sink.write_all(b"\n")?;
        }
    }
    sink.flush()?;
    let written = sink.written;
    drop(sink);
    Ok(FileMember {
        file: out,
        len: written,
        digest: super::cdx::base32(&sha.finalize()),
    })
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
}
