//! Errors of the model crate: every message names the file or input that was wrong and what was expected.

use std::path::PathBuf;

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, ModelError>;

/// What can go wrong while resolving, loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid JSON in {path}: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("model source {source_name:?} not found; looked in: {}", looked_in.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    SourceNotFound {
        source_name: String,
        looked_in: Vec<PathBuf>,
    },
    #[error("{path}: {message}")]
    Config { path: PathBuf, message: String },
    #[error("invalid safetensors file {path}: {message}")]
    Safetensors { path: PathBuf, message: String },
    #[error("checkpoint {dir}: missing tensor {name} (tried: {})", tried.join(", "))]
    MissingTensor {
        dir: PathBuf,
        name: String,
        tried: Vec<String>,
    },
    #[error("checkpoint tensor {name} in {path} has shape {found:?}, expected {expected:?}")]
    TensorShape {
        path: PathBuf,
        name: String,
        found: Vec<usize>,
        expected: Vec<usize>,
    },
    #[error("checkpoint tensor {name} in {path} has dtype {dtype}, expected F32, F16 or BF16")]
    TensorDType {
        path: PathBuf,
        name: String,
        dtype: String,
    },
    #[error("unknown hook point {name:?}; valid hook points: {}", valid.join(", "))]
    UnknownHook { name: String, valid: Vec<String> },
    #[error("invalid input: {0}")]
    Input(String),
}

impl ModelError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
    pub(crate) fn config(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::Config {
            path: path.into(),
            message: message.into(),
        }
    }
}
