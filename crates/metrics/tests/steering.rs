//! Steering counters, answer statistics and word-class rates on hand-checked examples.

use std::collections::HashMap;

use xlvlm_metrics::steering::{
    SteeringSample, answer_counts, majority_types, predicted_answer_types, target_rates,
    word_class_rates,
};
use xlvlm_metrics::words::WordClass;

fn sample(prediction: &str, targets: &[&str], baseline: Option<&str>) -> SteeringSample {
    SteeringSample {
        prediction: prediction.into(),
        targets: targets.iter().map(|t| t.to_string()).collect(),
        baseline: baseline.map(Into::into),
    }
}

fn words(list: &[&str]) -> Vec<String> {
    list.iter().map(|w| w.to_string()).collect()
}

#[test]
fn target_rates_match_whole_words_only() {
    let samples = [
        // "No" counts (case-insensitive); its target has "yes"; the baseline said "Yes".
        sample("No", &["yes", "yes"], Some("Yes")),
        // "none", "snow" and "not" are not "no" (xl-vlms' substring match counted them).
        sample(
            "none of them, snow is not here",
            &["no"],
            Some("none of them, snow is not here"),
        ),
        // "no" inside a sentence counts; targets have no "yes"; baseline "no" differs only in case.
        sample("There is no dog.", &["nope"], Some("there is NO dog.")),
        // A sample without baseline.
        sample("no", &["Yes."], None),
    ];
    let r = target_rates(&samples, &words(&["no"]), &words(&["yes"])).unwrap();
    assert_eq!(r.num_samples, 4);
    assert_eq!(r.num_preds_with_toi, 3);
    assert_eq!(r.num_preds_and_targets_with_toi, 2);
    assert_eq!(r.num_with_baseline, 3);
    assert_eq!(r.num_preds_and_baseline_preds_with_toi, 1);
    // Only the first baseline ("Yes") has the target word: one of one flipped.
    assert_eq!(r.num_baseline_preds_with_toi, 1);
    assert_eq!(r.percent_flipped, Some(100.0));
    assert_eq!(r.num_preds_changed, 1);
    assert_eq!(r.percent_preds_with_toi, 75.0);
    assert_eq!(r.percent_preds_changed, Some(100.0 / 3.0));

    let no_baseline = [sample("no", &["yes"], None)];
    let r = target_rates(&no_baseline, &words(&["no"]), &words(&["yes"])).unwrap();
    assert_eq!(
        r.percent_preds_changed, None,
        "no baseline: nothing counts as changed"
    );
    assert_eq!(r.percent_flipped, None);
    assert!(target_rates(&[], &words(&["no"]), &words(&["yes"])).is_err());
    assert!(target_rates(&no_baseline, &[], &words(&["yes"])).is_err());
}

#[test]
fn multi_word_targets_match_as_phrases() {
    let samples = [sample("a red bus stop", &["a bus stop at night"], None)];
    let r = target_rates(&samples, &words(&["bus stop"]), &words(&["bus stop"])).unwrap();
    assert_eq!(
        (r.num_preds_with_toi, r.num_preds_and_targets_with_toi),
        (1, 1)
    );
    let r = target_rates(&samples, &words(&["stop bus"]), &words(&["bus stop"])).unwrap();
    assert_eq!(r.num_preds_with_toi, 0);
}

#[test]
fn answer_counts_sum_over_types() {
    let items: Vec<(String, String)> = [("yes/no", "yes"), ("other", "yes"), ("other", "red")]
        .iter()
        .map(|(t, p)| (t.to_string(), p.to_string()))
        .collect();
    let c = answer_counts(&items);
    assert_eq!(
        c["overall"]["yes"], 2,
        "xl-vlms overwrote instead of summing"
    );
    assert_eq!(c["other"]["red"], 1);
    assert_eq!(c["yes/no"].len(), 1);
}

#[test]
fn predicted_types_use_majorities_then_numbers() {
    let listing = vec![
        ("yes/no".to_string(), words(&["yes", "no", "two"])),
        ("number".to_string(), words(&["2", "two", "two"])),
        ("other".to_string(), words(&["yes", "red"])),
    ];
    let types = majority_types(&listing);
    assert_eq!(types["two"], "number");
    assert_eq!(types["yes"], "yes/no", "ties go to the type listed first");
    assert_eq!(types["red"], "other");
    let counts = predicted_answer_types(&words(&["yes", "3.5", "blue", "two"]), &types);
    assert_eq!(counts["yes/no"], 1);
    assert_eq!(counts["number"], 2);
    assert_eq!(counts["unrecognized"], 1);
    assert!(predicted_answer_types(&words(&["x"]), &HashMap::new()).contains_key("unrecognized"));
}

#[test]
fn word_class_rates_count_captions_and_words() {
    let captions = words(&[
        "A red car and a red bus near the beach.",
        "A covered bridge.",
        "People at the bus stop, smiling and happy.",
    ]);
    let rates = word_class_rates(
        &captions,
        &[WordClass::Colors, WordClass::Places, WordClass::Sentiments],
    );
    let colors = &rates["colors"];
    assert_eq!(colors.captions_with_word, 1, "'covered' holds no colour");
    assert_eq!(colors.word_counts["red"], 2);
    let places = &rates["places"];
    assert_eq!(places.captions_with_word, 3);
    assert_eq!(places.word_counts["bus stop"], 1);
    assert_eq!(places.word_counts["bridge"], 1);
    assert_eq!(rates["sentiments"].word_counts["happy"], 1);
    assert!((places.percent_captions_with_word - 100.0).abs() < 1e-12);
}
