//! The shapes world: a small, self-made image dataset with captions and questions, written in the
//! real COCO Karpathy and VQAv2 file formats so that the same readers serve it and real data.
//!
//! Layout of a generated world (paths relative to the output folder):
//! ```text
//! world.json                                   summary: seed, counts, vocabulary, file names
//! scenes.json                                  what each image shows (for evaluation and tests)
//! images/<split>/SHAPES_<split>_<id:012>.png   RGB images, splits train / val / test
//! annotations/dataset_coco.json                captions, Karpathy format, 5 per image
//! annotations/dataset_coco_style.json          the same images, style-variant captions
//! annotations/v2_OpenEnded_mscoco_<split>_questions.json
//! annotations/v2_mscoco_<split>_annotations.json
//! annotations/answer_type_to_answer.json
//! ```
//! Everything is a function of the seed, the size and the options: generating twice gives
//! byte-identical files.

mod scene;
mod text;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::BufWriter;
use std::path::Path;

use image::ImageEncoder;
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

pub use scene::{Background, Colour, PlacedShape, Position, Scene, ShapeKind, SizeClass};
pub use text::{CaptionAgreement, WorldQuestion, caption_agreement, caption_has_style};

use crate::error::{DataError, Result};
use crate::json::{read_json, write_json};
use crate::karpathy::{
    KarpathyFile, KarpathyImage, KarpathyOptions, KarpathySentence, caption_tokens,
};
use crate::sample::Selection;
use crate::vqav2::{
    AnswerTypeToAnswer, VqaAnnotation, VqaAnnotationsFile, VqaAnswer, VqaOptions, VqaQuestion,
    VqaQuestionsFile, vqa_annotations_file_name, vqa_questions_file_name,
};

/// The split names, in the order images are assigned to them.
pub const SPLITS: [&str; 3] = ["train", "val", "test"];

const FORMAT_VERSION: u32 = 1;
const IMAGE_DIR: &str = "images";
const ANNOTATION_DIR: &str = "annotations";
const IMAGE_TEMPLATE: &str = "{split}/SHAPES_{split}_{image_id}.png";

/// Knobs of the generator; `WorldOptions::default()` is the committed world's setting.
#[derive(Debug, Clone, PartialEq)]
pub struct WorldOptions {
    /// Side of the square images in pixels (64 by default; 96 also works well).
    pub image_size: u32,
    /// Fraction of the images in the validation split (at least one image).
    pub val_fraction: f64,
    /// Fraction of the images in the test split (at least one image).
    pub test_fraction: f64,
    /// Worker threads for drawing and PNG encoding; `None` uses the available cores. The output
    /// does not depend on it.
    pub threads: Option<usize>,
}

impl Default for WorldOptions {
    fn default() -> Self {
        WorldOptions {
            image_size: 64,
            val_fraction: 0.1,
            test_fraction: 0.1,
            threads: None,
        }
    }
}

/// The `world.json` written next to the data: what was generated and where it is. File paths
/// are relative to the world folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorldSummary {
    pub format_version: u32,
    pub seed: u64,
    /// Number of images over all splits.
    pub size: usize,
    pub image_size: u32,
    /// Folder the image paths are relative to.
    pub image_root: String,
    /// VQA image path template under `image_root` (see [`VqaOptions::image_template`]).
    pub image_template: String,
    pub captions_file: String,
    pub style_captions_file: String,
    pub answer_type_to_answer_file: String,
    pub scenes_file: String,
    /// How the style variant differs from the original captions.
    pub style_description: String,
    pub splits: BTreeMap<String, SplitSummary>,
    pub vocabulary: Vocabulary,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitSummary {
    pub images: usize,
    pub captions: usize,
    pub questions: usize,
    pub questions_file: String,
    pub annotations_file: String,
    /// Questions per answer type (`yes/no`, `number`, `other`).
    pub questions_by_answer_type: BTreeMap<String, usize>,
    /// Questions per answer (`yes`, `no`, `2`, `red`, ...).
    pub questions_by_answer: BTreeMap<String, usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vocabulary {
    pub colours: Vec<String>,
    pub shapes: Vec<String>,
    pub positions: Vec<String>,
    pub sizes: Vec<String>,
    pub backgrounds: Vec<String>,
    /// Every `multiple_choice_answer`, sorted.
    pub answers: Vec<String>,
    /// Every word of every caption (both styles), question and answer, sorted: enough to
    /// build a tokenizer vocabulary for a model trained on this world.
    pub words: Vec<String>,
}

impl WorldSummary {
    /// Reads `world.json` from a world folder.
    pub fn read(world_dir: &Path) -> Result<Self> {
        read_json(&world_dir.join("world.json"))
    }

    /// The scenes of all images, in image id order.
    pub fn read_scenes(&self, world_dir: &Path) -> Result<Vec<WorldScene>> {
        read_json(&world_dir.join(&self.scenes_file))
    }

    /// Reader options for the captions of `splits` (`style`: the style-variant file).
    pub fn karpathy_options(
        &self,
        world_dir: &Path,
        splits: &[&str],
        style: bool,
    ) -> KarpathyOptions {
        let file = if style {
            &self.style_captions_file
        } else {
            &self.captions_file
        };
        KarpathyOptions {
            annotation_file: world_dir.join(file),
            image_root: world_dir.join(&self.image_root),
            splits: splits.iter().map(|split| split.to_string()).collect(),
            selection: Selection::default(),
        }
    }

    /// Reader options for the questions of one split; `None` if the world has no such split.
    pub fn vqa_options(&self, world_dir: &Path, split: &str) -> Option<VqaOptions> {
        let summary = self.splits.get(split)?;
        Some(VqaOptions {
            questions_file: world_dir.join(&summary.questions_file),
            annotations_file: Some(world_dir.join(&summary.annotations_file)),
            image_root: world_dir.join(&self.image_root),
            split: split.to_string(),
            image_template: self.image_template.clone(),
            selection: Selection::default(),
        })
    }
}

/// One entry of `scenes.json`: what image `filename` shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorldScene {
    pub image_id: u64,
    pub split: String,
    pub filename: String,
    #[serde(flatten)]
    pub scene: Scene,
}

