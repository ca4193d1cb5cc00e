//! A user's own dataset: one JSON object per line,
//! `{"id": "a1", "image": "img/a1.png", "prompt": "What is shown?", "answer": "a cat"}`.
//!
//! `id` (string or integer) and `prompt` are required; `image` (absent for text-only models),
//! `answer` (teacher-forcing target) and `references` (evaluation answers; defaults to
//! `[answer]`) are optional. Relative image paths are resolved under the image root. Blank lines
//! are skipped; unknown keys are errors, so a misspelt key does not go unnoticed.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{DataError, Result};
use crate::json::parse_json;
use crate::sample::{Sample, SampleMeta, Selection, Task};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonlRecord {
    id: JsonlId,
    #[serde(default)]
    image: Option<PathBuf>,
    prompt: String,
    #[serde(default)]
    answer: Option<String>,
    #[serde(default)]
    references: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum JsonlId {
    Text(String),
    Number(u64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonlOptions {
    pub file: PathBuf,
    /// Relative `image` paths are joined to this folder; `None` means the JSONL file's folder.
    pub image_root: Option<PathBuf>,
    pub selection: Selection,
}

/// Reads the samples of a JSONL file in line order.
pub fn read_jsonl(options: &JsonlOptions) -> Result<Vec<Sample>> {
    let path = &options.file;
    let text = fs::read_to_string(path).map_err(|source| DataError::Read {
        path: path.clone(),
        source,
    })?;
    let image_root = options
        .image_root
        .clone()
        .unwrap_or_else(|| path.parent().map(Path::to_path_buf).unwrap_or_default());

    let mut seen = BTreeSet::new();
    let mut samples = Vec::new();
    for (line_index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let record: JsonlRecord =
            parse_json(path, line.as_bytes()).map_err(|error| match error {
                // Positions inside one line: report the line of the file instead.
                DataError::Json {
                    path,
                    json_path,
                    column,
                    message,
                    ..
                } => DataError::Json {
                    path,
                    json_path,
                    line: line_index + 1,
                    column,
                    message,
                },
                other => other,
            })?;
        let id = match record.id {
            JsonlId::Text(id) => id,
            JsonlId::Number(id) => id.to_string(),
        };
        if !seen.insert(id.clone()) {
            return Err(DataError::Invalid {
                path: path.clone(),
                message: format!("line {}: id `{id}` occurs twice", line_index + 1),
            });
        }
        let references = record
            .references
            .unwrap_or_else(|| record.answer.iter().cloned().collect());
        samples.push(Sample {
            id,
            task: Task::Custom,
            image: record.image.map(|image| image_root.join(image)),
            prompt: Some(record.prompt),
            response: record.answer,
            references,
            meta: SampleMeta::default(),
        });
    }
    Ok(options.selection.apply(samples))
}
