//! `decompose`: concepts (K×D) and activations (N×K) of a matrix.

use anyhow::{Context, bail};
use xlvlm_analysis::{Matrix, Model, decompose};
use xlvlm_dag::{StageContext, StageOutput};
use xlvlm_spec::DecomposeParams;
use xlvlm_store::{Column, FeatureTable};

pub fn run(ctx: &StageContext<'_>, p: &DecomposeParams) -> anyhow::Result<StageOutput> {
    let input = &ctx.inputs["input"];
    let table = super::read_main_table(input)?;
    let ids = super::sample_ids(&table, &input.label)?.to_vec();
    let (dim, values) = super::vectors(&table, &p.column, &input.label)?;
    let rows = ids.len();
    if p.num_concepts > rows {
        bail!(
            "`num_concepts = {}` but `{}` has only {rows} samples; use at most {rows} concepts or more data",
            p.num_concepts,
            input.label
        );
    }
    let x = Matrix::new(rows, dim, values.to_vec()).context("building the input matrix")?;
    let method =
        super::decomposition_method(p.method, p.pca_solver, p.n_init, p.alpha, p.max_iter, p.tol);
    let seed = p.seed.expect("resolved by the spec");
    let d = decompose(&x, p.num_concepts, &method, seed).context("decomposition failed")?;

    let k = d.concepts.rows;
    let concepts = FeatureTable::new()
        .with_column("concept", Column::Int64((0..k as i64).collect()))
        .with_column(
            "vector",
            Column::Vector {
                dim,
                values: d.concepts.data.clone(),
                half: false,
            },
        );
    let activations = FeatureTable::new()
        .with_column("sample_id", Column::Utf8(ids))
        .with_column(
            "vector",
            Column::Vector {
                dim: k,
                values: d.activations.data.clone(),
                half: false,
            },
        );
    let projected = match ctx.inputs.get("project") {
        Some(other) => {
            let table = super::read_main_table(other)?;
            let other_ids = super::sample_ids(&table, &other.label)?.to_vec();
            let (other_dim, values) = super::vectors(&table, &p.column, &other.label)?;
            if other_dim != dim {
                bail!(
                    "`{}` has vectors of width {other_dim} but `{}` of width {dim}; only features of the same space can be projected",
                    other.label,
                    input.label
                );
            }
            let y = Matrix::new(other_ids.len(), dim, values.to_vec())
                .context("building the matrix to project")?;
            let activations = d.transform(&y).context("projecting onto the concepts")?;
            let table = FeatureTable::new()
                .with_column("sample_id", Column::Utf8(other_ids))
                .with_column(
                    "vector",
                    Column::Vector {
                        dim: k,
                        values: activations.data,
                        half: false,
                    },
                );
            ctx.staging.write_table("projected.parquet", &table)?;
            Some(table.num_rows())
        }
        None => None,
    };
    ctx.staging.write_table("concepts.parquet", &concepts)?;
    ctx.staging
        .write_table("activations.parquet", &activations)?;

    let mut summary = serde_json::json!({
        "method": p.method, "num_concepts": k, "samples": rows, "dim": dim,
        "objective": d.objective, "iterations": d.iterations,
    });
    if let Some(n) = projected {
        summary["projected_samples"] = serde_json::json!(n);
    }
    if let Model::Pca(m) = &d.model {
        summary["explained_variance"] = serde_json::json!(m.explained_variance);
        summary["explained_variance_ratio"] = serde_json::json!(m.explained_variance_ratio);
    }
    if let Model::KMeans(m) = &d.model {
        summary["inertia"] = serde_json::json!(m.inertia);
    }
    Ok(StageOutput {
        rows: Some(k as u64),
        summary,
    })
}
