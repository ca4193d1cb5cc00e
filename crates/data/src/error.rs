//! Errors of the dataset readers and the shapes-world generator.

use std::path::PathBuf;

/// Everything that can go wrong reading a dataset or writing the shapes world. Each variant names
/// the file involved and what was expected, so a user can fix the input without reading the code.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A JSON document (or one JSONL line) that does not have the expected shape.
    #[error("{}:{line}:{column}: at `{json_path}`: {message}", path.display())]
    Json {
        path: PathBuf,
        /// Location inside the document, e.g. `images[3].sentences[0].raw`.
        json_path: String,
        line: usize,
        column: usize,
        message: String,
    },

    /// The file parsed, but its content is inconsistent (unknown split, duplicate id, ...).
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },

    #[error("sample `{sample_id}`: image file {} does not exist", image.display())]
    MissingImage { sample_id: String, image: PathBuf },

    #[error("invalid option `{option}`: {message}")]
    Option {
        option: &'static str,
        message: String,
    },

    #[error("cannot encode image {}: {source}", path.display())]
    Encode {
        path: PathBuf,
        #[source]
        source: image::ImageError,
    },
}

pub type Result<T, E = DataError> = std::result::Result<T, E>;
