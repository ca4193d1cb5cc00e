//! Sweeps reuse shared work: eight alphas of a steering sweep extract features and compute the
//! vector once, and a ninth alpha adds exactly one steer and one evaluate node (plus the sweep
//! table, which gathers every point).

mod support;

use std::collections::BTreeMap;
use std::path::Path;

use support::{run_ok, world_sections};

/// Stage label → outcome (`ran`, `cached`) from `xlvlm run`'s summary table.
fn outcomes(stdout: &str) -> BTreeMap<String, String> {
    stdout
        .lines()
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            match cols.as_slice() {
                [label, _kind, outcome, _rows, _time]
                    if ["ran", "cached", "shared"].contains(outcome) =>
                {
                    Some((label.to_string(), outcome.to_string()))
                }
                _ => None,
            }
        })
        .collect()
}

fn experiment(dir: &Path, sections: &str, alphas: &str) -> String {
    let file = dir.join("sweep.toml");
    std::fs::write(
        &file,
        format!(
            r#"[experiment]
name = "sweep"
{sections}
[stage.yes]
kind = "extract"
model = "tiny"
data = "vqa"
hooks = ["lm.layers.1"]
generate = {{ max_new_tokens = 2 }}
tokens = {{ among = "generated", index = 0 }}

[stage.captions]
from = "yes"
data = "captions"

[stage.vector]
kind = "shift"
method = "shift_of_means"
source = "yes"
target = "captions"

[stage.steered]
kind = "steer"
model = "tiny"
data = "vqa"
vector = "vector"
hooks = ["lm.layers.1"]
alpha = {{ sweep = [{alphas}] }}
generate = {{ max_new_tokens = 2 }}

[stage.eval]
kind = "evaluate"
input = "steered"

[stage.table]
kind = "evaluate"
collect = "eval"
"#
        ),
    )
    .unwrap();
    file.display().to_string()
}

#[test]
fn a_ninth_alpha_runs_one_steer_and_one_evaluate() {
    let dir = tempfile::tempdir().unwrap();
    let sections = world_sections(dir.path());
    let store = dir.path().join("store");
    let eight = "0.5, 1, 2, 3, 4, 5, 6, 7";
    let file = experiment(dir.path(), &sections, eight);
    let first = outcomes(&String::from_utf8_lossy(
        &run_ok(&store, Path::new(&file)).stdout,
    ));
    // Shared work ran once: one extract per dataset and one vector for all eight points.
    for shared in ["yes", "captions", "vector", "table"] {
        assert_eq!(
            first.get(shared).map(String::as_str),
            Some("ran"),
            "{first:?}"
        );
    }
    let steered = first.keys().filter(|l| l.starts_with("steered[")).count();
    let evals = first.keys().filter(|l| l.starts_with("eval[")).count();
    assert_eq!((steered, evals, first.len()), (8, 8, 20), "{first:?}");

    let file = experiment(dir.path(), &sections, &format!("{eight}, 8"));
    let second = outcomes(&String::from_utf8_lossy(
        &run_ok(&store, Path::new(&file)).stdout,
    ));
    let ran: Vec<&str> = second
        .iter()
        .filter(|(_, o)| o.as_str() != "cached")
        .map(|(l, _)| l.as_str())
        .collect();
    assert_eq!(
        ran,
        ["eval[steered.alpha=8]", "steered[alpha=8]", "table"],
        "{second:?}"
    );
}
