//! `steer`: greedy generation with a shift stage's vector applied at hook points.
//!
//! At every selected position of every hook the hidden state `h` becomes
//! * `add`: `h + alpha * v`;
//! * `projected`: `h - (h . u) u + alpha * u` with `u = v / |v|`, so the steered state's
//!   projection on `u` is exactly `alpha`.
//!
//! Output: `generations-NNNNN.parquet` shards (one row per sample, the schema of `extract`'s
//! generations); a killed run resumes at the first shard whose file is missing (each file is
//! written atomically).

use std::time::Instant;

use anyhow::{Context, bail};
use burn::tensor::backend::Backend;
use xlvlm_dag::{StageContext, StageOutput};
use xlvlm_data::Sample;
use xlvlm_model::{GenerateOptions, Intervention, InterventionMode, Positions};
use xlvlm_spec::{SteerMode, SteerParams, SteerPositions};
use xlvlm_store::read_parquet;

use super::inference::{self, GenerationRow, Loaded, ModelWork};

pub fn run(ctx: &StageContext<'_>, p: &SteerParams) -> anyhow::Result<StageOutput> {
    let model = ctx
        .node
        .model
        .as_ref()
        .context("the steer stage names no model")?;
    let (vector_name, vector) = read_vector(ctx, p)?;
    let samples = inference::samples(ctx)?;
    inference::with_model(
        model,
        Steer {
            ctx,
            p,
            samples: &samples,
            model_name: &model.name,
            vector_name: &vector_name,
            vector: &vector,
        },
    )
}

/// The chosen row of the shift stage's `vectors.parquet`.
fn read_vector(ctx: &StageContext<'_>, p: &SteerParams) -> anyhow::Result<(String, Vec<f32>)> {
    let input = &ctx.inputs["vector"];
    if input.manifest.file("vectors.parquet").is_none() {
        bail!(
            "`{}` ({} stage) has no vectors.parquet; `vector` must name a shift stage",
            input.label,
            input.manifest.kind
        );
    }
    let table = read_parquet(&input.dir.join("vectors.parquet"))
        .with_context(|| format!("reading the vectors of `{}`", input.label))?;
    let names = table
        .strings("name")
        .with_context(|| format!("`{}`'s vectors.parquet has no `name` column", input.label))?;
    let (dim, values) = super::vectors(&table, "vector", &input.label)?;
    let row = match &p.vector_name {
        Some(want) => names.iter().position(|n| n == want).with_context(|| {
            format!(
                "`{}` has no vector named `{want}` (it has: {})",
                input.label,
                names.join(", ")
            )
        })?,
        None if names.len() == 1 => 0,
        None => bail!(
            "`{}` holds {} vectors ({}); choose one with `vector_name`",
            input.label,
            names.len(),
            names.join(", ")
        ),
    };
    Ok((
        names[row].clone(),
        values[row * dim..(row + 1) * dim].to_vec(),
    ))
}

struct Steer<'a> {
    ctx: &'a StageContext<'a>,
    p: &'a SteerParams,
    samples: &'a [Sample],
    model_name: &'a str,
    vector_name: &'a str,
    vector: &'a [f32],
}

/// The model's position selections for a steering `positions` setting.
pub fn steer_positions(positions: SteerPositions, start_index: Option<usize>) -> Vec<Positions> {
    match positions {
        SteerPositions::All => vec![Positions::All],
        SteerPositions::Generated => vec![Positions::Generated],
        SteerPositions::LastPromptToken => {
            vec![Positions::LastPromptToken, Positions::Generated]
        }
        SteerPositions::FromIndex => vec![Positions::Range {
            start: start_index.expect("checked by the spec"),
            end: None,
        }],
    }
}

