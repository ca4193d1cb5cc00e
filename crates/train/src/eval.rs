//! Held-out evaluation of a checkpoint on a shapes world, through xlvlm's own inference: the
//! checkpoint's processor, `Vlm::generate` (greedy), and `xlvlm_metrics`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use burn::backend::Flex;
use xlvlm_data::world::{WorldSummary, caption_agreement, caption_has_style};
use xlvlm_data::{read_karpathy, read_vqav2};
use xlvlm_metrics::{VqaAccuracy, VqaAnnotation, VqaPrediction, caption_scores, vqa_accuracy};
use xlvlm_model::{Batch, GenerateOptions, PixelValues, Vlm, WeightDType};
use xlvlm_processor::{ImageInput, Message, Padding, Processor, Prompt, Sample, load_image};

use crate::data::{caption_message, vqa_message};
use crate::error::{Result, TrainError};

/// What to evaluate.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalOptions {
    pub split: String,
    /// Only the first this many images of the split (all when `None`).
    pub max_images: Option<usize>,
    pub batch_size: usize,
    pub max_caption_tokens: usize,
    pub max_answer_tokens: usize,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self {
            split: "test".into(),
            max_images: None,
            batch_size: 32,
            max_caption_tokens: 40,
            max_answer_tokens: 4,
        }
    }
}

/// Caption quality against the scenes and the reference captions.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CaptionEval {
    pub images: usize,
    /// CIDEr-D and BLEU-4 against the five original-style references.
    pub cider: f64,
    pub bleu4: f64,
    /// Colour (shape) words that name a colour (shape) present in the image, over all colour
    /// (shape) words generated.
    pub colour_word_accuracy: f64,
    pub shape_word_accuracy: f64,
    /// Colours (shapes) of the scenes that the captions mention.
    pub scene_colour_recall: f64,
    pub scene_shape_recall: f64,
    /// Captions that open with a position phrase (the style variant's mark).
    pub style_rate: f64,
    /// A few generated captions, `(image file, caption)`.
    pub samples: Vec<(String, String)>,
}

/// Evaluation of one checkpoint on one split.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EvalReport {
    pub model: String,
    pub split: String,
    pub questions: usize,
    /// Official VQAv2 accuracy (percent).
    pub vqa_overall: f64,
    pub vqa_per_answer_type: BTreeMap<String, f64>,
    pub vqa_per_question_type: BTreeMap<String, f64>,
    pub caption: CaptionEval,
    /// A few answers, `(question, prediction, annotated answer)`.
    pub vqa_samples: Vec<(String, String, String)>,
}

/// Greedy answers of `model` to `(message, image)` prompts, decoded without special tokens.
pub fn generate_texts(
    model: &Vlm<Flex>,
    processor: &Processor,
    prompts: &[(Message, PathBuf)],
    max_new_tokens: usize,
    batch_size: usize,
) -> Result<Vec<String>> {
    let mut out = Vec::with_capacity(prompts.len());
    for chunk in prompts.chunks(batch_size.max(1)) {
        let images = chunk
            .iter()
            .map(|(_, path)| load_image(path))
            .collect::<xlvlm_processor::Result<Vec<_>>>()?;
        let samples: Vec<Sample<'_>> = chunk
            .iter()
            .zip(&images)
            .map(|((message, _), image)| Sample {
                prompt: Prompt::Messages {
                    messages: vec![message.clone()],
                    add_generation_prompt: true,
                },
                images: vec![ImageInput::Decoded(image)],
            })
            .collect();
        let encoded = processor.encode_batch(&samples, Padding::Left)?;
        let pixels = encoded
            .pixel_values
            .as_ref()
            .ok_or_else(|| TrainError::Input("the processor returned no pixel values".into()))?;
        let shape: [usize; 4] =
            pixels.shape.clone().try_into().map_err(|_| {
                TrainError::Input(format!("pixel values of shape {:?}", pixels.shape))
            })?;
        let batch = Batch::from_padded(
            (0..encoded.batch_size)
                .map(|i| encoded.row(i).to_vec())
                .collect(),
            (0..encoded.batch_size)
                .map(|i| {
                    encoded.attention_mask[i * encoded.seq_len..(i + 1) * encoded.seq_len]
                        .iter()
                        .map(|&m| i64::from(m))
                        .collect()
                })
                .collect(),
        )
        .with_pixel_values(PixelValues {
            data: pixels.data.clone(),
            shape,
        });
        let options = GenerateOptions {
            max_new_tokens,
            ..GenerateOptions::default()
        };
        let generation = model.generate(&batch, &options, &[], &[])?;
        for ids in &generation.ids {
            out.push(processor.tokenizer().decode(ids, true)?.trim().to_string());
        }
    }
    Ok(out)
}

fn ratio(num: usize, den: usize) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

