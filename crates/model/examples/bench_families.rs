//! Throughput of each vision-language family on its committed tiny fixture
//! (`tests/fixtures/hf/<name>`), f32 on the CPU (flex): one prefill forward with logits at every
//! position (tokens/s = prompt tokens / time, image encoding included) and greedy generation of
//! 20 tokens with the KV cache (new tokens/s, prefill included), batch 1, on the golden inputs.
//!
//! ```text
//! cargo run --release -p xlvlm-model --example bench_families -- [iters]
//! ```
//! `crates/model/BENCHMARKS.md` has the transformers side of the comparison.

use std::path::{Path, PathBuf};
use std::time::Instant;

use safetensors::{Dtype, SafeTensors};
use xlvlm_model::{
    Batch, CpuBackend, GenerateOptions, ImagePatches, Logits, PixelValues, Vlm, WeightDType,
};

const FAMILIES: [&str; 5] = ["llava", "idefics2", "idefics3", "smolvlm", "qwen2_vl"];

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/hf")
        .join(name)
}

/// `input.input_ids`, `input.attention_mask` and `input.pixel_values` of a golden file (the
/// Idefics images-per-sample axis flattened; Qwen2-VL's flattened patches with
/// `input.image_grid_thw`).
fn golden_batch(dir: &Path) -> Batch {
    let path = dir.join("golden.safetensors");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = SafeTensors::deserialize(&bytes).expect("golden parses");
    let ints = |name: &str| -> Vec<Vec<i64>> {
        let view = st.tensor(name).expect("input tensor");
        assert_eq!(view.dtype(), Dtype::I64);
        let values: Vec<i64> = view
            .data()
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        values
            .chunks(view.shape()[1])
            .map(<[i64]>::to_vec)
            .collect()
    };
    let ids = ints("input.input_ids")
        .into_iter()
        .map(|r| r.into_iter().map(|t| t as u32).collect())
        .collect();
    let pixels = st.tensor("input.pixel_values").expect("pixel_values");
    let batch = Batch::from_padded(ids, ints("input.attention_mask"));
    let shape = pixels.shape();
    if let Ok(grids) = st.tensor("input.image_grid_thw") {
        let data = pixels
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        let grid_thw = grids
            .data()
            .chunks_exact(24)
            .map(|g| {
                let n = |i: usize| i64::from_le_bytes(g[i * 8..i * 8 + 8].try_into().unwrap());
                [n(0) as usize, n(1) as usize, n(2) as usize]
            })
            .collect();
        return batch.with_image_patches(ImagePatches {
            data,
            patch_dim: shape[1],
            grid_thw,
        });
    }
    let [c, h, w] = shape[shape.len() - 3..] else {
        unreachable!()
    };
    let data: Vec<f32> = pixels
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let images = data.len() / (c * h * w);
    batch.with_pixel_values(PixelValues {
        data,
        shape: [images, c, h, w],
    })
}

/// Best and mean seconds of `iters` timed runs after one warm-up.
fn time(iters: usize, mut run: impl FnMut()) -> (f64, f64) {
    run();
    let times: Vec<f64> = (0..iters)
        .map(|_| {
            let start = Instant::now();
            run();
            start.elapsed().as_secs_f64()
        })
        .collect();
    let best = times.iter().copied().fold(f64::INFINITY, f64::min);
    (best, times.iter().sum::<f64>() / iters as f64)
}

fn main() {
    // the allocator settings the xlvlm CLI runs with
    xlvlm_model::keep_freed_memory();
    let iters: usize = std::env::args()
        .nth(1)
        .map_or(20, |a| a.parse().expect("iters is a number"));
    let device = Default::default();
    println!(
        "| model | prompt tokens | prefill best s | prefill tok/s (best) | generate 20 best s | new tok/s (best) |"
    );
    println!("|---|---|---|---|---|---|");
    for name in FAMILIES {
        let dir = fixture(name);
        let model = Vlm::<CpuBackend>::load_dir(&dir, WeightDType::F32, &device)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let batch = golden_batch(&dir);
        let tokens = batch.input_ids[0].len();
        let (prefill, _) = time(iters, || {
            let out = model.forward(&batch, &[], &[], Logits::All).unwrap();
            std::hint::black_box(out.logits.unwrap().into_data());
        });
        // no EOS: always 20 new tokens, as transformers' `min_new_tokens = 20`
        let options = GenerateOptions {
            max_new_tokens: 20,
            eos_token_ids: Some(Vec::new()),
            ..Default::default()
        };
        let (generate, _) = time(iters, || {
            let out = model.generate(&batch, &options, &[], &[]).unwrap();
            assert_eq!(out.ids[0].len(), 20);
        });
        println!(
            "| {name} | {tokens} | {prefill:.5} | {:.0} | {generate:.4} | {:.0} |",
            tokens as f64 / prefill,
            20.0 / generate
        );
    }
}
