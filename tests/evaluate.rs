//! The `evaluate` stage end to end on hand-written generations files (imported as tables with the
//! generations columns): VQA accuracy against the official evaluator's goldens (the metrics
//! crate's fixtures, made by tools/refgen/metrics_goldens.py), xl-vlms' formula, target rates
//! against a baseline with whole-word matching, captioning scores, dictionary metrics, and a
//! sweep table gathering every instance of a swept evaluate stage.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use xlvlm_store::{Column, FeatureTable, Store, read_parquet, write_parquet};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn xlvlm(store: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_xlvlm"));
    c.env("XLVLM_STORE", store).env_remove("RUST_LOG");
    c
}

fn run_ok(store: &Path, file: &Path) -> Output {
    let out = xlvlm(store).arg("run").arg(file).output().unwrap();
    assert!(
        out.status.success(),
        "xlvlm run failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The artifact folder a stage instance's name points at.
fn artifact(store: &Path, experiment: &str, label: &str) -> PathBuf {
    let s = Store::open(store).unwrap();
    let key = s
        .resolve_name(experiment, &xlvlm_dag::name_file(label))
        .unwrap()
        .unwrap_or_else(|| panic!("no artifact named {label}"));
    s.artifact_dir(&key)
}

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

fn strings(v: &Value) -> Vec<String> {
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
                strings(&q["answers"]),
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
    // a, b (case and punctuation count as changes: `no.` vs `Yes`), c, d changed; e, f did not.
    assert_eq!(s["num_preds_changed"], 4);
    assert_eq!(s["num_with_baseline"], 6);
    assert_eq!(s["percent_preds_with_toi"], 50.0);
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
            references: strings(&refs[id]),
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
"#,
    )
    .unwrap();
    let store = dir.path().join("store");
    run_ok(&store, &file);
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
