//! Shift-analysis recovery metrics (`evaluate` with `recovery`) end to end: imported original
//! and fine-tuned features with planted per-concept shifts → `shift` (`concept_shifts` with the
//! `simple` decomposition, so every concept is a known row) → three `ground` stages through a
//! checkpoint whose LM head is planted, so each concept's words follow from its coordinates →
//! the word and most-activating-sample overlaps of the original and shifted concepts with
//! their matched fine-tuned concepts, checked against values worked out by hand. The
//! fine-tuned decomposition lists its concepts in another order than the original one (a
//! cyclic permutation), so a pairing that ignored or double-applied the matching would fail.

mod support;

use std::path::Path;

use serde_json::Value;
use support::{artifact, run_ok, stderr, write_npy, xlvlm};
use xlvlm_store::read_parquet;

const HIDDEN: usize = support::TINY_HIDDEN;

/// The tiny LLaVA fixture's config and tokenizer with a planted LM head: each of four axes
/// unembeds to three grounding words with decreasing weights (axis 3 weighs 4× more).
fn planted_checkpoint(dir: &Path) {
    support::planted_checkpoint(
        dir,
        &[
            (382, 0, 5.0),
            (389, 0, 4.0),
            (391, 0, 3.0),
            (385, 1, 5.0),
            (392, 1, 4.0),
            (395, 1, 3.0),
            (262, 2, 5.0),
            (263, 2, 4.0),
            (264, 2, 3.0),
            (265, 3, 20.0),
            (266, 3, 18.0),
            (397, 3, 16.0),
        ],
        None,
    );
}

/// A row with the given (axis, value) coordinates.
fn row(coords: &[(usize, f32)]) -> Vec<f32> {
    let mut v = vec![0f32; HIDDEN];
    for &(axis, value) in coords {
        v[axis] = value;
    }
    v
}

/// Original and fine-tuned features of the same 13 samples, as `.npy` + id files.
///
/// Three concepts, the three largest rows of each side (`simple`): A = 12·e0, B = 11·e1,
/// C = 10·e2 in the original, in that order. Every sample is nearest its own anchor.
/// - A: every sample moves by 1.9·e3, so the shifted concept is the fine-tuned one,
///   12·e0 + 1.9·e3 (words dog, red, 3 against the original's dog, red, image).
/// - B: the anchor stays, its two other samples move by 3.825·e3: the mean shift is 2.55·e3,
///   the shifted concept 11·e1 + 2.55·e3 (green, 3, 4) while the fine-tuned concept is the
///   unmoved anchor (green, picture, 02, as the original).
/// - C: the samples move by 4·e2 except z, which moves by 7.5·e2, from fourth nearest to
///   second nearest of the anchor: the most-activating samples change, the words (0, 1, 2) do
///   not.
///
/// Fine-tuned norms: 14 (C), 12.15 (A), 11 (B), so the fine-tuned decomposition lists C, A, B
/// and the matching is [1, 2, 0].
fn features(dir: &Path) {
    let samples: Vec<(&str, Vec<f32>, Vec<f32>)> = vec![
        ("a0", row(&[(0, 12.0)]), row(&[(0, 12.0), (3, 1.9)])),
        ("a1", row(&[(0, 6.0)]), row(&[(0, 6.0), (3, 1.9)])),
        ("a2", row(&[(0, 5.0)]), row(&[(0, 5.0), (3, 1.9)])),
        ("b0", row(&[(1, 11.0)]), row(&[(1, 11.0)])),
        ("b1", row(&[(1, 6.0)]), row(&[(1, 6.0), (3, 3.825)])),
        ("b2", row(&[(1, 5.0)]), row(&[(1, 5.0), (3, 3.825)])),
        ("c0", row(&[(2, 10.0)]), row(&[(2, 14.0)])),
        ("c1", row(&[(2, 6.0)]), row(&[(2, 10.0)])),
        ("c2", row(&[(2, 5.0)]), row(&[(2, 9.0)])),
        ("z", row(&[(2, 3.0)]), row(&[(2, 10.5)])),
    ];
    let ids: String = samples.iter().map(|(id, _, _)| format!("{id}\n")).collect();
    for (name, side) in [("original", 1), ("finetuned", 2)] {
        let values: Vec<f32> = samples
            .iter()
            .flat_map(|s| if side == 1 { s.1.clone() } else { s.2.clone() })
            .collect();
        write_npy(
            &dir.join(format!("{name}.npy")),
            samples.len(),
            HIDDEN,
            &values,
        );
        std::fs::write(dir.join(format!("{name}.txt")), &ids).unwrap();
    }
}

/// The upstream stages every experiment of this file shares (cached after the first run).
const UPSTREAM: &str = r#"
[models.tiny]
path = "ckpt"

[stage.original]
kind = "import"
path = "original.npy"
ids = "original.txt"

[stage.finetuned]
from = "original"
path = "finetuned.npy"
ids = "finetuned.txt"

