//! The `steer` stage: alpha = 0 reproduces the unsteered generations, a large alpha changes
//! them, the projected formula holds at the hidden state, and a whole pipeline (extract →
//! aggregate → decompose, extract ×2 → shift → steer with an alpha sweep) runs from a TOML.

mod support;

use support::*;
use xlvlm_model::{
    Batch, CaptureSpec, CpuBackend, HookPoint, Intervention, InterventionMode, Logits, Positions,
    Vlm, WeightDType,
};

#[test]
fn a_pipeline_from_extraction_to_steering_runs_and_alpha_zero_is_unsteered() {
    let dir = tempfile::tempdir().unwrap();
    let file = world_experiment(
        dir.path(),
        "steer",
        r#"
[stage.base]
kind = "extract"
model = "tiny"
data = "captions"
hooks = ["lm.layers.1"]
generate = { max_new_tokens = 6 }
tokens = { mean_before = [] }

[stage.yes]
kind = "extract"
model = "tiny"
data = "vqa"
hooks = ["lm.layers.1"]
generate = { max_new_tokens = 6 }
tokens = { among = "generated", index = -1 }

[stage.matrix]
kind = "aggregate"
features = "base"

[stage.concepts]
kind = "decompose"
input = "matrix"
method = "kmeans"
num_concepts = 2

[stage.shift]
kind = "shift"
method = "shift_of_means"
source = "base"
target = "yes"

[stage.steered]
kind = "steer"
model = "tiny"
data = "captions"
vector = "shift"
hooks = ["lm.layers.0", "lm.layers.1"]
alpha = { sweep = [0, 400] }
generate = { max_new_tokens = 6 }

[stage.first_unsteered]
from = "steered"
alpha = 0
generate = { max_new_tokens = 1 }

[stage.first_generated_only]
from = "first_unsteered"
alpha = 400
positions = "generated"

[stage.first_last_prompt]
from = "first_unsteered"
alpha = 400
positions = "last_prompt_token"

[stage.projected]
from = "steered"
alpha = 3
mode = "projected"
positions = "from_index"
start_index = 5
"#,
    );
    let store = dir.path().join("store");
    run_ok(&store, &file);
    let base = read_table(&artifact(&store, "steer", "base"), "generations");
    let zero = read_table(
        &artifact(&store, "steer", "steered[alpha=0]"),
        "generations",
    );
    let large = read_table(
        &artifact(&store, "steer", "steered[alpha=400]"),
        "generations",
    );
    assert_eq!(strings(&base, "sample_id"), strings(&zero, "sample_id"));
    assert_eq!(
        strings(&base, "generation"),
        strings(&zero, "generation"),
        "alpha = 0 must give the unsteered generations"
    );
    assert_eq!(base.ints("num_tokens"), zero.ints("num_tokens"));
    let changed = strings(&base, "generation")
        .iter()
        .zip(strings(&large, "generation"))
        .filter(|(a, b)| **a != *b)
        .count();
    assert!(changed > 0, "alpha = 400 changed no generation");
    assert_eq!(strings(&zero, "task"), vec!["caption".to_string(); 8]);
    assert!(strings(&zero, "prompt").iter().all(String::is_empty));
    let refs: Vec<Vec<String>> = strings(&zero, "references")
        .iter()
        .map(|r| serde_json::from_str(r).unwrap())
        .collect();
    assert!(refs.iter().all(|r| !r.is_empty()));
    // Steering generated tokens only leaves the first token, predicted by the prompt pass,
    // as it was; steering the last prompt token changes it.
    let first = |label: &str| {
        strings(
            &read_table(&artifact(&store, "steer", label), "generations"),
            "generation",
        )
    };
    assert_eq!(first("first_generated_only"), first("first_unsteered"));
    assert_ne!(first("first_last_prompt"), first("first_unsteered"));
    // one mean row per caption sample
    let features = read_table(&artifact(&store, "steer", "base"), "shard");
    assert_eq!(strings(&features, "sample_id").len(), 8);
    assert!(std::fs::metadata(artifact(&store, "steer", "concepts")).is_ok());
    let projected = read_table(&artifact(&store, "steer", "projected"), "generations");
    assert_eq!(strings(&projected, "generation").len(), 8);
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(artifact(&store, "steer", "steered[alpha=400]").join("manifest.json"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["summary"]["alpha"], 400.0);
    assert_eq!(manifest["summary"]["vector_name"], "shift_of_means");

    // a second run is fully cached
    let again = run_ok(&store, &file);
    let again = String::from_utf8_lossy(&again.stdout);
    assert!(again.contains("nothing to run"), "{again}");

    // A vector the shift stage does not hold is named with the ones it does.
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        format!("{text}\n[stage.wrong]\nfrom = \"projected\"\nvector_name = \"nope\"\n"),
    )
    .unwrap();
    let out = xlvlm(&store).arg("run").arg(&file).output().unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("has no vector named `nope` (it has: shift_of_means)"),
        "{}",
        stderr(&out)
    );
}

