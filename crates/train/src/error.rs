//! Errors of training and evaluation: each names the file or option that was wrong.

use std::path::PathBuf;

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, TrainError>;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Model(#[from] xlvlm_model::ModelError),
    #[error(transparent)]
    Processor(#[from] xlvlm_processor::ProcessorError),
    #[error(transparent)]
    Data(#[from] xlvlm_data::DataError),
    #[error(transparent)]
    Metrics(#[from] xlvlm_metrics::MetricsError),
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("building the tokenizer: {0}")]
    Tokenizer(String),
    #[error("invalid option {option}: {message}")]
    Option {
        option: &'static str,
        message: String,
    },
    #[error("{0}")]
    Input(String),
}

impl TrainError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
