//! Errors of the processor: every one names the file or the input it is about.

use std::path::PathBuf;

/// Everything that can go wrong while loading a checkpoint's processor files or encoding inputs.
#[derive(Debug, thiserror::Error)]
pub enum ProcessorError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A JSON file is not valid JSON or does not have the expected shape.
    #[error("{path}: {detail}")]
    BadFile { path: PathBuf, detail: String },
    /// A file the processor needs is missing from the checkpoint folder.
    #[error("{dir}: no {what} found (looked for {looked_for})")]
    Missing {
        dir: PathBuf,
        what: &'static str,
        looked_for: String,
    },
    /// The `tokenizers` library rejected a file or an input.
    #[error("tokenizer ({context}): {detail}")]
    Tokenizer { context: String, detail: String },
    /// The chat template failed to compile or to render.
    #[error("chat template from {source_file}: {detail}")]
    ChatTemplate { source_file: String, detail: String },
    /// The checkpoint has no chat template but one was asked for.
    #[error("{dir}: the checkpoint has no chat template (looked in {looked_for})")]
    NoChatTemplate { dir: PathBuf, looked_for: String },
    /// An image could not be decoded.
    #[error("image {origin}: {detail}")]
    Image { origin: String, detail: String },
    /// The inputs do not fit together (image count vs placeholders, empty batch, ...).
    #[error("{0}")]
    Input(String),
}

/// Result alias of this crate.
pub type Result<T, E = ProcessorError> = std::result::Result<T, E>;

pub(crate) fn read_text(path: &std::path::Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| ProcessorError::Io {
        path: path.to_path_buf(),
        source,
    })
}

pub(crate) fn read_json(path: &std::path::Path) -> Result<serde_json::Value> {
    let text = read_text(path)?;
    serde_json::from_str(&text).map_err(|e| ProcessorError::BadFile {
        path: path.to_path_buf(),
        detail: format!("not valid JSON: {e}"),
    })
}
