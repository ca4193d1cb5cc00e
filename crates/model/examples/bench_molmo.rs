//! Throughput of the tiny Molmo2 fixture (`tests/fixtures/hf/molmo2`, f32, CPU): one forward
//! pass over the golden prompt (56 tokens, 5 crops) and greedy generation of 20 tokens.
//!
//! ```text
//! cargo run --release -p xlvlm-model --example bench_molmo -- [iters]
//! python tools/refgen/model_bench_molmo2.py [iters]      # transformers on the same fixture
//! ```

use std::path::PathBuf;
use std::time::Instant;

use safetensors::{Dtype, SafeTensors};
use xlvlm_model::{
    Batch, CpuBackend, GenerateOptions, Logits, PatchPooling, PixelValues, Vlm, WeightDType,
};

fn main() {
    let iters: usize = std::env::args()
        .nth(1)
        .map_or(20, |a| a.parse().expect("iters is a number"));
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/hf/molmo2");
    let bytes = std::fs::read(dir.join("golden.safetensors")).expect("golden.safetensors");
    let golden = SafeTensors::deserialize(&bytes).expect("golden parses");
    let ints = |name: &str| -> (Vec<usize>, Vec<i64>) {
        let view = golden.tensor(name).expect("input tensor");
        let values = match view.dtype() {
            Dtype::I64 => view
                .data()
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                .collect(),
            _ => view
                .data()
                .chunks_exact(4)
                .map(|c| i64::from(i32::from_le_bytes(c.try_into().unwrap())))
                .collect(),
        };
        (view.shape().to_vec(), values)
    };
    let (_, ids) = ints("input.input_ids");
    let ids: Vec<u32> = ids.into_iter().map(|t| t as u32).collect();
    let (pool_shape, index) = ints("input.image_token_pooling");
    let pooling = PatchPooling {
        index,
        shape: [pool_shape[0], pool_shape[1]],
        image_masks: None,
    };
    // transformers' patches [crops, patches, 14 * 14 * 3] in (y, x, channel) order to crops
    let view = golden.tensor("input.pixel_values").expect("pixel_values");
    let patches: Vec<f32> = view
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let (crops, per_crop, p) = (view.shape()[0], view.shape()[1], 14);
    let grid = (per_crop as f64).sqrt() as usize;
    let side = grid * p;
    let mut pixels = vec![0f32; crops * 3 * side * side];
    for (i, v) in patches.iter().enumerate() {
        let (c, k, within) = (
            i / (per_crop * p * p * 3),
            i / (p * p * 3) % per_crop,
            i % (p * p * 3),
        );
        let (py, px, ch) = (within / (p * 3), within / 3 % p, within % 3);
        let (y, x) = (k / grid * p + py, k % grid * p + px);
        pixels[((c * 3 + ch) * side + y) * side + x] = *v;
    }
    let tokens = ids.len();
    let batch = Batch::left_padded(vec![ids], 0)
        .with_pixel_values(PixelValues {
            data: pixels,
            shape: [crops, 3, side, side],
        })
        .with_patch_pooling(pooling);
    let device = Default::default();
    let model = Vlm::<CpuBackend>::load_dir(&dir.join("hub_format"), WeightDType::F32, &device)
        .expect("model loads");
    let forward = || {
        model
            .forward(&batch, &[], &[], Logits::All)
            .expect("forward")
            .logits
            .expect("logits")
            .into_data()
    };
    let _ = forward();
    let mut times = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        let _ = forward();
        times.push(t.elapsed().as_secs_f64());
    }
    report("forward", tokens, &times);
    let options = GenerateOptions {
        max_new_tokens: 20,
        eos_token_ids: Some(Vec::new()),
        ..Default::default()
    };
    let mut times = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        let generation = model
            .generate(&batch, &options, &[], &[])
            .expect("generate");
        assert_eq!(generation.ids[0].len(), 20);
        times.push(t.elapsed().as_secs_f64());
    }
    report("generate 20", 20, &times);
}

fn report(what: &str, tokens: usize, times: &[f64]) {
    let best = times.iter().copied().fold(f64::INFINITY, f64::min);
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    println!(
        "molmo2 tiny {what}: {tokens} tokens, best {best:.4}s mean {mean:.4}s -> {:.1} tokens/s (best), {:.1} (mean)",
        tokens as f64 / best,
        tokens as f64 / mean
    );
}
