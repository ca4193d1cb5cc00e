//! `xlvlm world train` and `xlvlm world eval`: the toy LLaVA-1.5 checkpoints of the shapes world.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use xlvlm_train::{EvalOptions, StepReport, ToyConfig, TrainError, TrainOptions, TrainSummary};

use crate::Failure;

/// Train a toy VLM on a world (captions + short-answer VQA), or fine-tune one on the
/// style-variant captions.
#[derive(Args)]
pub struct TrainArgs {
    /// The world folder (`xlvlm world generate --out ...`).
    #[arg(long)]
    world: PathBuf,
    /// Where the checkpoint goes (created; existing checkpoint files are overwritten).
    #[arg(long)]
    out: PathBuf,
    /// Seeds the initial weights and the example order.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Optimisation steps (default: 6000 from scratch, 150 for a fine-tune).
    #[arg(long)]
    steps: Option<usize>,
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Peak learning rate (default: 1e-3 from scratch, 5e-4 for a fine-tune).
    #[arg(long)]
    learning_rate: Option<f64>,
    /// Fine-tune this checkpoint instead of starting from a random init (needs --style).
    #[arg(long, requires = "style")]
    finetune_from: Option<PathBuf>,
    /// Train on the style-variant captions (only with --finetune-from).
    #[arg(long, requires = "finetune_from")]
    style: bool,
    /// Decoder width (from scratch only).
    #[arg(long)]
    text_hidden: Option<usize>,
    /// Decoder layers (from scratch only).
    #[arg(long)]
    text_layers: Option<usize>,
    /// Vision tower width (from scratch only).
    #[arg(long)]
    vision_hidden: Option<usize>,
    /// Vision tower layers (from scratch only).
    #[arg(long)]
    vision_layers: Option<usize>,
    /// Vision patch size in pixels (from scratch only; must divide the image size).
    #[arg(long)]
    patch_size: Option<usize>,
    /// The vision tower's input size in pixels (from scratch only).
    #[arg(long)]
    image_size: Option<usize>,
    /// Steps of vision pretraining (naming each patch's shape and colour) before the captions
    /// and answers (from scratch only; default 600, 0 skips it).
    #[arg(long)]
    vision_steps: Option<usize>,
}

/// Evaluate a checkpoint on a world split: VQA accuracy, caption correctness, CIDEr, style rate.
#[derive(Args)]
pub struct EvalArgs {
    /// The checkpoint folder.
    #[arg(long)]
    model: PathBuf,
    #[arg(long)]
    world: PathBuf,
    #[arg(long, default_value = "test")]
    split: String,
    /// Only the first N images of the split.
    #[arg(long)]
    max_images: Option<usize>,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn failure(e: TrainError, what: String) -> Failure {
    match e {
        TrainError::Option { .. } => Failure::Invalid(format!("{what}: {e}")),
        other => Failure::Failed(anyhow::Error::new(other).context(what)),
    }
}

fn progress_bar(steps: usize) -> ProgressBar {
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::new(steps as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "  training ({prefix}) {bar:30} {pos}/{len} steps, loss {msg} ({per_sec}, eta {eta})",
        )
        .expect("valid template"),
    );
    bar
}

