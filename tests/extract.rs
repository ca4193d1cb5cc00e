//! The `extract` stage on the tiny LLaVA fixture and a generated shapes world: batching does
//! not change the vectors, a killed run resumes to the same bytes, whole-word tokens of
//! interest, and the feature table feeds `aggregate` unchanged.

mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use support::*;

#[test]
fn batch_of_eight_gives_the_vectors_of_batch_one() {
    let dir = tempfile::tempdir().unwrap();
    let file = world_experiment(
        dir.path(),
        "batch",
        r#"
[stage.b1]
kind = "extract"
model = "tiny"
data = "vqa"
hooks = ["lm.layers.0", "model.norm"]
generate = { max_new_tokens = 4 }
batch_size = 1

[stage.b8]
from = "b1"
batch_size = 8

[stage.half]
from = "b8"
vector_dtype = "f16"
"#,
    );
    let store = dir.path().join("store");
    run_ok(&store, &file);
    let one = read_table(&artifact(&store, "batch", "b1"), "shard");
    let eight = read_table(&artifact(&store, "batch", "b8"), "shard");
    for col in ["sample_id", "hook", "token_role", "token"] {
        assert_eq!(strings(&one, col), strings(&eight, col), "{col}");
    }
    assert_eq!(one.ints("position"), eight.ints("position"));
    assert_eq!(one.ints("token_id"), eight.ints("token_id"));
    let (dim, a) = one.vector("vector").unwrap();
    let (_, b) = eight.vector("vector").unwrap();
    assert_eq!(dim, 64);
    assert_eq!(a.len(), b.len());
    let worst = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / (1.0 + x.abs()))
        .fold(0f32, f32::max);
    assert!(worst < 1e-5, "batch 8 differs from batch 1 by {worst}");
    let half = read_table(&artifact(&store, "batch", "half"), "shard");
    assert!(matches!(
        half.column("vector"),
        Some(xlvlm_store::Column::Vector { half: true, .. })
    ));
    let (_, h) = half.vector("vector").unwrap();
    assert!(
        b.iter()
            .zip(h)
            .all(|(x, y)| (x - y).abs() <= 1e-3 * x.abs().max(1e-2)),
        "f16 storage rounds to the nearest half"
    );
    // every row is a real state: all positions of 16 samples at two hooks
    assert!(one.bools("toi_found").unwrap().iter().all(|&f| f));
    let hooks = strings(&one, "hook");
    assert!(hooks.iter().all(|h| h == "lm.layers.0" || h == "lm.norm"));
    let ids = strings(&one, "sample_id");
    let mut unique = ids.clone();
    unique.dedup();
    assert_eq!(unique.len(), 16);
    let gen1 = read_table(&artifact(&store, "batch", "b1"), "generations");
    let gen8 = read_table(&artifact(&store, "batch", "b8"), "generations");
    assert_eq!(strings(&gen1, "generation"), strings(&gen8, "generation"));
    assert_eq!(strings(&gen1, "task"), vec!["vqa".to_string(); 16]);
    assert!(
        gen1.ints("num_tokens")
            .unwrap()
            .iter()
            .all(|&n| (1..=4).contains(&n))
    );
    let refs: Vec<Vec<String>> = strings(&gen1, "references")
        .iter()
        .map(|r| serde_json::from_str(r).unwrap())
        .collect();
    assert!(
        refs.iter().all(|r| r.len() == 10),
        "VQA samples carry their 10 answers"
    );
}

