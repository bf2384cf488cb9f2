//! Start-up recovery, before any worker runs: files left open by a crash are scanned member by
//! member, cut at the first torn or invalid member, and sealed; sealed files are read from
//! their CDX (rebuilt by scanning when missing or corrupt) and every record that may answer
//! again (not private) is handed to a `RecordSink`, which decides what to index.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use super::cdx::{stored_length, CdxRef, REVISIT_MIME};
use super::cdx_check::{each_line, read_start, CdxCheck, LINE_SAMPLE};
use super::files::FileTable;
use super::record::{arc_stem, is_arc_name, is_open_arc_name, sealed_name};
use super::reindex::{file_name, read_private_list, rebuild, Damaged};
use super::scan::scan;
use super::seal::{cdx_name, seal};
use super::RecordLoc;
use crate::clock::parse_arc14;

/// A record found on disk that may answer requests again (private ones are never found).
#[derive(Debug, Clone, Copy)]
pub struct FoundRecord<'a> {
    pub url: &'a str,
    pub loc: RecordLoc,
    /// The archived response's status code.
    pub status: u16,
    /// When it was archived, Unix seconds.
    pub archived_at: i64,
}

/// Where recovery puts what it finds (the server's index). Called from several loader
/// threads at once.
pub trait RecordSink: Sync {
    /// About `n` records are coming.
    fn reserve(&self, n: usize);
    /// One record; returns whether it was kept.
    fn found(&self, record: FoundRecord<'_>) -> bool;
    /// Records archived before this Unix time are never kept: a sealed file last written
    /// before it (and whose CDX exists) is registered without reading its CDX, so start-up
    /// time follows the records that can still answer, not the size of the archive.
    fn kept_from(&self) -> Option<i64> {
        None
    }
}

/// What recovery did.
#[derive(Debug, Default)]
pub struct Recovered {
    /// First serial new files may use (above every serial on disk).
    pub next_serial: u64,
    /// Sealed files now in the file table, to hand to `--on-seal` again.
    pub sealed: Vec<(u32, PathBuf)>,
    /// Records the sink kept.
    pub indexed: usize,
    /// Files left open by a crash that were cut and sealed.
    pub repaired: usize,
    /// Bytes cut from torn tails.
    pub cut_bytes: u64,
    /// CDX files rebuilt by scanning.
    pub rebuilt_cdx: usize,
}

/// Recovers `data_dir` (worker directories `N/` and `sealed/`).
pub fn recover(data_dir: &Path, files: &FileTable, sink: &dyn RecordSink) -> io::Result<Recovered> {
    log::info!("recovering {}", data_dir.display());
    super::fault::slow_recovery();
    let sealed_dir = data_dir.join("sealed");
    fs::create_dir_all(&sealed_dir)?;
    let mut out = Recovered::default();
    let mut max_serial: Option<u64> = None;

    for worker_dir in worker_dirs(data_dir)? {
        for path in list(&worker_dir)? {
            let name = file_name(&path);
            if is_open_arc_name(&name) {
                note_serial(&mut max_serial, sealed_name(&name));
                repair_open_file(&path, &sealed_dir, &mut out)?;
            } else if name.ends_with(".cdx") || name.ends_with(".tmp") || name.ends_with(".private")
            {
                // A CDX whose ARC was already moved, or a half-written one: never needed.
                let _ = fs::remove_file(&path);
            }
        }
    }

    let sealed: Vec<PathBuf> = list(&sealed_dir)?
        .into_iter()
        .filter(|p| is_arc_name(&file_name(p)))
        .collect();
    for path in &sealed {
        note_serial(&mut max_serial, &file_name(path));
    }
    // Size the index from the CDX files' sizes and their line length (read from the newest),
    // then index the sealed files on every core (the index's shards take concurrent
    // inserts). Reserved room that is never filled stays resident, so this errs low.
    let cdx_sizes: Vec<(PathBuf, u64)> = sealed
        .iter()
        .map(|p| sealed_dir.join(cdx_name(&file_name(p))))
        .filter_map(|cdx| Some((cdx.clone(), fs::metadata(&cdx).ok()?.len())))
        .collect();
    let cdx_bytes: u64 = cdx_sizes.iter().map(|(_, len)| len).sum();
    let line_len = cdx_sizes
        .iter()
        .max_by(|a, b| a.0.cmp(&b.0))
        .and_then(|(newest, _)| read_start(newest, LINE_SAMPLE).ok())
        .map(|text| {
            let lines = text.iter().filter(|&&b| b == b'\n').count().max(1);
            (text.len() / lines).max(64) as u64
        })
        .unwrap_or(256);
    sink.reserve((cdx_bytes / line_len) as usize);
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(sealed.len().max(1));
    let chunk = sealed.len().div_ceil(threads).max(1);
    let sealed_dir = sealed_dir.as_path();
    let progress = Progress::default();
    let progress = &progress;
    let total = sealed.len();
    let results: Vec<io::Result<Loaded>> = std::thread::scope(|scope| {
        let handles: Vec<_> = sealed
            .chunks(chunk)
            .map(|paths| {
                scope.spawn(move || {
                    let loaded = load_sealed(paths, sealed_dir, files, sink, progress);
                    // What the thread read and parsed goes back to the system, not into the
                    // RSS of a process that runs for weeks.
                    // SAFETY: mi_collect only walks and frees the calling thread's own
                    // allocator state.
                    unsafe { libmimalloc_sys::mi_collect(true) };
                    loaded
                })
            })
            .collect();
        // A long recovery says how far it got, at least every PROGRESS_EVERY.
        scope.spawn(move || progress.report_until_done(total));
        let results = handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(io::Error::other("index loader panicked")))
            })
            .collect();
        progress.finish();
        results
    });
    for r in results {
        let loaded = r?;
        out.indexed += loaded.indexed;
        out.rebuilt_cdx += loaded.rebuilt_cdx;
        out.sealed.extend(loaded.files);
    }
    out.next_serial = max_serial.map_or(0, |s| s + 1);
    Ok(out)
}

