//! Qwen2-VL throughput in f32 on the CPU: one forward over the prompt (all logits), the vision
//! tower + merger alone, and greedy generation of 20 new tokens, on the random ~100M-parameter checkpoint and input written by
//! `tools/refgen/qwen2_vl_bench_torch.py` (which times transformers on the same model).
//!
//! ```text
//! python tools/refgen/qwen2_vl_bench_torch.py --out /tmp/xlvlm-bench
//! cargo run --release -p xlvlm-model --example bench_qwen2_vl -- /tmp/xlvlm-bench [iters]
//! ```

use std::path::PathBuf;
use std::time::Instant;

use burn::backend::Flex;
use safetensors::{Dtype, SafeTensors};
use xlvlm_model::{Batch, GenerateOptions, ImagePatches, Logits, Vlm, WeightDType};

const NEW_TOKENS: usize = 20;

fn read_inputs(path: &std::path::Path) -> Batch {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = SafeTensors::deserialize(&bytes).expect("inputs parse");
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
    let ids = ints("input_ids")
        .into_iter()
        .map(|r| r.into_iter().map(|t| t as u32).collect())
        .collect();
    let pixels = st.tensor("pixel_values").expect("pixel_values");
    let patch_dim = pixels.shape()[1];
    let data = pixels
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let grid_thw = ints("image_grid_thw")
        .into_iter()
        .map(|r| [r[0] as usize, r[1] as usize, r[2] as usize])
        .collect();
    Batch::from_padded(ids, ints("attention_mask")).with_image_patches(ImagePatches {
        data,
        patch_dim,
        grid_thw,
    })
}

fn timed(iters: usize, mut f: impl FnMut()) -> (f64, f64) {
    f(); // warm-up
    let times: Vec<f64> = (0..iters)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    let best = times.iter().copied().fold(f64::INFINITY, f64::min);
    (best, times.iter().sum::<f64>() / times.len() as f64)
}

fn main() {
    // the allocator settings the xlvlm CLI runs with
    xlvlm_model::keep_freed_memory();
    let mut args = std::env::args().skip(1);
    let root = PathBuf::from(args.next().unwrap_or_else(|| "/tmp/xlvlm-bench".into()));
    let iters: usize = args
        .next()
        .map_or(5, |s| s.parse().expect("iters is a number"));
    let dir = root.join("qwen2vl100m");
    let batch = read_inputs(&dir.join("bench_inputs.safetensors"));
    let device = Default::default();
    let model = Vlm::<Flex>::load_dir(&dir, WeightDType::F32, &device).expect("model loads");
    let tokens: usize = batch.input_ids.iter().map(Vec::len).sum();
    let (f_best, f_mean) = timed(iters, || {
        let out = model
            .forward(&batch, &[], &[], Logits::All)
            .expect("forward");
        // one value read back waits for the backend to finish (flex computes eagerly); copying
        // all 38 MB of logits out would be work that transformers' side does not do
        let logits = out.logits.expect("logits");
        let _ = logits.narrow(1, 0, 1).narrow(2, 0, 1).into_data();
    });
    let patches = batch.image_patches.as_ref().expect("an image");
    let (v_best, v_mean) = timed(iters, || {
        let _ = model
            .image_patch_features(patches)
            .expect("image features")
            .into_data();
    });
    let options = GenerateOptions {
        max_new_tokens: NEW_TOKENS,
        // as transformers' min_new_tokens: never stop early
        eos_token_ids: Some(Vec::new()),
        ..Default::default()
    };
    let (g_best, g_mean) = timed(iters, || {
        let generation = model
            .generate(&batch, &options, &[], &[])
            .expect("generate");
        assert_eq!(generation.ids[0].len(), NEW_TOKENS);
    });
    println!(
        "qwen2vl100m [flex f32]: params {} prompt tokens {tokens}; forward best {f_best:.4}s mean {f_mean:.4}s -> {:.1} tokens/s (best), {:.1} (mean); of which vision tower + merger best {v_best:.4}s mean {v_mean:.4}s; generate {NEW_TOKENS} best {g_best:.4}s mean {g_mean:.4}s",
        model.num_params(),
        tokens as f64 / f_best,
        tokens as f64 / f_mean
    );
}