/// Evaluates checkpoint `model_dir` on a world split: every question (official VQA accuracy per
/// answer and question type) and one caption per image.
pub fn evaluate(model_dir: &Path, world_dir: &Path, options: &EvalOptions) -> Result<EvalReport> {
    let device = Default::default();
    let model = Vlm::<Flex>::load_dir(model_dir, WeightDType::F32, &device)?;
    let processor = Processor::from_dir(model_dir)?;
    let world = WorldSummary::read(world_dir)?;
    let split = options.split.as_str();

    let mut captions = read_karpathy(&world.karpathy_options(world_dir, &[split], false))?;
    if let Some(limit) = options.max_images {
        captions.truncate(limit);
    }
    let image_ids: BTreeSet<u64> = captions.iter().filter_map(|s| s.meta.image_id).collect();
    let scenes: HashMap<u64, _> = world
        .read_scenes(world_dir)?
        .into_iter()
        .map(|s| (s.image_id, s))
        .collect();

    // captions
    let prompts: Vec<(Message, PathBuf)> = captions
        .iter()
        .map(|s| Ok((caption_message(), image_path(s)?)))
        .collect::<Result<_>>()?;
    let generated = generate_texts(
        &model,
        &processor,
        &prompts,
        options.max_caption_tokens,
        options.batch_size,
    )?;
    let mut hyps = BTreeMap::new();
    let mut refs = BTreeMap::new();
    let (mut colour_words, mut correct_colours, mut shape_words, mut correct_shapes) = (0, 0, 0, 0);
    let (mut scene_colours, mut mentioned_colours, mut scene_shapes, mut mentioned_shapes) =
        (0, 0, 0, 0);
    let mut styled = 0;
    let mut samples = Vec::new();
    for (sample, caption) in captions.iter().zip(&generated) {
        let image_id = sample.meta.image_id.ok_or_else(|| {
            TrainError::Input(format!("caption sample {} has no image id", sample.id))
        })?;
        let scene = scenes.get(&image_id).ok_or_else(|| {
            TrainError::Input(format!(
                "image {image_id} is not in {}",
                world_dir.join(&world.scenes_file).display()
            ))
        })?;
        let agreement = caption_agreement(caption, &scene.scene);
        colour_words += agreement.colour_words;
        correct_colours += agreement.correct_colour_words;
        shape_words += agreement.shape_words;
        correct_shapes += agreement.correct_shape_words;
        scene_colours += agreement.scene_colours;
        mentioned_colours += agreement.mentioned_scene_colours;
        scene_shapes += agreement.scene_shapes;
        mentioned_shapes += agreement.mentioned_scene_shapes;
        styled += usize::from(caption_has_style(caption));
        hyps.insert(sample.id.clone(), caption.clone());
        refs.insert(sample.id.clone(), sample.references.clone());
        if samples.len() < 5 {
            samples.push((scene.filename.clone(), caption.clone()));
        }
    }
    let scores = caption_scores(&hyps, &refs)?;
    let caption = CaptionEval {
        images: captions.len(),
        cider: scores.corpus.cider,
        bleu4: scores.corpus.bleu[3],
        colour_word_accuracy: ratio(correct_colours, colour_words),
        shape_word_accuracy: ratio(correct_shapes, shape_words),
        scene_colour_recall: ratio(mentioned_colours, scene_colours),
        scene_shape_recall: ratio(mentioned_shapes, scene_shapes),
        style_rate: ratio(styled, captions.len()),
        samples,
    };

    // questions
    let vqa_options = world.vqa_options(world_dir, split).ok_or_else(|| {
        TrainError::Input(format!(
            "world {} has no split {split:?}",
            world_dir.display()
        ))
    })?;
    let questions: Vec<_> = read_vqav2(&vqa_options)?
        .into_iter()
        .filter(|s| s.meta.image_id.is_some_and(|id| image_ids.contains(&id)))
        .collect();
    let prompts: Vec<(Message, PathBuf)> = questions
        .iter()
        .map(|s| {
            Ok((
                vqa_message(s.prompt.as_deref().unwrap_or_default()),
                image_path(s)?,
            ))
        })
        .collect::<Result<_>>()?;
    let answers = generate_texts(
        &model,
        &processor,
        &prompts,
        options.max_answer_tokens,
        options.batch_size,
    )?;
    let mut predictions = Vec::with_capacity(questions.len());
    let mut annotations = Vec::with_capacity(questions.len());
    let mut vqa_samples = Vec::new();
    for (sample, answer) in questions.iter().zip(&answers) {
        let question_id = sample.meta.question_id.ok_or_else(|| {
            TrainError::Input(format!("question sample {} has no question id", sample.id))
        })?;
        predictions.push(VqaPrediction {
            question_id,
            answer: answer.clone(),
        });
        annotations.push(VqaAnnotation {
            question_id,
            question_type: sample.meta.question_type.clone().unwrap_or_default(),
            answer_type: sample.meta.answer_type.clone().unwrap_or_default(),
            answers: sample.references.clone(),
        });
        if vqa_samples.len() < 8 {
            vqa_samples.push((
                sample.prompt.clone().unwrap_or_default(),
                answer.clone(),
                sample.response.clone().unwrap_or_default(),
            ));
        }
    }
    let report = vqa_accuracy(&predictions, &annotations, VqaAccuracy::Official)?;
    Ok(EvalReport {
        model: model_dir.display().to_string(),
        split: split.to_string(),
        questions: questions.len(),
        vqa_overall: report.overall,
        vqa_per_answer_type: report.per_answer_type,
        vqa_per_question_type: report.per_question_type,
        caption,
        vqa_samples,
    })
}

fn image_path(sample: &xlvlm_data::Sample) -> Result<PathBuf> {
    sample
        .image
        .clone()
        .ok_or_else(|| TrainError::Input(format!("sample {} has no image", sample.id)))
}
