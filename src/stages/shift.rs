//! `shift`: vectors that point from the source features to the target features, and for the
//! concept-based methods the concepts, activations and per-concept statistics behind them.
//!
//! Every method writes `vectors.parquet` (one row per vector: `name`, `vector`, and `concept`,
//! `samples` or `from`, `to` where they mean something) and `metrics.json`. `concept_shifts`
//! adds `concepts.parquet`, `activations.parquet`, `concept_stats.parquet` and
//! `samples.parquet`; `intra_clusters` adds the source's `concepts.parquet` and
//! `activations.parquet`.

use std::collections::HashMap;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use xlvlm_analysis::{
    Aggregation, Association, ConceptShiftAnalysis, ConceptShiftParams, MatchBy, Matrix, Method,
    Pair, SignRule, concept_directions, concept_shifts, decompose, mean_of_shifts,
    pca_of_differences, shift_of_means,
};
use xlvlm_dag::{InputArtifact, StageContext, StageOutput};
use xlvlm_spec::{ShiftAggregation, ShiftAssociation, ShiftMatch, ShiftMethod, ShiftParams};
use xlvlm_store::{Column, FeatureTable};

const RESOLVED: &str = "resolved by the spec";

/// One side of the shift: its label, sample ids and N×D matrix.
struct Side {
    label: String,
    ids: Vec<String>,
    x: Matrix,
}

fn read_side(input: &InputArtifact, column: &str) -> anyhow::Result<Side> {
    let table = super::read_main_table(input)?;
    let (dim, values) = super::vectors(&table, column, &input.label)?;
    if values.is_empty() {
        bail!(
            "`{}` has no rows; a shift needs samples on both sides",
            input.label
        );
    }
    let ids = super::sample_ids(&table, &input.label)?.to_vec();
    let x = Matrix::new(values.len() / dim, dim, values.to_vec())
        .with_context(|| format!("reading the vectors of `{}`", input.label))?;
    Ok(Side {
        label: input.label.clone(),
        ids,
        x,
    })
}

pub fn run(ctx: &StageContext<'_>, p: &ShiftParams) -> anyhow::Result<StageOutput> {
    let source = read_side(&ctx.inputs["source"], &p.column)?;
    let target = read_side(&ctx.inputs["target"], &p.column)?;
    let (ds, dt) = (source.x.cols, target.x.cols);
    if ds != dt {
        bail!(
            "`{}` has vectors of width {ds} but `{}` of width {dt}; a shift needs both in the same space",
            source.label,
            target.label
        );
    }
    let mut summary = json!({
        "method": p.method.name(), "dim": ds,
        "source_samples": source.x.rows, "target_samples": target.x.rows,
    });
    let (vectors, details) = match p.method {
        ShiftMethod::ShiftOfMeans => {
            let v = shift_of_means(&source.x, &target.x)?;
            (single_vector(p.method.name(), v, ds), Value::Null)
        }
        ShiftMethod::MeanOfShifts => {
            let pairs = matched_pairs(&source, &target)?;
            summary["matched_samples"] = json!(pairs.len());
            let v = mean_of_shifts(&source.x, &target.x, &pairs)?;
            (single_vector(p.method.name(), v, ds), Value::Null)
        }
        ShiftMethod::PcaOfDifferences => {
            let pairs = matched_pairs(&source, &target)?;
            summary["matched_samples"] = json!(pairs.len());
            let solver = super::pca_solver_of(p.pca_solver.expect(RESOLVED));
            let seed = p.seed.expect(RESOLVED);
            let r = pca_of_differences(&source.x, &target.x, &pairs, solver, seed)
                .context("PCA of the matched differences failed")?;
            let sign = match r.sign_rule {
                SignRule::MeanDifference => "mean_difference",
                SignRule::LargestCoordinate => "largest_coordinate",
            };
            summary["sign_rule"] = json!(sign);
            summary["explained_variance_ratio"] = json!(r.explained_variance_ratio);
            summary["mean_projection"] = json!(r.mean_projection);
            let details = json!({
                "explained_variance": r.explained_variance,
                "positive_fraction": r.positive_fraction,
                "convention": "unit vector; its dot product with the mean difference (target - source) is positive; when that product is 0, the largest-magnitude coordinate is positive",
            });
            let table = single_vector(p.method.name(), r.direction, ds)
                .with_metadata("xlvlm.norm", "unit")
                .with_metadata("xlvlm.sign", sign);
            (table, details)
        }
        ShiftMethod::IntraClusters => intra_clusters(ctx, p, &source, &target, &mut summary)?,
        ShiftMethod::ConceptShifts => concept_shift_stage(ctx, p, &source, &target, &mut summary)?,
    };
    let rows = vectors.num_rows();
    summary["vectors"] = json!(rows);
    let vectors = vectors.with_metadata("xlvlm.direction", "target - source");
    ctx.staging.write_table("vectors.parquet", &vectors)?;
    let metrics = json!({ "summary": summary, "details": details });
    ctx.staging.write_file(
        "metrics.json",
        &serde_json::to_vec_pretty(&metrics).expect("metrics serialise"),
    )?;
    Ok(StageOutput {
        rows: Some(rows as u64),
        summary,
    })
}

