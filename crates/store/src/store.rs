//! The artifact store: a directory tree under one root.
//!
//! ```text
//! objects/<k[0..2]>/<k[2..]>/   published artifacts: data files + manifest.json (written last)
//! staging/<key>/                artifacts being built; shards + shards.done survive a crash
//! names/<experiment>/<stage>    a text file holding the key the stage last produced
//! locks/<key>.lock              per-key advisory lock files (never deleted, see `lock`)
//! trash/                        artifacts being removed (renamed here first, then deleted)
//! ```

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Component, Path, PathBuf};

use crate::error::{Result, StoreError};
use crate::fsutil::{self, create_dir_all, disk_bytes, is_temp_name, sync_dir, write_atomic};
use crate::key::Key;
use crate::manifest::{FileEntry, MANIFEST_FILE, Manifest};
use crate::parquet_io::write_parquet;
use crate::table::FeatureTable;

const OBJECTS: &str = "objects";
const STAGING: &str = "staging";
const NAMES: &str = "names";
const LOCKS: &str = "locks";
const TRASH: &str = "trash";
/// Shard completion log inside a staging directory: one shard index per line, appended only
/// after the shard file is durable under its final name.
pub const SHARDS_DONE_FILE: &str = "shards.done";

/// An artifact store rooted at a directory. Cheap to clone; holds no open files.
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
}

/// An exclusive lock on one key, held by this process until dropped. The OS releases it when
/// the process dies, however it dies.
#[derive(Debug)]
pub struct KeyLock {
    key: Key,
    // Keeping the file open keeps the lock; closing it (drop) releases it.
    _file: File,
}

impl KeyLock {
    pub fn key(&self) -> &Key {
        &self.key
    }
}

impl Store {
    /// Opens (creating if needed) a store rooted at `root`.
    pub fn open(root: impl AsRef<Path>) -> Result<Store> {
        let root = root.as_ref().to_path_buf();
        for sub in [OBJECTS, STAGING, NAMES, LOCKS, TRASH] {
            create_dir_all(&root.join(sub))?;
        }
        Ok(Store { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Directory of a published artifact: `objects/<first 2 hex>/<rest>`.
    pub fn artifact_dir(&self, key: &Key) -> PathBuf {
        let (prefix, rest) = key.as_str().split_at(2);
        self.root.join(OBJECTS).join(prefix).join(rest)
    }

    pub fn manifest_path(&self, key: &Key) -> PathBuf {
        self.artifact_dir(key).join(MANIFEST_FILE)
    }

    /// The manifest of a published artifact, `None` if absent. Reads only `manifest.json`.
    pub fn manifest(&self, key: &Key) -> Result<Option<Manifest>> {
        let path = self.manifest_path(key);
        let manifest = Manifest::read(&path)?;
        if let Some(manifest) = &manifest
            && manifest.key != *key
        {
            return Err(StoreError::Corrupt {
                path,
                reason: format!("the manifest is for key {}", manifest.key),
            });
        }
        Ok(manifest)
    }

    /// Whether `key` is published (its manifest exists).
    pub fn contains(&self, key: &Key) -> bool {
        self.manifest_path(key).is_file()
    }

    fn lock_path(&self, key: &Key) -> PathBuf {
        self.root.join(LOCKS).join(format!("{key}.lock"))
    }

    fn open_lock_file(&self, key: &Key) -> Result<(File, PathBuf)> {
        let path = self.lock_path(key);
        // Lock files are never deleted: deleting one while another process waits on it would
        // let a third process lock a fresh file of the same name at the same time.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(StoreError::io("open lock file", &path))?;
        Ok((file, path))
    }

    /// Exclusive per-key lock (OS advisory lock on `locks/<key>.lock`), blocking until free.
    /// Two locks on one key conflict even inside one process, so do not lock a key twice.
    pub fn lock(&self, key: &Key) -> Result<KeyLock> {
        let (file, path) = self.open_lock_file(key)?;
        file.lock().map_err(StoreError::io("lock", &path))?;
        Ok(KeyLock {
            key: key.clone(),
            _file: file,
        })
    }

    /// Like [`Store::lock`] but returns `None` at once when another holder has the lock.
    pub fn try_lock(&self, key: &Key) -> Result<Option<KeyLock>> {
        let (file, path) = self.open_lock_file(key)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(KeyLock {
                key: key.clone(),
                _file: file,
            })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(err)) => Err(StoreError::io("lock", &path)(err)),
        }
    }

    fn staging_dir(&self, key: &Key) -> PathBuf {
        self.root.join(STAGING).join(key.as_str())
    }

    /// The staging area `staging/<key>/` for building an artifact; existing content (finished
    /// shards of an interrupted run) is kept. The caller holds the key lock while staging.
    pub fn stage(&self, key: &Key) -> Result<Staging> {
        let dir = self.staging_dir(key);
        create_dir_all(&dir)?;
        Ok(Staging {
            dir,
            key: key.clone(),
            target: self.artifact_dir(key),
        })
    }

    /// Points `names/<experiment>/<stage>` at `key` (atomically replacing an older pointer).
    pub fn set_name(&self, experiment: &str, stage: &str, key: &Key) -> Result<()> {
        let names = self.root.join(NAMES);
        validate_name(experiment, &names)?;
        let dir = names.join(experiment);
        validate_name(stage, &dir)?;
        create_dir_all(&dir)?;
        write_atomic(&dir.join(stage), format!("{key}\n").as_bytes())
    }

    /// The key `names/<experiment>/<stage>` points at, `None` if there is no such name.
    pub fn resolve_name(&self, experiment: &str, stage: &str) -> Result<Option<Key>> {
        let names = self.root.join(NAMES);
        validate_name(experiment, &names)?;
        let dir = names.join(experiment);
        validate_name(stage, &dir)?;
        read_name_file(&dir.join(stage))
    }

    /// Removes a name; `true` if it existed.
    pub fn remove_name(&self, experiment: &str, stage: &str) -> Result<bool> {
        let names = self.root.join(NAMES);
        validate_name(experiment, &names)?;
        let dir = names.join(experiment);
        validate_name(stage, &dir)?;
        let path = dir.join(stage);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(err) => Err(StoreError::io("remove", &path)(err)),
        }
    }

