//! Throughput of the tiny Molmo fixtures (f32, CPU): one forward pass over the golden prompt with
//! logits at every position, and greedy generation of 20 tokens (EOS ignored, KV cache, prefill
//! included). One warm-up, then `iters` timed runs of each; best and mean. The generated tokens
//! must equal the golden's `generate.output_ids` (the reference's greedy tokens).
//!
//! * `molmo2`: `tests/fixtures/hf/molmo2/hub_format` (Molmo2; 56 tokens, 5 crops), compared with
//!   transformers by `tools/refgen/model_bench_molmo2.py`.
//! * `molmo`: `tests/fixtures/hf/molmo` (the Molmo-7B-D-0924 layout; 79 tokens, 2 crops), compared
//!   with the checkpoint's remote code by `tools/refgen/model_bench_molmo.py`.
//!
//! The inputs are the goldens' `input.*`, turned into a batch as `tests/molmo.rs` does.
//!
//! ```text
//! cargo run --release -p xlvlm-model --example bench_molmo -- [molmo2|molmo] [iters]
//! ```

use std::error::Error;
use std::path::{Path, PathBuf};
use std::time::Instant;

use safetensors::{Dtype, SafeTensors};
use xlvlm_model::{
    Batch, CpuBackend, GenerateOptions, Logits, PatchPooling, PixelValues, Vlm, WeightDType,
};

type BenchResult<T> = Result<T, Box<dyn Error>>;

/// Side of a square ViT patch in both fixtures.
const PATCH: usize = 14;
const NEW_TOKENS: usize = 20;

#[derive(Clone, Copy, PartialEq)]
enum Fixture {
    Molmo2,
    Molmo,
}

impl Fixture {
    fn name(self) -> &'static str {
        match self {
            Fixture::Molmo2 => "molmo2",
            Fixture::Molmo => "molmo",
        }
    }
}

fn main() -> BenchResult<()> {
    // the allocator settings the xlvlm CLI runs with
    xlvlm_model::keep_freed_memory();
    let args: Vec<String> = std::env::args().skip(1).collect();
    // `[molmo2|molmo] [iters]`; a lone number is the iterations for molmo2
    let (fixture, iters) = match args.as_slice() {
        [] => (Fixture::Molmo2, None),
        [name, rest @ ..] if name == "molmo2" || name == "molmo" => {
            let fixture = if name == "molmo" {
                Fixture::Molmo
            } else {
                Fixture::Molmo2
            };
            (fixture, rest.first())
        }
        [iters] => (Fixture::Molmo2, Some(iters)),
        _ => return Err(format!("usage: bench_molmo [molmo2|molmo] [iters], got {args:?}").into()),
    };
    let iters: usize = match iters {
        Some(s) => s
            .parse()
            .map_err(|e| format!("usage: bench_molmo [molmo2|molmo] [iters]; {s:?}: {e}"))?,
        None => 20,
    };
    if iters == 0 {
        return Err("iters must be at least 1".into());
    }

    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/hf");
    let dir = root.join(fixture.name());
    let path = dir.join("golden.safetensors");
    let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let golden = Golden {
        tensors: SafeTensors::deserialize(&bytes)
            .map_err(|e| format!("{}: {e}", path.display()))?,
        path: &path,
    };
    let (_, ids) = golden.ints("input.input_ids")?;
    let ids = ids
        .into_iter()
        .map(u32::try_from)
        .collect::<Result<Vec<u32>, _>>()
        .map_err(|e| format!("{}: input.input_ids: {e}", path.display()))?;
    let tokens = ids.len();
    let (pixels, pooling, model_dir) = match fixture {
        Fixture::Molmo2 => {
            let (shape, index) = golden.ints("input.image_token_pooling")?;
            let pooling = PatchPooling {
                index,
                shape: [shape[0], shape[1]],
                image_masks: None,
            };
            (
                golden.crops("input.pixel_values")?,
                pooling,
                dir.join("hub_format"),
            )
        }
        Fixture::Molmo => (
            golden.crops("input.images")?,
            golden.molmo_pooling()?,
            dir.clone(),
        ),
    };
    let batch = Batch::left_padded(vec![ids], 0)
        .with_pixel_values(pixels)
        .with_patch_pooling(pooling);
    let device = Default::default();
    let model = Vlm::<CpuBackend>::load_dir(&model_dir, WeightDType::F32, &device)?;

    let forward = || -> BenchResult<()> {
        let logits = model
            .forward(&batch, &[], &[], Logits::All)?
            .logits
            .ok_or("forward returned no logits")?;
        // reading the values back waits for the whole computation
        let _ = logits.into_data();
        Ok(())
    };
    let options = GenerateOptions {
        max_new_tokens: NEW_TOKENS,
        eos_token_ids: Some(Vec::new()),
        ..Default::default()
    };
    // the reference's greedy tokens: a generation that differs would time something else
    let (_, expected) = golden.ints("generate.output_ids")?;
    let generate = || -> BenchResult<()> {
        let generation = model.generate(&batch, &options, &[], &[])?;
        let ids: Vec<i64> = generation.ids[0].iter().map(|&t| i64::from(t)).collect();
        if ids != expected {
            let path = path.display();
            return Err(format!("generated {ids:?}, {path} has {expected:?}").into());
        }
        Ok(())
    };
    report(fixture, "forward", tokens, &time(iters, forward)?);
    report(fixture, "generate 20", NEW_TOKENS, &time(iters, generate)?);
    Ok(())
}

