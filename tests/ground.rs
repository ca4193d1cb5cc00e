//! The `ground` stage end to end: imported features → `simple` decomposition (whose concepts are
//! the largest rows, so they are known exactly) → grounding through a checkpoint whose LM head
//! is planted: a concept along a direction grounds to the tokens whose head rows point there, in
//! logit order, with stop words, short words and repeats filtered; the final norm option changes
//! the words the way RMSNorm says; most-activating samples and the concept grid follow the
//! activations.

mod support;

use std::path::Path;

use serde_json::Value;
use support::{artifact, xlvlm};
use xlvlm_processor::image_crate::{Rgb, RgbImage};
use xlvlm_store::{Column, FeatureTable, read_parquet, write_parquet};

const HIDDEN: usize = support::TINY_HIDDEN;

/// The tiny LLaVA fixture's config and tokenizer, with a model.safetensors holding only what
/// grounding reads: the embedding (which names the key layout), a planted LM head and a final
/// norm weight.
fn planted_checkpoint(dir: &Path) {
    let mut norm = vec![1f32; HIDDEN];
    norm[1] = 0.01;
    support::planted_checkpoint(
        dir,
        &[
            (329, 0, 5.0),
            (384, 0, 4.5),
            (382, 0, 4.0),
            (390, 0, 3.5),
            (385, 0, 3.0),
            (265, 0, 2.5),
            (389, 0, 2.0),
            (312, 0, 1.5),
            (392, 1, 5.0),
            (391, 1, 4.0),
            (389, 1, 3.0),
        ],
        Some(&norm),
    );
}

/// Six samples: two large rows (the `simple` concepts: 10·e0 and e0 + 10·e1) and four small
/// ones, each with a one-colour image.
fn features(dir: &Path) {
    let rows: [(&str, [f32; 2], [u8; 3]); 6] = [
        ("s0", [10.0, 0.0], [255, 0, 0]),
        ("s1", [1.0, 10.0], [0, 255, 0]),
        ("s2", [2.0, 0.0], [0, 0, 255]),
        ("s3", [0.0, 2.0], [255, 255, 0]),
        ("s4", [0.5, 0.5], [0, 255, 255]),
        ("s5", [1.0, 0.0], [255, 0, 255]),
    ];
    let mut values = Vec::new();
    let mut images = Vec::new();
    for (id, v, rgb) in rows {
        let mut row = vec![0f32; HIDDEN];
        row[..2].copy_from_slice(&v);
        values.extend(row);
        let path = dir.join(format!("{id}.png"));
        RgbImage::from_pixel(20, 10, Rgb(rgb)).save(&path).unwrap();
        images.push(path.display().to_string());
    }
    let table = FeatureTable::new()
        .with_column(
            "sample_id",
            Column::Utf8(rows.iter().map(|r| r.0.to_string()).collect()),
        )
        .with_column("image", Column::Utf8(images))
        .with_column(
            "vector",
            Column::Vector {
                dim: HIDDEN,
                values,
                half: false,
            },
        );
    write_parquet(&dir.join("features.parquet"), &table).unwrap();
    // Held-out samples t0, t1 (the vectors of s0, s1) for test grounding.
    let (_, all) = table.vector("vector").unwrap();
    let heldout = FeatureTable::new()
        .with_column("sample_id", Column::Utf8(vec!["t0".into(), "t1".into()]))
        .with_column(
            "vector",
            Column::Vector {
                dim: HIDDEN,
                values: all[..2 * HIDDEN].to_vec(),
                half: false,
            },
        );
    write_parquet(&dir.join("heldout.parquet"), &heldout).unwrap();
}

/// Reference captions of the held-out t0 and t1 as a generations table.
fn captions(dir: &Path) {
    let refs = [
        ("t0", vec!["A dog on the green grass.", "a dog"]),
        ("t1", vec!["A red picture."]),
    ];
    let table = FeatureTable::new()
        .with_column(
            "sample_id",
            Column::Utf8(refs.iter().map(|r| r.0.to_string()).collect()),
        )
        .with_column("task", Column::Utf8(vec!["caption".into(); 2]))
        .with_column("generation", Column::Utf8(vec![String::new(); 2]))
        .with_column(
            "references",
            Column::Utf8(
                refs.iter()
                    .map(|r| serde_json::to_string(&r.1).unwrap())
                    .collect(),
            ),
        )
        .with_column(
            "vector",
            Column::Vector {
                dim: 1,
                values: vec![0.0; 2],
                half: false,
            },
        );
    write_parquet(&dir.join("captions.parquet"), &table).unwrap();
}

