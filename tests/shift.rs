//! The `shift` stage end to end: features with planted per-concept shifts are imported from
//! `.npy` files, every shift method runs, and the vectors and metrics it writes are checked
//! against the planted answers; bad parameters are refused before anything runs.

use std::path::{Path, PathBuf};

mod support;

use serde_json::Value;
use support::{stderr, write_npy, xlvlm};
use xlvlm_store::{FeatureTable, Store, read_parquet};

/// Writes rows and their sample ids as `<name>.npy` and `<name>.txt`.
fn write_features(dir: &Path, name: &str, rows: &[(String, Vec<f32>)]) {
    let dim = rows[0].1.len();
    let values: Vec<f32> = rows.iter().flat_map(|(_, r)| r.iter().copied()).collect();
    write_npy(&dir.join(format!("{name}.npy")), rows.len(), dim, &values);
    let ids: String = rows.iter().map(|(id, _)| format!("{id}\n")).collect();
    std::fs::write(dir.join(format!("{name}.txt")), ids).unwrap();
}

const DIM: usize = 8;
const PER_CLUSTER: usize = 20;

fn axis(i: usize, scale: f32) -> Vec<f32> {
    let mut v = vec![0.0; DIM];
    v[i] = scale;
    v
}

fn add(a: &[f32], b: &[f32]) -> Vec<f32> {
    a.iter().zip(b).map(|(x, y)| x + y).collect()
}

fn noise(i: usize, c: usize) -> f32 {
    ((i * 7919 + c * 104_729) as f32).sin() * 0.1
}

/// Planted shift of each cluster.
fn planted_shifts() -> Vec<Vec<f32>> {
    vec![
        axis(3, 3.0),
        add(&axis(4, -4.0), &axis(0, 2.0)),
        axis(5, 5.0),
    ]
}

/// Three clusters around 10·e0, 10·e1, 10·e2; each target row is its source row plus the
/// cluster's shift, so every sample of a concept has exactly the planted shift.
fn clusters() -> Vec<(String, usize, Vec<f32>)> {
    let mut rows = Vec::new();
    for _ in 0..PER_CLUSTER {
        for c in 0..3 {
            let n = rows.len();
            let row: Vec<f32> = (0..DIM).map(|j| axis(c, 10.0)[j] + noise(n, j)).collect();
            rows.push((format!("img{n:03}"), c, row));
        }
    }
    rows
}

/// The experiment folder: features and the experiment file.
fn setup(dir: &Path) -> PathBuf {
    let shifts = planted_shifts();
    let rows = clusters();
    let source: Vec<(String, Vec<f32>)> = rows
        .iter()
        .map(|(id, _, r)| (id.clone(), r.clone()))
        .collect();
    // The target lists the samples in reverse order: pairs come from sample ids, not rows.
    let target: Vec<(String, Vec<f32>)> = rows
        .iter()
        .rev()
        .map(|(id, c, r)| (id.clone(), add(r, &shifts[*c])))
        .collect();
    write_features(dir, "original", &source);
    write_features(dir, "finetuned", &target);
    // Only cluster 0 and one sample of cluster 1 after fine-tuning: cluster 2 gets no matched
    // sample (an empty concept) and cluster 1 one (a singleton).
    let first_of_1 = rows.iter().position(|(_, c, _)| *c == 1).unwrap();
    let partial: Vec<(String, Vec<f32>)> = rows
        .iter()
        .enumerate()
        .filter(|(i, (_, c, _))| *c == 0 || *i == first_of_1)
        .map(|(_, (id, c, r))| (id.clone(), add(r, &shifts[*c])))
        .collect();
    write_features(dir, "partial", &partial);
    // Differences along one direction u with varying strength: PCA of differences finds u.
    let u = direction_u();
    let pca_src: Vec<(String, Vec<f32>)> = rows
        .iter()
        .map(|(id, _, r)| (id.clone(), r.clone()))
        .collect();
    let pca_tgt: Vec<(String, Vec<f32>)> = rows
        .iter()
        .enumerate()
        .map(|(i, (id, _, r))| {
            let s = 1.0 + 2.0 * i as f32 / rows.len() as f32;
            let moved: Vec<f32> = (0..DIM)
                .map(|j| r[j] + s * u[j] + 0.1 * noise(i + 500, j))
                .collect();
            (id.clone(), moved)
        })
        .collect();
    write_features(dir, "pca_src", &pca_src);
    write_features(dir, "pca_tgt", &pca_tgt);

    let import = |name: &str| {
        format!(
            "[stage.{name}]\nkind = \"import\"\npath = \"{name}.npy\"\nids = \"{name}.txt\"\n\n"
        )
    };
    let mut toml = String::from("[experiment]\nname = \"shift-e2e\"\nseed = 7\n\n");
    for name in ["original", "finetuned", "partial", "pca_src", "pca_tgt"] {
        toml.push_str(&import(name));
    }
    toml.push_str(
        r#"[stage.means]
kind = "shift"
method = "shift_of_means"
source = "original"
target = "finetuned"

[stage.matched]
kind = "shift"
method = "mean_of_shifts"
source = "original"
target = "finetuned"

[stage.concepts]
kind = "shift"
method = "concept_shifts"
source = "original"
target = "finetuned"
num_concepts = 3
n_init = 4

[stage.concepts_trimmed]
from = "concepts"
association = "l2"
aggregation = "trimmed_mean"
trim = 0.2

[stage.concepts_partial]
from = "concepts"
target = "partial"

[stage.intra]
kind = "shift"
method = "intra_clusters"
source = "original"
target = "finetuned"
num_concepts = 3
n_init = 4

[stage.pca]
kind = "shift"
method = "pca_of_differences"
source = "pca_src"
target = "pca_tgt"
"#,
    );
    let file = dir.join("shift.toml");
    std::fs::write(&file, toml).unwrap();
    file
}