/// How often a long recovery reports its progress.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// Sealed files read and records indexed so far, by all loader threads.
#[derive(Default)]
struct Progress {
    files: std::sync::atomic::AtomicUsize,
    records: std::sync::atomic::AtomicUsize,
    done: std::sync::Mutex<bool>,
    wake: std::sync::Condvar,
}

impl Progress {
    fn add(&self, files: usize, records: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        self.files.fetch_add(files, Relaxed);
        self.records.fetch_add(records, Relaxed);
    }

    fn finish(&self) {
        *self.done.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.wake.notify_all();
    }

    /// Logs files read and records/s every `PROGRESS_EVERY` until `finish`.
    fn report_until_done(&self, total: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        let started = std::time::Instant::now();
        let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        // `finish` may have run before this thread took the lock: look before waiting.
        while !*done {
            let (guard, _) = self
                .wake
                .wait_timeout(done, PROGRESS_EVERY)
                .unwrap_or_else(|e| e.into_inner());
            done = guard;
            if *done {
                return;
            }
            let records = self.records.load(Relaxed);
            let secs = started.elapsed().as_secs_f64().max(0.001);
            log::info!(
                "recovery: {}/{total} sealed files read, {records} records indexed ({:.0} records/s)",
                self.files.load(Relaxed),
                records as f64 / secs
            );
        }
    }
}

/// Seconds a sealed file's time may lag the dates of its records before the `kept_from` skip
/// could drop a fresh one.
const MTIME_SLACK: i64 = 3600;

/// What one loader thread put in the index and the file table.
#[derive(Default)]
struct Loaded {
    indexed: usize,
    rebuilt_cdx: usize,
    files: Vec<(u32, PathBuf)>,
}