fn single_vector(name: &str, values: Vec<f32>, dim: usize) -> FeatureTable {
    FeatureTable::new()
        .with_column("name", Column::Utf8(vec![name.to_string()]))
        .with_column(
            "vector",
            Column::Vector {
                dim,
                values,
                half: false,
            },
        )
}

/// Row of each sample id; an error when an id appears twice.
fn row_of_id(side: &Side) -> anyhow::Result<HashMap<&str, usize>> {
    let mut at = HashMap::with_capacity(side.ids.len());
    for (i, id) in side.ids.iter().enumerate() {
        if at.insert(id.as_str(), i).is_some() {
            bail!(
                "`{}` holds sample_id `{id}` more than once; matched shifts need one row per sample (pool positions with an `aggregate` stage)",
                side.label
            );
        }
    }
    Ok(at)
}

/// Source and target rows that hold the same `sample_id`, in source order.
fn matched_pairs(source: &Side, target: &Side) -> anyhow::Result<Vec<Pair>> {
    row_of_id(source)?;
    let at = row_of_id(target)?;
    let pairs: Vec<Pair> = source
        .ids
        .iter()
        .enumerate()
        .filter_map(|(i, id)| at.get(id.as_str()).map(|&j| (i, j)))
        .collect();
    if pairs.is_empty() {
        bail!(
            "`{}` and `{}` share no sample_id; this method needs the same samples on both sides (use `shift_of_means` otherwise)",
            source.label,
            target.label
        );
    }
    Ok(pairs)
}

/// The decomposition the parameters name, with the defaults the spec filled in.
fn decomposition(p: &ShiftParams) -> Method {
    super::decomposition_method(
        p.decomposition.expect(RESOLVED),
        p.pca_solver,
        p.n_init,
        p.snmf_alpha,
        p.max_iter,
        p.tol,
    )
}

fn check_concepts(k: usize, side: &Side) -> anyhow::Result<()> {
    if k > side.x.rows {
        bail!(
            "`num_concepts = {k}` but `{}` has only {} samples; use at most {} concepts or more data",
            side.label,
            side.x.rows,
            side.x.rows
        );
    }
    Ok(())
}

fn vector_column(dim: usize, values: Vec<f32>) -> Column {
    Column::Vector {
        dim,
        values,
        half: false,
    }
}