[stage.shift]
kind = "shift"
method = "concept_shifts"
source = "original"
target = "finetuned"
num_concepts = 3
decomposition = "simple"

[stage.words_original]
kind = "ground"
concepts = "shift"
set = "original"
model = "tiny"
num_grounded_text_tokens = 3
num_most_activating_samples = 2

[stage.words_shifted]
from = "words_original"
set = "shifted"

[stage.words_finetuned]
from = "words_original"
set = "finetuned"
"#;

fn setup(dir: &Path) {
    planted_checkpoint(&dir.join("ckpt"));
    features(dir);
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn close(v: &Value, x: f64) -> bool {
    (v.as_f64().unwrap() - x).abs() < 1e-9
}

#[test]
fn recovery_overlaps_pair_each_concept_with_its_matched_finetuned_concept() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let file = dir.path().join("exp.toml");
    std::fs::write(
        &file,
        format!(
            "[experiment]\nname = \"recovery\"\n{UPSTREAM}\n\
             [stage.recovery]\nkind = \"evaluate\"\n\
             recovery = {{ shift = \"shift\", original = \"words_original\", \
             shifted = \"words_shifted\", finetuned = \"words_finetuned\" }}\n"
        ),
    )
    .unwrap();
    let store = dir.path().join("store");
    run_ok(&store, &file);

    // The permutation is real: the fine-tuned decomposition lists C, A, B.
    let shift = artifact(&store, "recovery", "shift");
    let concepts = read_parquet(&shift.join("concepts.parquet")).unwrap();
    let sets = concepts.strings("set").unwrap();
    let matched = concepts.ints("finetuned_concept").unwrap();
    let finetuned_rows: Vec<i64> = (0..sets.len())
        .filter(|&i| sets[i] == "finetuned")
        .map(|i| matched[i])
        .collect();
    assert_eq!(finetuned_rows, [1, 2, 0]);

    // The groundings are as planted.
    let words = |stage: &str| -> Vec<Vec<String>> {
        let g = json(&artifact(&store, "recovery", stage).join("grounding.json"));
        g["concepts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                c["words"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|w| w["word"].as_str().unwrap().to_string())
                    .collect()
            })
            .collect()
    };
    assert_eq!(
        words("words_original"),
        [
            ["dog", "red", "image"],
            ["green", "picture", "02"],
            ["0", "1", "2"]
        ]
    );
    assert_eq!(
        words("words_shifted"),
        [["dog", "red", "3"], ["green", "3", "4"], ["0", "1", "2"]]
    );
    // The shift stage writes the fine-tuned set in matched order: its row k is the fine-tuned
    // concept matched to concept k.
    assert_eq!(
        words("words_finetuned"),
        [
            ["dog", "red", "3"],
            ["green", "picture", "02"],
            ["0", "1", "2"]
        ]
    );

    let a = artifact(&store, "recovery", "recovery");
    let m = json(&a.join("metrics.json"));
    let s = &m["scalars"];
    // Words shared with the matched fine-tuned concept, original vs shifted: A 2 vs 3
    // (improved), B 3 vs 1 (worse), C 3 vs 3 (equal); T-Overlap in percent of 3 words.
    assert_eq!(s["recovery_concepts"], 3);
    assert_eq!(s["recovery_num_words"], 3);
    assert!(close(&s["recovery_t_overlap_original"], 800.0 / 9.0));
    assert!(close(&s["recovery_t_overlap_shifted"], 700.0 / 9.0));
    assert_eq!(s["recovery_concepts_improved"], 1);
    assert_eq!(s["recovery_concepts_equal"], 1);
    assert_eq!(s["recovery_concepts_worse"], 1);
    // Most-activating samples (2 per concept): only C differs, {c0, c1} originally and
    // {c0, z} after the shift and after fine-tuning.
    assert_eq!(s["recovery_num_samples"], 2);
    assert!(close(&s["recovery_mas_overlap_original"], 250.0 / 3.0));
    assert!(close(&s["recovery_mas_overlap_shifted"], 100.0));

    let r = &m["recovery"];
    assert_eq!(r["shift"], "shift");
    assert_eq!(r["concepts"][0]["finetuned_concept"], 1);
    assert_eq!(
        r["concepts"][0]["words"]["finetuned"],
        serde_json::json!(["dog", "red", "3"])
    );
    assert_eq!(
        r["concepts"][2]["samples"]["original"],
        serde_json::json!(["c0", "c1"])
    );
    assert_eq!(
        r["concepts"][2]["samples"]["finetuned"],
        serde_json::json!(["c0", "z"])
    );

    // One row per concept in recovery.parquet, the summary columns in metrics.parquet.
    let t = read_parquet(&a.join("recovery.parquet")).unwrap();
    assert_eq!(t.ints("concept").unwrap(), [0, 1, 2]);
    assert_eq!(t.ints("finetuned_concept").unwrap(), [1, 2, 0]);
    assert_eq!(t.ints("word_intersection_original").unwrap(), [2, 3, 3]);
    assert_eq!(t.ints("word_intersection_shifted").unwrap(), [3, 1, 3]);
    let pct = |n: f64| 100.0 * n / 3.0;
    for (got, want) in
        t.floats("t_overlap_original")
            .unwrap()
            .iter()
            .zip([pct(2.0), pct(3.0), pct(3.0)])
            .chain(t.floats("t_overlap_shifted").unwrap().iter().zip([
                pct(3.0),
                pct(1.0),
                pct(3.0),
            ]))
    {
        assert!((got - want).abs() < 1e-9, "{got} vs {want}");
    }
    assert_eq!(t.ints("mas_intersection_original").unwrap(), [2, 2, 1]);
    assert_eq!(t.ints("mas_intersection_shifted").unwrap(), [2, 2, 2]);
    assert_eq!(
        t.floats("mas_overlap_original").unwrap(),
        [100.0, 100.0, 50.0]
    );
    let summary = read_parquet(&a.join("metrics.parquet")).unwrap();
    assert_eq!(summary.num_rows(), 1);
    assert_eq!(summary.ints("recovery_concepts_improved").unwrap(), [1]);
    assert!(summary.floats("recovery_t_overlap_shifted").is_some());
}

