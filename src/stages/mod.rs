//! Stage implementations, one file per kind. Feature-like artifacts (import, aggregate) hold
//! their main table as Parquet: numbered shards (`shard-00000.parquet`, ...) or `matrix.parquet`.

mod aggregate;
mod dataset;
mod decompose;
mod evaluate;
mod extract;
mod ground;
mod import;
mod inference;
mod shift;
mod steer;

use std::path::PathBuf;

use anyhow::{Context, bail};
use xlvlm_analysis::{KMeansParams, Method, PcaSolver, SemiNmfParams, SnmfParams};
use xlvlm_dag::{Executor, InputArtifact, StageContext, StageOutput};
use xlvlm_spec::{DecomposeMethod, PcaSolver as SpecPcaSolver, StageParams};
use xlvlm_store::{Column, FeatureTable, read_parquet};

/// Runs every stage kind this version implements.
pub struct Stages;

impl Executor for Stages {
    fn run(&self, ctx: &StageContext<'_>) -> anyhow::Result<StageOutput> {
        match &ctx.node.params {
            StageParams::Import(p) => import::run(ctx, p),
            StageParams::Aggregate(p) => aggregate::run(ctx, p),
            StageParams::Decompose(p) => decompose::run(ctx, p),
            StageParams::Shift(p) => shift::run(ctx, p),
            StageParams::Extract(p) => extract::run(ctx, p),
            StageParams::Steer(p) => steer::run(ctx, p),
            StageParams::Ground(p) => ground::run(ctx, p),
            StageParams::Evaluate(p) => evaluate::run(ctx, p),
        }
    }
}

/// The analysis crate's decomposition for a method and its options as the spec resolved them
/// (every option the method uses is `Some`).
fn decomposition_method(
    method: DecomposeMethod,
    pca_solver: Option<SpecPcaSolver>,
    n_init: Option<usize>,
    snmf_alpha: Option<f64>,
    max_iter: Option<usize>,
    tol: Option<f64>,
) -> Method {
    const RESOLVED: &str = "resolved by the spec";
    let (max_iter, tol) = (max_iter.expect(RESOLVED), tol.expect(RESOLVED));
    match method {
        DecomposeMethod::Pca => Method::Pca {
            solver: pca_solver_of(pca_solver.expect(RESOLVED)),
        },
        DecomposeMethod::Kmeans => Method::KMeans(KMeansParams {
            n_init: n_init.expect(RESOLVED),
            max_iter,
            tol,
            ..KMeansParams::default()
        }),
        DecomposeMethod::Snmf => Method::Snmf(SnmfParams {
            alpha: snmf_alpha.expect(RESOLVED),
            max_iter,
            tol,
            ..SnmfParams::accelerated()
        }),
        DecomposeMethod::SemiNmf => Method::SemiNmf(SemiNmfParams { max_iter, tol }),
        DecomposeMethod::Simple => Method::Simple,
    }
}

fn pca_solver_of(solver: SpecPcaSolver) -> PcaSolver {
    match solver {
        SpecPcaSolver::Auto => PcaSolver::Auto,
        SpecPcaSolver::Full => PcaSolver::Exact,
        SpecPcaSolver::Randomized => PcaSolver::Randomized,
    }
}

/// Tests set `XLVLM_TEST_SHARD_PAUSE_MS` to slow shard writing down, so that a process can be
/// killed between two shards and the resume checked.
fn shard_pause() {
    if let Some(ms) = std::env::var("XLVLM_TEST_SHARD_PAUSE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

/// The Parquet files that make up an artifact's main table, in row order.
fn main_table_files(input: &InputArtifact) -> anyhow::Result<Vec<PathBuf>> {
    let shards: Vec<PathBuf> = input
        .manifest
        .files
        .iter()
        .filter(|f| f.path.starts_with("shard-") && f.path.ends_with(".parquet"))
        .map(|f| input.dir.join(&f.path))
        .collect();
    if !shards.is_empty() {
        return Ok(shards);
    }
    if input
        .manifest
        .files
        .iter()
        .any(|f| f.path == "matrix.parquet")
    {
        return Ok(vec![input.dir.join("matrix.parquet")]);
    }
    bail!(
        "`{}` ({} stage) has no feature table; feed this stage from an import, extract or aggregate stage",
        input.label,
        input.manifest.kind
    )
}

/// Reads and concatenates an artifact's main table.
fn read_main_table(input: &InputArtifact) -> anyhow::Result<FeatureTable> {
    let mut out: Option<FeatureTable> = None;
    for path in main_table_files(input)? {
        let part = read_parquet(&path).with_context(|| format!("reading `{}`", input.label))?;
        out = Some(match out {
            None => part,
            Some(mut acc) => {
                append(&mut acc, part)
                    .with_context(|| format!("shards of `{}` disagree", input.label))?;
                acc
            }
        });
    }
    Ok(out.expect("at least one file"))
}

fn append(acc: &mut FeatureTable, part: FeatureTable) -> anyhow::Result<()> {
    if acc.columns.len() != part.columns.len() {
        bail!("different columns in shards");
    }
    for ((name, a), (pname, b)) in acc.columns.iter_mut().zip(part.columns) {
        if *name != pname {
            bail!("column `{name}` vs `{pname}`");
        }
        match (a, b) {
            (Column::Utf8(a), Column::Utf8(b)) => a.extend(b),
            (Column::Int64(a), Column::Int64(b)) => a.extend(b),
            (Column::Float64(a), Column::Float64(b)) => a.extend(b),
            (Column::Bool(a), Column::Bool(b)) => a.extend(b),
            (
                Column::Vector { dim, values, .. },
                Column::Vector {
                    dim: d2,
                    values: v2,
                    ..
                },
            ) if *dim == d2 => values.extend(v2),
            _ => bail!("column `{name}` changes type or width between shards"),
        }
    }
    Ok(())
}

/// A vector column, with an error that lists what is there.
fn vectors<'t>(
    table: &'t FeatureTable,
    column: &str,
    label: &str,
) -> anyhow::Result<(usize, &'t [f32])> {
    table.vector(column).with_context(|| {
        let have: Vec<&str> = table
            .columns
            .iter()
            .filter(|(_, c)| matches!(c, Column::Vector { .. }))
            .map(|(n, _)| n.as_str())
            .collect();
        format!(
            "`{label}` has no vector column `{column}` (vector columns: {})",
            have.join(", ")
        )
    })
}

/// Sample ids of a table, or an error.
fn sample_ids<'t>(table: &'t FeatureTable, label: &str) -> anyhow::Result<&'t [String]> {
    table
        .strings("sample_id")
        .with_context(|| format!("`{label}` has no `sample_id` column"))
}

/// `image` encoded as PNG (the ground stage's concept grid, the evaluate stage's sweep plots).
fn png_bytes(image: &xlvlm_processor::image_crate::RgbImage) -> anyhow::Result<Vec<u8>> {
    let mut png = Vec::new();
    image
        .write_to(
            &mut std::io::Cursor::new(&mut png),
            xlvlm_processor::image_crate::ImageFormat::Png,
        )
        .context("encoding a PNG")?;
    Ok(png)
}