/// `projected`: h' = h - (h . u) u + alpha u with u = v / |v|, at the selected position only.
#[test]
fn projected_mode_sets_the_projection_on_the_vector() {
    let device = Default::default();
    let model = Vlm::<CpuBackend>::load_dir(&tiny_llava(), WeightDType::F32, &device).unwrap();
    let batch = Batch::left_padded(vec![vec![1, 50, 60, 70, 80, 90]], 0);
    let hook = HookPoint::Layer(0);
    let capture = [CaptureSpec {
        hook,
        positions: Positions::All,
    }];
    let plain = model.forward(&batch, &capture, &[], Logits::None).unwrap();
    let h = plain.captures[0].rows[0].to_f32();
    let width = 64;
    let v: Vec<f32> = (0..width)
        .map(|i| ((i * 7 % 13) as f32 - 6.0) / 5.0)
        .collect();
    let alpha = 0.75f32;
    let steered = model
        .forward(
            &batch,
            &capture,
            &[Intervention {
                hook,
                vector: v.clone(),
                alpha,
                positions: Positions::Index(3),
                mode: InterventionMode::Projected,
            }],
            Logits::None,
        )
        .unwrap();
    let h2 = steered.captures[0].rows[0].to_f32();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let u: Vec<f32> = v.iter().map(|x| x / norm).collect();
    for pos in 0..6 {
        let row = &h[pos * width..(pos + 1) * width];
        let got = &h2[pos * width..(pos + 1) * width];
        if pos == 3 {
            let along: f32 = row.iter().zip(&u).map(|(a, b)| a * b).sum();
            for i in 0..width {
                let want = row[i] - along * u[i] + alpha * u[i];
                assert!(
                    (got[i] - want).abs() < 1e-5,
                    "component {i}: {} vs {want}",
                    got[i]
                );
            }
            let projection: f32 = got.iter().zip(&u).map(|(a, b)| a * b).sum();
            assert!((projection - alpha).abs() < 1e-5, "{projection}");
        } else {
            assert_eq!(row, got, "position {pos} is not steered");
        }
    }
}

#[test]
fn bad_steer_settings_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("d.jsonl"),
        "{\"id\": 1, \"prompt\": \"hi\"}\n",
    )
    .unwrap();
    let cases = [
        ("positions = \"from_index\"", "needs `start_index`"),
        (
            "start_index = 3",
            "applies to `positions = \"from_index\"` only",
        ),
        ("mode = \"multiply\"", "mode"),
        ("generate = { max_new_tokens = 0 }", "at least 1"),
    ];
    for (extra, want) in cases {
        let file = dir.path().join("bad.toml");
        std::fs::write(
            &file,
            format!(
                "[experiment]\nname = \"bad\"\n\n[models.tiny]\npath = \"{}\"\n\n[data.d]\nformat = \"jsonl\"\nannotations = \"d.jsonl\"\n\n[stage.v]\nkind = \"import\"\npath = \"d.jsonl\"\nformat = \"npy\"\n\n[stage.s]\nkind = \"steer\"\nmodel = \"tiny\"\ndata = \"d\"\nvector = \"v\"\nhooks = [\"lm.layers.0\"]\n{extra}\n",
                tiny_llava().display()
            ),
        )
        .unwrap();
        let out = xlvlm(&dir.path().join("store"))
            .arg("validate")
            .arg(&file)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{extra}: {}", stderr(&out));
        assert!(stderr(&out).contains(want), "{extra}: {}", stderr(&out));
    }
}

#[test]
fn a_killed_steer_resumes_and_ends_with_identical_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let file = world_experiment(
        dir.path(),
        "resume",
        r#"
[stage.a]
kind = "extract"
model = "tiny"
data = "captions"
mode = "teacher_forcing"
hooks = ["lm.layers.1"]
tokens = { among = "generated", index = 0 }

[stage.b]
kind = "extract"
model = "tiny"
data = "captions"
mode = "teacher_forcing"
hooks = ["lm.layers.1"]
tokens = { among = "generated", index = -1 }

[stage.v]
kind = "shift"
method = "shift_of_means"
source = "a"
target = "b"

[stage.s]
kind = "steer"
model = "tiny"
data = "captions"
vector = "v"
hooks = ["lm.layers.1"]
alpha = 20
generate = { max_new_tokens = 5 }
batch_size = 2
shard_samples = 2
"#,
    );
    let reference = dir.path().join("reference");
    run_ok(&reference, &file);

    let store = dir.path().join("killed");
    let mut child = xlvlm(&store)
        .arg("run")
        .arg(&file)
        .env("XLVLM_TEST_SHARD_PAUSE_MS", "150")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Only the steer stage writes generations files here.
    let written = || -> usize {
        std::fs::read_dir(store.join("staging"))
            .map(|d| {
                d.filter_map(|e| std::fs::read_dir(e.ok()?.path()).ok())
                    .flatten()
                    .filter(|f| {
                        let name = f.as_ref().unwrap().file_name();
                        let name = name.to_string_lossy();
                        name.starts_with("generations-") && name.ends_with(".parquet")
                    })
                    .count()
            })
            .unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while written() < 1 {
        assert!(std::time::Instant::now() < deadline, "no shard in time");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        (1..4).contains(&written()),
        "{} shards at the kill",
        written()
    );
    let resumed = xlvlm(&store)
        .arg("run")
        .arg(&file)
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert!(stderr(&resumed).contains("already written"));
    let manifest = |s: &std::path::Path| -> serde_json::Value {
        let path = artifact(s, "resume", "s").join("manifest.json");
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    };
    assert_eq!(manifest(&reference)["files"], manifest(&store)["files"]);
    assert_eq!(
        manifest(&store)["files"].as_array().unwrap().len(),
        4,
        "8 captions in shards of 2"
    );
}
