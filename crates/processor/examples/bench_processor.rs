//! Throughput of LLaVA-1.5 input preparation on a 640×480 image:
//! 1. the CLIP image preprocessing alone (336 px, CLIP mean/std);
//! 2. the whole processor call (chat template, preprocessing, 576-token placeholder expansion,
//!    tokenization) on a checkpoint folder with LLaVA-1.5's 336 px settings.
//!
//! Run: `cargo run --release -p xlvlm-processor --example bench_processor [-- ITERATIONS]`;
//! `tools/refgen/bench_processor_pil.py` measures transformers on the same inputs.

use std::path::{Path, PathBuf};
use std::time::Instant;

use xlvlm_processor::image_crate::imageops::FilterType;
use xlvlm_processor::{
    ClipImageConfig, ImageInput, Message, Padding, Processor, Prompt, ResizeTo, Sample, load_image,
};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The tiny LLaVA fixture's processor files with the image size raised to LLaVA-1.5's 336 px.
fn llava_336_checkpoint() -> Result<PathBuf, Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("xlvlm-bench-llava336-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    for file in [
        "tokenizer.json",
        "tokenizer_config.json",
        "chat_template.jinja",
    ] {
        std::fs::copy(fixtures().join("llava_spm").join(file), dir.join(file))?;
    }
    let mut config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
        fixtures().join("llava_spm/processor_config.json"),
    )?)?;
    config["image_processor"]["size"] = serde_json::json!({"shortest_edge": 336});
    config["image_processor"]["crop_size"] = serde_json::json!({"height": 336, "width": 336});
    std::fs::write(dir.join("processor_config.json"), config.to_string())?;
    Ok(dir)
}

fn time<F: FnMut() -> f32>(iterations: usize, mut run: F) -> (f64, f32) {
    let mut checksum = run(); // warm-up
    let start = Instant::now();
    for _ in 0..iterations {
        checksum += run();
    }
    (iterations as f64 / start.elapsed().as_secs_f64(), checksum)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let iterations: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(200);
    // Lanczos, as the Python side scales with PIL's LANCZOS: both start from near-equal pixels.
    let image = load_image(&fixtures().join("images/astronaut.png"))?.resize_exact(
        640,
        480,
        FilterType::Lanczos3,
    );
    let config = ClipImageConfig {
        size: ResizeTo::ShortestEdge(336),
        crop_size: (336, 336),
        ..ClipImageConfig::default()
    };
    let (rate, checksum) = time(iterations, || {
        config.preprocess(&image).map_or(f32::NAN, |p| p.data[0])
    });
    println!(
        "xlvlm-processor image preprocessing 640x480 -> 336: {rate:.1} images/s ({iterations} images, one thread, checksum {checksum:.3})"
    );

    let dir = llava_336_checkpoint()?;
    let processor = Processor::from_dir(&dir)?;
    let (rate, checksum) = time(iterations, || {
        let sample = Sample {
            prompt: Prompt::Messages {
                messages: vec![Message::user_with_image(
                    "What is shown in this image? Describe the colors.",
                )],
                add_generation_prompt: true,
            },
            images: vec![ImageInput::Decoded(&image)],
        };
        processor
            .encode_batch(&[sample], Padding::Left)
            .map_or(f32::NAN, |b| b.seq_len as f32)
    });
    println!(
        "xlvlm-processor full LLaVA processor call (template + image + 576 placeholders + tokenize): {rate:.1} samples/s ({iterations} samples, one thread, checksum {checksum:.0})"
    );
    remove_dir(&dir);
    Ok(())
}

fn remove_dir(dir: &Path) {
    // Best effort: a leftover temp folder is harmless.
    let _ = std::fs::remove_dir_all(dir);
}