/// Registers sealed files and hands their records to the sink, from their CDX, rebuilding a
/// missing or corrupt CDX by scanning the ARC file.
fn load_sealed(
    paths: &[PathBuf],
    sealed_dir: &Path,
    files: &FileTable,
    sink: &dyn RecordSink,
    progress: &Progress,
) -> io::Result<Loaded> {
    let mut out = Loaded::default();
    let kept_from = sink.kept_from();
    let mut reported = 0;
    // One line buffer for every CDX this thread reads: a CDX is read a line at a time,
    // twice (checked, then indexed), never held whole (a big file's is hundreds of MB).
    let mut line = String::new();
    for (i, path) in paths.iter().enumerate() {
        // The files before this one are done (whichever way their iteration ended).
        if i > 0 {
            progress.add(1, out.indexed - reported);
            reported = out.indexed;
        }
        let name = file_name(path);
        let meta = fs::metadata(path)?;
        let size = meta.len();
        // Records in `.arc.gz` files are gzip members; in `.arc` files, plain.
        let gzip = name.ends_with(".gz");
        // Every record in a file is dated no later than the file's last write.
        let last_write = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs() as i64);
        // With an hour of slack for a file time set by a clock a little behind the one that
        // dated the records (copies, NFS).
        let all_past = matches!((kept_from, last_write),
            (Some(from), Some(w)) if w.saturating_add(MTIME_SLACK) < from);
        if all_past && sealed_dir.join(cdx_name(&name)).exists() {
            let fd = OwnedFd::from(fs::File::open(path)?);
            let id = files.insert(path.clone(), fd);
            out.files.push((id, path.clone()));
            continue;
        }
        let cdx_path = sealed_dir.join(cdx_name(&name));
        // The list of private records; an unreadable one (other than absent) fails closed:
        // none of the file's records is indexed.
        let listed = match read_private_list(path) {
            Ok(listed) => Some(listed),
            Err(e) => {
                log::warn!("{e}: {name} stays on disk but is not indexed");
                None
            }
        };
        let mut check = CdxCheck::new(&name, size, gzip);
        // Unreadable (or not UTF-8) counts as invalid: the CDX is rebuilt from the file.
        let valid = each_line(&cdx_path, &mut line, |l| check.line(l)).is_ok() && check.finish();
        let mut rebuilt_text = None;
        let private = match valid {
            true => listed,
            false => {
                // Private records are those the members mark and those the old list names
                // (plain records carry no mark).
                let none = HashSet::new();
                let listed_now = listed.as_ref().unwrap_or(&none);
                let rebuilt = rebuild(path, listed_now, Damaged::IndexWhatComesBefore)?;
                out.rebuilt_cdx += 1;
                log::info!("rebuilt CDX for {}", path.display());
                rebuilt_text = Some(rebuilt.cdx);
                listed.map(|_| rebuilt.private)
            }
        };
        let fd = OwnedFd::from(fs::File::open(path)?);
        let id = files.insert(path.clone(), fd);
        out.files.push((id, path.clone()));
        let Some(private) = private else {
            continue;
        };
        let mut indexed = 0;
        let mut index_line = |line: &str| {
            let Some(e) = CdxRef::parse(line) else {
                return;
            };
            // A revisit holds no body to answer with: the URL's entry stays the capture
            // that does (a 304's) or none (another URL's payload).
            if private.contains(&e.offset) || e.mime == REVISIT_MIME {
                return;
            }
            let Some(archived_at) = parse_arc14(e.date14) else {
                return;
            };
            let found = FoundRecord {
                url: e.url,
                loc: RecordLoc {
                    file_id: id,
                    offset: e.offset,
                    len: stored_length(e.length, gzip),
                },
                status: e.status,
                archived_at,
            };
            if sink.found(found) {
                indexed += 1;
            }
        };
        match &rebuilt_text {
            Some(text) => text.lines().skip(1).for_each(&mut index_line),
            None => {
                // Checked just now; a read failing this time leaves the file unindexed.
                let mut header = true;
                let read = each_line(&cdx_path, &mut line, |l| {
                    if !std::mem::take(&mut header) {
                        index_line(l);
                    }
                    true
                });
                if let Err(e) = read {
                    log::warn!(
                        "{}: {e}: {name} stays on disk but is not indexed",
                        cdx_path.display()
                    );
                }
            }
        }
        out.indexed += indexed;
    }
    if !paths.is_empty() {
        progress.add(1, out.indexed - reported);
    }
    Ok(out)
}

