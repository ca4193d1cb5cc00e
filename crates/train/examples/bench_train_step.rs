//! Times training steps of the toy model on a world:
//! `cargo run --release -p xlvlm-train --example bench_train_step -- WORLD [STEPS] [BATCH]
//! [TEXT_HIDDEN] [TEXT_LAYERS] [PATCH]`. Prints seconds per step (after the first).

use std::time::Instant;

use xlvlm_train::{ToyConfig, TrainOptions, train_toy};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let world = std::path::PathBuf::from(args.first().expect("usage: WORLD [STEPS] [BATCH] ..."));
    let num = |i: usize, default: usize| {
        args.get(i)
            .map_or(default, |s| s.parse().expect("a number"))
    };
    let base = ToyConfig::default();
    let config = ToyConfig {
        text_hidden: num(3, base.text_hidden),
        text_layers: num(4, base.text_layers),
        patch_size: num(5, base.patch_size),
        text_intermediate: 2 * num(3, base.text_hidden),
        ..base
    };
    let options = TrainOptions {
        steps: num(1, 10),
        batch_size: num(2, 32),
        // the language steps only
        vision_steps: 0,
        ..TrainOptions::default()
    };
    let out = std::env::temp_dir().join(format!("xlvlm-bench-train-{}", std::process::id()));
    let mut times = Vec::new();
    let started = Instant::now();
    let summary = train_toy(&world, &out, &config, &options, &mut |report| {
        times.push(Instant::now());
        eprintln!("step {} loss {:.4}", report.step, report.loss);
    })
    .expect("training runs");
    let per_step =
        (times[times.len() - 1] - times[0]).as_secs_f64() / (times.len() - 1).max(1) as f64;
    println!(
        "config {config:?}\nparams {} batch {} steps {}: {per_step:.3} s/step, total {:.1} s (encoding and saving included)",
        summary.num_params,
        options.batch_size,
        options.steps,
        started.elapsed().as_secs_f64()
    );
    std::fs::remove_dir_all(out).ok();
}