fn direction_u() -> Vec<f32> {
    // Largest coordinate negative: PCA's own sign convention would point the other way.
    let u = [0.3f32, -0.2, 0.1, 0.0, -0.9, 0.2, 0.1, 0.0];
    let n = u.iter().map(|v| v * v).sum::<f32>().sqrt();
    u.iter().map(|v| v / n).collect()
}

struct Artifact {
    dir: PathBuf,
}

impl Artifact {
    fn open(store: &Path, stage: &str) -> Artifact {
        let s = Store::open(store).unwrap();
        let key = s.resolve_name("shift-e2e", stage).unwrap().unwrap();
        Artifact {
            dir: s.artifact_dir(&key),
        }
    }

    fn table(&self, file: &str) -> FeatureTable {
        read_parquet(&self.dir.join(file)).unwrap()
    }

    fn metrics(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.dir.join("metrics.json")).unwrap()).unwrap()
    }

    /// `(name, vector)` rows of `vectors.parquet`.
    fn vectors(&self) -> (FeatureTable, Vec<(String, Vec<f32>)>) {
        let t = self.table("vectors.parquet");
        let names = t.strings("name").unwrap().to_vec();
        let (dim, values) = t.vector("vector").unwrap();
        let rows = names
            .into_iter()
            .zip(values.chunks_exact(dim).map(|r| r.to_vec()))
            .collect();
        (t, rows)
    }
}

fn close(a: &[f32], b: &[f32], tol: f32) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol)
}

fn norm(a: &[f32]) -> f32 {
    a.iter().map(|v| v * v).sum::<f32>().sqrt()
}

fn every_float_is_finite(t: &FeatureTable) -> bool {
    t.columns.iter().all(|(_, c)| match c {
        xlvlm_store::Column::Float64(v) => v.iter().all(|x| x.is_finite()),
        xlvlm_store::Column::Vector { values, .. } => values.iter().all(|x| x.is_finite()),
        _ => true,
    })
}

