//! Steering counters of xl-vlms (`metrics/utils.get_number_predictions_with_token_of_interest`,
//! §9.3 of its inventory), answer counts and predicted answer types, and caption word-class
//! rates; with the seed's bugs fixed: matching is whole-word (xl-vlms matched substrings, so `no`
//! counted `none` and `snow`), words of interest are lower-cased like the predictions, changed
//! predictions are only counted against an actual baseline, and overall answer counts are sums.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::error::{MetricsError, Result};
use crate::words::{WordClass, contains_any, contains_phrase, words_of};

/// One evaluated sample of a steered run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SteeringSample {
    /// The steered model's output.
    pub prediction: String,
    /// Ground-truth answers or reference captions.
    pub targets: Vec<String>,
    /// The unsteered model's output for the same sample, when a baseline run exists.
    pub baseline: Option<String>,
}

/// The counters, and the same as percentages of `num_samples`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetRates {
    pub num_samples: usize,
    /// Predictions containing a prediction word of interest.
    pub num_preds_with_toi: usize,
    /// ...whose targets also contain a target word of interest.
    pub num_preds_and_targets_with_toi: usize,
    /// Samples that have a baseline prediction.
    pub num_with_baseline: usize,
    /// Baseline predictions with a target word of interest (the answers steering should flip).
    pub num_baseline_preds_with_toi: usize,
    /// Predictions with a prediction word of interest whose baseline has a target word of
    /// interest (over samples with a baseline): the flipped answers.
    pub num_preds_and_baseline_preds_with_toi: usize,
    /// Predictions different from their baseline (lower-cased, trimmed), over samples with one.
    pub num_preds_changed: usize,
    pub percent_preds_with_toi: f64,
    pub percent_preds_and_targets_with_toi: f64,
    /// Percent of the samples with a baseline; `None` without any baseline.
    pub percent_preds_changed: Option<f64>,
    /// `100 * num_preds_and_baseline_preds_with_toi / num_baseline_preds_with_toi`; `None`
    /// when no baseline prediction has a target word of interest.
    pub percent_flipped: Option<f64>,
}

/// Counts predictions containing `prediction_words` (whole words or phrases) and how they relate
/// to targets containing `target_words` and to the baseline predictions.
pub fn target_rates(
    samples: &[SteeringSample],
    prediction_words: &[String],
    target_words: &[String],
) -> Result<TargetRates> {
    if samples.is_empty() {
        return Err(MetricsError::InvalidInput {
            what: "target rates",
            detail: "no samples".into(),
        });
    }
    if prediction_words.is_empty() || target_words.is_empty() {
        return Err(MetricsError::InvalidInput {
            what: "target rates",
            detail: "prediction and target words of interest must both be non-empty".into(),
        });
    }
    let mut r = TargetRates {
        num_samples: samples.len(),
        num_preds_with_toi: 0,
        num_preds_and_targets_with_toi: 0,
        num_with_baseline: 0,
        num_baseline_preds_with_toi: 0,
        num_preds_and_baseline_preds_with_toi: 0,
        num_preds_changed: 0,
        percent_preds_with_toi: 0.0,
        percent_preds_and_targets_with_toi: 0.0,
        percent_preds_changed: None,
        percent_flipped: None,
    };
    for s in samples {
        let f = sample_flags(s, prediction_words, target_words);
        if f.prediction_has_toi {
            r.num_preds_with_toi += 1;
            if f.targets_have_toi {
                r.num_preds_and_targets_with_toi += 1;
            }
        }
        if let Some(baseline_has_toi) = f.baseline_has_toi {
            r.num_with_baseline += 1;
            r.num_baseline_preds_with_toi += usize::from(baseline_has_toi);
            if f.prediction_has_toi && baseline_has_toi {
                r.num_preds_and_baseline_preds_with_toi += 1;
            }
            if f.changed == Some(true) {
                r.num_preds_changed += 1;
            }
        }
    }
    let percent = |n: usize, of: usize| 100.0 * n as f64 / of as f64;
    r.percent_preds_with_toi = percent(r.num_preds_with_toi, r.num_samples);
    r.percent_preds_and_targets_with_toi = percent(r.num_preds_and_targets_with_toi, r.num_samples);
    r.percent_preds_changed =
        (r.num_with_baseline > 0).then(|| percent(r.num_preds_changed, r.num_with_baseline));
    r.percent_flipped = (r.num_baseline_preds_with_toi > 0).then(|| {
        percent(
            r.num_preds_and_baseline_preds_with_toi,
            r.num_baseline_preds_with_toi,
        )
    });
    Ok(r)
}

/// What [`target_rates`] counts, for one sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SampleFlags {
    /// The prediction contains a prediction word of interest.
    pub prediction_has_toi: bool,
    /// Some target contains a target word of interest.
    pub targets_have_toi: bool,
    /// The baseline prediction contains a target word of interest (`None` without a baseline).
    pub baseline_has_toi: Option<bool>,
    /// The prediction differs from the baseline (lower-cased, trimmed; `None` without one).
    pub changed: Option<bool>,
}