#[test]
fn bad_recovery_inputs_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let store = dir.path().join("store");
    // A second shift analysis of the same features (another matching rule: another key).
    let extra = r#"
[stage.shift_by_original]
from = "shift"
match_concepts = "original"

[stage.other_finetuned]
from = "words_finetuned"
concepts = "shift_by_original"

[stage.fewer_words]
from = "words_finetuned"
num_grounded_text_tokens = 2

[stage.dictionary]
kind = "decompose"
input = "original"
method = "simple"
num_concepts = 3
"#;
    let write = |name: &str, body: &str| {
        let file = dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &file,
            format!(
                "[experiment]\nname = \"{name}\"\n{UPSTREAM}{extra}\n\
                 [stage.e]\nkind = \"evaluate\"\n{body}\n"
            ),
        )
        .unwrap();
        file
    };
    let recovery = |shift: &str, original: &str, shifted: &str, finetuned: &str| {
        format!(
            "recovery = {{ shift = \"{shift}\", original = \"{original}\", \
             shifted = \"{shifted}\", finetuned = \"{finetuned}\" }}"
        )
    };

    // Rules the loader checks before anything runs (exit code 2).
    for (body, expect) in [
        (
            "recovery = { shift = \"shift\", original = \"words_original\", shifted = \"words_shifted\" }"
                .to_string(),
            "finetuned",
        ),
        (
            recovery("shift", "words_original", "words_original", "words_finetuned"),
            "names the same stage as `recovery.original`",
        ),
        (
            recovery("shift", "shift", "words_shifted", "words_finetuned"),
            "names the shift stage itself",
        ),
        (
            "ground = \"words_original\"\nmetrics = [\"recovery\"]".to_string(),
            "`recovery` needs `recovery`",
        ),
        (
            recovery("nope", "words_original", "words_shifted", "words_finetuned"),
            "unknown stage `nope`",
        ),
    ] {
        let out = xlvlm(&store)
            .arg("validate")
            .arg(write("spec", &body))
            .output()
            .unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{body}: {err}");
        assert!(err.contains(expect), "{body}: expected {expect:?} in {err}");
    }

    // Inputs of the wrong kind or from another analysis fail when the evaluate stage runs,
    // naming the stage at fault.
    for (body, expect) in [
        (
            recovery(
                "dictionary",
                "words_original",
                "words_shifted",
                "words_finetuned",
            ),
            "`dictionary` (kind `decompose`) has no concept sets; `recovery.shift` must name a shift stage",
        ),
        (
            recovery("shift", "original", "words_shifted", "words_finetuned"),
            "`original` (kind `import`) is not a ground stage; `recovery.original` must name a ground stage",
        ),
        (
            recovery(
                "shift",
                "words_original",
                "words_shifted",
                "other_finetuned",
            ),
            "`other_finetuned` grounds the concepts of another stage than `recovery.shift` = `shift`",
        ),
        (
            recovery(
                "shift",
                "words_shifted",
                "words_original",
                "words_finetuned",
            ),
            "`words_shifted` grounds the set `shifted`; `recovery.original` must name a ground stage with `concepts = \"shift\"` and `set = \"original\"`",
        ),
        (
            recovery("shift", "words_original", "words_shifted", "fewer_words"),
            "differ in `num_grounded_text_tokens`",
        ),
    ] {
        let out = xlvlm(&store)
            .arg("run")
            .arg(write("inputs", &body))
            .output()
            .unwrap();
        let err = stderr(&out);
        assert!(!out.status.success(), "{body}: ran");
        assert!(err.contains(expect), "{body}: expected {expect:?} in {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}