impl ModelWork for Steer<'_> {
    type Output = StageOutput;

    fn run<B: Backend>(self, loaded: &Loaded<B>) -> anyhow::Result<StageOutput> {
        let Steer {
            ctx,
            p,
            samples,
            model_name,
            vector_name,
            vector,
        } = self;
        let model = &loaded.model;
        let processor = &loaded.processor;
        let (hooks, names) = inference::parse_hooks(model, &p.hooks)?;
        for h in &hooks {
            if model.hook_width(*h) != vector.len() {
                bail!(
                    "vector `{vector_name}` has {} values but hook `{h}` has width {}",
                    vector.len(),
                    model.hook_width(*h)
                );
            }
        }
        let mode = match p.mode.expect("filled by the spec") {
            SteerMode::Add => InterventionMode::Add,
            SteerMode::Projected => InterventionMode::Projected,
        };
        let positions = p.positions.expect("filled by the spec");
        let interventions: Vec<Intervention> = hooks
            .iter()
            .flat_map(|&hook| {
                steer_positions(positions, p.start_index)
                    .into_iter()
                    .map(move |positions| Intervention {
                        hook,
                        vector: vector.to_vec(),
                        alpha: p.alpha as f32,
                        positions,
                        mode,
                    })
            })
            .collect();
        let prompt = p.prompt.as_ref().expect("filled by the spec");
        let generate = p.generate.as_ref().expect("filled by the spec");
        let stop = processor.stop_strings(&generate.stop);
        let stop_fn = |ids: &[u32]| stop.matches(ids);
        let options = GenerateOptions {
            max_new_tokens: generate.max_new_tokens,
            eos_token_ids: None,
            stop: (!generate.stop.is_empty()).then_some(&stop_fn as &dyn Fn(&[u32]) -> bool),
            keep_logits: false,
        };
        let batch_size = p.batch_size.expect("filled by the spec");
        let shards =
            inference::shard_ranges(samples.len(), p.shard_samples.expect("filled by the spec"));
        let bar = inference::progress(samples.len(), &ctx.node.label);
        let clock = Instant::now();
        let mut ran = 0;
        for (s, range) in shards.iter().enumerate() {
            let file = inference::generations_file(s);
            if ctx.staging.dir().join(&file).is_file() {
                tracing::debug!("{}: shard {s} already written", ctx.node.label);
                bar.inc(range.len() as u64);
                continue;
            }
            let shard = &samples[range.clone()];
            let mut rows = Vec::with_capacity(shard.len());
            for chunk in shard.chunks(batch_size) {
                let enc = inference::encode(processor, chunk, prompt, false)?;
                let out = model.generate(&enc.batch, &options, &[], &interventions)?;
                rows.extend(
                    out.ids
                        .into_iter()
                        .zip(out.finish)
                        .map(|(ids, finish)| GenerationRow { ids, finish }),
                );
                bar.inc(chunk.len() as u64);
            }
            ran += shard.len();
            let table = inference::generations_table(processor, shard, &rows)?
                .with_metadata("xlvlm.model", model_name)
                .with_metadata("xlvlm.hooks", names.join(","))
                .with_metadata("xlvlm.vector", vector_name)
                .with_metadata("xlvlm.alpha", p.alpha.to_string());
            ctx.staging
                .write_table(&file, &table)
                .with_context(|| format!("writing the generations of shard {s}"))?;
            super::shard_pause();
        }
        bar.finish_and_clear();
        let seconds = clock.elapsed().as_secs_f64();
        let norm = vector
            .iter()
            .map(|v| f64::from(*v).powi(2))
            .sum::<f64>()
            .sqrt();
        Ok(StageOutput {
            rows: Some(samples.len() as u64),
            summary: serde_json::json!({
                "model": model_name,
                "checkpoint": model.dir().display().to_string(),
                "hooks": names,
                "vector": ctx.inputs["vector"].label,
                "vector_name": vector_name,
                "vector_norm": norm,
                "alpha": p.alpha,
                "mode": p.mode,
                "positions": p.positions,
                "start_index": p.start_index,
                "max_new_tokens": generate.max_new_tokens,
                "samples": samples.len(),
                "shards": shards.len(),
                "samples_this_run": ran,
                "samples_per_second": if seconds > 0.0 { ran as f64 / seconds } else { 0.0 },
            }),
        })
    }
}
