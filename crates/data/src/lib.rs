//! Dataset readers and the shapes world.
//!
//! Readers turn COCO Karpathy captions ([`read_karpathy`]), VQAv2 questions and annotations
//! ([`read_vqav2`]) and a user's JSONL file ([`read_jsonl`]) into one [`Sample`] type. The
//! shapes world ([`world::generate_world`]) writes a small image dataset in those same formats,
//! so every workflow can run offline on data whose content is known.

mod dataset;
mod error;
mod json;
mod jsonl;
mod karpathy;
mod numpy_choice;
mod sample;
mod vqav2;
pub mod world;

pub use dataset::{DatasetSource, LoadedSamples};
pub use error::{DataError, Result};
pub use json::{read_json, write_json};
pub use jsonl::{JsonlOptions, read_jsonl};
pub use karpathy::{
    KarpathyFile, KarpathyImage, KarpathyOptions, KarpathySentence, caption_tokens, read_karpathy,
};
pub use sample::{MissingImages, Sample, SampleFilter, SampleMeta, Selection, Task, check_images};
pub use vqav2::{
    AnswerTypeToAnswer, COCO_IMAGE_TEMPLATE, VqaAnnotation, VqaAnnotationsFile, VqaAnswer,
    VqaOptions, VqaQuestion, VqaQuestionsFile, read_vqav2, resolve_image_template,
    vqa_annotations_file_name, vqa_questions_file_name,
};
pub use world::{WorldOptions, WorldSummary, generate_world};