fn intra_clusters(
    ctx: &StageContext<'_>,
    p: &ShiftParams,
    source: &Side,
    target: &Side,
    summary: &mut Value,
) -> anyhow::Result<(FeatureTable, Value)> {
    let k = p.num_concepts.expect(RESOLVED);
    check_concepts(k, source)?;
    let d = decompose(&source.x, k, &decomposition(p), p.seed.expect(RESOLVED))
        .with_context(|| format!("decomposing `{}` failed", source.label))?;
    let (pairs, directions) = concept_directions(&d.concepts)?;
    let dim = source.x.cols;
    let mut names: Vec<String> = pairs
        .iter()
        .map(|(from, to)| format!("concept_{from}_to_{to}"))
        .collect();
    let mut from: Vec<i64> = pairs.iter().map(|&(f, _)| f as i64).collect();
    let mut to: Vec<i64> = pairs.iter().map(|&(_, t)| t as i64).collect();
    let mut values = directions.data;
    names.push("shift_of_means".to_string());
    from.push(-1);
    to.push(-1);
    values.extend(shift_of_means(&source.x, &target.x)?);
    let vectors = FeatureTable::new()
        .with_column("name", Column::Utf8(names))
        .with_column("from", Column::Int64(from))
        .with_column("to", Column::Int64(to))
        .with_column("vector", vector_column(dim, values));

    let concepts = FeatureTable::new()
        .with_column("set", Column::Utf8(vec!["source".to_string(); k]))
        .with_column("concept", Column::Int64((0..k as i64).collect()))
        .with_column("vector", vector_column(dim, d.concepts.data.clone()));
    let activations = FeatureTable::new()
        .with_column(
            "set",
            Column::Utf8(vec!["source".to_string(); source.x.rows]),
        )
        .with_column("sample_id", Column::Utf8(source.ids.clone()))
        .with_column("vector", vector_column(k, d.activations.data.clone()));
    ctx.staging.write_table("concepts.parquet", &concepts)?;
    ctx.staging
        .write_table("activations.parquet", &activations)?;

    // Samples whose largest activation is each concept: how much data stands behind it.
    let mut sizes = vec![0usize; k];
    for r in 0..d.activations.rows {
        sizes[argmax(d.activations.row(r))] += 1;
    }
    summary["num_concepts"] = json!(k);
    summary["objective"] = json!(d.objective);
    let details = json!({
        "decomposition": p.decomposition, "iterations": d.iterations,
        "concept_sizes": sizes,
        "naming": "concept_{i}_to_{j} = concept j - concept i: added to concept i it gives concept j; from = to = -1 for shift_of_means",
    });
    Ok((vectors, details))
}

fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (c, &v)| {
            if v > best.1 { (c, v) } else { best }
        })
        .0
}

fn concept_shift_stage(
    ctx: &StageContext<'_>,
    p: &ShiftParams,
    source: &Side,
    target: &Side,
    summary: &mut Value,
) -> anyhow::Result<(FeatureTable, Value)> {
    let k = p.num_concepts.expect(RESOLVED);
    check_concepts(k, source)?;
    check_concepts(k, target)?;
    let pairs = matched_pairs(source, target)?;
    let params = ConceptShiftParams {
        num_concepts: k,
        method: decomposition(p),
        seed: p.seed.expect(RESOLVED),
        association: match p.association.expect(RESOLVED) {
            ShiftAssociation::Activation => Association::Activation,
            ShiftAssociation::Cosine => Association::Cosine,
            ShiftAssociation::L2 => Association::L2,
        },
        aggregation: match p.aggregation.expect(RESOLVED) {
            ShiftAggregation::Mean => Aggregation::Mean,
            ShiftAggregation::Median => Aggregation::Median,
            ShiftAggregation::TrimmedMean => Aggregation::TrimmedMean {
                cut: p.trim.expect(RESOLVED),
            },
        },
        match_by: match p.match_concepts.expect(RESOLVED) {
            ShiftMatch::Shifted => MatchBy::Shifted,
            ShiftMatch::Original => MatchBy::Original,
        },
    };
    let a = concept_shifts(&source.x, &target.x, &pairs, &params)
        .context("concept shift analysis failed")?;
    let dim = source.x.cols;

    write_concepts(ctx, &a, k, dim)?;
    write_activations(ctx, &a, source, target, k)?;
    write_samples(ctx, &a, source, target, &pairs)?;
    let details = write_concept_stats(ctx, &a, k)?;

    let vectors = FeatureTable::new()
        .with_column(
            "name",
            Column::Utf8((0..k).map(|c| format!("concept_{c}")).collect()),
        )
        .with_column("concept", Column::Int64((0..k as i64).collect()))
        .with_column(
            "samples",
            Column::Int64(a.stats.iter().map(|s| s.samples as i64).collect()),
        )
        .with_column("vector", vector_column(dim, a.shifts.data.clone()));

    let improved = a
        .recovery
        .iter()
        .filter(|r| r.improved_distance > 0.0)
        .count();
    let mean = |f: &dyn Fn(usize) -> f64| (0..k).map(f).sum::<f64>() / k as f64;
    summary["matched_samples"] = json!(pairs.len());
    summary["num_concepts"] = json!(k);
    summary["empty_concepts"] = json!(a.empty_concepts());
    summary["singleton_concepts"] = json!(a.singleton_concepts());
    summary["concepts_closer_after_shift"] = json!(improved);
    summary["mean_improved_distance"] = json!(mean(&|c| a.recovery[c].improved_distance));
    summary["mean_improved_cosine"] = json!(mean(&|c| a.recovery[c].improved_cosine));
    summary["original_objective"] = json!(a.original.objective);
    summary["finetuned_objective"] = json!(a.finetuned.objective);
    Ok((vectors, details))
}