fn words_of(concept: &Value) -> Vec<String> {
    concept["words"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["word"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn planted_concepts_ground_to_their_tokens_and_most_activating_images() {
    let dir = tempfile::tempdir().unwrap();
    planted_checkpoint(&dir.path().join("ckpt"));
    features(dir.path());
    captions(dir.path());
    let file = dir.path().join("exp.toml");
    std::fs::write(
        &file,
        r#"
[experiment]
name = "ground"

[models.tiny]
path = "ckpt"

[stage.feats]
kind = "import"
path = "features.parquet"

[stage.heldout]
kind = "import"
path = "heldout.parquet"

[stage.concepts]
kind = "decompose"
input = "feats"
project = "heldout"
method = "simple"
num_concepts = 2

[stage.words]
kind = "ground"
concepts = "concepts"
model = "tiny"
features = "feats"
num_grounded_text_tokens = 3
num_most_activating_samples = 3
thumbnail_size = 16

[stage.normed]
from = "words"
final_norm = true

[stage.dict]
kind = "evaluate"
ground = "words"

[stage.caps]
kind = "import"
path = "captions.parquet"

[stage.test]
kind = "evaluate"
ground = "words"
activations = "concepts"
captions = "caps"
"#,
    )
    .unwrap();
    let store = dir.path().join("store");
    let out = xlvlm(&store).arg("run").arg(&file).output().unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Which concept is which: read the decomposition.
    let concepts =
        read_parquet(&artifact(&store, "ground", "concepts").join("concepts.parquet")).unwrap();
    let (dim, values) = concepts.vector("vector").unwrap();
    assert_eq!(dim, HIDDEN);
    let e0_concept = if values[0] == 10.0 { 0 } else { 1 };
    let e1_concept = 1 - e0_concept;

    let a = artifact(&store, "ground", "words");
    let g: Value =
        serde_json::from_str(&std::fs::read_to_string(a.join("grounding.json")).unwrap()).unwrap();
    let c = g["concepts"].as_array().unwrap();
    // Along e0: `the`/`The` and `man` are stop words, `a` is too short; `3` is a number.
    assert_eq!(words_of(&c[e0_concept]), ["dog", "green", "3"]);
    assert_eq!(words_of(&c[e1_concept]), ["picture", "image", "red"]);
    // Scores are the logits: 10 · 4 for `dog`.
    assert_eq!(c[e0_concept]["words"][0]["score"], 40.0);
    assert_eq!(c[e0_concept]["words"][0]["token_id"], 382);

    // The final norm scales dimension 1 by 0.01: e0 + 10·e1 then points mostly along e0.
    let n: Value = serde_json::from_str(
        &std::fs::read_to_string(artifact(&store, "ground", "normed").join("grounding.json"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(words_of(&n["concepts"][e1_concept]), ["dog", "green", "3"]);

    // Most-activating samples: the concept's own row, then the nearest rows.
    let samples = |k: usize| -> Vec<String> {
        c[k]["samples"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["sample_id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(samples(e0_concept), ["s0", "s2", "s5"]);
    assert_eq!(samples(e1_concept)[0], "s1");
    assert_eq!(c[e0_concept]["samples"][0]["activation"], 1.0);
    assert!(
        c[e0_concept]["samples"][0]["image"]
            .as_str()
            .unwrap()
            .ends_with("s0.png")
    );

    // The tables say the same, one row per (concept, rank).
    let w = read_parquet(&a.join("words.parquet")).unwrap();
    assert_eq!(w.num_rows(), 6);
    let s = read_parquet(&a.join("samples.parquet")).unwrap();
    assert_eq!(s.num_rows(), 6);
    assert_eq!(
        s.strings("image").unwrap().len(),
        s.strings("sample_id").unwrap().len()
    );

    // The grid: one row of three 16-px tiles per concept with 4-px gutters; the first tile of
    // the e0 concept is its own (red) image.
    let grid = xlvlm_processor::image_crate::open(a.join("grid.png"))
        .unwrap()
        .to_rgb8();
    assert_eq!(grid.dimensions(), (4 + 3 * 20, 4 + 2 * 20));
    let y = 4 + e0_concept as u32 * 20 + 8;
    assert_eq!(grid.get_pixel(4 + 8, y).0, [255, 0, 0]);
    let text = std::fs::read_to_string(a.join("grid.txt")).unwrap();
    assert!(text.contains("dog, green, 3"), "{text}");
    // The SVG grid: each row under its concept's words, the six tiles embedded.
    let svg = std::fs::read_to_string(a.join("grid.svg")).unwrap();
    assert!(svg.contains(&format!("concept {e0_concept}: dog, green, 3")));
    assert_eq!(svg.matches("<image ").count(), 6);
    assert_eq!(svg.matches("data:image/png;base64,").count(), 6);

    // Dictionary overlap of the two word sets: they share nothing.
    let m: Value = serde_json::from_str(
        &std::fs::read_to_string(artifact(&store, "ground", "dict").join("metrics.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(m["overlap"]["metric"], 0.0);
    assert!(m.get("test_grounding").is_none());

    // Test grounding on the held-out samples (the decomposition's projected.parquet): t0's top
    // concept (dog, green, 3) finds two of its three words in t0's captions, the other concept
    // none; t1's top concept (picture, image, red) finds two.
    let t: Value = serde_json::from_str(
        &std::fs::read_to_string(artifact(&store, "ground", "test").join("metrics.json")).unwrap(),
    )
    .unwrap();
    let close = |v: &Value, x: f64| (v.as_f64().unwrap() - x).abs() < 1e-12;
    assert_eq!(t["scalars"]["grounding_samples"], 2);
    assert!(close(&t["test_grounding"]["top_1_mean"], 2.0 / 3.0));
    assert!(close(&t["test_grounding"]["top_1_std"], 0.0));
    assert!(close(&t["test_grounding"]["top_3_mean"], 1.0 / 3.0));
}

#[test]
fn bad_ground_inputs_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    planted_checkpoint(&dir.path().join("ckpt"));
    // Features of the wrong width for the model (8 instead of 64).
    let table = FeatureTable::new()
        .with_column("sample_id", Column::Utf8(vec!["a".into(), "b".into()]))
        .with_column(
            "vector",
            Column::Vector {
                dim: 8,
                values: (0..16).map(|i| i as f32).collect(),
                half: false,
            },
        );
    write_parquet(&dir.path().join("narrow.parquet"), &table).unwrap();
    let base = "[experiment]\nname = \"bad\"\n[models.tiny]\npath = \"ckpt\"\n\
                [stage.f]\nkind = \"import\"\npath = \"narrow.parquet\"\n\
                [stage.c]\nkind = \"decompose\"\ninput = \"f\"\nmethod = \"simple\"\nnum_concepts = 2\n";
    let store = dir.path().join("store");
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        format!("{base}[stage.g]\nkind = \"ground\"\nconcepts = \"c\"\nmodel = \"tiny\"\n"),
    )
    .unwrap();
    let out = xlvlm(&store).arg("run").arg(&file).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("8 dimensions") && err.contains("hidden size 64"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    // Grounding from something that is not a decomposition.
    std::fs::write(
        &file,
        format!("{base}[stage.g]\nkind = \"ground\"\nconcepts = \"f\"\nmodel = \"tiny\"\n"),
    )
    .unwrap();
    let out = xlvlm(&store).arg("run").arg(&file).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("must name a decompose or shift stage"),
        "{err}"
    );

    // More words than tokens considered.
    std::fs::write(
        &file,
        format!(
            "{base}[stage.g]\nkind = \"ground\"\nconcepts = \"c\"\nmodel = \"tiny\"\n\
             pre_num_top_tokens = 5\nnum_grounded_text_tokens = 10\n"
        ),
    )
    .unwrap();
    let out = xlvlm(&store).arg("validate").arg(&file).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("pre_num_top_tokens"), "{err}");
}