#[test]
fn a_killed_extract_resumes_and_ends_with_identical_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let file = world_experiment(
        dir.path(),
        "resume",
        r#"
[stage.x]
kind = "extract"
model = "tiny"
data = "vqa"
hooks = ["lm.layers.1"]
generate = { max_new_tokens = 3 }
tokens = { among = "generated" }
batch_size = 2
shard_samples = 2

[stage.m]
kind = "aggregate"
features = "x"
"#,
    );
    let reference = dir.path().join("reference");
    run_ok(&reference, &file);

    let store = dir.path().join("killed");
    let mut child = xlvlm(&store)
        .arg("run")
        .arg(&file)
        .env("XLVLM_TEST_SHARD_PAUSE_MS", "150")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let done_lines = || -> usize {
        std::fs::read_dir(store.join("staging"))
            .map(|d| {
                d.filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("shards.done")).ok())
                    .map(|t| t.lines().count())
                    .sum()
            })
            .unwrap_or(0)
    };
    while done_lines() < 2 {
        assert!(Instant::now() < deadline, "no shard was written in time");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let written = done_lines();
    assert!(
        (2..8).contains(&written),
        "{written} shards were done at the kill"
    );

    let resumed = xlvlm(&store)
        .arg("run")
        .arg(&file)
        .env("RUST_LOG", "debug")
        .output()
        .unwrap();
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    assert!(
        stderr(&resumed).contains("already written"),
        "the resumed run rewrote every shard"
    );
    for stage in ["x", "m"] {
        let manifest = |s: &std::path::Path| -> serde_json::Value {
            let path = artifact(s, "resume", stage).join("manifest.json");
            serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
        };
        let (a, b) = (manifest(&reference), manifest(&store));
        assert_eq!(a["key"], b["key"], "{stage}");
        assert_eq!(a["files"], b["files"], "{stage}: different bytes");
    }
    let files = &serde_json::from_slice::<serde_json::Value>(
        &std::fs::read(artifact(&store, "resume", "x").join("manifest.json")).unwrap(),
    )
    .unwrap()["files"];
    let names: Vec<&str> = files
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(names.iter().filter(|n| n.starts_with("shard-")).count(), 8);
    assert_eq!(
        names
            .iter()
            .filter(|n| n.starts_with("generations-"))
            .count(),
        8
    );
}

