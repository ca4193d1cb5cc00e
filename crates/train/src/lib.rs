//! xlvlm-train: the toy LLaVA-1.5 checkpoints of the shapes world, trained by xlvlm itself.
//!
//! * [`ToyConfig`] / [`write_checkpoint_files`] / [`build_tokenizer`]: a tiny CLIP ViT, a
//!   two-layer MLP projector and a small Llama decoder, with a word-level `tokenizer.json`,
//!   LLaVA-1.5's chat template and CLIP preprocessing configs, in the Hub checkpoint format, so
//!   that `xlvlm_model::Vlm::load_dir` and `xlvlm_processor::Processor::from_dir` load it unchanged.
//! * [`train`]: the model crate's own forward on `Autodiff<Flex>`, masked cross-entropy on the
//!   response tokens, Adam; deterministic for a seed.
//! * [`train_toy`] / [`finetune_style`]: captioning + short-answer VQA on a world's train split
//!   from a seeded random init; a fine-tune on the style-variant captions.
//! * [`evaluate`]: greedy decoding on a held-out split through `Vlm::generate`, official VQA
//!   accuracy, caption colour/shape correctness, CIDEr-D and the style rate.

mod data;
mod error;
mod eval;
mod pretrain;
mod toy;
mod train;

use std::path::Path;
use std::time::Instant;

use xlvlm_model::{ModelConfig, Vlm, WeightDType};
use xlvlm_processor::Processor;

pub use data::{
    EncodedData, EncodedExample, Example, ExampleKind, TrainBatch, caption_examples,
    caption_message, vqa_examples, vqa_message,
};
pub use error::{Result, TrainError};
pub use eval::{CaptionEval, EvalOptions, EvalReport, evaluate, generate_texts};
pub use pretrain::{PatchLabels, pretrain_vision};
pub use toy::{
    CAPTION_INSTRUCTION, LLAVA_CHAT_TEMPLATE, SPECIAL_TOKENS, ToyConfig, VQA_INSTRUCTION,
    build_tokenizer, copy_checkpoint_files, init_weights, write_checkpoint_files,
};
pub use train::{StepReport, TrainBackend, TrainOptions, response_loss, train};

/// What a training run did; written next to the checkpoint as `training.json`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TrainSummary {
    pub world: String,
    pub options: TrainOptions,
    pub config: Option<ToyConfig>,
    /// Set for a fine-tune: the checkpoint it started from.
    pub finetuned_from: Option<String>,
    pub examples: usize,
    pub num_params: usize,
    /// Mean loss over each tenth of the run.
    pub loss_by_tenth: Vec<f32>,
    /// Mean loss of the vision pretraining over each tenth of it (empty without it).
    #[serde(default)]
    pub vision_loss_by_tenth: Vec<f32>,
    pub seconds: f64,
}

fn new_device() -> burn::backend::flex::FlexDevice {
    Default::default()
}

/// Trains a toy model from a seeded random init on the world's `train` split (captions and
/// questions in one mixture) and writes the checkpoint to `out_dir`.
pub fn train_toy(
    world_dir: &Path,
    out_dir: &Path,
    config: &ToyConfig,
    options: &TrainOptions,
    progress: &mut dyn FnMut(&StepReport),
) -> Result<TrainSummary> {
    let world = xlvlm_data::world::WorldSummary::read(world_dir)?;
    let mut examples = caption_examples(world_dir, "train", false)?;
    examples.extend(vqa_examples(world_dir, "train")?);
    // the vocabulary: every word of the world plus the prompt words of the template
    let mut texts: Vec<String> = world.vocabulary.words.clone();
    texts.push(format!(
        "USER: ASSISTANT: {CAPTION_INSTRUCTION} {VQA_INSTRUCTION}"
    ));
    texts.extend(examples.iter().map(|e| e.instruction.clone()));
    texts.extend(examples.iter().flat_map(|e| e.responses.iter().cloned()));
    let tokenizer = build_tokenizer(texts.iter())?;
    write_checkpoint_files(out_dir, config, &tokenizer)?;
    let processor = Processor::from_dir(out_dir)?;
    let model_config = ModelConfig::from_dir(out_dir)?;
    let model = Vlm::<TrainBackend>::init(
        model_config,
        out_dir,
        WeightDType::F32,
        &new_device(),
        init_weights(options.seed),
    )?;
    run(
        model,
        &processor,
        &examples,
        world_dir,
        out_dir,
        options,
        Some(config.clone()),
        None,
        progress,
    )
}

