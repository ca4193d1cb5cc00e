//! Cheap fingerprints of the files a stage reads. A file's content hash is cached against its
//! size, modification time and inode, so a rerun only `stat`s unchanged inputs (as DVC does).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
struct Entry {
    size: u64,
    mtime_ns: u128,
    inode: u64,
    blake3: String,
}

/// A persistent path → content-hash cache, stored as JSON in the store.
#[derive(Debug)]
pub struct FingerprintCache {
    file: PathBuf,
    entries: BTreeMap<PathBuf, Entry>,
    dirty: bool,
}

impl FingerprintCache {
    /// Loads the cache file; a missing or unreadable cache is simply empty (it is only a cache).
    pub fn open(file: PathBuf) -> FingerprintCache {
        let entries = std::fs::read(&file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        FingerprintCache {
            file,
            entries,
            dirty: false,
        }
    }

    /// `blake3:<hex>` of the file's content.
    pub fn file(&mut self, path: &Path) -> std::io::Result<String> {
        let abs = std::path::absolute(path)?;
        let meta = std::fs::metadata(&abs)?;
        let mtime_ns = meta
            .modified()?
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(&meta);
        #[cfg(not(unix))]
        let inode = 0;
        if let Some(e) = self.entries.get(&abs)
            && e.size == meta.len()
            && e.mtime_ns == mtime_ns
            && e.inode == inode
        {
            return Ok(format!("blake3:{}", e.blake3));
        }
        let mut hasher = blake3::Hasher::new();
        hasher.update_reader(std::fs::File::open(&abs)?)?;
        let hash = hasher.finalize().to_hex().to_string();
        self.entries.insert(
            abs,
            Entry {
                size: meta.len(),
                mtime_ns,
                inode,
                blake3: hash.clone(),
            },
        );
        self.dirty = true;
        Ok(format!("blake3:{hash}"))
    }

    /// A checkpoint folder: a Hub snapshot (`.../snapshots/<commit>`) is named by its commit;
    /// any other folder by the fingerprints of its files (hidden files and subfolders skipped).
    pub fn dir(&mut self, dir: &Path) -> std::io::Result<String> {
        let parent_is_snapshots = dir
            .parent()
            .and_then(Path::file_name)
            .is_some_and(|n| n == "snapshots");
        if parent_is_snapshots && let Some(commit) = dir.file_name() {
            return Ok(format!("hf-snapshot:{}", commit.to_string_lossy()));
        }
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let hidden = path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'));
            if !hidden && path.is_file() {
                files.push(path);
            }
        }
        files.sort();
        let mut hasher = blake3::Hasher::new();
        for path in files {
            let fp = self.file(&path)?;
            let name = path.file_name().expect("a file").to_string_lossy();
            hasher.update(format!("{name}\0{fp}\n").as_bytes());
        }
        Ok(format!("blake3-dir:{}", hasher.finalize().to_hex()))
    }

    /// Writes the cache back if it changed (temp file + rename, so a crash cannot corrupt it).
    pub fn save(&mut self) -> std::io::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        if let Some(dir) = self.file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = self
            .file
            .with_extension(format!("tmp.{}", std::process::id()));
        std::fs::write(&tmp, serde_json::to_vec(&self.entries)?)?;
        std::fs::rename(&tmp, &self.file)?;
        self.dirty = false;
        Ok(())
    }
}