/// Teacher forcing on responses we choose: `no` is found as a whole word only, the kept state
/// is the one that predicts it, samples without it stay with `toi_found = false`.
#[test]
fn token_of_interest_matches_whole_words_only() {
    let dir = tempfile::tempdir().unwrap();
    let image = repo().join("tests/fixtures/hf/image.png");
    let answers = [
        "no",
        "snow",
        "none",
        "No, it is not.",
        "a red car",
        "covered",
    ];
    let mut jsonl = String::new();
    for (i, a) in answers.iter().enumerate() {
        jsonl.push_str(&format!(
            "{{\"id\": \"s{i}\", \"image\": \"{}\", \"prompt\": \"Is it?\", \"answer\": \"{a}\"}}\n",
            image.display()
        ));
    }
    std::fs::write(dir.path().join("d.jsonl"), jsonl).unwrap();
    let file = dir.path().join("exp.toml");
    std::fs::write(
        &file,
        format!(
            r#"[experiment]
name = "toi"

[models.tiny]
path = "{}"

[data.d]
format = "jsonl"
annotations = "d.jsonl"

[stage.no]
kind = "extract"
model = "tiny"
data = "d"
mode = "teacher_forcing"
hooks = ["lm.layers.1"]
tokens = {{ of_interest = "no" }}
batch_size = 4

[stage.colour]
kind = "extract"
model = "tiny"
data = "d"
mode = "teacher_forcing"
hooks = ["lm.layers.1"]
tokens = {{ class = "colors" }}

[stage.only_no]
from = "no"
require_word_in = "response"

[stage.late]
from = "no"
tokens = {{ search_from = 1000 }}

[stage.raw]
from = "no"
prompt = {{ chat_template = false }}

[stage.first]
kind = "extract"
model = "tiny"
data = "d"
mode = "teacher_forcing"
hooks = ["lm.layers.1"]
tokens = {{ range = [0, 4], among = "generated" }}
batch_size = 4

[stage.m]
kind = "aggregate"
features = "no"
filter = "toi_found"
"#,
            tiny_llava().display()
        ),
    )
    .unwrap();
    let store = dir.path().join("store");
    run_ok(&store, &file);
    let no = read_table(&artifact(&store, "toi", "no"), "shard");
    assert_eq!(
        strings(&no, "sample_id"),
        ["s0", "s1", "s2", "s3", "s4", "s5"]
    );
    assert_eq!(
        no.bools("toi_found").unwrap(),
        [true, false, false, true, false, false]
    );
    // The state kept predicts the word's first token: the next position holds it.
    let window = read_table(&artifact(&store, "toi", "first"), "shard");
    let positions = no.ints("position").unwrap();
    assert_eq!(positions[1], -1);
    let (dim, v) = no.vector("vector").unwrap();
    let (_, wv) = window.vector("vector").unwrap();
    let w_ids = strings(&window, "sample_id");
    let w_pos = window.ints("position").unwrap();
    let w_tok = strings(&window, "token");
    for (r, sample) in [(0usize, "s0"), (3, "s3")] {
        let at = |q: i64| {
            (0..w_ids.len())
                .find(|&i| w_ids[i] == sample && w_pos[i] == q)
                .unwrap_or_else(|| panic!("{sample}: position {q} not in the window"))
        };
        // the vocabulary entry: `▁no`, or a byte-fallback piece such as `<0x4E>` for `N`
        let piece = &w_tok[at(positions[r] + 1)];
        let next = match piece.strip_prefix("<0x").and_then(|h| h.strip_suffix('>')) {
            Some(hex) => char::from(u8::from_str_radix(hex, 16).unwrap()).to_string(),
            None => piece.trim_start_matches(['▁', 'Ġ']).to_string(),
        }
        .to_lowercase();
        assert!(
            !next.is_empty() && "no".starts_with(&next),
            "{sample}: the token after the kept state is `{next}`"
        );
        let kept = at(positions[r]);
        assert_eq!(
            &v[r * dim..(r + 1) * dim],
            &wv[kept * dim..(kept + 1) * dim]
        );
    }
    let row = |r: usize| &v[r * dim..(r + 1) * dim];
    assert!(row(1).iter().all(|&x| x == 0.0), "not found: a zero vector");
    assert!(row(0).iter().any(|&x| x != 0.0));

    let colour = read_table(&artifact(&store, "toi", "colour"), "shard");
    assert_eq!(
        colour.bools("toi_found").unwrap(),
        [false, false, false, false, true, false],
        "`red` is a colour word, `covered` does not contain one"
    );
    let late = read_table(&artifact(&store, "toi", "late"), "shard");
    assert!(
        late.bools("toi_found").unwrap().iter().all(|&f| !f),
        "no state is kept before search_from"
    );
    let raw = read_table(&artifact(&store, "toi", "raw"), "shard");
    assert_eq!(
        raw.bools("toi_found").unwrap(),
        no.bools("toi_found").unwrap(),
        "raw-text prompts find the same words"
    );
    assert_ne!(
        raw.ints("position"),
        no.ints("position"),
        "but at other positions"
    );
    let only = read_table(&artifact(&store, "toi", "only_no"), "shard");
    assert_eq!(strings(&only, "sample_id"), ["s0", "s3"]);
    // No generations in teacher forcing.
    assert!(
        !std::fs::read_dir(artifact(&store, "toi", "no"))
            .unwrap()
            .any(|e| e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("generations"))
    );
    // aggregate takes the feature table as it is: the two samples with the word remain.
    let m =
        xlvlm_store::read_parquet(&artifact(&store, "toi", "m").join("matrix.parquet")).unwrap();
    assert_eq!(strings(&m, "sample_id"), ["s0", "s3"]);
}

