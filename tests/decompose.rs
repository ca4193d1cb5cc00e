//! `decompose` with `project`: test-split features are projected onto the concepts fitted on
//! the training split, as the dictionary evaluation on held-out samples needs.

mod support;

use std::path::Path;

use support::{artifact, run_ok, write_npy};
use xlvlm_store::read_parquet;

/// Rows around three well-separated centres; `shift` moves every row a little.
fn clustered(n: usize, shift: f32) -> Vec<f32> {
    let centres = [[10.0f32, 0.0, 0.0], [0.0, 10.0, 0.0], [0.0, 0.0, 10.0]];
    (0..n)
        .flat_map(|i| {
            let c = centres[i % 3];
            let wiggle = (i as f32 * 0.37).sin() * 0.1 + shift;
            [c[0] + wiggle, c[1] - wiggle, c[2] + 0.5 * wiggle]
        })
        .collect()
}

fn write_ids(path: &Path, prefix: &str, n: usize) {
    let ids: Vec<String> = (0..n).map(|i| format!("{prefix}{i}")).collect();
    std::fs::write(path, ids.join("\n")).unwrap();
}

#[test]
fn test_features_are_projected_onto_the_training_concepts() {
    let dir = tempfile::tempdir().unwrap();
    let train = clustered(30, 0.0);
    write_npy(&dir.path().join("train.npy"), 30, 3, &train);
    write_ids(&dir.path().join("train.txt"), "train", 30);
    // The first 6 test rows are copies of training rows; the rest are new.
    let mut test = train[..6 * 3].to_vec();
    test.extend(clustered(9, 0.2));
    write_npy(&dir.path().join("test.npy"), 15, 3, &test);
    write_ids(&dir.path().join("test.txt"), "test", 15);
    let exp = dir.path().join("exp.toml");
    std::fs::write(
        &exp,
        r#"
[experiment]
name = "project"
seed = 0

[stage.train]
kind = "import"
path = "train.npy"
ids = "train.txt"

[stage.test]
kind = "import"
path = "test.npy"
ids = "test.txt"

[stage.dict]
kind = "decompose"
input = "train"
project = "test"
method = "kmeans"
num_concepts = 3
"#,
    )
    .unwrap();
    let store = dir.path().join("store");
    run_ok(&store, &exp);

    let out = artifact(&store, "project", "dict");
    let fitted = read_parquet(&out.join("activations.parquet")).unwrap();
    let projected = read_parquet(&out.join("projected.parquet")).unwrap();
    let (k, fitted_acts) = fitted.vector("vector").unwrap();
    let (k2, projected_acts) = projected.vector("vector").unwrap();
    assert_eq!((k, k2), (3, 3));
    assert_eq!(projected.strings("sample_id").unwrap().len(), 15);
    assert_eq!(projected.strings("sample_id").unwrap()[0], "test0");
    // A test row equal to a training row gets that row's activations.
    for row in 0..6 {
        for c in 0..3 {
            let (a, b) = (fitted_acts[row * 3 + c], projected_acts[row * 3 + c]);
            assert!((a - b).abs() < 1e-5, "row {row} concept {c}: {a} vs {b}");
        }
    }
    // New rows are most active on the concept of their own centre, as their training twins.
    let argmax = |acts: &[f32], row: usize| {
        (0..3)
            .max_by(|&a, &b| acts[row * 3 + a].total_cmp(&acts[row * 3 + b]))
            .unwrap()
    };
    for row in 6..15 {
        let twin = (row - 6) % 3;
        assert_eq!(argmax(projected_acts, row), argmax(fitted_acts, twin));
    }
}