    /// Every `(experiment, stage, key)` name, sorted.
    pub fn names(&self) -> Result<Vec<(String, String, Key)>> {
        let names_dir = self.root.join(NAMES);
        let mut out = Vec::new();
        for experiment in list_dir(&names_dir)? {
            let dir = names_dir.join(&experiment);
            if experiment.starts_with('.') || !dir.is_dir() {
                continue;
            }
            for stage in list_dir(&dir)? {
                if stage.starts_with('.') {
                    continue;
                }
                if let Some(key) = read_name_file(&dir.join(&stage))? {
                    out.push((experiment.clone(), stage, key));
                }
            }
        }
        Ok(out)
    }

    /// All published keys, sorted.
    pub fn keys(&self) -> Result<Vec<Key>> {
        let objects = self.root.join(OBJECTS);
        let mut keys = Vec::new();
        for prefix in list_dir(&objects)? {
            if prefix.len() != 2 || !objects.join(&prefix).is_dir() {
                continue;
            }
            for rest in list_dir(&objects.join(&prefix))? {
                if let Ok(key) = Key::new(format!("{prefix}{rest}"))
                    && self.contains(&key)
                {
                    keys.push(key);
                }
            }
        }
        keys.sort();
        Ok(keys)
    }

    /// Bytes on disk of a published artifact (data files and manifest); 0 if absent.
    pub fn size(&self, key: &Key) -> Result<u64> {
        let dir = self.artifact_dir(key);
        if !dir.exists() {
            return Ok(0);
        }
        disk_bytes(&dir)
    }

    /// Unpublishes and deletes an artifact, returning the bytes freed (0 if it was absent).
    /// The directory is first renamed into `trash/`, so readers see the whole artifact or none.
    /// The caller should hold the key lock.
    pub fn remove(&self, key: &Key) -> Result<u64> {
        let dir = self.artifact_dir(key);
        if !dir.exists() {
            return Ok(0);
        }
        let bytes = disk_bytes(&dir)?;
        let trash = fsutil::temp_path_for(&self.root.join(TRASH).join(key.as_str()));
        std::fs::rename(&dir, &trash).map_err(StoreError::io("move to trash", &dir))?;
        if let Some(parent) = dir.parent() {
            sync_dir(parent)?;
        }
        std::fs::remove_dir_all(&trash).map_err(StoreError::io("delete", &trash))?;
        Ok(bytes)
    }

