//! Trains the toy checkpoint and its style fine-tune with the CLI's defaults, then evaluates
//! both on the test split: `cargo run --release -p xlvlm-train --example train_world -- WORLD
//! BASE_OUT FINETUNED_OUT [EVAL_JSON]` (what `xlvlm world train` + `xlvlm world eval` run).

use std::path::PathBuf;
use std::time::Instant;

use xlvlm_train::{EvalOptions, ToyConfig, TrainOptions, evaluate, finetune_style, train_toy};

fn main() {
    let args: Vec<PathBuf> = std::env::args().skip(1).map(PathBuf::from).collect();
    let [world, base, tuned] = [&args[0], &args[1], &args[2]];
    let mut log = |r: &xlvlm_train::StepReport| {
        if r.step.is_multiple_of(50) || r.step == r.steps {
            eprintln!(
                "{} step {}/{} loss {:.4} lr {:.2e}",
                r.phase, r.step, r.steps, r.loss, r.learning_rate
            );
        }
    };
    // optional overrides for experiments: STEPS BATCH TEXT_LAYERS PATCH LEARNING_RATE IMAGE_SIZE
    // VISION_STEPS
    let extra: Vec<String> = std::env::args().skip(5).collect();
    let num = |i: usize| extra.get(i).map(|s| s.parse::<f64>().expect("a number"));
    let defaults = TrainOptions::default();
    let options = TrainOptions {
        steps: num(0).map_or(defaults.steps, |v| v as usize),
        batch_size: num(1).map_or(defaults.batch_size, |v| v as usize),
        learning_rate: num(4).unwrap_or(defaults.learning_rate),
        vision_steps: num(6).map_or(defaults.vision_steps, |v| v as usize),
        ..defaults
    };
    let base_config = ToyConfig::default();
    let config = ToyConfig {
        text_layers: num(2).map_or(base_config.text_layers, |v| v as usize),
        patch_size: num(3).map_or(base_config.patch_size, |v| v as usize),
        image_size: num(5).map_or(base_config.image_size, |v| v as usize),
        ..base_config
    };
    let started = Instant::now();
    let summary = train_toy(world, base, &config, &options, &mut log).unwrap();
    eprintln!(
        "trained in {:.1} s: {summary:?}",
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let summary = finetune_style(
        base,
        world,
        tuned,
        &TrainOptions::finetune_default(),
        &mut log,
    )
    .unwrap();
    eprintln!(
        "fine-tuned in {:.1} s: {summary:?}",
        started.elapsed().as_secs_f64()
    );
    let mut reports = Vec::new();
    for dir in [base, tuned] {
        let started = Instant::now();
        let report = evaluate(dir, world, &EvalOptions::default()).unwrap();
        eprintln!(
            "evaluated {} in {:.1} s",
            dir.display(),
            started.elapsed().as_secs_f64()
        );
        reports.push(report);
    }
    let text = serde_json::to_string_pretty(&reports).unwrap();
    if let Some(path) = args.get(3) {
        std::fs::write(path, &text).unwrap();
    }
    println!("{text}");
}
