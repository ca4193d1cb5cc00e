//! Training examples from a shapes world: captions (Karpathy file) and short-answer questions
//! (VQAv2 files), read with `xlvlm_data`'s readers and encoded with the checkpoint's own
//! processor (chat template, image placeholders, CLIP preprocessing).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use xlvlm_data::world::WorldSummary;
use xlvlm_data::{read_karpathy, read_vqav2};
use xlvlm_model::{Batch, PixelValues};
use xlvlm_processor::{ImageInput, Message, Padding, Processor, Prompt, Sample, load_image};

use crate::error::{Result, TrainError};
use crate::toy::{CAPTION_INSTRUCTION, VQA_INSTRUCTION};

/// What an example teaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExampleKind {
    Caption,
    Vqa,
}

/// One image, one instruction, and the responses it may be trained towards (a caption example
/// has the image's five captions; a question has its answer).
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub kind: ExampleKind,
    pub image: PathBuf,
    /// The user text after the image (the seed's instruction, or question + instruction).
    pub instruction: String,
    pub responses: Vec<String>,
}

/// The user message of a caption prompt.
pub fn caption_message() -> Message {
    Message::user_with_image(CAPTION_INSTRUCTION)
}

/// The user message of a short-answer question.
pub fn vqa_message(question: &str) -> Message {
    Message::user_with_image(format!("{question}{VQA_INSTRUCTION}"))
}

/// Caption examples of `split` (`style`: the style-variant captions).
pub fn caption_examples(world_dir: &Path, split: &str, style: bool) -> Result<Vec<Example>> {
    let world = WorldSummary::read(world_dir)?;
    let samples = read_karpathy(&world.karpathy_options(world_dir, &[split], style))?;
    samples
        .into_iter()
        .map(|s| {
            Ok(Example {
                kind: ExampleKind::Caption,
                image: image_of(&s)?,
                instruction: CAPTION_INSTRUCTION.to_string(),
                responses: s.references,
            })
        })
        .collect()
}

/// Question examples of `split`, answered with the VQAv2 `multiple_choice_answer`.
pub fn vqa_examples(world_dir: &Path, split: &str) -> Result<Vec<Example>> {
    let world = WorldSummary::read(world_dir)?;
    let options = world.vqa_options(world_dir, split).ok_or_else(|| {
        TrainError::Input(format!(
            "world {} has no split {split:?}",
            world_dir.display()
        ))
    })?;
    read_vqav2(&options)?
        .into_iter()
        .map(|s| {
            let question = s.prompt.clone().unwrap_or_default();
            let answer = s.response.clone().ok_or_else(|| {
                TrainError::Input(format!("question {} has no annotated answer", s.id))
            })?;
            Ok(Example {
                kind: ExampleKind::Vqa,
                image: image_of(&s)?,
                instruction: format!("{question}{VQA_INSTRUCTION}"),
                responses: vec![answer],
            })
        })
        .collect()
}

fn image_of(sample: &xlvlm_data::Sample) -> Result<PathBuf> {
    sample
        .image
        .clone()
        .ok_or_else(|| TrainError::Input(format!("sample {} has no image", sample.id)))
}

/// One encoded example: prompt ids (BOS, template, expanded image tokens, generation prompt),
/// the index of its image, and each response's ids followed by EOS.
#[derive(Debug, Clone)]
pub struct EncodedExample {
    pub kind: ExampleKind,
    pub prompt: Vec<u32>,
    pub image: usize,
    pub responses: Vec<Vec<u32>>,
}

/// Examples encoded once, with every distinct image preprocessed once.
#[derive(Debug, Clone)]
pub struct EncodedData {
    pub examples: Vec<EncodedExample>,
    /// Preprocessed images, each `[channels, height, width]` row-major.
    pub pixels: Vec<Vec<f32>>,
    /// The file of each image in `pixels`.
    pub images: Vec<PathBuf>,
    pub pixel_shape: [usize; 3],
    pub pad_id: u32,
}

