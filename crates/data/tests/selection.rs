//! Random subsets (checked against NumPy), filters and limits.

use std::path::Path;

use serde::Deserialize;
use xlvlm_data::{Sample, SampleMeta, Selection, Task, read_json};

fn samples(count: usize) -> Vec<Sample> {
    (0..count)
        .map(|index| Sample {
            id: index.to_string(),
            task: Task::Vqa,
            image: None,
            prompt: Some(format!("question {index}")),
            response: Some(if index % 2 == 0 { "yes" } else { "no" }.to_string()),
            references: Vec::new(),
            meta: SampleMeta {
                answer_type: Some("yes/no".to_string()),
                ..SampleMeta::default()
            },
        })
        .collect()
}

fn ids(samples: &[Sample]) -> Vec<usize> {
    samples
        .iter()
        .map(|sample| sample.id.parse().unwrap())
        .collect()
}

#[derive(Deserialize)]
struct Goldens {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    seed: u64,
    population: usize,
    size: usize,
    indices: Vec<usize>,
}

/// `tests/fixtures/numpy_choice.json` holds what NumPy's
/// `default_rng(seed).choice(population, size, replace=False)` returns (made by
/// `tools/refgen/data_numpy_choice.py`), covering both of NumPy's algorithms.
#[test]
fn dataset_size_picks_what_numpy_picks() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/numpy_choice.json");
    let goldens: Goldens = read_json(&path).unwrap();
    assert_eq!(goldens.cases.len(), 12);
    for case in goldens.cases {
        let selection = Selection {
            dataset_size: Some(case.size),
            seed: case.seed,
            ..Selection::default()
        };
        assert_eq!(
            ids(&selection.apply(samples(case.population))),
            case.indices,
            "seed {} population {} size {}",
            case.seed,
            case.population,
            case.size
        );
    }
}

#[test]
fn subset_then_filter_then_limit() {
    let mut selection = Selection {
        dataset_size: Some(10),
        limit: Some(3),
        ..Selection::default()
    };
    // NumPy's subset for seed 0: [77, 81, 58, 47, 25, 3, 1, 29, 17, 7]; the odd ids answer "no".
    selection.filter.answers = vec!["no".to_string()];
    assert_eq!(ids(&selection.apply(samples(100))), [77, 81, 47]);
}

#[test]
fn dataset_size_above_the_sample_count_keeps_all_in_order() {
    let selection = Selection {
        dataset_size: Some(50),
        ..Selection::default()
    };
    assert_eq!(ids(&selection.apply(samples(5))), [0, 1, 2, 3, 4]);
}
