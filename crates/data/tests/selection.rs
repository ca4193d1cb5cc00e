//! Random subsets and limits.

use xlvlm_data::{Sample, SampleMeta, Selection, Task};

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

#[test]
fn dataset_size_draws_a_seeded_subset_in_dataset_order() {
    let select = |seed| {
        ids(&Selection {
            dataset_size: Some(10),
            seed,
            ..Selection::default()
        }
        .apply(samples(100)))
    };
    let first = select(0);
    assert_eq!(first.len(), 10);
    assert!(first.windows(2).all(|pair| pair[0] < pair[1]), "{first:?}");
    assert_eq!(first, select(0));
    assert_ne!(first, select(1));
    // Not simply the first ten.
    assert_ne!(first, (0..10).collect::<Vec<_>>());
}

#[test]
fn filter_then_subset_then_limit() {
    let mut selection = Selection {
        dataset_size: Some(200),
        limit: Some(3),
        ..Selection::default()
    };
    selection.filter.answers = vec!["no".to_string()];
    assert_eq!(ids(&selection.apply(samples(100))), [1, 3, 5]);
}