/// The target-rate flags of one sample (whole-word matching, see [`target_rates`]).
pub fn sample_flags(
    sample: &SteeringSample,
    prediction_words: &[String],
    target_words: &[String],
) -> SampleFlags {
    SampleFlags {
        prediction_has_toi: contains_any(&words_of(&sample.prediction), prediction_words),
        targets_have_toi: sample
            .targets
            .iter()
            .any(|t| contains_any(&words_of(t), target_words)),
        baseline_has_toi: sample
            .baseline
            .as_ref()
            .map(|b| contains_any(&words_of(b), target_words)),
        changed: sample
            .baseline
            .as_ref()
            .map(|b| sample.prediction.trim().to_lowercase() != b.trim().to_lowercase()),
    }
}

/// Counts of raw predictions per answer type, plus `"overall"` (the sum over types).
/// `items` holds (answer type, prediction) pairs.
pub fn answer_counts(items: &[(String, String)]) -> BTreeMap<String, BTreeMap<String, usize>> {
    let mut counts: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for (answer_type, prediction) in items {
        for key in [answer_type.as_str(), "overall"] {
            *counts
                .entry(key.to_owned())
                .or_default()
                .entry(prediction.clone())
                .or_insert(0) += 1;
        }
    }
    counts
}

/// Majority type of each answer, from (type, answers of that type) lists in a fixed order; ties
/// go to the type listed first (as xl-vlms' `get_word_to_type_dict`).
pub fn majority_types(type_to_answers: &[(String, Vec<String>)]) -> HashMap<String, String> {
    let mut counts: HashMap<&str, Vec<(&str, usize)>> = HashMap::new();
    for (answer_type, answers) in type_to_answers {
        for a in answers {
            let per_type = counts.entry(a).or_default();
            match per_type.iter_mut().find(|(t, _)| *t == answer_type) {
                Some((_, n)) => *n += 1,
                None => per_type.push((answer_type, 1)),
            }
        }
    }
    counts
        .into_iter()
        .map(|(answer, per_type)| {
            let mut best = per_type[0];
            for &(t, n) in &per_type[1..] {
                if n > best.1 {
                    best = (t, n);
                }
            }
            (answer.to_owned(), best.0.to_owned())
        })
        .collect()
}

/// Predicted answer type counts: the answer's type from `answer_types` (see [`majority_types`]),
/// else `number` when it parses as a number, else `unrecognized`. `predictions` are normalised
/// answers (see [`crate::VqaQuestionScore::normalized_prediction`]).
pub fn predicted_answer_types(
    predictions: &[String],
    answer_types: &HashMap<String, String>,
) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for p in predictions {
        let t = match answer_types.get(p) {
            Some(t) => t.clone(),
            None if p.trim().parse::<f64>().is_ok() => "number".to_owned(),
            None => "unrecognized".to_owned(),
        };
        *counts.entry(t).or_insert(0) += 1;
    }
    counts
}

/// How often one word class appears in captions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WordClassRate {
    /// Captions containing at least one word of the class.
    pub captions_with_word: usize,
    /// `100 * captions_with_word / #captions`.
    pub percent_captions_with_word: f64,
    /// Occurrences of each word of the class over all captions (words that occur only).
    pub word_counts: BTreeMap<String, usize>,
}

/// Word-class rates of `captions` for each class in `classes`, keyed by class name.
pub fn word_class_rates(
    captions: &[String],
    classes: &[WordClass],
) -> BTreeMap<String, WordClassRate> {
    let caption_words: Vec<Vec<String>> = captions.iter().map(|c| words_of(c)).collect();
    classes
        .iter()
        .map(|class| {
            let mut rate = WordClassRate {
                captions_with_word: 0,
                percent_captions_with_word: 0.0,
                word_counts: BTreeMap::new(),
            };
            for words in &caption_words {
                let mut found = false;
                for w in class.words() {
                    let needle = words_of(w);
                    let n = words
                        .windows(needle.len())
                        .filter(|win| *win == needle.as_slice())
                        .count();
                    if n > 0 {
                        found = true;
                        *rate.word_counts.entry(w.clone()).or_insert(0) += n;
                    }
                }
                rate.captions_with_word += usize::from(found);
            }
            if !captions.is_empty() {
                rate.percent_captions_with_word =
                    100.0 * rate.captions_with_word as f64 / captions.len() as f64;
            }
            (class.name().to_owned(), rate)
        })
        .collect()
}

/// Whether `text` contains `phrase` as whole words (case-insensitive).
pub fn mentions(text: &str, phrase: &str) -> bool {
    contains_phrase(&words_of(text), phrase)
}