/// Cuts a file left open by a crash back to its last whole record, then seals it; a file
/// with no valid record is removed.
fn repair_open_file(path: &Path, sealed_dir: &Path, out: &mut Recovered) -> io::Result<()> {
    let data = fs::read(path)?;
    let scanned = scan(&data);
    let cut = data.len() as u64 - scanned.valid_len;
    let tail = &data[data.len().min(scanned.valid_len as usize)..];
    if cut > 0 && tail.iter().all(|&b| b == 0) {
        // The zeros an O_DIRECT write pads its last block with: nothing was lost.
        log::info!(
            "recovery: {} sealed; {cut} bytes of block padding dropped",
            path.display()
        );
    } else if cut > 0 {
        log::info!(
            "recovery: {} cut by {cut} bytes after its last whole record (a record being \
             written when liveweb stopped; it was never acknowledged)",
            path.display()
        );
        out.cut_bytes += cut;
    }
    if scanned.entries.is_empty() {
        log::info!(
            "recovery: {} holds no whole record, removed",
            path.display()
        );
        return fs::remove_file(path);
    }
    seal(path, scanned.valid_len, &scanned.entries, sealed_dir)?;
    out.repaired += 1;
    Ok(())
}

fn worker_dirs(data_dir: &Path) -> io::Result<Vec<PathBuf>> {
    Ok(list(data_dir)?
        .into_iter()
        .filter(|p| p.is_dir() && file_name(p).bytes().all(|b| b.is_ascii_digit()))
        .collect())
}