pub fn train(args: &TrainArgs) -> Result<(), Failure> {
    check_world(&args.world)?;
    if let Some(from) = &args.finetune_from {
        check_checkpoint(from, "--finetune-from")?;
    }
    let finetune = args.finetune_from.is_some();
    let sizes = [
        args.text_hidden,
        args.text_layers,
        args.vision_hidden,
        args.vision_layers,
        args.patch_size,
        args.image_size,
        args.vision_steps,
    ];
    if finetune && sizes.iter().any(Option::is_some) {
        return Err(Failure::Invalid(
            "model sizes (--text-hidden, --patch-size, ...) come from the checkpoint, and --vision-steps applies to a model trained from scratch; drop them or --finetune-from".into(),
        ));
    }
    let defaults = if finetune {
        TrainOptions::finetune_default()
    } else {
        TrainOptions::default()
    };
    let options = TrainOptions {
        steps: args.steps.unwrap_or(defaults.steps),
        batch_size: args.batch_size,
        learning_rate: args.learning_rate.unwrap_or(defaults.learning_rate),
        seed: args.seed,
        vision_steps: args.vision_steps.unwrap_or(defaults.vision_steps),
        ..defaults
    };
    let bar = progress_bar(options.steps);
    let mut on_step = |report: &StepReport| {
        bar.set_length(report.steps as u64);
        bar.set_prefix(report.phase);
        bar.set_position(report.step as u64);
        bar.set_message(format!("{:.4}", report.loss));
        if report.step.is_multiple_of(50) || report.step == report.steps {
            tracing::info!(
                phase = report.phase,
                step = report.step,
                loss = report.loss,
                lr = report.learning_rate,
                "training"
            );
        }
    };
    let summary: TrainSummary = match &args.finetune_from {
        Some(from) => {
            xlvlm_train::finetune_style(from, &args.world, &args.out, &options, &mut on_step)
                .map_err(|e| {
                    failure(
                        e,
                        format!(
                            "fine-tuning `{}` into `{}`",
                            from.display(),
                            args.out.display()
                        ),
                    )
                })?
        }
        None => {
            let base = ToyConfig::default();
            let config = ToyConfig {
                text_hidden: args.text_hidden.unwrap_or(base.text_hidden),
                text_layers: args.text_layers.unwrap_or(base.text_layers),
                vision_hidden: args.vision_hidden.unwrap_or(base.vision_hidden),
                vision_layers: args.vision_layers.unwrap_or(base.vision_layers),
                patch_size: args.patch_size.unwrap_or(base.patch_size),
                image_size: args.image_size.unwrap_or(base.image_size),
                ..base
            };
            xlvlm_train::train_toy(&args.world, &args.out, &config, &options, &mut on_step)
                .map_err(|e| {
                    failure(
                        e,
                        format!("training a toy model into `{}`", args.out.display()),
                    )
                })?
        }
    };
    bar.finish_and_clear();
    println!(
        "{}",
        serde_json::to_string_pretty(&summary).context("summarising the training run")?
    );
    Ok(())
}

pub fn eval(args: &EvalArgs) -> Result<(), Failure> {
    check_world(&args.world)?;
    check_checkpoint(&args.model, "--model")?;
    let options = EvalOptions {
        split: args.split.clone(),
        max_images: args.max_images,
        ..EvalOptions::default()
    };
    let report = xlvlm_train::evaluate(&args.model, &args.world, &options).map_err(|e| {
        failure(
            e,
            format!(
                "evaluating `{}` on `{}`",
                args.model.display(),
                args.world.display()
            ),
        )
    })?;
    let text = serde_json::to_string_pretty(&report).context("summarising the evaluation")?;
    if let Some(path) = &args.json {
        write(path, &text)?;
    }
    println!("{text}");
    Ok(())
}

/// A missing world is bad input (exit 2), said before any work starts.
fn check_world(dir: &Path) -> Result<(), Failure> {
    if dir.join("world.json").is_file() {
        return Ok(());
    }
    Err(Failure::Invalid(format!(
        "error: `{}` is not a shapes world (no world.json there)\n  help: make one with `xlvlm world generate --out {}`",
        dir.display(),
        dir.display()
    )))
}

fn check_checkpoint(dir: &Path, flag: &str) -> Result<(), Failure> {
    if dir.join("config.json").is_file() {
        return Ok(());
    }
    Err(Failure::Invalid(format!(
        "error: {flag} `{}` is not a checkpoint folder (no config.json there)",
        dir.display()
    )))
}

fn write(path: &Path, text: &str) -> Result<(), Failure> {
    std::fs::write(path, format!("{text}\n"))
        .with_context(|| format!("writing `{}`", path.display()))
        .map_err(Failure::Failed)
}