/// One warm-up run, then `iters` timed runs (seconds each).
fn time(iters: usize, run: impl Fn() -> BenchResult<()>) -> BenchResult<Vec<f64>> {
    run()?;
    let mut times = Vec::with_capacity(iters);
    for _ in 0..iters {
        let t = Instant::now();
        run()?;
        times.push(t.elapsed().as_secs_f64());
    }
    Ok(times)
}

fn report(fixture: Fixture, what: &str, tokens: usize, times: &[f64]) {
    let best = times.iter().copied().fold(f64::INFINITY, f64::min);
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    println!(
        "{} tiny {what}: {tokens} tokens, best {best:.4}s mean {mean:.4}s -> {:.1} tokens/s (best), {:.1} (mean)",
        fixture.name(),
        tokens as f64 / best,
        tokens as f64 / mean
    );
}

/// The golden file of a fixture, with errors that name it.
struct Golden<'a> {
    tensors: SafeTensors<'a>,
    path: &'a Path,
}

impl Golden<'_> {
    fn view(&self, name: &str) -> BenchResult<safetensors::tensor::TensorView<'_>> {
        self.tensors
            .tensor(name)
            .map_err(|e| format!("{}: {name}: {e}", self.path.display()).into())
    }

    /// An integer tensor (i64 or i32) as i64, with its shape.
    fn ints(&self, name: &str) -> BenchResult<(Vec<usize>, Vec<i64>)> {
        let view = self.view(name)?;
        let values = match view.dtype() {
            Dtype::I64 => view
                .data()
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().expect("chunks of 8")))
                .collect(),
            Dtype::I32 => view
                .data()
                .chunks_exact(4)
                .map(|c| i64::from(i32::from_le_bytes(c.try_into().expect("chunks of 4"))))
                .collect(),
            other => {
                let path = self.path.display();
                return Err(format!("{path}: {name} is {other:?}, expected i64 or i32").into());
            }
        };
        Ok((view.shape().to_vec(), values))
    }

    fn floats(&self, name: &str) -> BenchResult<(Vec<usize>, Vec<f32>)> {
        let view = self.view(name)?;
        if view.dtype() != Dtype::F32 {
            let path = self.path.display();
            return Err(format!("{path}: {name} is {:?}, expected f32", view.dtype()).into());
        }
        let values = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("chunks of 4")))
            .collect();
        Ok((view.shape().to_vec(), values))
    }

    /// The processor's patches `[.., crops, patches, 14 * 14 * 3]`, each in (y, x, channel)
    /// order, back to crops `[crops, 3, side, side]` (leading dimensions fold into the crops).
    fn crops(&self, name: &str) -> BenchResult<PixelValues> {
        let (shape, patches) = self.floats(name)?;
        let [.., per_crop, dim] = shape[..] else {
            return Err(format!("{}: {name} has shape {shape:?}", self.path.display()).into());
        };
        let grid = (per_crop as f64).sqrt() as usize;
        if dim != PATCH * PATCH * 3 || grid * grid != per_crop {
            let path = self.path.display();
            return Err(
                format!("{path}: {name} has shape {shape:?}, expected [.., n*n, 588]").into(),
            );
        }
        let crops = shape[..shape.len() - 2].iter().product::<usize>();
        let side = grid * PATCH;
        let mut pixels = vec![0f32; crops * 3 * side * side];
        for (i, v) in patches.iter().enumerate() {
            let (c, k, within) = (i / (per_crop * dim), i / dim % per_crop, i % dim);
            let (py, px, ch) = (within / (PATCH * 3), within / 3 % PATCH, within % 3);
            let (y, x) = (k / grid * PATCH + py, k % grid * PATCH + px);
            pixels[((c * 3 + ch) * side + y) * side + x] = *v;
        }
        Ok(PixelValues {
            data: pixels,
            shape: [crops, 3, side, side],
        })
    }

    /// The remote processor's `image_input_idx` (`[.., crops, tokens per crop]`: the sequence
    /// position each pooled token goes to, negative when unused) as the model's pooling: for
    /// every `<im_patch>` position in sequence order, the 2 x 2 window of patches it pools, and
    /// the `image_masks` per patch.
    fn molmo_pooling(&self) -> BenchResult<PatchPooling> {
        let (shape, positions) = self.ints("input.image_input_idx")?;
        let (mask_shape, masks) = self.floats("input.image_masks")?;
        let (Some(&per_crop), Some(&patches)) = (shape.last(), mask_shape.last()) else {
            return Err(format!(
                "{}: image_input_idx / image_masks are scalars",
                self.path.display()
            )
            .into());
        };
        let (side, grid) = (
            (per_crop as f64).sqrt() as usize,
            (patches as f64).sqrt() as usize,
        );
        if side * side != per_crop || grid * grid != patches || grid != 2 * side {
            let path = self.path.display();
            return Err(format!(
                "{path}: {per_crop} tokens and {patches} patches per crop are not 2 x 2 windows of a square grid"
            )
            .into());
        }
        let mut used: Vec<(i64, usize, usize)> = positions
            .iter()
            .enumerate()
            .filter(|&(_, &pos)| pos >= 0)
            .map(|(k, &pos)| (pos, k / per_crop, k % per_crop))
            .collect();
        used.sort_unstable();
        let index = used
            .iter()
            .flat_map(|&(_, crop, slot)| {
                let (r, c) = (slot / side, slot % side);
                [(0, 0), (0, 1), (1, 0), (1, 1)]
                    .map(|(dy, dx)| (crop * patches + (2 * r + dy) * grid + 2 * c + dx) as i64)
            })
            .collect();
        Ok(PatchPooling {
            index,
            shape: [used.len(), 4],
            image_masks: Some(masks),
        })
    }
}