#[test]
fn every_shift_method_recovers_planted_shifts() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let file = setup(dir.path());
    let out = xlvlm(&store).arg("run").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let shifts = planted_shifts();
    let mean_shift: Vec<f32> = (0..DIM)
        .map(|j| shifts.iter().map(|s| s[j]).sum::<f32>() / 3.0)
        .collect();

    // One vector each; equal clusters, so both means are the mean planted shift.
    for stage in ["means", "matched"] {
        let (_, rows) = Artifact::open(&store, stage).vectors();
        assert_eq!(rows.len(), 1);
        assert!(
            close(&rows[0].1, &mean_shift, 1e-4),
            "{stage}: {:?}",
            rows[0].1
        );
    }

    // Per-concept shifts: each concept's vector is its cluster's planted shift, the shifted
    // concepts land on the fine-tuned concepts, and the shifts are perfectly consistent.
    for stage in ["concepts", "concepts_trimmed"] {
        let a = Artifact::open(&store, stage);
        let (t, rows) = a.vectors();
        assert_eq!(t.ints("samples").unwrap(), &[20, 20, 20]);
        let mut found = [false; 3];
        for (i, (name, v)) in rows.iter().enumerate() {
            assert_eq!(name, &format!("concept_{i}"));
            let c = shifts.iter().position(|s| close(s, v, 1e-4));
            let c = c.unwrap_or_else(|| panic!("{stage}: {name} = {v:?} is no planted shift"));
            found[c] = true;
        }
        assert!(found.iter().all(|&f| f), "{stage}");
        let stats = a.table("concept_stats.parquet");
        assert!(stats.strings("status").unwrap().iter().all(|s| s == "ok"));
        for (c, (_, v)) in rows.iter().enumerate() {
            let improved = stats.floats("improved_distance").unwrap()[c];
            assert!(
                (improved - f64::from(norm(v))).abs() < 0.05,
                "{stage}: {improved}"
            );
            assert!(stats.floats("distance_shifted").unwrap()[c] < 0.05);
            assert!((stats.floats("pair_cosine").unwrap()[c] - 1.0).abs() < 1e-6);
            assert!((stats.floats("mean_cosine_with_shift").unwrap()[c] - 1.0).abs() < 1e-6);
        }
        let m = a.metrics();
        assert_eq!(m["summary"]["concepts_closer_after_shift"], 3);
        assert_eq!(m["summary"]["matched_samples"], 60);
        assert_eq!(m["summary"]["empty_concepts"], serde_json::json!([]));
        assert_eq!(m["details"]["concepts"].as_array().unwrap().len(), 3);
        // Original, shifted and matched fine-tuned concepts; shifted = original + shift.
        let concepts = a.table("concepts.parquet");
        assert_eq!(concepts.num_rows(), 9);
        let sets = concepts.strings("set").unwrap();
        let (dim, cv) = concepts.vector("vector").unwrap();
        for (c, (_, shift)) in rows.iter().enumerate() {
            let row = |set: &str| {
                let r = (0..9)
                    .find(|&r| sets[r] == set && concepts.ints("concept").unwrap()[r] == c as i64)
                    .unwrap();
                cv[r * dim..(r + 1) * dim].to_vec()
            };
            assert!(close(&add(&row("original"), shift), &row("shifted"), 1e-4));
            assert!(close(&row("shifted"), &row("finetuned"), 0.05));
        }
        let activations = a.table("activations.parquet");
        assert_eq!(activations.num_rows(), 180);
        assert_eq!(activations.vector("vector").unwrap().0, 3);
        let samples = a.table("samples.parquet");
        assert_eq!(samples.num_rows(), 60);
        for t in [&stats, &concepts, &activations, &samples] {
            assert!(every_float_is_finite(t));
        }
    }

    // One cluster without matched samples, one with a single one: reported, zero shift, no NaN.
    let a = Artifact::open(&store, "concepts_partial");
    let m = a.metrics();
    let empty = m["summary"]["empty_concepts"].as_array().unwrap().clone();
    let single = m["summary"]["singleton_concepts"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!((empty.len(), single.len()), (1, 1), "{m}");
    let (e, s) = (
        empty[0].as_u64().unwrap() as usize,
        single[0].as_u64().unwrap() as usize,
    );
    let stats = a.table("concept_stats.parquet");
    assert_eq!(stats.strings("status").unwrap()[e], "empty");
    assert_eq!(stats.strings("status").unwrap()[s], "singleton");
    assert!(m["details"]["concepts"][e]["pair_cosine"].is_null());
    assert!(m["details"]["concepts"][s]["pair_cosine"].is_null());
    assert!(m["details"]["concepts"][s]["mean_sample_norm"].is_number());
    let (_, rows) = a.vectors();
    assert!(rows[e].1.iter().all(|&v| v == 0.0));
    assert!(close(&rows[s].1, &shifts[1], 1e-4));
    assert!(every_float_is_finite(&stats) && every_float_is_finite(&a.table("vectors.parquet")));

    // Directions between concepts: concept_i_to_j added to concept i gives concept j.
    let a = Artifact::open(&store, "intra");
    let (t, rows) = a.vectors();
    assert_eq!(rows.len(), 7);
    let concepts = a.table("concepts.parquet");
    let (dim, cv) = concepts.vector("vector").unwrap();
    let concept = |i: usize| cv[i * dim..(i + 1) * dim].to_vec();
    let (from, to) = (t.ints("from").unwrap(), t.ints("to").unwrap());
    for (r, (name, v)) in rows.iter().enumerate().take(6) {
        let (i, j) = (from[r] as usize, to[r] as usize);
        assert_eq!(name, &format!("concept_{i}_to_{j}"));
        assert!(close(&add(&concept(i), v), &concept(j), 1e-4), "{name}");
    }
    assert_eq!(
        (rows[6].0.as_str(), from[6], to[6]),
        ("shift_of_means", -1, -1)
    );
    assert!(close(&rows[6].1, &mean_shift, 1e-4));

    // PCA of differences: a unit vector along u, pointing from source to target.
    let a = Artifact::open(&store, "pca");
    let (_, rows) = a.vectors();
    let v = &rows[0].1;
    assert!((norm(v) - 1.0).abs() < 1e-5);
    let cos: f32 = v.iter().zip(direction_u()).map(|(a, b)| a * b).sum();
    assert!(cos > 0.99, "{cos}");
    assert_eq!(a.metrics()["summary"]["sign_rule"], "mean_difference");
}

