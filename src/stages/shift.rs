//! `shift`: vectors that point from the source features to the target features.

use std::collections::HashMap;

use anyhow::bail;
use xlvlm_dag::{StageContext, StageOutput};
use xlvlm_spec::{ShiftMethod, ShiftParams};
use xlvlm_store::{Column, FeatureTable};

pub fn run(ctx: &StageContext<'_>, p: &ShiftParams) -> anyhow::Result<StageOutput> {
    let source_in = &ctx.inputs["source"];
    let target_in = &ctx.inputs["target"];
    let source = super::read_main_table(source_in)?;
    let target = super::read_main_table(target_in)?;
    let (ds, xs) = super::vectors(&source, &p.column, &source_in.label)?;
    let (dt, xt) = super::vectors(&target, &p.column, &target_in.label)?;
    if ds != dt {
        bail!(
            "`{}` has vectors of width {ds} but `{}` of width {dt}; a shift needs both in the same space",
            source_in.label,
            target_in.label
        );
    }
    let dim = ds;
    for (label, x) in [(&source_in.label, xs), (&target_in.label, xt)] {
        if x.is_empty() {
            bail!("`{label}` has no rows; a shift needs samples on both sides");
        }
    }
    let (vector, used) = match p.method {
        ShiftMethod::ShiftOfMeans => {
            let (ms, mt) = (mean(xs, dim), mean(xt, dim));
            (
                mt.iter()
                    .zip(&ms)
                    .map(|(t, s)| (t - s) as f32)
                    .collect::<Vec<f32>>(),
                (xs.len() / dim, xt.len() / dim),
            )
        }
        ShiftMethod::MeanOfShifts => {
            let ids_s = super::sample_ids(&source, &source_in.label)?;
            let ids_t = super::sample_ids(&target, &target_in.label)?;
            let at: HashMap<&str, usize> = ids_t
                .iter()
                .enumerate()
                .map(|(i, id)| (id.as_str(), i))
                .collect();
            let mut acc = vec![0f64; dim];
            let mut n = 0usize;
            for (i, id) in ids_s.iter().enumerate() {
                if let Some(&j) = at.get(id.as_str()) {
                    for c in 0..dim {
                        acc[c] += f64::from(xt[j * dim + c]) - f64::from(xs[i * dim + c]);
                    }
                    n += 1;
                }
            }
            if n == 0 {
                bail!(
                    "`{}` and `{}` share no sample_id; `mean_of_shifts` needs matched samples (use `shift_of_means` otherwise)",
                    source_in.label,
                    target_in.label
                );
            }
            (acc.iter().map(|a| (a / n as f64) as f32).collect(), (n, n))
        }
        other => bail!("shift method `{}` is not implemented yet", other.name()),
    };
    let norm = vector
        .iter()
        .map(|v| f64::from(*v).powi(2))
        .sum::<f64>()
        .sqrt();
    let table = FeatureTable::new()
        .with_column("name", Column::Utf8(vec![p.method.name().to_string()]))
        .with_column(
            "vector",
            Column::Vector {
                dim,
                values: vector,
                half: false,
            },
        )
        .with_metadata("xlvlm.direction", "target - source");
    ctx.staging.write_table("vectors.parquet", &table)?;
    Ok(StageOutput {
        rows: Some(1),
        summary: serde_json::json!({
            "method": p.method.name(), "dim": dim, "norm": norm,
            "source_samples": used.0, "target_samples": used.1,
        }),
    })
}

fn mean(x: &[f32], dim: usize) -> Vec<f64> {
    let n = x.len() / dim;
    let mut acc = vec![0f64; dim];
    for row in x.chunks_exact(dim) {
        for (a, v) in acc.iter_mut().zip(row) {
            *a += f64::from(*v);
        }
    }
    acc.iter_mut().for_each(|a| *a /= n.max(1) as f64);
    acc
}
