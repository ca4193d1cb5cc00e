//! Forward throughput (tokens/s) of the tiny LLaVA fixture and of the random ~100M-parameter
//! LLaVA-shaped checkpoint written by `tools/refgen/model_bench_torch.py`, in f32 on the CPU.
//!
//! ```text
//! python tools/refgen/model_bench_torch.py --out /tmp/xlvlm-bench     # torch numbers + checkpoint
//! cargo run --release -p xlvlm-model --example bench_forward -- /tmp/xlvlm-bench [iters] [cpu|cuda:N] [--backend flex|ndarray]
//! ```
//! (`cuda:N` needs `--features cuda`; the model dtype is f32 on the CPU and f16 on CUDA.
//! `--backend ndarray` needs `--features ndarray` and runs the same f32 passes on burn's legacy
//! `NdArray` CPU backend instead of `flex`, the library's CPU backend, to compare the two.)

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
        out.logits.expect("logits").into_data()
    };
    // The warm-up's logits, summarised, show that backends compared here compute the same thing.
    let warm_up_logits = run();
    let (count, abs_sum) = warm_up_logits
        .iter::<f32>()
        .fold((0usize, 0f64), |(n, sum), v| {
            (n + 1, sum + f64::from(v.abs()))
        });
    let mean_abs_logit = abs_sum / count as f64;
    let mut times = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        let _ = run();
        times.push(t.elapsed().as_secs_f64());
    }
    let best = times.iter().copied().fold(f64::INFINITY, f64::min);
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    println!(
        "{name} [{}]: params {} tokens {tokens} load {load_s:.2}s mean|logit| {mean_abs_logit:.6} best {best:.4}s mean {mean:.4}s -> {:.1} tokens/s (best), {:.1} (mean)",
        B::name(device),
        model.num_params(),
        tokens as f64 / best,
        tokens as f64 / mean
    );
}

/// Which burn backend runs the passes on the CPU.
#[derive(Clone, Copy, PartialEq, Eq)]
enum CpuBackendChoice {
    /// What [`run_on`] picks for `cpu`: the library's CPU backend.
    Flex,
    /// `burn::backend::NdArray` (feature `ndarray`), for comparison only.
    NdArray,
}

impl CpuBackendChoice {
    fn parse(name: &str) -> Self {
        match name {
            "flex" => Self::Flex,
            "ndarray" if cfg!(feature = "ndarray") => Self::NdArray,
            "ndarray" => panic!("--backend ndarray needs --features ndarray"),
            other => panic!("--backend {other:?} is not one of flex, ndarray"),
        }
    }
}

/// Runs `task` on `device`, or on burn's `NdArray` backend when that was asked for.
fn run_bench(device: DeviceSpec, backend: CpuBackendChoice, task: Bench<'_>) -> Result<()> {
    match backend {
        CpuBackendChoice::Flex => run_on(device, task),
        #[cfg(feature = "ndarray")]
        CpuBackendChoice::NdArray => task.run::<burn::backend::NdArray>(Default::default()),
        #[cfg(not(feature = "ndarray"))]
        CpuBackendChoice::NdArray => unreachable!("parse refuses ndarray without the feature"),
    }
}

fn main() {
    // the allocator settings the xlvlm CLI runs with
    xlvlm_model::keep_freed_memory();
    // `--backend NAME` may stand anywhere; the rest are positional.
    let mut positional = Vec::new();
    let mut backend = CpuBackendChoice::Flex;
    let mut raw = std::env::args().skip(1);
    while let Some(arg) = raw.next() {
        if arg == "--backend" {
            backend = CpuBackendChoice::parse(&raw.next().expect("--backend needs a name"));
        } else {
            positional.push(arg);
        }
    }
    let mut args = positional.into_iter();
    let bench_dir = PathBuf::from(args.next().unwrap_or_else(|| "/tmp/xlvlm-bench".into()));
    let iters: usize = args
        .next()
        .map_or(5, |s| s.parse().expect("iters is a number"));
    let device: DeviceSpec = args
        .next()
        .map_or(Ok(DeviceSpec::Cpu), |s| s.parse())
        .expect("device");
    assert!(
        backend == CpuBackendChoice::Flex || device == DeviceSpec::Cpu,
        "--backend ndarray runs on the CPU only"
    );
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
    run_bench(device, backend, task).expect("tiny bench");
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
        run_bench(device, backend, task).expect("llava100m bench");
    } else {
        println!(
            "llava100m: {} not found; run tools/refgen/model_bench_torch.py first",
            big.display()
        );
    }
}
