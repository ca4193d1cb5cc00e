//! Concept-dictionary metrics (xl-vlms `metrics/dictionary_learning_metrics.py`): overlap between
//! the grounding words of concepts, and test grounding scores that compare the words of the
//! concepts most activated by a sample with the words of its caption (a text-only counterpart of
//! the seed's CLIPScore evaluation, which is not implemented here).

use serde::{Deserialize, Serialize};

use crate::error::{MetricsError, Result};
use crate::words::words_of;

/// Overlap of grounding words between concepts (lower means more distinct concepts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OverlapReport {
    /// `Σ_{i≠j} overlap_ij / (K (K - 1))`.
    pub metric: f64,
    /// `overlap_ij = |{w ∈ W_i : w ∈ W_j}| / |W_i|` (a row of 0 for a concept without words).
    pub matrix: Vec<Vec<f64>>,
}

/// Grounding-word overlap of `concept_words` (K ≥ 2 lists of words).
pub fn grounding_words_overlap(concept_words: &[Vec<String>]) -> Result<OverlapReport> {
    let k = concept_words.len();
    if k < 2 {
        return Err(MetricsError::InvalidInput {
            what: "grounding words overlap",
            detail: format!("needs at least 2 concepts, got {k}"),
        });
    }
    let mut matrix = vec![vec![0.0; k]; k];
    for (i, words_i) in concept_words.iter().enumerate() {
        if words_i.is_empty() {
            continue;
        }
        for (j, words_j) in concept_words.iter().enumerate() {
            let shared = words_i.iter().filter(|w| words_j.contains(w)).count();
            matrix[i][j] = shared as f64 / words_i.len() as f64;
        }
    }
    let off_diagonal: f64 = (0..k)
        .flat_map(|i| (0..k).filter(move |&j| j != i).map(move |j| (i, j)))
        .map(|(i, j)| matrix[i][j])
        .sum();
    Ok(OverlapReport {
        metric: off_diagonal / (k * (k - 1)) as f64,
        matrix,
    })
}

/// Test grounding scores: for each sample, the fraction of a concept's grounding words found in
/// the sample's caption, for its most activated concept (top 1) and averaged over its three most
/// activated concepts (top 3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroundingScores {
    pub top_1_all: Vec<f64>,
    pub top_1_mean: f64,
    /// Population standard deviation (numpy's default).
    pub top_1_std: f64,
    pub top_3_all: Vec<f64>,
    pub top_3_mean: f64,
    pub top_3_std: f64,
}

/// Scores `activations` (one row of K concept activations per sample) against `captions` (one per
/// sample) using `concept_words` (K lists).
pub fn test_grounding_scores(
    activations: &[Vec<f32>],
    concept_words: &[Vec<String>],
    captions: &[String],
) -> Result<GroundingScores> {
    let invalid = |detail: String| MetricsError::InvalidInput {
        what: "test grounding scores",
        detail,
    };
    if activations.is_empty() {
        return Err(invalid("no samples".into()));
    }
    if activations.len() != captions.len() {
        return Err(invalid(format!(
            "{} activation rows but {} captions",
            activations.len(),
            captions.len()
        )));
    }
    let k = concept_words.len();
    if k == 0 {
        return Err(invalid("no concepts".into()));
    }
    if let Some((row, a)) = activations.iter().enumerate().find(|(_, a)| a.len() != k) {
        return Err(invalid(format!(
            "activation row {row} has {} values, expected {k} (one per concept)",
            a.len()
        )));
    }
    if let Some(row) = activations
        .iter()
        .position(|a| a.iter().any(|v| v.is_nan()))
    {
        return Err(invalid(format!("activation row {row} holds NaN")));
    }
    let concept_tokens: Vec<Vec<Vec<String>>> = concept_words
        .iter()
        .map(|ws| ws.iter().map(|w| words_of(w)).collect())
        .collect();
    let (mut top_1_all, mut top_3_all) = (Vec::new(), Vec::new());
    for (a, caption) in activations.iter().zip(captions) {
        let caption_words = words_of(caption);
        let score = |c: usize| -> f64 {
            let words = &concept_tokens[c];
            if words.is_empty() {
                return 0.0;
            }
            let found = words
                .iter()
                .filter(|w| {
                    !w.is_empty()
                        && caption_words
                            .windows(w.len())
                            .any(|win| win == w.as_slice())
                })
                .count();
            found as f64 / words.len() as f64
        };
        let mut order: Vec<usize> = (0..k).collect();
        // Highest activation first; equal activations keep concept order.
        order.sort_by(|&x, &y| a[y].total_cmp(&a[x]));
        top_1_all.push(score(order[0]));
        let top = &order[..k.min(3)];
        top_3_all.push(top.iter().map(|&c| score(c)).sum::<f64>() / top.len() as f64);
    }
    let (top_1_mean, top_1_std) = mean_std(&top_1_all);
    let (top_3_mean, top_3_std) = mean_std(&top_3_all);
    Ok(GroundingScores {
        top_1_all,
        top_1_mean,
        top_1_std,
        top_3_all,
        top_3_mean,
        top_3_std,
    })
}

fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(lists: &[&[&str]]) -> Vec<Vec<String>> {
        lists
            .iter()
            .map(|l| l.iter().map(|w| w.to_string()).collect())
            .collect()
    }

    #[test]
    fn overlap_matches_the_definition() {
        let r = grounding_words_overlap(&words(&[&["red", "blue"], &["red"], &[]])).unwrap();
        assert_eq!(r.matrix[0], vec![1.0, 0.5, 0.0]);
        assert_eq!(r.matrix[1], vec![1.0, 1.0, 0.0]);
        assert_eq!(r.matrix[2], vec![0.0, 0.0, 0.0]);
        assert!((r.metric - 1.5 / 6.0).abs() < 1e-12);
        assert!(grounding_words_overlap(&words(&[&["a"]])).is_err());
    }

    #[test]
    fn grounding_uses_most_activated_concepts() {
        let concepts = words(&[&["dog", "ball"], &["cat"], &["red", "car"]]);
        let s = test_grounding_scores(
            &[vec![0.1, 0.9, 0.5], vec![2.0, 0.0, 1.0]],
            &concepts,
            &["a cat on a red sofa".into(), "a dog".into()],
        )
        .unwrap();
        assert_eq!(s.top_1_all, vec![1.0, 0.5]);
        assert!((s.top_3_all[0] - (1.0 + 0.5 + 0.0) / 3.0).abs() < 1e-12);
        assert!(test_grounding_scores(&[vec![1.0]], &concepts, &["x".into()]).is_err());
    }
}