/// `concepts.parquet`: the original, shifted and matched fine-tuned concept of every concept.
fn write_concepts(
    ctx: &StageContext<'_>,
    a: &ConceptShiftAnalysis,
    k: usize,
    dim: usize,
) -> anyhow::Result<()> {
    let mut set = Vec::with_capacity(3 * k);
    let mut concept = Vec::with_capacity(3 * k);
    let mut finetuned = Vec::with_capacity(3 * k);
    let mut values = Vec::with_capacity(3 * k * dim);
    for (name, m) in [
        ("original", &a.original.concepts),
        ("shifted", &a.shifted_concepts),
    ] {
        for c in 0..k {
            set.push(name.to_string());
            concept.push(c as i64);
            finetuned.push(a.matching[c] as i64);
            values.extend_from_slice(m.row(c));
        }
    }
    for c in 0..k {
        set.push("finetuned".to_string());
        concept.push(c as i64);
        finetuned.push(a.matching[c] as i64);
        values.extend_from_slice(a.finetuned.concepts.row(a.matching[c]));
    }
    let table = FeatureTable::new()
        .with_column("set", Column::Utf8(set))
        .with_column("concept", Column::Int64(concept))
        .with_column("finetuned_concept", Column::Int64(finetuned))
        .with_column("vector", vector_column(dim, values));
    ctx.staging.write_table("concepts.parquet", &table)?;
    Ok(())
}

/// `activations.parquet`: source rows on the original concepts, target rows on the shifted
/// concepts and on the fine-tuned concepts (columns reordered so column `k` is the fine-tuned
/// concept matched to concept `k`).
fn write_activations(
    ctx: &StageContext<'_>,
    a: &ConceptShiftAnalysis,
    source: &Side,
    target: &Side,
    k: usize,
) -> anyhow::Result<()> {
    let (ns, nt) = (source.x.rows, target.x.rows);
    let mut set = Vec::with_capacity(ns + 2 * nt);
    let mut ids = Vec::with_capacity(ns + 2 * nt);
    let mut values = Vec::with_capacity((ns + 2 * nt) * k);
    set.extend(std::iter::repeat_n("original".to_string(), ns));
    ids.extend(source.ids.iter().cloned());
    values.extend_from_slice(&a.original.activations.data);
    set.extend(std::iter::repeat_n("shifted".to_string(), nt));
    ids.extend(target.ids.iter().cloned());
    values.extend_from_slice(&a.shifted_activations.data);
    set.extend(std::iter::repeat_n("finetuned".to_string(), nt));
    ids.extend(target.ids.iter().cloned());
    for r in 0..nt {
        let row = a.finetuned.activations.row(r);
        values.extend(a.matching.iter().map(|&m| row[m]));
    }
    let table = FeatureTable::new()
        .with_column("set", Column::Utf8(set))
        .with_column("sample_id", Column::Utf8(ids))
        .with_column("vector", vector_column(k, values));
    ctx.staging.write_table("activations.parquet", &table)?;
    Ok(())
}

