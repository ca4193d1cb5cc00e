//! Forward throughput (tokens/s) of the tiny LLaVA fixture and of the random ~100M-parameter
//! LLaVA-shaped checkpoint written by `tools/refgen/model_bench_torch.py`, in f32 on the CPU.
//!
//! ```text
//! python tools/refgen/model_bench_torch.py --out /tmp/xlvlm-bench     # torch numbers + checkpoint
//! cargo run --release -p xlvlm-model --example bench_forward -- /tmp/xlvlm-bench [iters] [cpu|cuda:N]
//! ```
//! (`cuda:N` needs `--features cuda`; the model dtype is f32 on the CPU and f16 on CUDA.)

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::tensor::backend::Backend;
use safetensors::{Dtype, SafeTensors};
use xlvlm_model::{
    BackendTask, Batch, DeviceSpec, Logits, PixelValues, Result, Vlm, WeightDType, run_on,
};

fn read_inputs(path: &Path, prefix: &str) -> Batch {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = SafeTensors::deserialize(&bytes).expect("inputs parse");
    let ints = |name: &str| -> Vec<Vec<i64>> {
        let view = st.tensor(&format!("{prefix}{name}")).expect("input tensor");
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
    let pixels = st
        .tensor(&format!("{prefix}pixel_values"))
        .expect("pixel_values");
    let shape = pixels.shape();
    let data = pixels
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    Batch::from_padded(ids, ints("attention_mask")).with_pixel_values(PixelValues {
        data,
        shape: [shape[0], shape[1], shape[2], shape[3]],
    })
}

struct Bench<'a> {
    name: &'a str,
    dir: &'a Path,
    batch: &'a Batch,
    iters: usize,
    dtype: WeightDType,
}

impl BackendTask for Bench<'_> {
    type Output = ();
    fn run<B: Backend>(self, device: B::Device) -> Result<()> {
        bench::<B>(
            self.name, self.dir, self.batch, self.iters, self.dtype, &device,
        );
        Ok(())
    }
}

fn bench<B: Backend>(
    name: &str,
    dir: &Path,
    batch: &Batch,
    iters: usize,
    dtype: WeightDType,
    device: &B::Device,
) {
    let started = Instant::now();
    let model = Vlm::<B>::load_dir(dir, dtype, device).expect("model loads");
    let load_s = started.elapsed().as_secs_f64();
    let tokens: usize = batch.input_ids.iter().map(Vec::len).sum();
    let run = || {
        let out = model
            .forward(batch, &[], &[], Logits::All)
            .expect("forward");
        // reading the logits back waits for the backend to finish
        let logits = out.logits.expect("logits");
        let _ = logits.into_data();
    };
    run(); // warm-up
    let mut times = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        run();
        times.push(t.elapsed().as_secs_f64());
    }
    let best = times.iter().copied().fold(f64::INFINITY, f64::min);
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    println!(
        "{name}: params {} tokens {tokens} load {load_s:.2}s best {best:.4}s mean {mean:.4}s -> {:.1} tokens/s (best), {:.1} (mean)",
        model.num_params(),
        tokens as f64 / best,
        tokens as f64 / mean
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let bench_dir = PathBuf::from(args.next().unwrap_or_else(|| "/tmp/xlvlm-bench".into()));
    let iters: usize = args
        .next()
        .map_or(5, |s| s.parse().expect("iters is a number"));
    let device: DeviceSpec = args
        .next()
        .map_or(Ok(DeviceSpec::Cpu), |s| s.parse())
        .expect("device");
    let dtype = match device {
        DeviceSpec::Cpu => WeightDType::F32,
        DeviceSpec::Cuda(_) => WeightDType::F16,
    };
    let tiny = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/hf/llava");
    let tiny_batch = read_inputs(&tiny.join("golden.safetensors"), "input.");
    let task = Bench {
        name: "tiny",
        dir: &tiny,
        batch: &tiny_batch,
        iters: iters * 4,
        dtype,
    };
    run_on(device, task).expect("tiny bench");
    let big = bench_dir.join("llava100m");
    if big.join("config.json").is_file() {
        let batch = read_inputs(&big.join("bench_inputs.safetensors"), "");
        let task = Bench {
            name: "llava100m",
            dir: &big,
            batch: &batch,
            iters,
            dtype,
        };
        run_on(device, task).expect("llava100m bench");
    } else {
        println!(
            "llava100m: {} not found; run tools/refgen/model_bench_torch.py first",
            big.display()
        );
    }
}
