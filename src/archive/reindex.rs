//! Writing a sealed ARC file's index files from the file itself: its CDX and its `.private`
//! list, from a scan of every record. Recovery does this for a missing or corrupt CDX;
//! `liveweb reindex DIR` does it for every sealed file under DIR (CDX files written by an
//! older version get today's keys and conventions).

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::cdx::{cdx_file, parse_private_list, private_list, private_name};
use super::record::{is_arc_name, OPEN_SUFFIX};
use super::scan::scan;
use super::seal::{cdx_name, write_synced};

/// A rebuilt CDX.
pub struct Rebuilt {
    /// The CDX file's text.
    pub cdx: String,
    /// Offsets of the private records.
    pub private: HashSet<u64>,
    /// Lines in the CDX (captures; failures are not listed).
    pub captures: usize,
}

/// The private-record list beside `arc` (empty when there is none); an error when it exists
/// but cannot be read (callers fail closed: nothing of the file is served).
pub fn read_private_list(arc: &Path) -> io::Result<HashSet<u64>> {
    let path = arc.with_file_name(private_name(&file_name(arc)));
    match fs::read_to_string(&path) {
        Ok(text) => Ok(parse_private_list(&text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(HashSet::new()),
        Err(e) => Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
    }
}

/// What to do with a file whose scan stops before its end (a damaged record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Damaged {
    /// Index the records before the damage, and say so in the log (recovery: the records
    /// that can be found still answer).
    IndexWhatComesBefore,
    /// Leave the index files as they are and fail, naming the file and the offset (reindex:
    /// a rewrite must not lose lines the old CDX had).
    Refuse,
}

/// Scans the sealed ARC file at `arc` and writes its `.private` list (if any record is
/// private) and then its CDX beside it, each synced and renamed into place. Records named in
/// `listed` (an existing list) stay private even when their member carries no mark.
pub fn rebuild(arc: &Path, listed: &HashSet<u64>, damaged: Damaged) -> io::Result<Rebuilt> {
    let name = file_name(arc);
    let data = fs::read(arc)?;
    let mut scanned = scan(&data);
    // Blank lines may end a plain file (write padding); anything else is a record that did
    // not scan.
    let valid = usize::try_from(scanned.valid_len).unwrap_or(data.len());
    let rest = data.get(valid..).unwrap_or_default();
    if !rest.iter().all(|&b| b == b'\n') {
        let what = format!(
            "{}: no whole record at byte {} of {} (damaged or not written by liveweb)",
            arc.display(),
            scanned.valid_len,
            data.len()
        );
        match damaged {
            Damaged::Refuse => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{what}; its CDX was left as it was"),
                ))
            }
            Damaged::IndexWhatComesBefore => {
                log::warn!("{what}; only the records before it are indexed")
            }
        }
    }
    for e in &mut scanned.entries {
        e.private |= listed.contains(&e.offset);
    }
    // The list goes first: a CDX without its list would make private records look public.
    if let Some(list) = private_list(&scanned.entries) {
        write_synced(&arc.with_file_name(private_name(&name)), list.as_bytes())?;
    }
    let cdx = cdx_file(&scanned.entries, &name);
    write_synced(&arc.with_file_name(cdx_name(&name)), cdx.as_bytes())?;
    let private = scanned
        .entries
        .iter()
        .filter(|e| e.private)
        .map(|e| e.offset)
        .collect();
    let captures = scanned.entries.iter().filter(|e| !e.failure).count();
    Ok(Rebuilt {
        cdx,
        private,
        captures,
    })
}

/// What `reindex_tree` did.
#[derive(Debug, Default)]
pub struct Reindexed {
    pub files: usize,
    pub captures: usize,
}

/// Rewrites the index files of every sealed ARC file under `dir` (any depth; files still
/// being written, `.open`, are left alone), or under `dir/sealed` when `dir` is a data
/// directory. Stops at the first file it cannot read or write, naming it.
pub fn reindex_tree(dir: &Path) -> io::Result<Reindexed> {
    // A data directory: only its sealed files (the worker directories hold files being
    // written, which recovery seals).
    let sealed = dir.join("sealed");
    let dir = if sealed.is_dir() { &sealed } else { dir };
    let mut arcs = Vec::new();
    collect_sealed(dir, &mut arcs)?;
    arcs.sort();
    let mut done = Reindexed::default();
    for arc in arcs {
        let named = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", arc.display()));
        let listed = read_private_list(&arc)?;
        let rebuilt = rebuild(&arc, &listed, Damaged::Refuse).map_err(named)?;
        done.files += 1;
        done.captures += rebuilt.captures;
    }
    Ok(done)
}

fn collect_sealed(dir: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    let entries = fs::read_dir(dir)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
    for entry in entries {
        let path = entry?.path();
        let name = file_name(&path);
        if path.is_dir() {
            collect_sealed(&path, out)?;
        } else if is_arc_name(&name) && !name.ends_with(OPEN_SUFFIX) {
            out.push(path);
        }
    }
    Ok(())
}

/// A path's file name as text (empty when it has none).
pub(super) fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}