fn list(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = match fs::read_dir(dir) {
        Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    out.sort();
    Ok(out)
}

/// Serial of `PREFIX-STAMP-WORKER-SERIAL.arc.gz` (or `.arc`).
fn note_serial(max: &mut Option<u64>, name: &str) {
    let serial = Some(arc_stem(name))
        .filter(|stem| stem.len() < name.len())
        .and_then(|s| s.rsplit('-').next())
        .and_then(|s| s.parse::<u64>().ok());
    if let Some(s) = serial {
        *max = Some(max.map_or(s, |m| m.max(s)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::record::{encode_member, filedesc_member, header_line};
    use crate::clock::UtcTime;
    use std::sync::Mutex;

    /// Keeps every record found; `kept` says which URLs it accepts.
    #[derive(Default)]
    struct Collect {
        found: Mutex<Vec<(String, u16, RecordLoc)>>,
    }

    impl RecordSink for Collect {
        fn reserve(&self, _: usize) {}
        fn found(&self, r: FoundRecord<'_>) -> bool {
            self.found
                .lock()
                .unwrap()
                .push((r.url.to_string(), r.status, r.loc));
            true
        }
    }

    impl Collect {
        fn urls(&self) -> Vec<String> {
            let mut v: Vec<String> = self
                .found
                .lock()
                .unwrap()
                .iter()
                .map(|f| f.0.clone())
                .collect();
            v.sort();
            v
        }
    }

    fn member(url: &str, date: &str, payload: &[u8]) -> Vec<u8> {
        encode_member(
            &header_line(url, None, date, "text/plain", payload.len()),
            payload,
            1,
        )
    }

    #[test]
    fn repairs_torn_file_and_indexes_fresh_records() {
        let dir = tempfile::tempdir().unwrap();
        let w0 = dir.path().join("0");
        fs::create_dir_all(&w0).unwrap();
        let now14 = UtcTime::now().arc14();
        let mut data = filedesc_member("L-1-0-00007.arc.gz", &now14, 1);
        data.extend(member("http://a/", &now14, b"HTTP/1.1 200 OK\r\n\r\na"));
        data.extend(member(
            "http://old/",
            "20000101000000",
            b"HTTP/1.1 200 OK\r\n\r\no",
        ));
        data.extend(member(
            "http://fail/",
            &now14,
            b"HTTP/1.1 502 Bad Gateway\r\n\r\nE30",
        ));
        let whole = data.len();
        let torn = member("http://b/", &now14, b"HTTP/1.1 200 OK\r\n\r\nb");
        data.extend_from_slice(&torn[..torn.len() / 2]);
        fs::write(w0.join("L-1-0-00007.arc.gz"), &data).unwrap();
        fs::write(w0.join("orphan.cdx"), b"x").unwrap();

        let sink = Collect::default();
        let files = FileTable::new();
        let r = recover(dir.path(), &files, &sink).unwrap();
        assert_eq!(r.repaired, 1);
        assert_eq!(r.cut_bytes, (data.len() - whole) as u64);
        assert_eq!(r.next_serial, 8);
        assert_eq!(r.indexed, 3);
        assert_eq!(sink.urls(), ["http://a/", "http://fail/", "http://old/"]);
        assert!(!w0.join("orphan.cdx").exists());
        let sealed = dir.path().join("sealed/L-1-0-00007.arc.gz");
        assert_eq!(fs::metadata(&sealed).unwrap().len(), whole as u64);
        let found = sink.found.lock().unwrap().clone();
        let fail = found.iter().find(|f| f.0 == "http://fail/").unwrap();
        assert_eq!(fail.1, 502);
        assert_eq!(fail.2.offset + fail.2.len, whole as u64);

        // A corrupt CDX is rebuilt on the next start; the result is the same.
        fs::write(dir.path().join("sealed/L-1-0-00007.cdx"), b"junk\n").unwrap();
        let again = Collect::default();
        let r2 = recover(dir.path(), &FileTable::new(), &again).unwrap();
        assert_eq!(r2.rebuilt_cdx, 1);
        assert_eq!(again.urls(), sink.urls());
    }

    #[test]
    fn private_records_are_never_restored_from_a_crash_a_seal_or_a_rebuilt_cdx() {
        let dir = tempfile::tempdir().unwrap();
        let w0 = dir.path().join("0");
        fs::create_dir_all(&w0).unwrap();
        let now14 = UtcTime::now().arc14();
        let mut data = filedesc_member("P-1-0-00001.arc.gz", &now14, 1);
        data.extend(member(
            "http://public/",
            &now14,
            b"HTTP/1.1 200 OK\r\n\r\np",
        ));
        let private_at = data.len() as u64;
        data.extend(crate::archive::record::mark_private(member(
            "http://mine/",
            &now14,
            b"HTTP/1.1 200 OK\r\n\r\nalice",
        )));
        fs::write(w0.join("P-1-0-00001.arc.gz"), &data).unwrap();
        let check = |expect_rebuilt: usize| {
            let sink = Collect::default();
            let r = recover(dir.path(), &FileTable::new(), &sink).unwrap();
            assert_eq!((r.indexed, r.rebuilt_cdx), (1, expect_rebuilt));
            assert_eq!(sink.urls(), ["http://public/"]);
        };
        // Crash: the open file is scanned; the member's mark says private. Sealing writes the
        // list beside the CDX.
        check(0);
        let list = fs::read_to_string(dir.path().join("sealed/P-1-0-00001.private")).unwrap();
        assert_eq!(list, format!("{private_at}\n"));
        // Restart from the CDX and the list; then with the CDX lost, from the members again.
        check(0);
        fs::remove_file(dir.path().join("sealed/P-1-0-00001.cdx")).unwrap();
        fs::remove_file(dir.path().join("sealed/P-1-0-00001.private")).unwrap();
        check(1);
        assert!(dir.path().join("sealed/P-1-0-00001.private").exists());
    }

    #[test]
    fn files_last_written_before_what_the_sink_keeps_are_registered_unread() {
        let dir = tempfile::tempdir().unwrap();
        let w0 = dir.path().join("0");
        fs::create_dir_all(&w0).unwrap();
        let now14 = UtcTime::now().arc14();
        let mut data = filedesc_member("O-1-0-00001.arc.gz", &now14, 1);
        data.extend(member("http://a/", &now14, b"HTTP/1.1 200 OK\r\n\r\na"));
        fs::write(w0.join("O-1-0-00001.arc.gz"), &data).unwrap();
        // The crash repair seals it (and writes its CDX).
        recover(dir.path(), &FileTable::new(), &Collect::default()).unwrap();
        let sealed = dir.path().join("sealed/O-1-0-00001.arc.gz");
        let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        fs::File::options()
            .write(true)
            .open(&sealed)
            .unwrap()
            .set_modified(two_hours_ago)
            .unwrap();

        struct Recent(Collect, i64);
        impl RecordSink for Recent {
            fn reserve(&self, _: usize) {}
            fn found(&self, r: FoundRecord<'_>) -> bool {
                self.0.found(r)
            }
            fn kept_from(&self) -> Option<i64> {
                Some(self.1)
            }
        }
        let now = crate::clock::unix_now();
        let recent = Recent(Collect::default(), now - 60);
        let files = FileTable::new();
        let r = recover(dir.path(), &files, &recent).unwrap();
        assert_eq!(r.indexed, 0);
        assert!(recent.0.urls().is_empty(), "its CDX was not read");
        assert_eq!(
            r.sealed.len(),
            1,
            "still registered (and handed to --on-seal)"
        );
        assert_eq!(files.len(), 1);
        // Within the window: read.
        let wide = Recent(Collect::default(), now - 4 * 3600);
        recover(dir.path(), &FileTable::new(), &wide).unwrap();
        assert_eq!(wide.0.urls(), ["http://a/"]);
        // Without its CDX the file is scanned and the CDX rebuilt, whatever its age.
        fs::remove_file(dir.path().join("sealed/O-1-0-00001.cdx")).unwrap();
        let r = recover(
            dir.path(),
            &FileTable::new(),
            &Recent(Collect::default(), now),
        )
        .unwrap();
        assert_eq!(r.rebuilt_cdx, 1);
    }

    #[test]
    fn plain_private_records_keep_their_list_through_a_rebuild_and_fail_closed() {
        use crate::archive::record::Codec;
        let dir = tempfile::tempdir().unwrap();
        let sealed = dir.path().join("sealed");
        fs::create_dir_all(&sealed).unwrap();
        let now14 = UtcTime::now().arc14();
        let plain = |url: &str, payload: &[u8]| {
            Codec::Plain.encode(
                &header_line(url, None, &now14, "text/plain", payload.len()),
                payload,
            )
        };
        let mut data = Codec::Plain.filedesc("Q-1-0-00001.arc", &now14);
        data.extend(plain("http://public/", b"HTTP/1.1 200 OK\r\n\r\np"));
        let private_at = data.len();
        data.extend(plain("http://mine/", b"HTTP/1.1 200 OK\r\n\r\nm"));
        fs::write(sealed.join("Q-1-0-00001.arc"), &data).unwrap();
        fs::write(
            sealed.join("Q-1-0-00001.private"),
            format!("{private_at}\n"),
        )
        .unwrap();
        // No CDX: rebuilt by scanning, which finds no mark in plain records; the list counts.
        let sink = Collect::default();
        let r = recover(dir.path(), &FileTable::new(), &sink).unwrap();
        assert_eq!((r.indexed, r.rebuilt_cdx), (1, 1));
        assert_eq!(sink.urls(), ["http://public/"]);
        let list = fs::read_to_string(sealed.join("Q-1-0-00001.private")).unwrap();
        assert_eq!(
            list,
            format!("{private_at}\n"),
            "rewritten with the rebuild"
        );
        // An unreadable list: none of the file's records is indexed.
        fs::remove_file(sealed.join("Q-1-0-00001.private")).unwrap();
        fs::create_dir(sealed.join("Q-1-0-00001.private")).unwrap();
        let r = recover(dir.path(), &FileTable::new(), &Collect::default()).unwrap();
        assert_eq!(r.indexed, 0);
    }
}
