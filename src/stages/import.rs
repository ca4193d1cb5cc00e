//! `import`: users' own features into a sharded feature table (`sample_id`, metadata, `vector`).

use anyhow::{Context, bail};
use xlvlm_dag::{StageContext, StageOutput};
use xlvlm_spec::{ImportFormat, ImportParams};
use xlvlm_store::{
    Column, FeatureTable, read_matrix_npy, read_matrix_safetensors, read_parquet, read_row_ids,
};

pub fn run(ctx: &StageContext<'_>, p: &ImportParams) -> anyhow::Result<StageOutput> {
    let path = &p.path;
    let (ids, metadata, dim, values) = match p.format.expect("resolved by the spec") {
        ImportFormat::Parquet => {
            let table = read_parquet(path)?;
            let vector_names: Vec<&str> = table
                .columns
                .iter()
                .filter(|(_, c)| matches!(c, Column::Vector { .. }))
                .map(|(n, _)| n.as_str())
                .collect();
            let vector_name = match (&p.vector_column, vector_names.as_slice()) {
                (Some(v), _) => v.clone(),
                (None, [only]) => only.to_string(),
                (None, []) => bail!("`{}` has no vector (list of float) column", path.display()),
                (None, many) => bail!(
                    "`{}` has several vector columns ({}); set `vector_column`",
                    path.display(),
                    many.join(", ")
                ),
            };
            let (dim, values) = super::vectors(&table, &vector_name, &path.display().to_string())?;
            let values = values.to_vec();
            let rows = table.num_rows();
            let id_column = p
                .id_column
                .clone()
                .or_else(|| table.column("sample_id").map(|_| "sample_id".into()));
            let ids: Vec<String> = match &id_column {
                Some(name) => match table.column(name) {
                    Some(Column::Utf8(v)) => v.clone(),
                    Some(Column::Int64(v)) => v.iter().map(i64::to_string).collect(),
                    Some(other) => bail!(
                        "id column `{name}` holds {}, expected strings or integers",
                        other.type_name()
                    ),
                    None => bail!("`{}` has no column `{name}`", path.display()),
                },
                None => (0..rows).map(|i| i.to_string()).collect(),
            };
            let metadata: Vec<(String, Column)> = table
                .columns
                .into_iter()
                .filter(|(n, c)| {
                    !matches!(c, Column::Vector { .. })
                        && Some(n) != id_column.as_ref()
                        && n != "sample_id"
                })
                .collect();
            (ids, metadata, dim, values)
        }
        ImportFormat::Npy | ImportFormat::Safetensors => {
            let (rows, dim, values) = if p.format == Some(ImportFormat::Npy) {
                read_matrix_npy(path)?
            } else {
                read_matrix_safetensors(path, p.tensor.as_deref())?
            };
            let ids = match &p.ids {
                Some(f) => read_row_ids(f, rows)?,
                None => (0..rows).map(|i| i.to_string()).collect(),
            };
            (ids, Vec::new(), dim, values)
        }
    };
    if let Some(bad) = values.iter().position(|v| !v.is_finite()) {
        bail!(
            "`{}`: row {} (sample `{}`) has a non-finite value ({})",
            path.display(),
            bad / dim,
            ids[bad / dim],
            values[bad]
        );
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = ids.iter().find(|id| !seen.insert(id.as_str())) {
        bail!(
            "`{}`: sample id `{dup}` appears more than once",
            path.display()
        );
    }

    let rows = ids.len();
    let shards = rows.div_ceil(p.shard_rows).max(1);
    let done = ctx.staging.done_shards()?;
    for shard in 0..shards {
        if done.contains(&(shard as u32)) {
            tracing::debug!("{}: shard {shard} already written", ctx.node.label);
            continue;
        }
        let lo = shard * p.shard_rows;
        let hi = (lo + p.shard_rows).min(rows);
        let mut table =
            FeatureTable::new().with_column("sample_id", Column::Utf8(ids[lo..hi].to_vec()));
        for (name, col) in &metadata {
            table = table.with_column(name.clone(), slice(col, lo, hi));
        }
        table = table
            .with_column(
                "vector",
                Column::Vector {
                    dim,
                    values: values[lo * dim..hi * dim].to_vec(),
                    half: false,
                },
            )
            .with_metadata(
                "xlvlm.source",
                path.file_name()
                    .map_or(String::new(), |n| n.to_string_lossy().into_owned()),
            );
        ctx.staging
            .write_shard(shard as u32, &table)
            .with_context(|| format!("writing shard {shard}"))?;
        super::shard_pause();
    }
    Ok(StageOutput {
        rows: Some(rows as u64),
        summary: serde_json::json!({ "rows": rows, "dim": dim, "shards": shards }),
    })
}

fn slice(col: &Column, lo: usize, hi: usize) -> Column {
    match col {
        Column::Utf8(v) => Column::Utf8(v[lo..hi].to_vec()),
        Column::Int64(v) => Column::Int64(v[lo..hi].to_vec()),
        Column::Float64(v) => Column::Float64(v[lo..hi].to_vec()),
        Column::Bool(v) => Column::Bool(v[lo..hi].to_vec()),
        Column::Vector { dim, values, half } => Column::Vector {
            dim: *dim,
            values: values[lo * dim..hi * dim].to_vec(),
            half: *half,
        },
    }
}