impl EncodedData {
    pub fn encode(processor: &Processor, examples: &[Example]) -> Result<Self> {
        let tokenizer = processor.tokenizer();
        let eos = tokenizer
            .eos()
            .ok_or_else(|| TrainError::Input("the tokenizer has no eos_token".into()))?
            .id;
        let mut image_index: HashMap<PathBuf, usize> = HashMap::new();
        let mut pixels = Vec::new();
        let mut images = Vec::new();
        let mut pixel_shape = None;
        // prompt ids depend on the instruction only (every image has the same size)
        let mut prompts: HashMap<String, Vec<u32>> = HashMap::new();
        let mut encoded = Vec::with_capacity(examples.len());
        for example in examples {
            let image = match image_index.get(&example.image) {
                Some(&i) => i,
                None => {
                    let decoded = load_image(&example.image)?;
                    let processed = processor.preprocess_image(&decoded)?;
                    let shape: [usize; 3] = processed.shape.clone().try_into().map_err(|_| {
                        TrainError::Input(format!(
                            "{}: preprocessed image has shape {:?}, expected [channels, height, width]",
                            example.image.display(),
                            processed.shape
                        ))
                    })?;
                    if *pixel_shape.get_or_insert(shape) != shape {
                        return Err(TrainError::Input(format!(
                            "{}: image shape {shape:?} differs from the others",
                            example.image.display()
                        )));
                    }
                    pixels.push(processed.pixel_values);
                    images.push(example.image.clone());
                    image_index.insert(example.image.clone(), pixels.len() - 1);
                    pixels.len() - 1
                }
            };
            if !prompts.contains_key(&example.instruction) {
                let decoded = load_image(&example.image)?;
                let sample = Sample {
                    prompt: Prompt::Messages {
                        messages: vec![Message::user_with_image(&example.instruction)],
                        add_generation_prompt: true,
                    },
                    images: vec![ImageInput::Decoded(&decoded)],
                };
                let ids = processor
                    .encode_batch(&[sample], Padding::Right)?
                    .tokens(0)
                    .to_vec();
                prompts.insert(example.instruction.clone(), ids);
            }
            let prompt = prompts[&example.instruction].clone();
            let responses = example
                .responses
                .iter()
                .map(|r| {
                    let mut ids = tokenizer.encode(r, false)?;
                    ids.push(eos);
                    Ok(ids)
                })
                .collect::<Result<Vec<_>>>()?;
            if responses.is_empty() {
                return Err(TrainError::Input(format!(
                    "{}: an example without a response",
                    example.image.display()
                )));
            }
            encoded.push(EncodedExample {
                kind: example.kind,
                prompt,
                image,
                responses,
            });
        }
        Ok(Self {
            examples: encoded,
            pixels,
            images,
            pixel_shape: pixel_shape.ok_or_else(|| TrainError::Input("no examples".into()))?,
            pad_id: tokenizer.pad_id(),
        })
    }

    /// A right-padded teacher-forcing batch of `(example, response)` pairs, with the next-token
    /// target of every position and its loss weight (`1 / response tokens` on response tokens,
    /// 0 elsewhere).
    pub fn batch(&self, picks: &[(usize, usize)]) -> TrainBatch {
        let rows: Vec<Vec<u32>> = picks
            .iter()
            .map(|&(e, r)| {
                let ex = &self.examples[e];
                [ex.prompt.as_slice(), ex.responses[r].as_slice()].concat()
            })
            .collect();
        let seq = rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut input_ids = Vec::with_capacity(rows.len());
        let mut attention_mask = Vec::with_capacity(rows.len());
        let mut targets = vec![0i64; rows.len() * seq];
        let mut weights = vec![0f32; rows.len() * seq];
        let total: usize = picks
            .iter()
            .map(|&(e, r)| self.examples[e].responses[r].len())
            .sum();
        for (row, (ids, &(e, _))) in rows.iter().zip(picks).enumerate() {
            let prompt_len = self.examples[e].prompt.len();
            // position t predicts token t + 1; the response starts at prompt_len
            for t in prompt_len - 1..ids.len() - 1 {
                targets[row * seq + t] = i64::from(ids[t + 1]);
                weights[row * seq + t] = 1.0 / total as f32;
            }
            let mut padded = ids.clone();
            padded.resize(seq, self.pad_id);
            let mut mask = vec![true; ids.len()];
            mask.resize(seq, false);
            input_ids.push(padded);
            attention_mask.push(mask);
        }
        let [c, h, w] = self.pixel_shape;
        let data: Vec<f32> = picks
            .iter()
            .flat_map(|&(e, _)| self.pixels[self.examples[e].image].iter().copied())
            .collect();
        TrainBatch {
            batch: Batch::new(input_ids, attention_mask).with_pixel_values(PixelValues {
                data,
                shape: [picks.len(), c, h, w],
            }),
            targets,
            weights,
        }
    }
}

/// A teacher-forcing batch: `targets[row * seq + t]` is the token position `t` must predict,
/// `weights` its share of the loss.
pub struct TrainBatch {
    pub batch: Batch,
    pub targets: Vec<i64>,
    pub weights: Vec<f32>,
}