/// Everything generated for one image.
struct GeneratedImage {
    image_id: u64,
    split: &'static str,
    filename: String,
    scene: Scene,
    captions: Vec<String>,
    style_captions: Vec<String>,
    questions: Vec<(WorldQuestion, Vec<String>)>,
}

/// Generates a world of `size` images into `out_dir` (which must be new or empty).
pub fn generate_world(
    out_dir: &Path,
    seed: u64,
    size: usize,
    options: &WorldOptions,
) -> Result<WorldSummary> {
    let split_sizes = split_sizes(size, options)?;
    if !(16..=1024).contains(&options.image_size) {
        return Err(DataError::Option {
            option: "image_size",
            message: format!("{} is outside 16..=1024 pixels", options.image_size),
        });
    }
    prepare_out_dir(out_dir)?;

    let split_of: Vec<&'static str> = SPLITS
        .iter()
        .zip(split_sizes)
        .flat_map(|(&split, count)| std::iter::repeat_n(split, count))
        .collect();
    for split in SPLITS {
        create_dir(&out_dir.join(IMAGE_DIR).join(split))?;
    }

    let threads = options
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
        .clamp(1, 64);
    let chunk = size.div_ceil(threads).max(1);
    let images_dir = out_dir.join(IMAGE_DIR);
    let generated: Vec<GeneratedImage> = std::thread::scope(|scope| {
        let workers: Vec<_> = split_of
            .chunks(chunk)
            .enumerate()
            .map(|(chunk_index, splits)| {
                let images_dir = &images_dir;
                scope.spawn(move || {
                    splits
                        .iter()
                        .enumerate()
                        .map(|(offset, &split)| {
                            let index = chunk_index * chunk + offset;
                            generate_image(images_dir, seed, index, split, options.image_size)
                        })
                        .collect::<Result<Vec<_>>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| {
                worker
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect::<Result<Vec<Vec<_>>>>()
    })?
    .into_iter()
    .flatten()
    .collect();

    write_annotations(out_dir, seed, size, options, &generated)
}

fn split_sizes(size: usize, options: &WorldOptions) -> Result<[usize; 3]> {
    for (option, fraction) in [
        ("val_fraction", options.val_fraction),
        ("test_fraction", options.test_fraction),
    ] {
        if !(0.0..0.5).contains(&fraction) {
            return Err(DataError::Option {
                option,
                message: format!("{fraction} is outside [0, 0.5)"),
            });
        }
    }
    if size < SPLITS.len() {
        return Err(DataError::Option {
            option: "size",
            message: format!("{size} images cannot fill the train, val and test splits"),
        });
    }
    let part = |fraction: f64| ((size as f64 * fraction).round() as usize).max(1);
    let (val, test) = (part(options.val_fraction), part(options.test_fraction));
    let train = size
        .checked_sub(val + test)
        .filter(|&train| train > 0)
        .ok_or_else(|| DataError::Option {
            option: "size",
            message: format!("{size} images leave no training image after val and test"),
        })?;
    Ok([train, val, test])
}

fn prepare_out_dir(out_dir: &Path) -> Result<()> {
    if out_dir.exists() {
        let mut entries = fs::read_dir(out_dir).map_err(|source| DataError::Read {
            path: out_dir.to_path_buf(),
            source,
        })?;
        if entries.next().is_some() {
            return Err(DataError::Invalid {
                path: out_dir.to_path_buf(),
                message: "the folder is not empty; a world is written to a new or empty folder \
                          so that no stale file from an earlier world is left in it"
                    .into(),
            });
        }
    }
    create_dir(out_dir)
}

fn create_dir(path: &Path) -> Result<()> {
    fs::create_dir_all(path).map_err(|source| DataError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Draws, describes and writes image number `index`. Each image has its own ChaCha stream, so
/// the result depends on (seed, index) only, not on the thread that made it.
fn generate_image(
    images_dir: &Path,
    seed: u64,
    index: usize,
    split: &'static str,
    image_size: u32,
) -> Result<GeneratedImage> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(index as u64);
    let image_id = index as u64 + 1;
    let scene = Scene::random(&mut rng, image_size);
    let captions = text::captions(&scene, &mut rng);
    let style_captions = text::style_captions(&scene);
    let questions = text::questions(&scene, &mut rng)
        .into_iter()
        .map(|question| {
            let answers = text::annotator_answers(&question, &mut rng);
            (question, answers)
        })
        .collect();

    let filename = format!("SHAPES_{split}_{image_id:012}.png");
    let path = images_dir.join(split).join(&filename);
    write_png(&path, &scene.render(image_size))?;
    Ok(GeneratedImage {
        image_id,
        split,
        filename,
        scene,
        captions,
        style_captions,
        questions,
    })
}

fn write_png(path: &Path, image: &image::RgbImage) -> Result<()> {
    let file = fs::File::create(path).map_err(|source| DataError::Write {
        path: path.to_path_buf(),
        source,
    })?;
    PngEncoder::new_with_quality(
        BufWriter::new(file),
        CompressionType::Best,
        FilterType::Adaptive,
    )
    .write_image(
        image.as_raw(),
        image.width(),
        image.height(),
        image::ExtendedColorType::Rgb8,
    )
    .map_err(|source| DataError::Encode {
        path: path.to_path_buf(),
        source,
    })
}

fn relative(parts: &[&str]) -> String {
    parts.join("/")
}

fn write_annotations(
    out_dir: &Path,
    seed: u64,
    size: usize,
    options: &WorldOptions,
    generated: &[GeneratedImage],
) -> Result<WorldSummary> {
    let captions_file = relative(&[ANNOTATION_DIR, "dataset_coco.json"]);
    let style_captions_file = relative(&[ANNOTATION_DIR, "dataset_coco_style.json"]);
    let answer_type_to_answer_file = relative(&[ANNOTATION_DIR, "answer_type_to_answer.json"]);
    let scenes_file = "scenes.json".to_string();

    let mut words = BTreeSet::new();
    let mut add_words = |text: &str| {
        for word in caption_tokens(text) {
            words.insert(word);
        }
    };

    let karpathy = |style: bool| KarpathyFile {
        images: generated
            .iter()
            .map(|image| {
                let imgid = image.image_id - 1;
                let captions = if style {
                    &image.style_captions
                } else {
                    &image.captions
                };
                let sentids: Vec<u64> = (0..captions.len() as u64).map(|j| imgid * 5 + j).collect();
                KarpathyImage {
                    filepath: Some(image.split.to_string()),
                    sentids: sentids.clone(),
                    filename: image.filename.clone(),
                    imgid,
                    split: image.split.to_string(),
                    sentences: captions
                        .iter()
                        .zip(sentids)
                        .map(|(raw, sentid)| KarpathySentence {
                            tokens: caption_tokens(raw),
                            raw: raw.clone(),
                            imgid: Some(imgid),
                            sentid: Some(sentid),
                        })
                        .collect(),
                    cocoid: Some(image.image_id),
                }
            })
            .collect(),
        dataset: Some("shapes".to_string()),
    };
    write_json(&out_dir.join(&captions_file), &karpathy(false))?;
    write_json(&out_dir.join(&style_captions_file), &karpathy(true))?;
    for image in generated {
        image.captions.iter().for_each(|caption| add_words(caption));
        image
            .style_captions
            .iter()
            .for_each(|caption| add_words(caption));
    }

    let info = serde_json::json!({
        "description": "xlvlm shapes world",
        "seed": seed,
        "version": FORMAT_VERSION,
    });
    let mut table = AnswerTypeToAnswer::default();
    let mut answers = BTreeSet::new();
    let mut splits = BTreeMap::new();
    for split in SPLITS {
        let in_split: Vec<&GeneratedImage> = generated
            .iter()
            .filter(|image| image.split == split)
            .collect();
        let mut questions = Vec::new();
        let mut annotations = Vec::new();
        let mut by_type: BTreeMap<String, usize> = BTreeMap::new();
        let mut by_answer: BTreeMap<String, usize> = BTreeMap::new();
        for image in &in_split {
            for (k, (question, annotator_answers)) in image.questions.iter().enumerate() {
                // VQAv2 numbers questions image_id * 1000 + k.
                let question_id = image.image_id * 1000 + k as u64;
                add_words(&question.question);
                annotator_answers
                    .iter()
                    .for_each(|answer| add_words(answer));
                answers.insert(question.answer.clone());
                *by_type.entry(question.answer_type.to_string()).or_default() += 1;
                *by_answer.entry(question.answer.clone()).or_default() += 1;
                table
                    .answer_type
                    .entry(question.answer_type.to_string())
                    .or_default()
                    .push(question.answer.clone());
                table
                    .question_type
                    .entry(question.question_type.to_string())
                    .or_default()
                    .push(question.answer.clone());
                questions.push(VqaQuestion {
                    image_id: image.image_id,
                    question: question.question.clone(),
                    question_id,
                });
                annotations.push(VqaAnnotation {
                    question_type: question.question_type.to_string(),
                    multiple_choice_answer: question.answer.clone(),
                    answers: annotator_answers
                        .iter()
                        .zip(1..)
                        .map(|(answer, answer_id)| VqaAnswer {
                            answer: answer.clone(),
                            answer_confidence: Some("yes".to_string()),
                            answer_id: Some(answer_id),
                        })
                        .collect(),
                    image_id: image.image_id,
                    answer_type: question.answer_type.to_string(),
                    question_id,
                });
            }
        }
        let questions_file = relative(&[ANNOTATION_DIR, &vqa_questions_file_name(split)]);
        let annotations_file = relative(&[ANNOTATION_DIR, &vqa_annotations_file_name(split)]);
        let question_count = questions.len();
        write_json(
            &out_dir.join(&questions_file),
            &VqaQuestionsFile {
                info: Some(info.clone()),
                task_type: Some("Open-Ended".to_string()),
                data_type: Some("shapes".to_string()),
                license: None,
                data_subtype: Some(split.to_string()),
                questions,
            },
        )?;
        write_json(
            &out_dir.join(&annotations_file),
            &VqaAnnotationsFile {
                info: Some(info.clone()),
                license: None,
                data_subtype: Some(split.to_string()),
                annotations,
                data_type: Some("shapes".to_string()),
            },
        )?;
        splits.insert(
            split.to_string(),
            SplitSummary {
                images: in_split.len(),
                captions: in_split.iter().map(|image| image.captions.len()).sum(),
                questions: question_count,
                questions_file,
                annotations_file,
                questions_by_answer_type: by_type,
                questions_by_answer: by_answer,
            },
        );
    }
    write_json(&out_dir.join(&answer_type_to_answer_file), &table)?;

    let scenes: Vec<WorldScene> = generated
        .iter()
        .map(|image| WorldScene {
            image_id: image.image_id,
            split: image.split.to_string(),
            filename: image.filename.clone(),
            scene: image.scene.clone(),
        })
        .collect();
    write_json(&out_dir.join(&scenes_file), &scenes)?;

    let names = |words: &[&str]| words.iter().map(|word| word.to_string()).collect();
    let summary = WorldSummary {
        format_version: FORMAT_VERSION,
        seed,
        size,
        image_size: options.image_size,
        image_root: IMAGE_DIR.to_string(),
        image_template: IMAGE_TEMPLATE.to_string(),
        captions_file,
        style_captions_file,
        answer_type_to_answer_file,
        scenes_file,
        style_description: "every caption opens with a position phrase (on the left, on the \
                            right, at the top, at the bottom, in the centre) and names each \
                            shape's position in reading order"
            .to_string(),
        splits,
        vocabulary: Vocabulary {
            colours: names(&Colour::ALL.iter().map(|c| c.name()).collect::<Vec<_>>()),
            shapes: names(&ShapeKind::ALL.iter().map(|s| s.name()).collect::<Vec<_>>()),
            positions: names(&Position::ALL.iter().map(|p| p.name()).collect::<Vec<_>>()),
            sizes: names(&SizeClass::ALL.iter().map(|s| s.name()).collect::<Vec<_>>()),
            backgrounds: names(&Background::ALL.iter().map(|b| b.name()).collect::<Vec<_>>()),
            answers: answers.into_iter().collect(),
            words: words.into_iter().collect(),
        },
    };
    write_json(&out_dir.join("world.json"), &summary)?;
    Ok(summary)
}