#[test]
fn bad_shift_parameters_are_refused_with_exit_code_2() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    write_npy(&dir.path().join("x.npy"), 4, 2, &[0.0; 8]);
    let cases = [
        ("method = \"concept_shifts\"", "needs `num_concepts`"),
        (
            "method = \"shift_of_means\"\nnum_concepts = 3",
            "`num_concepts` does not apply to `method = \"shift_of_means\"`",
        ),
        (
            "method = \"concept_shifts\"\nnum_concepts = 2\ntrim = 0.2",
            "`trim` applies to `aggregation = \"trimmed_mean\"` only",
        ),
        (
            "method = \"concept_shifts\"\nnum_concepts = 2\naggregation = \"trimmed_mean\"\ntrim = 0.5",
            "`trim = 0.5` is out of range",
        ),
        (
            "method = \"concept_shifts\"\nnum_concepts = 2\ndecomposition = \"pca\"\nn_init = 2",
            "`n_init` applies to `decomposition = \"kmeans\"` only",
        ),
        (
            "method = \"intra_clusters\"\nnum_concepts = 1",
            "`num_concepts` must be at least 2",
        ),
        (
            "method = \"intra_clusters\"\nnum_concepts = 2\nassociation = \"cosine\"",
            "`association` does not apply to `method = \"intra_clusters\"`",
        ),
        (
            "method = \"mean_of_shifts\"\nseed = 1",
            "`seed` does not apply to `method = \"mean_of_shifts\"`",
        ),
        (
            "method = \"concept_shifts\"\nnum_concepts = 2\naggregation = \"mode\"",
            "aggregation",
        ),
    ];
    for (i, (options, expect)) in cases.iter().enumerate() {
        let file = dir.path().join(format!("bad{i}.toml"));
        std::fs::write(
            &file,
            format!(
                "[experiment]\nname = \"bad\"\n\n[stage.x]\nkind = \"import\"\npath = \"x.npy\"\n\n[stage.s]\nkind = \"shift\"\nsource = \"x\"\ntarget = \"x\"\n{options}\n"
            ),
        )
        .unwrap();
        let out = xlvlm(&store).arg("validate").arg(&file).output().unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{options}: {err}");
        assert!(
            err.contains(expect),
            "{options}: expected {expect:?} in\n{err}"
        );
        assert!(err.contains(&format!("bad{i}.toml")), "{err}");
    }
}

