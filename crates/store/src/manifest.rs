//! `manifest.json`: what an artifact is, how it was made and which files it holds.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};
use crate::key::Key;

/// File name of the manifest inside an artifact directory. Its presence is what makes an
/// artifact exist: it is written last and moves into `objects/` together with the data.
pub const MANIFEST_FILE: &str = "manifest.json";

/// Describes one artifact. Serialised as pretty JSON with the fields in declaration order and
/// maps sorted by key (BTreeMap; `serde_json` without `preserve_order` also sorts the objects
/// inside `params` and `summary`), so equal manifests are equal bytes.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub key: Key,
    /// Stage kind, e.g. "aggregate".
    pub kind: String,
    pub kind_version: u32,
    /// Stage name in the experiment file (informational; not part of the key).
    pub stage: String,
    /// Canonical resolved parameters.
    pub params: serde_json::Value,
    /// Role -> upstream key.
    pub inputs: BTreeMap<String, Key>,
    /// Model/dataset fingerprints.
    pub fingerprints: BTreeMap<String, String>,
    /// Every data file of the artifact (filled in by `Staging::publish`), sorted by path.
    pub files: Vec<FileEntry>,
    pub rows: Option<u64>,
    /// Small stage-specific results (metrics, shapes), shown by `xlvlm show`.
    pub summary: serde_json::Value,
    /// RFC 3339 UTC.
    pub started_at: String,
    pub finished_at: String,
    pub seconds: f64,
    pub xlvlm_version: String,
}

/// One data file of an artifact: path relative to the artifact directory ('/'-separated),
/// size in bytes and blake3 digest (64 lowercase hex digits).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct FileEntry {
    pub path: String,
    pub bytes: u64,
    pub blake3: String,
}

impl Manifest {
    /// Reads a manifest file; `Ok(None)` when it does not exist.
    pub fn read(path: &Path) -> Result<Option<Manifest>> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(StoreError::io("read", path)(err)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| StoreError::Json {
                path: path.to_path_buf(),
                source,
            })
    }

    /// The pretty JSON written to `manifest.json` (with a trailing newline).
    pub fn to_json_bytes(&self) -> Vec<u8> {
        let mut bytes =
            serde_json::to_vec_pretty(self).expect("a Manifest holds only JSON-representable data");
        bytes.push(b'\n');
        bytes
    }

    /// The file entry for `path`, if the artifact lists it.
    pub fn file(&self, path: &str) -> Option<&FileEntry> {
        self.files.iter().find(|entry| entry.path == path)
    }

    /// Total size of the listed data files.
    pub fn data_bytes(&self) -> u64 {
        self.files.iter().map(|entry| entry.bytes).sum()
    }
}

/// The current time as RFC 3339 UTC with millisecond precision, e.g. `2026-11-27T16:02:03.123Z`,
/// for `Manifest::started_at` / `finished_at`.
pub fn now_rfc3339() -> String {
    rfc3339(SystemTime::now())
}

/// `time` as RFC 3339 UTC with millisecond precision.
pub fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}
