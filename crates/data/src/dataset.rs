//! One entry point over the three readers, for the stages that take "a dataset".

use std::path::Path;

use crate::error::Result;
use crate::jsonl::{JsonlOptions, read_jsonl};
use crate::karpathy::{KarpathyOptions, read_karpathy};
use crate::sample::{MissingImages, Sample, check_images};
use crate::vqav2::{VqaOptions, read_vqav2};

/// A dataset in one of the supported formats, with its reader options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatasetSource {
    Karpathy(KarpathyOptions),
    Vqav2(VqaOptions),
    Jsonl(JsonlOptions),
}

/// Samples ready for a stage, and how many were dropped for a missing image.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedSamples {
    pub samples: Vec<Sample>,
    pub skipped_missing_images: usize,
}

impl DatasetSource {
    /// Reads and selects the samples, without touching the image files.
    pub fn read(&self) -> Result<Vec<Sample>> {
        match self {
            DatasetSource::Karpathy(options) => read_karpathy(options),
            DatasetSource::Vqav2(options) => read_vqav2(options),
            DatasetSource::Jsonl(options) => read_jsonl(options),
        }
    }

    /// Reads the samples and checks up front that their images exist.
    pub fn load(&self, missing_images: MissingImages) -> Result<LoadedSamples> {
        let mut samples = self.read()?;
        let skipped_missing_images = check_images(&mut samples, missing_images)?;
        Ok(LoadedSamples {
            samples,
            skipped_missing_images,
        })
    }

    /// The annotation files the samples come from (for fingerprinting a dataset in a cache key).
    pub fn annotation_files(&self) -> Vec<&Path> {
        match self {
            DatasetSource::Karpathy(options) => vec![options.annotation_file.as_path()],
            DatasetSource::Vqav2(options) => std::iter::once(options.questions_file.as_path())
                .chain(options.annotations_file.as_deref())
                .collect(),
            DatasetSource::Jsonl(options) => vec![options.file.as_path()],
        }
    }
}
