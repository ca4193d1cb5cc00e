//! Times the readers on a generated shapes world:
//! `cargo run --release -p xlvlm-data --example bench_readers -- WORLD_DIR [REPEATS]`.
//! `bench_readers_seed.py` next to this file does the same work the way the Python seed does.

use std::path::PathBuf;
use std::time::Instant;

use xlvlm_data::{WorldSummary, read_karpathy, read_vqav2};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let world_dir = PathBuf::from(
        args.next()
            .ok_or("usage: bench_readers WORLD_DIR [REPEATS]")?,
    );
    let repeats: usize = args.next().map_or(Ok(5), |arg| arg.parse())?;
    let summary = WorldSummary::read(&world_dir)?;

    let karpathy = summary.karpathy_options(&world_dir, &["train", "val", "test"], false);
    let vqa = summary
        .vqa_options(&world_dir, "train")
        .ok_or("the world has no train split")?;
    let mut karpathy_times = Vec::new();
    let mut vqa_times = Vec::new();
    let (mut captions, mut questions) = (0, 0);
    for _ in 0..repeats {
        let start = Instant::now();
        captions = read_karpathy(&karpathy)?.len();
        karpathy_times.push(start.elapsed().as_secs_f64());
        let start = Instant::now();
        questions = read_vqav2(&vqa)?.len();
        vqa_times.push(start.elapsed().as_secs_f64());
    }
    let median = |times: &mut Vec<f64>| {
        times.sort_by(f64::total_cmp);
        times[times.len() / 2]
    };
    println!(
        "karpathy: {captions} images in {:.3} s; vqav2 train: {questions} questions in {:.3} s \
         (median of {repeats})",
        median(&mut karpathy_times),
        median(&mut vqa_times)
    );
    Ok(())
}
