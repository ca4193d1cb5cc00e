//! VQAv2: `v2_OpenEnded_mscoco_<split>_questions.json` joined with
//! `v2_mscoco_<split>_annotations.json` by `question_id`, and the `answer_type_to_answer` JSON.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};
use crate::json::read_json;
use crate::sample::{Sample, SampleMeta, Selection, Task};

/// `v2_OpenEnded_mscoco_<split>_questions.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VqaQuestionsFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_subtype: Option<String>,
    pub questions: Vec<VqaQuestion>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VqaQuestion {
    pub image_id: u64,
    pub question: String,
    pub question_id: u64,
}

/// `v2_mscoco_<split>_annotations.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VqaAnnotationsFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_subtype: Option<String>,
    pub annotations: Vec<VqaAnnotation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_type: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VqaAnnotation {
    pub question_type: String,
    pub multiple_choice_answer: String,
    /// Ten answers from different annotators in VQAv2.
    pub answers: Vec<VqaAnswer>,
    pub image_id: u64,
    /// `yes/no`, `number` or `other`.
    pub answer_type: String,
    pub question_id: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VqaAnswer {
    pub answer: String,
    /// `yes`, `maybe` or `no`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer_confidence: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer_id: Option<u64>,
}

impl VqaQuestionsFile {
    pub fn read(path: &Path) -> Result<Self> {
        read_json(path)
    }
}

impl VqaAnnotationsFile {
    pub fn read(path: &Path) -> Result<Self> {
        read_json(path)
    }
}

/// The official file names of one split inside `dir`.
pub fn vqa_questions_file_name(split: &str) -> String {
    format!("v2_OpenEnded_mscoco_{split}_questions.json")
}

pub fn vqa_annotations_file_name(split: &str) -> String {
    format!("v2_mscoco_{split}_annotations.json")
}

/// Image path of COCO: `<split>/COCO_<split>_<image id, 12 digits>.jpg`.
pub const COCO_IMAGE_TEMPLATE: &str = "{split}/COCO_{split}_{image_id}.jpg";

/// Where the VQAv2 files are and which questions to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VqaOptions {
    pub questions_file: PathBuf,
    /// `None` for splits without public answers (test-dev): samples then have no references.
    pub annotations_file: Option<PathBuf>,
    pub image_root: PathBuf,
    /// Split name substituted into `image_template` (`val2014`, `train2014`, ...).
    pub split: String,
    /// Image path under `image_root`; `{split}` and `{image_id}` (zero-padded to 12 digits) are
    /// replaced. [`COCO_IMAGE_TEMPLATE`] for real VQAv2.
    pub image_template: String,
    pub selection: Selection,
}

impl VqaOptions {
    /// Options for the official file names of `split` in `annotation_dir`, COCO image names.
    pub fn for_split(annotation_dir: &Path, image_root: &Path, split: &str) -> Self {
        VqaOptions {
            questions_file: annotation_dir.join(vqa_questions_file_name(split)),
            annotations_file: Some(annotation_dir.join(vqa_annotations_file_name(split))),
            image_root: image_root.to_path_buf(),
            split: split.to_string(),
            image_template: COCO_IMAGE_TEMPLATE.to_string(),
            selection: Selection::default(),
        }
    }
}

/// Resolves an image template; errors on placeholders other than `{split}` and `{image_id}`.
pub fn resolve_image_template(template: &str, split: &str, image_id: u64) -> Result<PathBuf> {
    let resolved = template
        .replace("{split}", split)
        .replace("{image_id}", &format!("{image_id:012}"));
    if resolved.contains('{') || resolved.contains('}') || !template.contains("{image_id}") {
        return Err(DataError::Option {
            option: "image_template",
            message: format!(
                "`{template}` must contain `{{image_id}}` and no placeholder other than \
                 `{{split}}` and `{{image_id}}`"
            ),
        });
    }
    Ok(PathBuf::from(resolved))
}

