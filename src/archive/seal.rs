//! Sealing a finished ARC file, on a blocking thread: cut it to its exact length, make it
//! durable, write its CDX (and the list of its private records) beside it, then move them
//! into `DATA/sealed/` with renames, the private list first, then the ARC, which loses its
//! `.open` suffix on the way (a sealed ARC whose CDX is missing is rebuilt by scanning at
//! start).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::cdx::{cdx_file, private_list, private_name, CdxEntry};

/// The CDX file name for an ARC file name.
pub fn cdx_name(arc_name: &str) -> String {
    format!("{}.cdx", super::record::arc_stem(arc_name))
}

/// Seals `path` (valid up to `logical_len`) with the given index lines. Returns the sealed
/// ARC path. A failure to write the CDX is logged and does not stop the seal.
pub fn seal(
    path: &Path,
    logical_len: u64,
    entries: &[CdxEntry],
    sealed_dir: &Path,
) -> io::Result<PathBuf> {
    let file = OpenOptions::new().write(true).open(path)?;
    file.set_len(logical_len)?;
    file.sync_all()?;
    drop(file);

    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .map(super::record::sealed_name)
        .ok_or_else(|| io::Error::other("ARC file name is not UTF-8"))?
        .to_string();
    // The private list goes first and moves first: a sealed file with a CDX always has its
    // list, so no private record is ever restored for others.
    let private = private_list(entries);
    if let Some(list) = &private {
        write_synced(&path.with_file_name(private_name(&name)), list.as_bytes())?;
    }
    let cdx_beside = path.with_file_name(cdx_name(&name));
    let cdx_written = match write_synced(&cdx_beside, cdx_file(entries, &name).as_bytes()) {
        Ok(()) => true,
        Err(e) => {
            log::error!(
                "writing {} failed: {e}; it will be rebuilt at start",
                cdx_beside.display()
            );
            let _ = fs::remove_file(&cdx_beside);
            false
        }
    };
    fs::create_dir_all(sealed_dir)?;
    if private.is_some() {
        fs::rename(
            path.with_file_name(private_name(&name)),
            sealed_dir.join(private_name(&name)),
        )?;
    }
    let sealed = sealed_dir.join(&name);
    fs::rename(path, &sealed)?;
    if cdx_written {
        fs::rename(&cdx_beside, sealed_dir.join(cdx_name(&name)))?;
    }
    sync_dir(sealed_dir);
    if let Some(parent) = path.parent() {
        sync_dir(parent);
    }
    Ok(sealed)
}

/// Writes `data` to `path` via a temporary name, synced, so `path` is whole or absent. The
/// temporary name is this write's own (file name, process, sequence number, created
/// exclusively): recovery and a `liveweb reindex` writing one file's CDX and `.private` list
/// at the same time never write into each other's temporary file.
pub fn write_synced(path: &Path, data: &[u8]) -> io::Result<()> {
    static SEQUENCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SEQUENCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!("{name}.{}.{n}.tmp", std::process::id()));
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, path)
}

/// Makes renames in `dir` durable; failure only weakens durability, so it is ignored.
fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::record::{encode_member, filedesc_member, header_line};
    use crate::archive::scan::scan;

    #[test]
    fn seal_cuts_moves_and_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let open_dir = dir.path().join("0");
        fs::create_dir_all(&open_dir).unwrap();
        let path = open_dir.join("T-1-0-00001.arc.gz");
        let mut data = filedesc_member("T-1-0-00001.arc.gz", "20261122000000", 1);
        let h = header_line("http://a/", None, "20261122000000", "unk", 4);
        data.extend(encode_member(&h, b"abcd", 1));
        let logical = data.len() as u64;
        data.extend_from_slice(&[0u8; 3000]); // O_DIRECT padding
        fs::write(&path, &data).unwrap();
        let entries = scan(&data).entries;
        let sealed = seal(&path, logical, &entries, &dir.path().join("sealed")).unwrap();
        assert!(!path.exists());
        assert_eq!(fs::metadata(&sealed).unwrap().len(), logical);
        let cdx = fs::read_to_string(dir.path().join("sealed/T-1-0-00001.cdx")).unwrap();
        assert_eq!(cdx.lines().count(), 2);
        assert!(cdx.lines().nth(1).unwrap().ends_with(" T-1-0-00001.arc.gz"));
    }
}