    /// Published artifacts not in `referenced`, with their size on disk: what `gc` may remove.
    pub fn gc_plan(&self, referenced: &BTreeSet<Key>) -> Result<Vec<(Key, u64)>> {
        self.keys()?
            .into_iter()
            .filter(|key| !referenced.contains(key))
            .map(|key| {
                let bytes = self.size(&key)?;
                Ok((key, bytes))
            })
            .collect()
    }

    /// Staging areas nobody is working on (their key lock is free at the time of the call),
    /// with their size: interrupted builds. Removing one loses its finished shards.
    pub fn stale_staging(&self) -> Result<Vec<(Key, u64)>> {
        let staging = self.root.join(STAGING);
        let mut out = Vec::new();
        for name in list_dir(&staging)? {
            let Ok(key) = Key::new(name) else { continue };
            if self.try_lock(&key)?.is_some() {
                let bytes = disk_bytes(&self.staging_dir(&key))?;
                out.push((key, bytes));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Deletes the staging area of the locked key, returning the bytes freed.
    pub fn remove_staging(&self, lock: &KeyLock) -> Result<u64> {
        let dir = self.staging_dir(lock.key());
        if !dir.exists() {
            return Ok(0);
        }
        let bytes = disk_bytes(&dir)?;
        std::fs::remove_dir_all(&dir).map_err(StoreError::io("delete", &dir))?;
        Ok(bytes)
    }

    /// Deletes leftovers of removals interrupted by a crash; returns the bytes freed.
    pub fn empty_trash(&self) -> Result<u64> {
        let trash = self.root.join(TRASH);
        let mut bytes = 0;
        for name in list_dir(&trash)? {
            let path = trash.join(name);
            bytes += disk_bytes(&path)?;
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            removed.map_err(StoreError::io("delete", &path))?;
        }
        Ok(bytes)
    }

    /// Checks a published artifact against its manifest: every listed file exists with the
    /// listed size and blake3 digest, and the directory holds nothing else.
    pub fn verify(&self, key: &Key) -> Result<Manifest> {
        let dir = self.artifact_dir(key);
        let manifest = self.manifest(key)?.ok_or_else(|| StoreError::Corrupt {
            path: dir.clone(),
            reason: "not published (no manifest.json)".into(),
        })?;
        for entry in &manifest.files {
            let path = dir.join(&entry.path);
            let actual = hash_file(&path, &entry.path).map_err(|err| match err {
                StoreError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                    StoreError::Corrupt {
                        path: path.clone(),
                        reason: "listed in the manifest but missing".into(),
                    }
                }
                other => other,
            })?;
            if actual.bytes != entry.bytes {
                return Err(StoreError::Corrupt {
                    path,
                    reason: format!("{} bytes, the manifest says {}", actual.bytes, entry.bytes),
                });
            }
            if actual.blake3 != entry.blake3 {
                return Err(StoreError::Corrupt {
                    path,
                    reason: format!(
                        "blake3 {}, the manifest says {}",
                        actual.blake3, entry.blake3
                    ),
                });
            }
        }
        let mut listed: BTreeSet<&str> = manifest.files.iter().map(|e| e.path.as_str()).collect();
        listed.insert(MANIFEST_FILE);
        for rel in walk_files(&dir)? {
            if !listed.contains(rel.as_str()) {
                return Err(StoreError::Corrupt {
                    path: dir.join(&rel),
                    reason: "not listed in the manifest".into(),
                });
            }
        }
        Ok(manifest)
    }
}

/// Builds one artifact in `staging/<key>/` and publishes it.
#[derive(Debug)]
pub struct Staging {
    dir: PathBuf,
    key: Key,
    target: PathBuf,
}

impl Staging {
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn key(&self) -> &Key {
        &self.key
    }

    /// `shard-00000.parquet`, `shard-00001.parquet`, ... inside the staging directory.
    pub fn shard_path(&self, index: u32) -> PathBuf {
        self.dir.join(shard_file_name(index))
    }

    fn done_path(&self) -> PathBuf {
        self.dir.join(SHARDS_DONE_FILE)
    }

    /// The shards whose data is complete: listed on a whole line of `shards.done` and present.
    /// A shard written but not yet logged (crash between the two) is not reported and will be
    /// written again, with the same bytes.
    pub fn done_shards(&self) -> Result<BTreeSet<u32>> {
        let path = self.done_path();
        let text = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
            Err(err) => return Err(StoreError::io("read", &path)(err)),
        };
        let text = String::from_utf8_lossy(&text);
        // Only newline-terminated lines count: a crash mid-append leaves a partial last line.
        let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
        Ok(complete
            .lines()
            .filter_map(|line| line.trim().parse::<u32>().ok())
            .filter(|&index| self.shard_path(index).is_file())
            .collect())
    }

    /// Writes shard `index` (temporary file, fsync, rename), then logs it in `shards.done`
    /// (append, fsync). Rewriting a shard replaces it.
    pub fn write_shard(&self, index: u32, table: &FeatureTable) -> Result<()> {
        write_parquet(&self.shard_path(index), table)?;
        let path = self.done_path();
        let mut log = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(StoreError::io("open", &path))?;
        let len = log.metadata().map_err(StoreError::io("stat", &path))?.len();
        let mut line = format!("{index}\n");
        if len > 0 {
            let mut last = [0u8; 1];
            log.read_exact_at(&mut last, len - 1)
                .map_err(StoreError::io("read", &path))?;
            if last[0] != b'\n' {
                // Terminate a line a crash cut short, so it cannot merge with this one.
                line.insert(0, '\n');
            }
        }
        log.write_all(line.as_bytes())
            .map_err(StoreError::io("append to", &path))?;
        log.sync_all().map_err(StoreError::io("fsync", &path))
    }

    /// Atomically writes a file at `rel` (a relative '/'-separated path) in the staging dir.
    pub fn write_file(&self, rel: &str, bytes: &[u8]) -> Result<()> {
        let path = self.data_path(rel)?;
        write_atomic(&path, bytes)
    }

    /// Atomically writes a feature table as Parquet at `rel` in the staging dir.
    pub fn write_table(&self, rel: &str, table: &FeatureTable) -> Result<()> {
        let path = self.data_path(rel)?;
        write_parquet(&path, table)
    }

    /// Checks `rel` and creates its parent directories.
    fn data_path(&self, rel: &str) -> Result<PathBuf> {
        let invalid = |reason| StoreError::InvalidName {
            name: rel.to_string(),
            path: self.dir.clone(),
            reason,
        };
        if rel.is_empty() {
            return Err(invalid("empty file name"));
        }
        if rel == MANIFEST_FILE || rel == SHARDS_DONE_FILE {
            return Err(invalid("reserved file name"));
        }
        for component in Path::new(rel).components() {
            match component {
                Component::Normal(part) if !part.to_string_lossy().starts_with('.') => {}
                Component::Normal(_) => {
                    return Err(invalid("hidden names are reserved for temporary files"));
                }
                _ => return Err(invalid("expected a relative path without '.' or '..'")),
            }
        }
        let path = self.dir.join(rel);
        if let Some(parent) = path.parent() {
            create_dir_all(parent)?;
        }
        Ok(path)
    }

    /// Publishes the artifact: removes temporary files and `shards.done`, lists every data file
    /// with size and blake3 in `manifest.files`, writes `manifest.json` (fsync), renames
    /// `staging/<key>` to `objects/..` and fsyncs the parents. On error nothing is published and
    /// the staging directory stays for another try.
    pub fn publish(self, mut manifest: Manifest) -> Result<Manifest> {
        if manifest.key != self.key {
            return Err(StoreError::KeyMismatch {
                expected: self.key.to_string(),
                found: manifest.key.to_string(),
                path: self.dir.clone(),
            });
        }
        if self.target.join(MANIFEST_FILE).exists() {
            return Err(StoreError::AlreadyPublished {
                key: self.key.to_string(),
                path: self.target.clone(),
            });
        }
        remove_bookkeeping(&self.dir, true)?;
        let mut files = Vec::new();
        for rel in walk_files(&self.dir)? {
            files.push(hash_file(&self.dir.join(&rel), &rel)?);
        }
        manifest.files = files;
        write_atomic(&self.dir.join(MANIFEST_FILE), &manifest.to_json_bytes())?;
        let parent = self
            .target
            .parent()
            .expect("an artifact dir is objects/<prefix>/<rest>");
        create_dir_all(parent)?;
        std::fs::rename(&self.dir, &self.target)
            .map_err(StoreError::io("publish (rename) to", &self.target))?;
        sync_dir(parent)?;
        if let Some(staging) = self.dir.parent() {
            sync_dir(staging)?;
        }
        Ok(manifest)
    }
}

pub(crate) fn shard_file_name(index: u32) -> String {
    format!("shard-{index:05}.parquet")
}

/// Removes temporary files (anywhere), and `shards.done` and a manifest left by a failed publish
/// (top level only: a data file may be called `sub/manifest.json`).
fn remove_bookkeeping(dir: &Path, top: bool) -> Result<()> {
    for name in list_dir(dir)? {
        let path = dir.join(&name);
        let meta = std::fs::symlink_metadata(&path).map_err(StoreError::io("stat", &path))?;
        if meta.is_dir() {
            remove_bookkeeping(&path, false)?;
        } else if is_temp_name(&name)
            || (top && (name == SHARDS_DONE_FILE || name == MANIFEST_FILE))
        {
            std::fs::remove_file(&path).map_err(StoreError::io("remove", &path))?;
        }
    }
    Ok(())
}

/// Relative '/'-separated paths of the regular files under `dir`, sorted. Anything that is not
/// a regular file or a directory (a symlink, a socket) is an error: an artifact must be
/// self-contained.
fn walk_files(dir: &Path) -> Result<Vec<String>> {
    fn walk(dir: &Path, prefix: &str, out: &mut Vec<String>) -> Result<()> {
        for name in list_dir(dir)? {
            let path = dir.join(&name);
            let rel = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}/{name}")
            };
            let meta = std::fs::symlink_metadata(&path).map_err(StoreError::io("stat", &path))?;
            if meta.is_dir() {
                walk(&path, &rel, out)?;
            } else if meta.is_file() {
                out.push(rel);
            } else {
                return Err(StoreError::Format {
                    path,
                    reason: "not a regular file (symlinks and special files cannot be part of an artifact)".into(),
                });
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, "", &mut out)?;
    out.sort();
    Ok(out)
}

/// Size and blake3 of a file, streamed.
fn hash_file(path: &Path, rel: &str) -> Result<FileEntry> {
    let mut file = File::open(path).map_err(StoreError::io("open", path))?;
    let mut hasher = blake3::Hasher::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = file
            .read(&mut buffer)
            .map_err(StoreError::io("read", path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        bytes += n as u64;
    }
    Ok(FileEntry {
        path: rel.to_string(),
        bytes,
        blake3: hasher.finalize().to_hex().to_string(),
    })
}

/// Names in a directory, sorted; a missing directory is empty.
fn list_dir(dir: &Path) -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(StoreError::io("list", dir)(err)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(StoreError::io("list", dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        names.push(name);
    }
    names.sort();
    Ok(names)
}

/// Experiment and stage names become file names: no separators, no hidden or special names.
fn validate_name(name: &str, parent: &Path) -> Result<()> {
    let invalid = |reason| StoreError::InvalidName {
        name: name.to_string(),
        path: parent.to_path_buf(),
        reason,
    };
    if name.is_empty() {
        return Err(invalid("empty name"));
    }
    if name.len() > 255 {
        return Err(invalid("longer than 255 bytes"));
    }
    if name.starts_with('.') {
        return Err(invalid("must not start with '.'"));
    }
    if name.contains(['/', '\\', '\0']) {
        return Err(invalid("must not contain '/', '\\' or NUL"));
    }
    Ok(())
}

fn read_name_file(path: &Path) -> Result<Option<Key>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(StoreError::io("read", path)(err)),
    };
    Key::new(text.trim())
        .map(Some)
        .map_err(|_| StoreError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("expected a 64-hex-digit key, found {:?}", text.trim()),
        })
}