/// Reads VQA samples, one per question, in the order of the questions file.
///
/// `id` is the question id, `prompt` the trimmed question, `response` the
/// `multiple_choice_answer` and `references` the annotators' answers.
pub fn read_vqav2(options: &VqaOptions) -> Result<Vec<Sample>> {
    resolve_image_template(&options.image_template, &options.split, 0)?;
    let questions = VqaQuestionsFile::read(&options.questions_file)?;
    let mut annotations: Option<BTreeMap<u64, VqaAnnotation>> = None;
    if let Some(path) = &options.annotations_file {
        let file = VqaAnnotationsFile::read(path)?;
        let mut by_question = BTreeMap::new();
        for (index, annotation) in file.annotations.into_iter().enumerate() {
            let invalid = |message: String| DataError::Invalid {
                path: path.clone(),
                message: format!("annotations[{index}]: {message}"),
            };
            if annotation.answers.is_empty() {
                return Err(invalid(
                    "`answers` is empty; expected the annotators' answers".into(),
                ));
            }
            let question_id = annotation.question_id;
            if by_question.insert(question_id, annotation).is_some() {
                return Err(invalid(format!("question_id {question_id} occurs twice")));
            }
        }
        annotations = Some(by_question);
    }

    let mut seen = BTreeSet::new();
    let mut samples = Vec::with_capacity(questions.questions.len());
    for (index, question) in questions.questions.into_iter().enumerate() {
        let invalid = |path: &Path, message: String| DataError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        if !seen.insert(question.question_id) {
            return Err(invalid(
                &options.questions_file,
                format!(
                    "questions[{index}]: question_id {} occurs twice",
                    question.question_id
                ),
            ));
        }
        let mut sample = Sample {
            id: question.question_id.to_string(),
            task: Task::Vqa,
            image: Some(options.image_root.join(resolve_image_template(
                &options.image_template,
                &options.split,
                question.image_id,
            )?)),
            prompt: Some(question.question.trim().to_string()),
            response: None,
            references: Vec::new(),
            meta: SampleMeta {
                image_id: Some(question.image_id),
                question_id: Some(question.question_id),
                split: Some(options.split.clone()),
                ..SampleMeta::default()
            },
        };
        if let (Some(by_question), Some(path)) = (&mut annotations, &options.annotations_file) {
            let annotation = by_question.remove(&question.question_id).ok_or_else(|| {
                invalid(
                    path,
                    format!(
                        "no annotation for question_id {} (questions[{index}] of {})",
                        question.question_id,
                        options.questions_file.display()
                    ),
                )
            })?;
            if annotation.image_id != question.image_id {
                return Err(invalid(
                    path,
                    format!(
                        "question_id {}: image_id {} here but {} in {}",
                        question.question_id,
                        annotation.image_id,
                        question.image_id,
                        options.questions_file.display()
                    ),
                ));
            }
            sample.response = Some(annotation.multiple_choice_answer);
            sample.references = annotation
                .answers
                .into_iter()
                .map(|answer| answer.answer)
                .collect();
            sample.meta.answer_type = Some(annotation.answer_type);
            sample.meta.question_type = Some(annotation.question_type);
        }
        samples.push(sample);
    }
    if let (Some(by_question), Some(path)) = (&annotations, &options.annotations_file)
        && let Some(question_id) = by_question.keys().next()
    {
        return Err(DataError::Invalid {
            path: path.clone(),
            message: format!(
                "{} annotations have no question in {} (first: question_id {question_id})",
                by_question.len(),
                options.questions_file.display()
            ),
        });
    }
    Ok(options.selection.apply(samples))
}

/// The `answer_type_to_answer` JSON read by the VQA evaluation to count predictions per type:
/// `{"answer_type": {type: [answers…]}, "question_type": {qtype: [answers…]}}`. Both keys are
/// required. An answer may be listed several times; the count says how typical it is of a type.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnswerTypeToAnswer {
    pub answer_type: BTreeMap<String, Vec<String>>,
    pub question_type: BTreeMap<String, Vec<String>>,
}

impl AnswerTypeToAnswer {
    pub fn read(path: &Path) -> Result<Self> {
        read_json(path)
    }

    /// Builds the file from VQA samples: each sample's `response` is listed once under its answer
    /// type and once under its question type.
    pub fn from_samples(samples: &[Sample]) -> Self {
        let mut table = AnswerTypeToAnswer::default();
        for sample in samples {
            let Some(answer) = &sample.response else {
                continue;
            };
            if let Some(answer_type) = &sample.meta.answer_type {
                table
                    .answer_type
                    .entry(answer_type.clone())
                    .or_default()
                    .push(answer.clone());
            }
            if let Some(question_type) = &sample.meta.question_type {
                table
                    .question_type
                    .entry(question_type.clone())
                    .or_default()
                    .push(answer.clone());
            }
        }
        table
    }

    /// Maps each answer to the answer type it is listed under most often (ties: the type that
    /// sorts first), as the evaluation's `get_word_to_type_dict` does.
    pub fn word_to_answer_type(&self) -> BTreeMap<String, String> {
        let mut counts: BTreeMap<&str, BTreeMap<&str, usize>> = BTreeMap::new();
        for (answer_type, answers) in &self.answer_type {
            for answer in answers {
                *counts
                    .entry(answer.as_str())
                    .or_default()
                    .entry(answer_type.as_str())
                    .or_default() += 1;
            }
        }
        counts
            .into_iter()
            .map(|(answer, per_type)| {
                let best = per_type
                    .iter()
                    .fold(None::<(&str, usize)>, |best, (&kind, &count)| match best {
                        Some((_, best_count)) if best_count >= count => best,
                        _ => Some((kind, count)),
                    })
                    .map(|(kind, _)| kind.to_string())
                    .unwrap_or_default();
                (answer.to_string(), best)
            })
            .collect()
    }
}
