//! The `evaluate` stage end to end on hand-written generations files (imported as tables with the
//! generations columns): VQA accuracy against the official evaluator's goldens (the metrics
//! crate's fixtures, made by tools/refgen/metrics_goldens.py), xl-vlms' formula, target rates
//! against a baseline with whole-word matching, captioning scores, dictionary metrics, and a
//! sweep table gathering every instance of a swept evaluate stage; and the whole chain on real
//! generations: extract → shift → steer with an alpha sweep → evaluate → sweep table, with the
//! concept dictionary of the same features grounded through the tiny LLaVA.

mod support;

use std::path::Path;

use serde_json::Value;
use support::{artifact, read_table, repo, run_ok, world_experiment, xlvlm};
use xlvlm_store::{Column, FeatureTable, read_parquet, write_parquet};

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// One generated answer or caption, as extract and steer write them.
struct Row<'a> {
    id: &'a str,
    task: &'a str,
    generation: &'a str,
    references: Vec<String>,
    answer_type: &'a str,
    question_type: &'a str,
}

/// Writes a generations table with the columns extract and steer write, plus a one-wide vector
/// column so that the `import` stage accepts it.
fn write_generations(path: &Path, rows: &[Row<'_>]) {
    let s = |f: &dyn Fn(&Row<'_>) -> String| Column::Utf8(rows.iter().map(f).collect());
    let table = FeatureTable::new()
        .with_column("sample_id", s(&|r| r.id.to_string()))
        .with_column("image", s(&|r| format!("images/{}.png", r.id)))
        .with_column("task", s(&|r| r.task.to_string()))
        .with_column("prompt", s(&|_| "Answer.".to_string()))
        .with_column("generation", s(&|r| r.generation.to_string()))
        .with_column("num_tokens", Column::Int64(vec![3; rows.len()]))
        .with_column("finish_reason", s(&|_| "eos".to_string()))
        .with_column(
            "response",
            s(&|r| r.references.first().cloned().unwrap_or_default()),
        )
        .with_column(
            "references",
            s(&|r| serde_json::to_string(&r.references).unwrap()),
        )
        .with_column("answer_type", s(&|r| r.answer_type.to_string()))
        .with_column("question_type", s(&|r| r.question_type.to_string()))
        .with_column(
            "vector",
            Column::Vector {
                dim: 1,
                values: vec![0.0; rows.len()],
                half: false,
            },
        );
    write_parquet(path, &table).unwrap();
}

fn json_strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

/// The official evaluator's golden questions as VQA generations.
fn golden_rows(g: &Value) -> Vec<(String, String, Vec<String>, String, String)> {
    g["questions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| {
            (
                format!("q{}", q["question_id"]),
                q["prediction"].as_str().unwrap().to_string(),
                json_strings(&q["answers"]),
                q["answer_type"].as_str().unwrap().to_string(),
                q["question_type"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn vqa_rows(rows: &[(String, String, Vec<String>, String, String)]) -> Vec<Row<'_>> {
    rows.iter()
        .map(|(id, p, refs, at, qt)| Row {
            id,
            task: "vqa",
            generation: p,
            references: refs.clone(),
            answer_type: at,
            question_type: qt,
        })
        .collect()
}

#[test]
fn vqa_accuracy_matches_the_official_evaluator_and_xl_vlms_formula() {
    let official = json(&repo().join("crates/metrics/tests/fixtures/vqa_official.json"));
    let xl = json(&repo().join("crates/metrics/tests/fixtures/vqa_xl_vlms.json"));
    let rows = golden_rows(&official);
    let dir = tempfile::tempdir().unwrap();
    write_generations(&dir.path().join("gens.parquet"), &vqa_rows(&rows));
    let file = dir.path().join("exp.toml");
    std::fs::write(
        &file,
        r#"
[experiment]
name = "vqa"

[stage.gens]
kind = "import"
path = "gens.parquet"

[stage.official]
kind = "evaluate"
input = "gens"

[stage.seed]
kind = "evaluate"
input = "gens"
vqa_accuracy = "xl-vlms"
metrics = ["vqa_accuracy"]
"#,
    )
    .unwrap();
    let store = dir.path().join("store");
    run_ok(&store, &file);

    let a = artifact(&store, "vqa", "official");
    let m = json(&a.join("metrics.json"));
    assert_eq!(m["vqa_accuracy"]["overall"], official["overall"]);
    assert_eq!(
        m["vqa_accuracy"]["per_answer_type"],
        official["per_answer_type"]
    );
    assert_eq!(
        m["vqa_accuracy"]["per_question_type"],
        official["per_question_type"]
    );
    let questions = m["vqa_accuracy"]["questions"].as_array().unwrap();
    for (q, g) in questions
        .iter()
        .zip(official["questions"].as_array().unwrap())
    {
        assert_eq!(q["sample_id"], format!("q{}", g["question_id"]));
        assert_eq!(
            q["accuracy"], g["accuracy"],
            "{}: {}",
            g["note"], g["prediction"]
        );
    }
    // Per sample, in scores.parquet too.
    let scores = read_parquet(&a.join("scores.parquet")).unwrap();
    let golden_acc: Vec<f64> = official["questions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["accuracy"].as_f64().unwrap())
        .collect();
    assert_eq!(scores.floats("vqa_accuracy").unwrap(), golden_acc);
    // The one-row table holds the same numbers, with column-safe answer-type names.
    let t = read_parquet(&a.join("metrics.parquet")).unwrap();
    assert_eq!(t.num_rows(), 1);
    assert_eq!(
        t.floats("vqa_accuracy").unwrap()[0],
        official["overall"].as_f64().unwrap()
    );
    assert_eq!(
        t.floats("vqa_accuracy_yes_no").unwrap()[0],
        official["per_answer_type"]["yes/no"].as_f64().unwrap()
    );
    assert_eq!(t.ints("num_samples").unwrap()[0], rows.len() as i64);
    // Answer counts sum over types, and predicted types cover every question.
    let overall: u64 = m["answer_counts"]["overall"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(overall, rows.len() as u64);
    let typed: u64 = m["predicted_answer_types"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(typed, rows.len() as u64);
    // No target words given: no target-rate section.
    assert!(m.get("target_rate").is_none());

    let s = json(&artifact(&store, "vqa", "seed").join("metrics.json"));
    assert_eq!(s["vqa_accuracy"]["mode"], "xl-vlms");
    let close = |a: &Value, b: &Value| (a.as_f64().unwrap() - b.as_f64().unwrap()).abs() < 1e-9;
    assert!(close(&s["vqa_accuracy"]["overall"], &xl["overall"]));
    for (t, v) in xl["per_answer_type"].as_object().unwrap() {
        assert!(close(&s["vqa_accuracy"]["per_answer_type"][t], v), "{t}");
    }
    // Only the metric asked for.
    assert!(s.get("answer_counts").is_none());
}

#[test]
fn target_rates_match_whole_words_and_count_changes_against_the_baseline() {
    let yes = || vec!["yes".to_string(); 10];
    let no = || vec!["no".to_string(); 10];
    let steered = [
        ("a", "No", yes()),            // flipped yes → no
        ("b", "no.", yes()),           // flipped, punctuation
        ("c", "There is snow", yes()), // `snow` is not `no`
        ("d", "none", no()),           // `none` is not `no`
        ("e", "no", no()),             // no, but the targets say no
        ("f", "yes", yes()),           // unchanged
    ];
    let baseline = [
        ("a", "yes"),
        ("b", "Yes"),
        ("c", "yes"),
        ("d", "no"),
        ("e", "no"),
        ("f", "yes"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<Row<'_>> = steered
        .iter()
        .map(|(id, g, refs)| Row {
            id,
            task: "vqa",
            generation: g,
            references: refs.clone(),
            answer_type: "yes/no",
            question_type: "is the",
        })
        .collect();
    write_generations(&dir.path().join("steered.parquet"), &rows);
    let base_rows: Vec<Row<'_>> = baseline
        .iter()
        .zip(&steered)
        .map(|((id, g), (_, _, refs))| Row {
            id,
            task: "vqa",
            generation: g,
            references: refs.clone(),
            answer_type: "yes/no",
            question_type: "is the",
        })
        .collect();
    write_generations(&dir.path().join("base.parquet"), &base_rows);
    let file = dir.path().join("exp.toml");
    std::fs::write(
        &file,
        r#"
[experiment]
name = "rates"

[stage.steered]
kind = "import"
path = "steered.parquet"

[stage.base]
kind = "import"
path = "base.parquet"

[stage.eval]
kind = "evaluate"
input = "steered"
baseline = "base"
prediction_words = ["no"]
target_words = ["yes"]
"#,
    )
    .unwrap();
    let store = dir.path().join("store");
    run_ok(&store, &file);
    let m = json(&artifact(&store, "rates", "eval").join("metrics.json"));
    let s = &m["scalars"];
    // a, b, e mention `no` as a word; c (`snow`) and d (`none`) do not.
    assert_eq!(s["num_preds_with_toi"], 3);
    // ...of which a and b have `yes` in their answers.
    assert_eq!(s["num_preds_and_targets_with_toi"], 2);
    // ...of which a and b had `yes` in the baseline.
    assert_eq!(s["num_preds_and_baseline_preds_with_toi"], 2);
    // Baselines with `yes`: a, b, c, f; two of them flipped to `no`.
    assert_eq!(s["num_baseline_preds_with_toi"], 4);
    assert_eq!(s["percent_flipped"], 50.0);
    // a, b (case and punctuation count as changes: `no.` vs `Yes`), c, d changed; e, f did not.
    assert_eq!(s["num_preds_changed"], 4);
    assert_eq!(s["num_with_baseline"], 6);
    assert_eq!(s["percent_preds_with_toi"], 50.0);
    // The same, sample by sample.
    let t = read_parquet(&artifact(&store, "rates", "eval").join("scores.parquet")).unwrap();
    assert_eq!(
        t.strings("sample_id").unwrap(),
        ["a", "b", "c", "d", "e", "f"]
    );
    assert_eq!(
        t.bools("has_toi").unwrap(),
        [true, true, false, false, true, false]
    );
    assert_eq!(
        t.bools("changed").unwrap(),
        [true, true, true, true, false, false]
    );
    assert_eq!(t.strings("baseline").unwrap()[1], "Yes");
    // and VQA accuracy still runs on the same rows: a, b, c wrong; d (`none` → `0`) wrong; e, f right.
    assert!((s["vqa_accuracy"].as_f64().unwrap() - 2.0 / 6.0 * 100.0).abs() < 0.01);
}

#[test]
fn captioning_scores_match_the_metrics_crate_and_word_rates_count_words() {
    let g = json(&repo().join("crates/metrics/tests/fixtures/captions.json"));
    let dir = tempfile::tempdir().unwrap();
    let (hyps, refs) = (&g["raw_res"], &g["raw_gts"]);
    let ids: Vec<String> = hyps.as_object().unwrap().keys().cloned().collect();
    let rows: Vec<Row<'_>> = ids
        .iter()
        .map(|id| Row {
            id,
            task: "captioning",
            generation: hyps[id].as_str().unwrap(),
            references: json_strings(&refs[id]),
            answer_type: "",
            question_type: "",
        })
        .collect();
    write_generations(&dir.path().join("caps.parquet"), &rows);
    let file = dir.path().join("exp.toml");
    std::fs::write(
        &file,
        r#"
[experiment]
name = "caps"

[stage.caps]
kind = "import"
path = "caps.parquet"

[stage.eval]
kind = "evaluate"
input = "caps"
word_classes = ["colors"]

[stage.full_meteor]
kind = "evaluate"
input = "caps"
metrics = ["captioning"]
meteor = { synsets = "wordnet/english.synsets", exceptions = "wordnet/english.exceptions", paraphrases = "paraphrase-en-subset.txt" }
"#,
    )
    .unwrap();
    // The parts of METEOR's WordNet data and paraphrase table that these captions reach (the
    // metrics crate's fixtures, cut from the full files by its refgen script).
    let fixtures = repo().join("crates/metrics/tests/fixtures");
    std::fs::create_dir(dir.path().join("wordnet")).unwrap();
    for f in ["english.synsets", "english.exceptions"] {
        std::fs::copy(
            fixtures.join("wordnet_subset").join(f),
            dir.path().join("wordnet").join(f),
        )
        .unwrap();
    }
    std::fs::copy(
        fixtures.join("paraphrase_subset/paraphrase-en-subset.txt"),
        dir.path().join("paraphrase-en-subset.txt"),
    )
    .unwrap();
    let store = dir.path().join("store");
    run_ok(&store, &file);
    // With all four modules, METEOR is pycocoevalcap's.
    let full =
        read_parquet(&artifact(&store, "caps", "full_meteor").join("metrics.parquet")).unwrap();
    let (a, b) = (
        full.floats("meteor").unwrap()[0],
        g["scores"]["METEOR"].as_f64().unwrap(),
    );
    assert!((a - b).abs() < 1e-9, "full meteor: {a} vs {b}");
    let m = json(&artifact(&store, "caps", "eval").join("metrics.json"));
    assert_eq!(m["scalars"]["num_samples"], ids.len());
    // pycocoevalcap's corpus scores on the same captions (BLEU, ROUGE-L, CIDEr-D to 1e-6).
    let corpus = &g["scores"];
    let s = &m["scalars"];
    for (ours, theirs) in [
        ("bleu_1", "Bleu_1"),
        ("bleu_2", "Bleu_2"),
        ("bleu_3", "Bleu_3"),
        ("bleu_4", "Bleu_4"),
        ("rouge_l", "ROUGE_L"),
        ("cider", "CIDEr"),
    ] {
        let (a, b) = (s[ours].as_f64().unwrap(), corpus[theirs].as_f64().unwrap());
        assert!((a - b).abs() < 1e-6, "{ours}: {a} vs {b}");
    }
    // METEOR runs its exact and stem modules (no synonym or paraphrase data at run time).
    let (a, b) = (
        s["meteor"].as_f64().unwrap(),
        corpus["METEOR_exact_stem"].as_f64().unwrap(),
    );
    assert!((a - b).abs() < 1e-3, "meteor: {a} vs {b}");
    let hyp_texts: Vec<String> = ids
        .iter()
        .map(|id| hyps[id].as_str().unwrap().to_string())
        .collect();
    let expected = xlvlm_metrics::steering::word_class_rates(
        &hyp_texts,
        &[xlvlm_metrics::words::WordClass::Colors],
    );
    // (compared in the Parquet table: JSON parsing may move the last bit of a float)
    let a = artifact(&store, "caps", "eval");
    let t = read_parquet(&a.join("metrics.parquet")).unwrap();
    assert_eq!(
        t.floats("rate_colors").unwrap()[0],
        expected["colors"].percent_captions_with_word
    );
    assert_eq!(
        m["word_rates"]["colors"]["captions_with_word"],
        expected["colors"].captions_with_word
    );
    assert!(expected["colors"].captions_with_word > 0);
    assert!(m.get("vqa_accuracy").is_none());
}

#[test]
fn a_sweep_table_has_one_row_per_point_and_a_plot() {
    let official = json(&repo().join("crates/metrics/tests/fixtures/vqa_official.json"));
    let rows = golden_rows(&official);
    let dir = tempfile::tempdir().unwrap();
    // Two generation files: all golden questions, and the first twenty.
    write_generations(&dir.path().join("all.parquet"), &vqa_rows(&rows));
    write_generations(&dir.path().join("some.parquet"), &vqa_rows(&rows[..20]));
    let file = dir.path().join("exp.toml");
    std::fs::write(
        &file,
        r#"
[experiment]
name = "sweep"

[stage.gens]
kind = "import"
path = { sweep = ["all.parquet", "some.parquet"] }
shard_rows = { sweep = [7, 1000] }

[stage.eval]
kind = "evaluate"
input = "gens"
metrics = ["vqa_accuracy"]

[stage.table]
kind = "evaluate"
collect = "eval"
plot = { x = "gens.shard_rows", y = ["vqa_accuracy", "vqa_accuracy_other"] }
"#,
    )
    .unwrap();
    let store = dir.path().join("store");
    run_ok(&store, &file);
    let a = artifact(&store, "sweep", "table");
    let t = read_parquet(&a.join("table.parquet")).unwrap();
    assert_eq!(t.num_rows(), 4);
    let names: Vec<&str> = t.columns.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(&names[..3], ["gens.path", "gens.shard_rows", "instance"]);
    assert!(names.contains(&"vqa_accuracy") && names.contains(&"num_samples"));
    let shard_rows = t.floats("gens.shard_rows").unwrap();
    let paths = t.strings("gens.path").unwrap();
    let instances = t.strings("instance").unwrap();
    let acc = t.floats("vqa_accuracy").unwrap();
    let n = t.ints("num_samples").unwrap();
    for r in 0..4 {
        // Each row holds its instance's own metrics.
        let own = read_parquet(&artifact(&store, "sweep", &instances[r]).join("metrics.parquet"))
            .unwrap();
        assert_eq!(acc[r], own.floats("vqa_accuracy").unwrap()[0]);
        assert_eq!(
            n[r],
            if paths[r].contains("all") { 148 } else { 20 },
            "{}",
            instances[r]
        );
        assert!(shard_rows[r] == 7.0 || shard_rows[r] == 1000.0);
        if paths[r].contains("all") {
            assert_eq!(acc[r], official["overall"].as_f64().unwrap());
        }
    }
    let csv = std::fs::read_to_string(a.join("table.csv")).unwrap();
    assert_eq!(csv.lines().count(), 5);
    assert!(csv.starts_with("gens.path,gens.shard_rows,instance,"));
    let svg = std::fs::read_to_string(a.join("plot.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("vqa_accuracy_other"));
}

#[test]
fn bad_evaluate_parameters_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    write_generations(
        &dir.path().join("g.parquet"),
        &[Row {
            id: "1",
            task: "vqa",
            generation: "yes",
            references: vec!["yes".into()],
            answer_type: "yes/no",
            question_type: "is",
        }],
    );
    let store = dir.path().join("store");
    for (body, expect) in [
        ("baseline = \"g\"", "needs `input`"),
        ("input = \"g\"\nprediction_words = [\"no\"]", "target_words"),
        (
            "input = \"g\"\nmetrics = [\"overlap\"]",
            "`overlap` needs `ground`",
        ),
        ("input = \"g\"\nplot = { y = [\"a\"] }", "needs `collect`"),
        ("", "nothing to evaluate"),
    ] {
        let file = dir.path().join("bad.toml");
        std::fs::write(
            &file,
            format!(
                "[experiment]\nname = \"bad\"\n[stage.g]\nkind = \"import\"\npath = \"g.parquet\"\n\
                 [stage.e]\nkind = \"evaluate\"\n{body}\n"
            ),
        )
        .unwrap();
        let out = xlvlm(&store).arg("validate").arg(&file).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{body}: {err}");
        assert!(err.contains(expect), "{body}: expected {expect:?} in {err}");
    }
    // A table without the generations columns names what is missing.
    let features = FeatureTable::new()
        .with_column("sample_id", Column::Utf8(vec!["1".into()]))
        .with_column(
            "vector",
            Column::Vector {
                dim: 1,
                values: vec![1.0],
                half: false,
            },
        );
    write_parquet(&dir.path().join("f.parquet"), &features).unwrap();
    let file = dir.path().join("nogen.toml");
    std::fs::write(
        &file,
        "[experiment]\nname = \"nogen\"\n[stage.f]\nkind = \"import\"\npath = \"f.parquet\"\n\
         [stage.e]\nkind = \"evaluate\"\ninput = \"f\"\n",
    )
    .unwrap();
    let out = xlvlm(&store).arg("run").arg(&file).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("no string column `task`"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn steering_generations_are_evaluated_per_alpha_and_gathered_into_a_table() {
    let dir = tempfile::tempdir().unwrap();
    let file = world_experiment(
        dir.path(),
        "chain",
        r#"
[stage.base]
kind = "extract"
model = "tiny"
data = "captions"
hooks = ["lm.layers.1"]
generate = { max_new_tokens = 6 }
tokens = { mean_before = [] }

[stage.answers]
kind = "extract"
model = "tiny"
data = "vqa"
hooks = ["lm.layers.1"]
generate = { max_new_tokens = 3 }
tokens = { among = "generated", index = -1 }

[stage.shift]
kind = "shift"
method = "shift_of_means"
source = "base"
target = "answers"

[stage.steered]
kind = "steer"
model = "tiny"
data = "captions"
vector = "shift"
hooks = ["lm.layers.0", "lm.layers.1"]
alpha = { sweep = [0, 400] }
generate = { max_new_tokens = 6 }

[stage.eval]
kind = "evaluate"
input = "steered"
baseline = "base"
prediction_words = ["red"]
target_words = ["red"]

[stage.table]
kind = "evaluate"
collect = "eval"

[stage.accuracy]
kind = "evaluate"
input = "answers"

[stage.matrix]
kind = "aggregate"
features = "base"

[stage.concepts]
kind = "decompose"
input = "matrix"
method = "kmeans"
num_concepts = 2

[stage.grounding]
kind = "ground"
concepts = "concepts"
model = "tiny"
features = "base"
num_grounded_text_tokens = 3
num_most_activating_samples = 2

[stage.grounding_from_data]
kind = "ground"
concepts = "concepts"
model = "tiny"
data = "captions"
num_grounded_text_tokens = 3
num_most_activating_samples = 2
"#,
    );
    let store = dir.path().join("store");
    run_ok(&store, &file);

    // One row per alpha, with the instance's own metrics.
    let a = artifact(&store, "chain", "table");
    let t = read_parquet(&a.join("table.parquet")).unwrap();
    assert_eq!(t.num_rows(), 2);
    assert_eq!(t.floats("steered.alpha").unwrap(), [0.0, 400.0]);
    let changed = t.ints("num_preds_changed").unwrap();
    // alpha = 0 reproduces the baseline's generations; alpha = 400 changes some.
    assert_eq!(changed[0], 0);
    assert!(changed[1] > 0);
    assert_eq!(t.ints("num_samples").unwrap(), [8, 8]);
    for m in [
        "bleu_4",
        "meteor",
        "rouge_l",
        "cider",
        "rate_colors",
        "num_preds_with_toi",
    ] {
        assert!(t.column(m).is_some(), "the table has no `{m}`");
    }
    let one =
        read_parquet(&artifact(&store, "chain", "eval[steered.alpha=400]").join("metrics.parquet"))
            .unwrap();
    assert_eq!(
        t.floats("cider").unwrap()[1],
        one.floats("cider").unwrap()[0]
    );
    let svg = std::fs::read_to_string(a.join("plot.svg")).unwrap();
    assert!(svg.contains("percent_preds_changed") && svg.contains("steered.alpha"));
    // The same plot as a picture: lines in the first series colours and dark label text.
    let png = xlvlm_processor::image_crate::open(a.join("plot.png"))
        .unwrap()
        .to_rgb8();
    assert_eq!(png.dimensions(), (720, 480));
    let count = |want: [u8; 3]| {
        let near = |p: &[u8; 3]| p.iter().zip(want).all(|(&a, b)| a.abs_diff(b) < 40);
        png.pixels().filter(|p| near(&p.0)).count()
    };
    // (the first series lies under the third: both are 0 at every alpha)
    assert!(count([255, 127, 14]) > 200 && count([44, 160, 44]) > 200);
    let dark = png.pixels().filter(|p| p.0.iter().all(|&c| c < 60)).count();
    assert!(dark > 500, "{dark} dark pixels: no text or axes drawn");

    // Scores computed here from the generation files match the metrics crate directly.
    let gens = read_table(
        &artifact(&store, "chain", "steered[alpha=400]"),
        "generations",
    );
    let ids = support::strings(&gens, "sample_id");
    let hyps: std::collections::BTreeMap<String, String> = ids
        .iter()
        .cloned()
        .zip(support::strings(&gens, "generation"))
        .collect();
    let refs: std::collections::BTreeMap<String, Vec<String>> = ids
        .iter()
        .cloned()
        .zip(
            support::strings(&gens, "references")
                .iter()
                .map(|r| serde_json::from_str(r).unwrap()),
        )
        .collect();
    let direct = xlvlm_metrics::caption_scores(&hyps, &refs).unwrap();
    assert_eq!(one.floats("cider").unwrap()[0], direct.corpus.cider);
    assert_eq!(one.floats("bleu_1").unwrap()[0], direct.corpus.bleu[0]);

    // VQA accuracy of the tiny model's answers: a percentage over the 16 questions.
    let acc = read_parquet(&artifact(&store, "chain", "accuracy").join("metrics.parquet")).unwrap();
    assert_eq!(acc.ints("num_samples").unwrap()[0], 16);
    let overall = acc.floats("vqa_accuracy").unwrap()[0];
    assert!((0.0..=100.0).contains(&overall));

    // The dictionary of the captions' features, grounded: two concepts with at most three
    // filtered words each, and their most-activating images (which exist) in a two-row grid.
    let g = json(&artifact(&store, "chain", "grounding").join("grounding.json"));
    let concepts = g["concepts"].as_array().unwrap();
    assert_eq!(concepts.len(), 2);
    for c in concepts {
        let words = c["words"].as_array().unwrap();
        assert!(words.len() <= 3);
        for w in words {
            assert!(xlvlm_metrics::vocabulary::is_grounding_word(
                w["word"].as_str().unwrap()
            ));
        }
        for s in c["samples"].as_array().unwrap() {
            assert!(Path::new(s["image"].as_str().unwrap()).is_file(), "{s}");
        }
    }
    // The dataset gives the same images as the features' `image` column.
    let d = json(&artifact(&store, "chain", "grounding_from_data").join("grounding.json"));
    assert_eq!(d["concepts"], g["concepts"]);
    let manifest = json(&artifact(&store, "chain", "grounding").join("manifest.json"));
    assert_eq!(manifest["summary"]["missing_images"], 0);
    assert_eq!(manifest["summary"]["grid"], true);
}