#[test]
fn bad_extract_settings_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "tokens = { of_interest = \"no\", index = 2 }",
            "selects one way",
        ),
        ("tokens = { class = \"fruits\" }", "unknown word class"),
        (
            "mode = \"teacher_forcing\"\ngenerate = { max_new_tokens = 3 }",
            "do not apply",
        ),
        ("hooks = []", "at least one hook"),
        ("require_word_in = \"response\"", "needs a word selection"),
        ("batch_size = 0", "at least 1"),
        ("tokens = { search_from = 3 }", "applies to of_interest"),
        (
            "tokens = { of_interest = \"no\", among = \"image\" }",
            "hold no words",
        ),
    ];
    for (extra, want) in cases {
        let file = dir.path().join("bad.toml");
        let hooks = if extra.starts_with("hooks") {
            ""
        } else {
            "hooks = [\"lm.layers.0\"]\n"
        };
        std::fs::write(
            &file,
            format!(
                "[experiment]\nname = \"bad\"\n\n[models.tiny]\npath = \"{}\"\n\n[data.d]\nformat = \"jsonl\"\nannotations = \"d.jsonl\"\n\n[stage.x]\nkind = \"extract\"\nmodel = \"tiny\"\ndata = \"d\"\n{hooks}{extra}\n",
                tiny_llava().display()
            ),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("d.jsonl"),
            "{\"id\": 1, \"prompt\": \"hi\"}\n",
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

/// Writing every default out keeps the cache key: nothing reruns.
#[test]
fn explicit_defaults_keep_the_cache_key() {
    let dir = tempfile::tempdir().unwrap();
    let image = repo().join("tests/fixtures/hf/image.png");
    std::fs::write(
        dir.path().join("d.jsonl"),
        format!(
            "{{\"id\": \"a\", \"image\": \"{}\", \"prompt\": \"What is it?\"}}\n",
            image.display()
        ),
    )
    .unwrap();
    let head = format!(
        "[experiment]\nname = \"defaults\"\n\n[models.tiny]\npath = \"{}\"\n\n[data.d]\nformat = \"jsonl\"\nannotations = \"d.jsonl\"\n\n",
        tiny_llava().display()
    );
    let file = dir.path().join("exp.toml");
    std::fs::write(
        &file,
        format!(
            "{head}[stage.x]\nkind = \"extract\"\nmodel = \"tiny\"\ndata = \"d\"\nhooks = [\"lm.layers.0\"]\ngenerate = {{ max_new_tokens = 2 }}\n\n[stage.v]\nkind = \"shift\"\nmethod = \"shift_of_means\"\nsource = \"x\"\ntarget = \"x\"\n\n[stage.s]\nkind = \"steer\"\nmodel = \"tiny\"\ndata = \"d\"\nvector = \"v\"\nhooks = [\"lm.layers.0\"]\n"
        ),
    )
    .unwrap();
    let store = dir.path().join("store");
    run_ok(&store, &file);
    std::fs::write(
        &file,
        format!(
            r#"{head}[stage.x]
kind = "extract"
model = "tiny"
data = "d"
hooks = ["lm.layers.0"]
mode = "generate"
generate = {{ max_new_tokens = 2, stop = [] }}
tokens = {{ among = "all" }}
prompt = {{ caption = "\nProvide a one-sentence caption for the provided image.", vqa_suffix = "\nAnswer the question using a single word or phrase.", chat_template = true }}
batch_size = 8
shard_samples = 64
vector_dtype = "f32"

[stage.v]
kind = "shift"
method = "shift_of_means"
source = "x"
target = "x"

[stage.s]
kind = "steer"
model = "tiny"
data = "d"
vector = "v"
hooks = ["lm.layers.0"]
alpha = 1.0
mode = "add"
positions = "all"
generate = {{ max_new_tokens = 50, stop = [] }}
batch_size = 8
shard_samples = 64
"#
        ),
    )
    .unwrap();
    let again = run_ok(&store, &file);
    let again = String::from_utf8_lossy(&again.stdout);
    assert!(again.contains("nothing to run"), "{again}");
}

/// Vision hooks have one row per vision position of each sample's image.
#[test]
fn vision_hooks_give_one_row_per_image_position() {
    let dir = tempfile::tempdir().unwrap();
    let image = repo().join("tests/fixtures/hf/image.png");
    let mut jsonl = String::new();
    for i in 0..3 {
        jsonl.push_str(&format!(
            "{{\"id\": \"v{i}\", \"image\": \"{}\", \"prompt\": \"What is it?\"}}\n",
            image.display()
        ));
    }
    std::fs::write(dir.path().join("d.jsonl"), jsonl).unwrap();
    let file = dir.path().join("exp.toml");
    std::fs::write(
        &file,
        format!(
            "[experiment]\nname = \"vision\"\n\n[models.tiny]\npath = \"{}\"\n\n[data.d]\nformat = \"jsonl\"\nannotations = \"d.jsonl\"\n\n[stage.x]\nkind = \"extract\"\nmodel = \"tiny\"\ndata = \"d\"\nmode = \"teacher_forcing\"\nhooks = [\"projector\", \"vision.layers.0\"]\n\n[stage.last]\nfrom = \"x\"\nhooks = [\"vision.layers.2\"]\ntokens = {{ index = -1 }}\n",
            tiny_llava().display()
        ),
    )
    .unwrap();
    let store = dir.path().join("store");
    run_ok(&store, &file);
    let t = read_table(&artifact(&store, "vision", "x"), "shard");
    let hooks = strings(&t, "hook");
    // 16 projected image features, 17 encoder positions (class token first) per image
    assert_eq!(hooks.iter().filter(|h| *h == "projector").count(), 3 * 16);
    assert_eq!(
        hooks.iter().filter(|h| *h == "vision.layers.0").count(),
        3 * 17
    );
    assert!(strings(&t, "token_role").iter().all(|r| r == "image"));
    assert!(t.ints("token_id").unwrap().iter().all(|&i| i == -1));
    let last = read_table(&artifact(&store, "vision", "last"), "shard");
    assert_eq!(last.ints("position").unwrap(), [16, 16, 16]);
    // the same image gives the same features in every sample of the batch
    let (dim, v) = last.vector("vector").unwrap();
    assert_eq!(&v[..dim], &v[dim..2 * dim]);
}

/// A stop string ends a generation once produced; `finish_reason` says why each one ended.
#[test]
fn stop_strings_end_generations() {
    let dir = tempfile::tempdir().unwrap();
    let image = repo().join("tests/fixtures/hf/image.png");
    let mut jsonl = String::new();
    for (i, q) in ["What is it?", "Where is it?", "Is it red?"]
        .iter()
        .enumerate()
    {
        jsonl.push_str(&format!(
            "{{\"id\": \"q{i}\", \"image\": \"{}\", \"prompt\": \"{q}\"}}\n",
            image.display()
        ));
    }
    std::fs::write(dir.path().join("d.jsonl"), jsonl).unwrap();
    let write = |stop: &str| {
        let file = dir.path().join("exp.toml");
        std::fs::write(
            &file,
            format!(
                "[experiment]\nname = \"stop\"\n\n[models.tiny]\npath = \"{}\"\n\n[data.d]\nformat = \"jsonl\"\nannotations = \"d.jsonl\"\n\n[stage.x]\nkind = \"extract\"\nmodel = \"tiny\"\ndata = \"d\"\nhooks = [\"lm.layers.0\"]\ntokens = {{ index = -1 }}\ngenerate = {{ max_new_tokens = 8, stop = [{stop}] }}\n",
                tiny_llava().display()
            ),
        )
        .unwrap();
        file
    };
    let store = dir.path().join("store");
    run_ok(&store, &write(""));
    let free = read_table(&artifact(&store, "stop", "x"), "generations");
    let texts = strings(&free, "generation");
    assert!(
        strings(&free, "finish_reason")
            .iter()
            .all(|f| f == "length" || f == "eos")
    );
    // Stop at the second character the model wrote for the first sample.
    let stop: String = texts[0]
        .chars()
        .filter(|c| !c.is_whitespace())
        .nth(1)
        .unwrap()
        .into();
    let quoted = serde_json::to_string(&stop).unwrap();
    run_ok(&store, &write(&quoted));
    let stopped = read_table(&artifact(&store, "stop", "x"), "generations");
    let reasons = strings(&stopped, "finish_reason");
    let lengths = stopped.ints("num_tokens").unwrap();
    assert_eq!(reasons[0], "stop");
    assert!(lengths[0] < free.ints("num_tokens").unwrap()[0]);
    for (i, text) in strings(&stopped, "generation").iter().enumerate() {
        if reasons[i] == "stop" {
            assert!(text.contains(&stop), "{text:?} stopped without {stop:?}");
        } else {
            assert_eq!(*text, texts[i], "an unstopped generation is unchanged");
        }
    }
}
