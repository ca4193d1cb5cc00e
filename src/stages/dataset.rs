//! From a `[data.*]` section to the samples a model stage runs on.

use anyhow::Context;
use xlvlm_data::{
    DatasetSource, JsonlOptions, KarpathyOptions, LoadedSamples, MissingImages, SampleFilter,
    Selection, VqaOptions,
};
use xlvlm_spec::{DataFormat, DataSpec, MissingImagesPolicy};

/// The reader and its options for a dataset section.
pub fn source(spec: &DataSpec) -> anyhow::Result<DatasetSource> {
    let selection = Selection {
        dataset_size: spec.dataset_size,
        seed: spec.seed.unwrap_or(0),
        filter: SampleFilter {
            answers: spec.filter.answers.clone(),
            answer_types: spec.filter.answer_types.clone(),
            question_types: spec.filter.question_types.clone(),
            image_ids: Vec::new(),
        },
        limit: spec.limit,
    };
    let image_root = || {
        spec.images
            .clone()
            .or_else(|| spec.annotations.parent().map(std::path::Path::to_path_buf))
    };
    Ok(match spec.format {
        DataFormat::CocoKarpathy => DatasetSource::Karpathy(KarpathyOptions {
            annotation_file: spec.annotations.clone(),
            image_root: image_root().unwrap_or_default(),
            splits: spec
                .split
                .as_deref()
                .unwrap_or("test")
                .split('+')
                .map(str::to_string)
                .collect(),
            selection,
        }),
        DataFormat::Vqav2 => {
            let split = spec
                .split
                .clone()
                .context("a VQAv2 dataset needs `split` (e.g. `split = \"val2014\"`)")?;
            let questions_file = spec
                .questions
                .clone()
                .context("a VQAv2 dataset needs `questions` (the ..._questions.json file)")?;
            let mut options = VqaOptions::for_split(
                spec.annotations
                    .parent()
                    .unwrap_or(std::path::Path::new(".")),
                &image_root().unwrap_or_default(),
                &split,
            );
            options.questions_file = questions_file;
            options.annotations_file = Some(spec.annotations.clone());
            if let Some(template) = &spec.image_template {
                options.image_template = template.clone();
            }
            options.selection = selection;
            DatasetSource::Vqav2(options)
        }
        DataFormat::Jsonl => DatasetSource::Jsonl(JsonlOptions {
            file: spec.annotations.clone(),
            image_root: spec.images.clone(),
            selection,
        }),
    })
}

/// Reads and selects the samples of a dataset section, checking its images up front.
pub fn load(name: &str, spec: &DataSpec) -> anyhow::Result<LoadedSamples> {
    let policy = match spec.missing_images {
        MissingImagesPolicy::Error => MissingImages::Error,
        MissingImagesPolicy::Skip => MissingImages::Skip,
    };
    source(spec)?
        .load(policy)
        .with_context(|| format!("reading dataset `{name}`"))
}
