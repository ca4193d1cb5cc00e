//! COCO captions in Andrej Karpathy's split file (`dataset_coco.json`).
//!
//! Layout: `{"images": [{"filepath", "sentids", "filename", "imgid", "split", "sentences":
//! [{"tokens", "raw", "imgid", "sentid"}], "cocoid"}], "dataset": "coco"}`, with `split` one of
//! `train` (82 783 images), `restval` (30 504), `val` (5 000) and `test` (5 000).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};
use crate::json::read_json;
use crate::sample::{Sample, SampleMeta, Selection, Task};

/// The whole file. Fields the readers do not need are optional so that trimmed files load too.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KarpathyFile {
    pub images: Vec<KarpathyImage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KarpathyImage {
    /// Image folder relative to the image root (`train2014`, `val2014`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filepath: Option<String>,
    #[serde(default)]
    pub sentids: Vec<u64>,
    pub filename: String,
    pub imgid: u64,
    pub split: String,
    pub sentences: Vec<KarpathySentence>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cocoid: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KarpathySentence {
    #[serde(default)]
    pub tokens: Vec<String>,
    pub raw: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imgid: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sentid: Option<u64>,
}

impl KarpathyFile {
    pub fn read(path: &Path) -> Result<Self> {
        read_json(path)
    }
}

/// Where the captions are and which of them to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KarpathyOptions {
    /// The `dataset_coco.json` file.
    pub annotation_file: PathBuf,
    /// Folder holding the image folders named by `filepath` (`<root>/val2014/COCO_val2014_….jpg`).
    pub image_root: PathBuf,
    /// Splits to read, compared exactly with `images[].split`. The Python seed reads one split, so
    /// `["train"]` leaves out `restval`; the usual 113 287-image training set is
    /// `["train", "restval"]`.
    pub splits: Vec<String>,
    pub selection: Selection,
}

/// Reads captioning samples, one per image, in file order.
///
/// `id` is the file name stem, `response` the first raw caption (the seed's teacher-forcing
/// target) and `references` all raw captions.
pub fn read_karpathy(options: &KarpathyOptions) -> Result<Vec<Sample>> {
    let path = &options.annotation_file;
    if options.splits.is_empty() {
        return Err(DataError::Option {
            option: "splits",
            message: "name at least one split (train, restval, val or test)".into(),
        });
    }
    let file = KarpathyFile::read(path)?;
    let invalid = |message: String| DataError::Invalid {
        path: path.clone(),
        message,
    };

    let present: BTreeSet<&str> = file
        .images
        .iter()
        .map(|image| image.split.as_str())
        .collect();
    for split in &options.splits {
        if !present.contains(split.as_str()) {
            let present: Vec<&str> = present.iter().copied().collect();
            return Err(invalid(format!(
                "no image has split `{split}`; splits in this file: {}",
                present.join(", ")
            )));
        }
    }

    let mut seen_ids = BTreeSet::new();
    let mut samples = Vec::new();
    for (index, image) in file.images.into_iter().enumerate() {
        if !options.splits.contains(&image.split) {
            continue;
        }
        let id = Path::new(&image.filename)
            .file_stem()
            .and_then(|stem| stem.to_str())
            .filter(|stem| !stem.is_empty())
            .ok_or_else(|| {
                invalid(format!(
                    "images[{index}].filename `{}` is not a file name",
                    image.filename
                ))
            })?
            .to_string();
        if !seen_ids.insert(id.clone()) {
            return Err(invalid(format!(
                "images[{index}].filename `{}` occurs twice",
                image.filename
            )));
        }
        if image.sentences.is_empty() {
            return Err(invalid(format!(
                "images[{index}] (`{}`) has no sentences; expected at least one caption",
                image.filename
            )));
        }
        let folder = image
            .filepath
            .clone()
            .or_else(|| coco_folder_of(&image.filename).map(str::to_string));
        let image_path = match folder {
            Some(folder) => options.image_root.join(folder).join(&image.filename),
            None => options.image_root.join(&image.filename),
        };
        let references: Vec<String> = image
            .sentences
            .into_iter()
            .map(|sentence| sentence.raw)
            .collect();
        samples.push(Sample {
            id,
            task: Task::Captioning,
            image: Some(image_path),
            prompt: None,
            response: references.first().cloned(),
            references,
            meta: SampleMeta {
                image_id: Some(image.cocoid.unwrap_or(image.imgid)),
                split: Some(image.split),
                ..SampleMeta::default()
            },
        });
    }
    Ok(options.selection.apply(samples))
}

/// The COCO image folder a file name belongs to, as the seed infers it when `filepath` is absent.
fn coco_folder_of(filename: &str) -> Option<&'static str> {
    ["train2014", "val2014", "test2014", "test2015"]
        .into_iter()
        .find(|folder| filename.contains(folder))
}

/// Lower-cased words of a caption without punctuation, the way Karpathy's `tokens` are written.
pub fn caption_tokens(raw: &str) -> Vec<String> {
    raw.split(|c: char| !c.is_alphanumeric() && c != '\'')
        .filter(|word| !word.is_empty())
        .map(str::to_lowercase)
        .collect()
}
