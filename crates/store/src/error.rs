//! Errors of the artifact store and the table readers/writers. Every variant that concerns a file
//! names it, so a user can tell which artifact or input is at fault.

use std::path::PathBuf;

pub type Result<T> = std::result::Result<T, StoreError>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An operating-system error while doing `op` on `path` (disk full, permission, missing...).
    #[error("cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The Parquet library failed to encode or decode `path`.
    #[error("Parquet error in {path}: {source}")]
    Parquet {
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// Building an Arrow array for `path` failed.
    #[error("Arrow error for {path}: {source}")]
    Arrow {
        path: PathBuf,
        #[source]
        source: arrow_schema::ArrowError,
    },
    /// A JSON file (manifest) could not be read or written.
    #[error("invalid JSON in {path}: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A file exists and is readable but its content is not what the reader expects
    /// (unsupported column type, null value, ragged vectors, bad `.npy` header, ...).
    #[error("{path}: {reason}")]
    Format { path: PathBuf, reason: String },
    /// A feature table is inconsistent (unequal column lengths, NaN in a vector, ...).
    /// `path` is the file being written, when there is one.
    #[error("invalid feature table{}: {reason}", path.as_ref().map(|p| format!(" for {}", p.display())).unwrap_or_default())]
    InvalidTable {
        path: Option<PathBuf>,
        reason: String,
    },
    /// A string that should be a 64-hex-digit artifact key is not one.
    #[error("invalid artifact key {value:?}: {reason}")]
    InvalidKey { value: String, reason: &'static str },
    /// An experiment/stage name or a relative file name inside an artifact is not acceptable.
    #[error("invalid name {name:?} under {path}: {reason}")]
    InvalidName {
        name: String,
        path: PathBuf,
        reason: &'static str,
    },
    /// A published artifact is damaged: a listed file is missing or its size or checksum differs.
    #[error("corrupt artifact at {path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    /// Publishing a key that is already published (the caller should hold the key lock and check
    /// `Store::contains` first).
    #[error("artifact {key} is already published at {path}")]
    AlreadyPublished { key: String, path: PathBuf },
    /// The manifest handed to `publish` is for another key than the staging area.
    #[error("manifest key {found} does not match the staging area {path} (key {expected})")]
    KeyMismatch {
        expected: String,
        found: String,
        path: PathBuf,
    },
}

impl StoreError {
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> StoreError {
        let path = path.into();
        move |source| StoreError::Io { op, path, source }
    }
}
