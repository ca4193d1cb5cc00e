//! The one sample type every reader produces, and the selections applied to a list of samples.

use std::path::PathBuf;

use crate::error::{DataError, Result};
use crate::numpy_choice::numpy_choice_without_replacement;

/// What a sample asks the model to do; decides which prompt template the extract stage uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Task {
    /// Describe the image (COCO Karpathy); `prompt` is `None`, the model's caption prompt is used.
    Captioning,
    /// Answer a short question about the image (VQAv2); `prompt` holds the question.
    Vqa,
    /// A user's own prompt (JSONL).
    Custom,
}

/// One dataset item, the unit the extract and steer stages consume.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Stable, unique id: the image file stem for captions (`COCO_val2014_000000391895`), the
    /// question id for VQAv2, the user's id for JSONL.
    pub id: String,
    pub task: Task,
    /// Image file, resolved under the dataset's image root.
    pub image: Option<PathBuf>,
    /// The question (VQA) or the user's prompt; `None` for captioning.
    pub prompt: Option<String>,
    /// Teacher-forcing target: the first caption, the VQAv2 `multiple_choice_answer`, or the JSONL
    /// `answer`.
    pub response: Option<String>,
    /// Ground truth for evaluation: all captions of the image, or the 10 VQAv2 answers.
    pub references: Vec<String>,
    pub meta: SampleMeta,
}

/// Fields some datasets carry; `None` where a dataset does not have them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SampleMeta {
    /// COCO image id (`cocoid` in Karpathy files, `image_id` in VQAv2).
    pub image_id: Option<u64>,
    pub question_id: Option<u64>,
    /// VQAv2 `answer_type`: `yes/no`, `number` or `other`.
    pub answer_type: Option<String>,
    /// VQAv2 `question_type`, e.g. `what color is the`.
    pub question_type: Option<String>,
    /// The split the sample was read from (`train`, `val2014`, ...).
    pub split: Option<String>,
}

/// Keeps samples by their metadata. Empty lists keep everything; non-empty lists keep samples
/// whose field equals one of the listed values exactly (the Python seed matched substrings, so
/// `no` also selected `none` and `snow`; an exact match avoids that).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SampleFilter {
    pub answer_types: Vec<String>,
    pub question_types: Vec<String>,
    /// Compared with `response` (the VQAv2 `multiple_choice_answer`) after trimming and
    /// lower-casing both sides.
    pub answers: Vec<String>,
    pub image_ids: Vec<u64>,
}

impl SampleFilter {
    pub fn is_empty(&self) -> bool {
        self.answer_types.is_empty()
            && self.question_types.is_empty()
            && self.answers.is_empty()
            && self.image_ids.is_empty()
    }

    pub fn keeps(&self, sample: &Sample) -> bool {
        let listed = |list: &[String], value: Option<&String>| {
            list.is_empty() || value.is_some_and(|value| list.iter().any(|item| item == value))
        };
        let answer_listed = self.answers.is_empty()
            || sample.response.as_deref().is_some_and(|response| {
                let response = response.trim().to_lowercase();
                self.answers
                    .iter()
                    .any(|answer| answer.trim().to_lowercase() == response)
            });
        listed(&self.answer_types, sample.meta.answer_type.as_ref())
            && listed(&self.question_types, sample.meta.question_type.as_ref())
            && answer_listed
            && (self.image_ids.is_empty()
                || sample
                    .meta
                    .image_id
                    .is_some_and(|id| self.image_ids.contains(&id)))
    }
}

/// How many samples to keep and which. Applied in this order, as the Python seed does: a random
/// subset of `dataset_size`, then the filter, then the first `limit`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// Keep a random subset of this many samples (the seed's `--dataset_size`); `None` keeps
    /// all. The subset is exactly `np.random.default_rng(seed).choice(samples, dataset_size,
    /// replace=False)`: the same samples in the same (random) order as the seed's, so paper
    /// numbers computed on a subset can be reproduced.
    pub dataset_size: Option<usize>,
    /// Seed of the random subset.
    pub seed: u64,
    pub filter: SampleFilter,
    /// Keep at most this many samples, after the subset and the filter.
    pub limit: Option<usize>,
}

impl Selection {
    pub fn apply(&self, samples: Vec<Sample>) -> Vec<Sample> {
        let mut kept = samples;
        if let Some(size) = self.dataset_size {
            if size > kept.len() {
                // NumPy refuses this; keeping every sample is what a user asking for "up to
                // N samples" wants.
                log::warn!(
                    "dataset_size {size} is larger than the {} samples read; keeping all of them",
                    kept.len()
                );
            } else {
                let order = numpy_choice_without_replacement(self.seed, kept.len(), size);
                let mut slots: Vec<Option<Sample>> = kept.into_iter().map(Some).collect();
                kept = order
                    .into_iter()
                    .filter_map(|index| slots[index].take())
                    .collect();
            }
        }
        if !self.filter.is_empty() {
            kept.retain(|sample| self.filter.keeps(sample));
        }
        if let Some(limit) = self.limit {
            kept.truncate(limit);
        }
        kept
    }
}

/// What to do with a sample whose image file does not exist.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MissingImages {
    /// Stop with an error naming the first such sample and its path.
    #[default]
    Error,
    /// Drop such samples; their number is logged and returned.
    Skip,
}

/// Checks up front that every sample's image exists, so a long extraction does not fail at
/// sample 10 000. Returns how many samples were dropped (always 0 with [`MissingImages::Error`]).
pub fn check_images(samples: &mut Vec<Sample>, policy: MissingImages) -> Result<usize> {
    let missing = |sample: &Sample| sample.image.as_ref().is_some_and(|image| !image.is_file());
    match policy {
        MissingImages::Error => match samples.iter().find(|sample| missing(sample)) {
            Some(sample) => Err(DataError::MissingImage {
                sample_id: sample.id.clone(),
                image: sample.image.clone().unwrap_or_default(),
            }),
            None => Ok(0),
        },
        MissingImages::Skip => {
            let before = samples.len();
            samples.retain(|sample| !missing(sample));
            let dropped = before - samples.len();
            if dropped > 0 {
                log::warn!("skipped {dropped} of {before} samples whose image file is missing");
            }
            Ok(dropped)
        }
    }
}