#[test]
fn shift_failures_at_run_time_name_the_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let rows: Vec<(String, Vec<f32>)> = (0..4)
        .map(|i| (format!("a{i}"), vec![i as f32, 1.0]))
        .collect();
    write_features(dir.path(), "a", &rows);
    let other: Vec<(String, Vec<f32>)> = (0..4)
        .map(|i| (format!("b{i}"), vec![1.0, i as f32]))
        .collect();
    write_features(dir.path(), "b", &other);
    let run = |options: &str, target: &str| {
        let file = dir.path().join("run.toml");
        std::fs::write(
            &file,
            format!(
                "[experiment]\nname = \"late\"\n\n[stage.a]\nkind = \"import\"\npath = \"a.npy\"\nids = \"a.txt\"\n\n[stage.b]\nkind = \"import\"\npath = \"b.npy\"\nids = \"b.txt\"\n\n[stage.s]\nkind = \"shift\"\nsource = \"a\"\ntarget = \"{target}\"\n{options}\n"
            ),
        )
        .unwrap();
        xlvlm(&store).arg("run").arg(&file).output().unwrap()
    };
    // More concepts than samples.
    let out = run("method = \"concept_shifts\"\nnum_concepts = 9", "a");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("`num_concepts = 9` but `a` has only 4 samples"),
        "{}",
        stderr(&out)
    );
    // No shared sample ids.
    let out = run("method = \"pca_of_differences\"", "b");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("share no sample_id"),
        "{}",
        stderr(&out)
    );
}

/// `key_params` of stage `s` in an experiment with `[experiment] seed = 5`.
fn key_params(dir: &Path, options: &str) -> Value {
    let file = dir.join("keys.toml");
    std::fs::write(
        &file,
        format!(
            "[experiment]\nname = \"keys\"\nseed = 5\n\n[stage.x]\nkind = \"import\"\npath = \"x.npy\"\n\n[stage.s]\nkind = \"shift\"\nsource = \"x\"\ntarget = \"x\"\n{options}\n"
        ),
    )
    .unwrap();
    let experiment = xlvlm_spec::load(&file).unwrap_or_else(|e| panic!("{options}: {e:?}"));
    experiment.stage("s").unwrap().instances[0]
        .params
        .key_params()
}

#[test]
fn defaults_are_explicit_so_writing_them_out_keeps_the_cache_key() {
    let dir = tempfile::tempdir().unwrap();
    write_npy(&dir.path().join("x.npy"), 4, 2, &[0.0; 8]);
    let implicit = key_params(dir.path(), "method = \"concept_shifts\"\nnum_concepts = 4");
    let explicit = key_params(
        dir.path(),
        "method = \"concept_shifts\"\nnum_concepts = 4\ndecomposition = \"kmeans\"\nseed = 5\nmax_iter = 300\ntol = 1e-4\nn_init = 1\nassociation = \"activation\"\naggregation = \"mean\"\nmatch_concepts = \"shifted\"",
    );
    assert_eq!(implicit, explicit);
    let trimmed = key_params(
        dir.path(),
        "method = \"concept_shifts\"\nnum_concepts = 4\naggregation = \"trimmed_mean\"",
    );
    assert_eq!(trimmed["trim"], 0.1);
    let snmf = key_params(
        dir.path(),
        "method = \"intra_clusters\"\nnum_concepts = 2\ndecomposition = \"snmf\"",
    );
    assert_eq!(
        (&snmf["snmf_alpha"], &snmf["max_iter"], &snmf["seed"]),
        (
            &serde_json::json!(1.0),
            &serde_json::json!(1000),
            &serde_json::json!(5)
        )
    );
    let pca = key_params(dir.path(), "method = \"pca_of_differences\"");
    assert_eq!(
        (&pca["pca_solver"], &pca["seed"]),
        (&serde_json::json!("auto"), &serde_json::json!(5))
    );
    // Methods without options key on exactly what they did before these options existed.
    assert_eq!(
        key_params(dir.path(), "method = \"shift_of_means\""),
        serde_json::json!({ "method": "shift_of_means", "column": "vector" })
    );
}
