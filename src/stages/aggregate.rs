//! `aggregate`: one row per sample from feature tables — filter rows, pool positions, and join
//! several inputs on `sample_id` (a sample is kept only if every input has it).

use std::collections::HashMap;

use anyhow::{Context, bail};
use xlvlm_dag::{StageContext, StageOutput};
use xlvlm_spec::{AggregateParams, Pool};
use xlvlm_store::{Column, FeatureTable};

/// Pooled vectors of one input: sample ids in first-seen order, and their rows.
struct Pooled {
    ids: Vec<String>,
    first_row: Vec<usize>,
    dim: usize,
    values: Vec<f32>,
}

pub fn run(ctx: &StageContext<'_>, p: &AggregateParams) -> anyhow::Result<StageOutput> {
    let mut tables = Vec::new();
    let mut pooled = Vec::new();
    for i in 0..p.features.0.len() {
        let input = &ctx.inputs[&format!("features.{i}")];
        let table = super::read_main_table(input)?;
        pooled.push(pool(&table, p, &input.label)?);
        tables.push(table);
    }

    // Samples present in every input, in the order of the first.
    let index: Vec<HashMap<&str, usize>> = pooled
        .iter()
        .map(|t| {
            t.ids
                .iter()
                .enumerate()
                .map(|(i, id)| (id.as_str(), i))
                .collect()
        })
        .collect();
    let keep: Vec<usize> = (0..pooled[0].ids.len())
        .filter(|&i| {
            index[1..]
                .iter()
                .all(|m| m.contains_key(pooled[0].ids[i].as_str()))
        })
        .collect();
    if keep.is_empty() {
        bail!("no sample is left after filtering and joining the inputs");
    }

    let first = &pooled[0];
    let rows: Vec<usize> = keep.iter().map(|&i| first.first_row[i]).collect();
    let mut out = FeatureTable::new().with_column(
        "sample_id",
        Column::Utf8(keep.iter().map(|&i| first.ids[i].clone()).collect()),
    );
    // Metadata of the first input travels along (one value per sample: its first row's).
    for (name, col) in &tables[0].columns {
        if matches!(col, Column::Vector { .. })
            || ["sample_id", "hook", "position"].contains(&name.as_str())
        {
            continue;
        }
        out = out.with_column(name.clone(), take(col, &rows));
    }
    for (k, t) in pooled.iter().enumerate() {
        let mut values = Vec::with_capacity(keep.len() * t.dim);
        for &i in &keep {
            let j = if k == 0 {
                i
            } else {
                index[k][first.ids[i].as_str()]
            };
            values.extend_from_slice(&t.values[j * t.dim..(j + 1) * t.dim]);
        }
        let name = if k == 0 {
            "vector".to_string()
        } else {
            format!("vector_{k}")
        };
        out = out.with_column(
            name,
            Column::Vector {
                dim: t.dim,
                values,
                half: false,
            },
        );
    }
    let n = keep.len();
    ctx.staging.write_table("matrix.parquet", &out)?;
    let dims: Vec<usize> = pooled.iter().map(|t| t.dim).collect();
    Ok(StageOutput {
        rows: Some(n as u64),
        summary: serde_json::json!({ "rows": n, "dims": dims, "dropped_by_join": first.ids.len() - n }),
    })
}

fn pool(table: &FeatureTable, p: &AggregateParams, label: &str) -> anyhow::Result<Pooled> {
    let ids = super::sample_ids(table, label)?;
    let (dim, values) = super::vectors(table, &p.column, label)?;
    let mask: Option<&[bool]> = match &p.filter {
        Some(name) => Some(
            table
                .bools(name)
                .with_context(|| match table.column(name) {
                    Some(c) => format!(
                        "filter column `{name}` of `{label}` holds {}, expected booleans",
                        c.type_name()
                    ),
                    None => format!("`{label}` has no column `{name}` to filter on"),
                })?,
        ),
        None => None,
    };
    let hooks: Option<&[String]> = match &p.hook {
        Some(_) => Some(
            table
                .strings("hook")
                .with_context(|| format!("`{label}` has no `hook` column"))?,
        ),
        None => None,
    };
    let positions: Option<&[i64]> = match p.pool {
        Pool::Position => Some(
            table
                .ints("position")
                .with_context(|| format!("`{label}` has no integer `position` column"))?,
        ),
        _ => None,
    };

    let mut order: Vec<String> = Vec::new();
    let mut rows_of: HashMap<&str, Vec<usize>> = HashMap::new();
    for (r, id) in ids.iter().enumerate() {
        if mask.is_some_and(|m| !m[r]) || hooks.is_some_and(|h| Some(&h[r]) != p.hook.as_ref()) {
            continue;
        }
        let entry = rows_of.entry(id.as_str()).or_default();
        if entry.is_empty() {
            order.push(id.clone());
        }
        entry.push(r);
    }
    let mut out = Pooled {
        ids: Vec::new(),
        first_row: Vec::new(),
        dim,
        values: Vec::new(),
    };
    for id in order {
        let rows = &rows_of[id.as_str()];
        let row = |r: usize| &values[r * dim..(r + 1) * dim];
        match p.pool {
            Pool::Mean => {
                let mut acc = vec![0f64; dim];
                for &r in rows {
                    for (a, v) in acc.iter_mut().zip(row(r)) {
                        *a += f64::from(*v);
                    }
                }
                out.values
                    .extend(acc.iter().map(|a| (a / rows.len() as f64) as f32));
            }
            Pool::First => out.values.extend_from_slice(row(rows[0])),
            Pool::Last => out
                .values
                .extend_from_slice(row(*rows.last().expect("non-empty"))),
            Pool::Position => {
                let want = p.position.expect("validated");
                let Some(&r) = rows.iter().find(|&&r| positions.expect("read")[r] == want) else {
                    continue; // this sample has no such position
                };
                out.values.extend_from_slice(row(r));
            }
        }
        out.first_row.push(rows[0]);
        out.ids.push(id);
    }
    Ok(out)
}

fn take(col: &Column, rows: &[usize]) -> Column {
    match col {
        Column::Utf8(v) => Column::Utf8(rows.iter().map(|&r| v[r].clone()).collect()),
        Column::Int64(v) => Column::Int64(rows.iter().map(|&r| v[r]).collect()),
        Column::Float64(v) => Column::Float64(rows.iter().map(|&r| v[r]).collect()),
        Column::Bool(v) => Column::Bool(rows.iter().map(|&r| v[r]).collect()),
        Column::Vector { dim, values, half } => Column::Vector {
            dim: *dim,
            values: rows
                .iter()
                .flat_map(|&r| values[r * dim..(r + 1) * dim].iter().copied())
                .collect(),
            half: *half,
        },
    }
}
