//! Throughput of LLaVA-1.5 image preprocessing (336 px, CLIP mean/std) on a 640×480 image.
//!
//! Run: `cargo run --release -p xlvlm-processor --example bench_processor [-- IMAGE [ITERATIONS]]`
//! (default image: the astronaut fixture scaled to 640×480, the same input
//! `tools/refgen/bench_processor_pil.py` gives transformers' PIL backend).

use std::path::PathBuf;
use std::time::Instant;

use xlvlm_processor::image_crate::imageops::FilterType;
use xlvlm_processor::{ClipImageConfig, ResizeTo, load_image};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = args.next().map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/images/astronaut.png")
    });
    let iterations: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(200);
    let mut image = load_image(&path)?;
    if (image.width(), image.height()) != (640, 480) {
        // Lanczos, as the Python side scales with PIL's LANCZOS: both start from near-equal pixels.
        image = image.resize_exact(640, 480, FilterType::Lanczos3);
    }
    let config = ClipImageConfig {
        size: ResizeTo::ShortestEdge(336),
        crop_size: (336, 336),
        ..ClipImageConfig::default()
    };
    // Warm-up, and a checksum so the work cannot be optimised away.
    let mut checksum = config.preprocess(&image)?.data.iter().sum::<f32>();
    let start = Instant::now();
    for _ in 0..iterations {
        checksum += config.preprocess(&image)?.data[0];
    }
    let seconds = start.elapsed().as_secs_f64();
    println!(
        "xlvlm-processor CLIP 640x480 -> 336: {:.1} images/s ({iterations} images in {seconds:.3} s, one thread, checksum {checksum:.3})",
        iterations as f64 / seconds
    );
    Ok(())
}