/// `samples.parquet`: each matched sample's concept, shift norm and agreement with its
/// concept's shift vector.
fn write_samples(
    ctx: &StageContext<'_>,
    a: &ConceptShiftAnalysis,
    source: &Side,
    target: &Side,
    pairs: &[Pair],
) -> anyhow::Result<()> {
    let mut norms = Vec::with_capacity(pairs.len());
    let mut cosines = Vec::with_capacity(pairs.len());
    for (q, &(i, j)) in pairs.iter().enumerate() {
        let delta: Vec<f64> = target
            .x
            .row(j)
            .iter()
            .zip(source.x.row(i))
            .map(|(&t, &s)| f64::from(t) - f64::from(s))
            .collect();
        let shift = a.shifts.row(a.assignment[q]);
        let n = delta.iter().map(|v| v * v).sum::<f64>().sqrt();
        let ns = shift
            .iter()
            .map(|&v| f64::from(v).powi(2))
            .sum::<f64>()
            .sqrt();
        let dot: f64 = delta
            .iter()
            .zip(shift)
            .map(|(x, &y)| x * f64::from(y))
            .sum();
        norms.push(n);
        cosines.push(if n * ns > 0.0 { dot / (n * ns) } else { 0.0 });
    }
    let table = FeatureTable::new()
        .with_column(
            "sample_id",
            Column::Utf8(pairs.iter().map(|&(i, _)| source.ids[i].clone()).collect()),
        )
        .with_column(
            "concept",
            Column::Int64(a.assignment.iter().map(|&c| c as i64).collect()),
        )
        .with_column("shift_norm", Column::Float64(norms))
        .with_column("cosine_with_concept_shift", Column::Float64(cosines));
    ctx.staging.write_table("samples.parquet", &table)?;
    Ok(())
}

/// `concept_stats.parquet` (undefined values written as 0; `status` says which are undefined)
/// and the same statistics for `metrics.json` (undefined values as null).
fn write_concept_stats(
    ctx: &StageContext<'_>,
    a: &ConceptShiftAnalysis,
    k: usize,
) -> anyhow::Result<Value> {
    type Getter = fn(&ConceptShiftAnalysis, usize) -> Option<f64>;
    let columns: [(&str, Getter); 16] = [
        ("shift_norm", |a, c| Some(a.stats[c].shift_norm)),
        ("mean_sample_norm", |a, c| a.stats[c].mean_sample_norm),
        ("std_sample_norm", |a, c| a.stats[c].std_sample_norm),
        ("std_vector_norm", |a, c| a.stats[c].std_vector_norm),
        ("pair_cosine", |a, c| a.stats[c].pair_cosine),
        ("pair_dot", |a, c| a.stats[c].pair_dot),
        ("mean_cosine_with_shift", |a, c| {
            a.stats[c].mean_cosine_with_shift
        }),
        ("mean_dot_with_shift", |a, c| a.stats[c].mean_dot_with_shift),
        ("distance_original", |a, c| {
            Some(a.recovery[c].distance_original)
        }),
        ("distance_shifted", |a, c| {
            Some(a.recovery[c].distance_shifted)
        }),
        ("improved_distance", |a, c| {
            Some(a.recovery[c].improved_distance)
        }),
        ("normalized_improved_distance", |a, c| {
            a.recovery[c].normalized_improved_distance
        }),
        ("cosine_original", |a, c| {
            Some(a.recovery[c].cosine_original)
        }),
        ("cosine_shifted", |a, c| Some(a.recovery[c].cosine_shifted)),
        ("improved_cosine", |a, c| {
            Some(a.recovery[c].improved_cosine)
        }),
        ("normalized_improved_cosine", |a, c| {
            a.recovery[c].normalized_improved_cosine
        }),
    ];
    let status = |c: usize| match a.stats[c].samples {
        0 => "empty",
        1 => "singleton",
        _ => "ok",
    };
    let mut table = FeatureTable::new()
        .with_column("concept", Column::Int64((0..k as i64).collect()))
        .with_column(
            "samples",
            Column::Int64(a.stats.iter().map(|s| s.samples as i64).collect()),
        )
        .with_column(
            "status",
            Column::Utf8((0..k).map(|c| status(c).to_string()).collect()),
        )
        .with_column(
            "finetuned_concept",
            Column::Int64(a.matching.iter().map(|&m| m as i64).collect()),
        );
    for (name, get) in columns {
        table = table.with_column(
            name,
            Column::Float64((0..k).map(|c| get(a, c).unwrap_or(0.0)).collect()),
        );
    }
    ctx.staging.write_table("concept_stats.parquet", &table)?;
    let per_concept: Vec<Value> = (0..k)
        .map(|c| {
            let mut row = json!({
                "concept": c, "samples": a.stats[c].samples, "status": status(c),
                "finetuned_concept": a.matching[c],
            });
            for (name, get) in columns {
                row[name] = json!(get(a, c));
            }
            row
        })
        .collect();
    Ok(json!({ "concepts": per_concept }))
}
