//! Times shapes-world generation: `cargo run --release -p xlvlm-data --example bench_world --
//! [SIZE] [OUT_DIR] [THREADS] [IMAGE_SIZE]` (defaults: 3000 images, a fresh temporary folder, all
//! cores, 64 pixels).

use std::path::PathBuf;
use std::time::Instant;

use xlvlm_data::{WorldOptions, generate_world};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let size: usize = args.next().map_or(Ok(3000), |arg| arg.parse())?;
    let out_dir = args.next().map_or_else(
        || std::env::temp_dir().join(format!("xlvlm-world-bench-{}", std::process::id())),
        PathBuf::from,
    );
    let threads = args.next().map(|arg| arg.parse()).transpose()?;
    let image_size = args.next().map_or(Ok(64), |arg| arg.parse())?;
    let options = WorldOptions {
        threads,
        image_size,
        ..WorldOptions::default()
    };

    let start = Instant::now();
    let summary = generate_world(&out_dir, 0, size, &options)?;
    let elapsed = start.elapsed();

    let bytes = dir_size(&out_dir)?;
    println!(
        "generated {} images ({}x{} px), {} questions in {:.2} s ({:.0} images/s); {:.1} MB in {}",
        summary.size,
        summary.image_size,
        summary.image_size,
        summary
            .splits
            .values()
            .map(|split| split.questions)
            .sum::<usize>(),
        elapsed.as_secs_f64(),
        summary.size as f64 / elapsed.as_secs_f64(),
        bytes as f64 / 1e6,
        out_dir.display()
    );
    Ok(())
}

fn dir_size(dir: &std::path::Path) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let metadata = entry.metadata()?;
        total += if metadata.is_dir() {
            dir_size(&entry.path())?
        } else {
            metadata.len()
        };
    }
    Ok(total)
}