/// Fine-tunes checkpoint `from_dir` on the world's style-variant training captions and writes
/// the result (weights and the unchanged tokenizer/config files) to `out_dir`.
pub fn finetune_style(
    from_dir: &Path,
    world_dir: &Path,
    out_dir: &Path,
    options: &TrainOptions,
    progress: &mut dyn FnMut(&StepReport),
) -> Result<TrainSummary> {
    if from_dir == out_dir {
        return Err(TrainError::Option {
            option: "out",
            message: "the fine-tuned checkpoint must go to another folder than its source".into(),
        });
    }
    let examples = caption_examples(world_dir, "train", true)?;
    copy_checkpoint_files(from_dir, out_dir)?;
    let processor = Processor::from_dir(out_dir)?;
    let model = Vlm::<TrainBackend>::load_dir(from_dir, WeightDType::F32, &new_device())?;
    run(
        model,
        &processor,
        &examples,
        world_dir,
        out_dir,
        options,
        None,
        Some(from_dir.display().to_string()),
        progress,
    )
}

#[allow(clippy::too_many_arguments)]
fn run(
    model: Vlm<TrainBackend>,
    processor: &Processor,
    examples: &[Example],
    world_dir: &Path,
    out_dir: &Path,
    options: &TrainOptions,
    config: Option<ToyConfig>,
    finetuned_from: Option<String>,
    progress: &mut dyn FnMut(&StepReport),
) -> Result<TrainSummary> {
    let started = Instant::now();
    let data = EncodedData::encode(processor, examples)?;
    let num_params = model.num_params();
    let mut model = model;
    let mut vision_losses = Vec::new();
    if config.is_some() && options.vision_steps > 0 {
        let image_token = processor.image_token_id().ok_or_else(|| {
            TrainError::Input("the checkpoint's processor has no image token".into())
        })?;
        let patches = data.examples[0]
            .prompt
            .iter()
            .filter(|&&t| t == image_token)
            .count();
        let grid = (patches as f64).sqrt().round() as usize;
        let labels = PatchLabels::from_world(world_dir, &data, grid)?;
        let vision_options = TrainOptions {
            steps: options.vision_steps,
            ..options.clone()
        };
        (model, vision_losses) = pretrain_vision(
            model,
            &data,
            &labels,
            image_token,
            &vision_options,
            progress,
        )?;
    }
    let (model, losses) = train(model, &data, options, progress)?;
    model.save_checkpoint(out_dir)?;
    let summary = TrainSummary {
        world: world_dir.display().to_string(),
        options: options.clone(),
        config,
        finetuned_from,
        examples: examples.len(),
        num_params,
        loss_by_tenth: by_tenth(&losses),
        vision_loss_by_tenth: by_tenth(&vision_losses),
        seconds: started.elapsed().as_secs_f64(),
    };
    let text = serde_json::to_string_pretty(&summary).expect("the summary serialises");
    toy::write_text(&out_dir.join("training.json"), &(text + "\n"))?;
    Ok(summary)
}

/// Mean of each tenth of `losses`.
fn by_tenth(losses: &[f32]) -> Vec<f32> {
    let tenth = losses.len().div_ceil(10).max(1);
    losses
        .chunks(tenth)
        .map(|c| c.iter().sum::<f32>() / c.len() as f32)
        .collect()
}
