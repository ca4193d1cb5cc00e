//! Crash-safe file writes: write a temporary file next to the target, fsync it, rename it over
//! the target, fsync the directory. A crash leaves either the old file or the new one, plus at
//! worst a temporary file that readers ignore.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Result, StoreError};

/// Temporary files are hidden (`.` prefix) and end in `.tmp`; listings and `publish` skip them.
pub(crate) fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(".tmp")
}

/// A temporary path in the same directory as `path` (so the final rename stays on one
/// filesystem), unique per process and call.
pub(crate) fn temp_path_for(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}-{n}.tmp", std::process::id()))
}

/// Writes a file atomically: `fill` writes the content into a fresh temporary file, which is
/// then fsynced and renamed onto `path`; the directory is fsynced so the rename is durable.
/// On error the temporary file is removed and `path` is untouched.
pub(crate) fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(File, &Path) -> Result<File>,
) -> Result<()> {
    let tmp = temp_path_for(path);
    let result = (|| {
        let file = File::create(&tmp).map_err(StoreError::io("create", &tmp))?;
        let file = fill(file, &tmp)?;
        file.sync_all().map_err(StoreError::io("fsync", &tmp))?;
        drop(file);
        std::fs::rename(&tmp, path).map_err(StoreError::io("rename into place", path))?;
        sync_parent(path)
    })();
    if result.is_err() {
        // Best effort: the temporary may not exist (create failed) and the original error matters.
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Writes `bytes` to `path` atomically.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |mut file, tmp| {
        file.write_all(bytes)
            .map_err(StoreError::io("write", tmp))?;
        Ok(file)
    })
}

/// Fsyncs a directory so that renames and creations inside it survive a power loss.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(StoreError::io("fsync directory", dir))
}

pub(crate) fn sync_parent(path: &Path) -> Result<()> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent),
        _ => sync_dir(Path::new(".")),
    }
}

pub(crate) fn create_dir_all(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(StoreError::io("create directory", dir))
}

/// Total size of the regular files under `path` (a file or a directory), not following links.
pub(crate) fn disk_bytes(path: &Path) -> Result<u64> {
    let meta = std::fs::symlink_metadata(path).map_err(StoreError::io("stat", path))?;
    if !meta.is_dir() {
        return Ok(if meta.is_file() { meta.len() } else { 0 });
    }
    let mut total = 0;
    for entry in std::fs::read_dir(path).map_err(StoreError::io("list", path))? {
        let entry = entry.map_err(StoreError::io("list", path))?;
        total += disk_bytes(&entry.path())?;
    }
    Ok(total)
}
