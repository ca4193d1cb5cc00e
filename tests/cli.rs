//! The `xlvlm` binary end to end: the bad-file corpus, cached reruns that touch no data,
//! kill -9 and resume, and two processes sharing one store.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

mod support;

use support::{repo, stderr, stdout, write_npy, xlvlm};

#[test]
fn every_bad_experiment_file_gets_a_clear_error_and_exit_code_2() {
    let dir = repo().join("tests/bad");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 30, "the corpus has {} files", files.len());
    let store = tempfile::tempdir().unwrap();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let expect = text
            .lines()
            .find_map(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{} has no `# expect:` line", file.display()));
        let out = xlvlm(store.path())
            .arg("validate")
            .arg(&file)
            .output()
            .unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{}: {err}", file.display());
        assert!(!err.contains("panicked"), "{}: {err}", file.display());
        assert!(
            err.contains(expect),
            "{}: expected {expect:?} in\n{err}",
            file.display()
        );
        // The message starts by naming a file (this one or a fragment it includes) and, when
        // the problem has a place, its line and column.
        let first = err.lines().next().unwrap();
        assert!(
            first.starts_with("error: ") && first.contains(".toml"),
            "{}: {first}",
            file.display()
        );
        // `run` refuses the same file the same way, before doing anything.
        let run = xlvlm(store.path()).arg("run").arg(&file).output().unwrap();
        assert_eq!(run.status.code(), Some(2), "{}", file.display());
    }
    assert!(
        std::fs::read_dir(store.path().join("objects")).map_or(true, |mut d| d.next().is_none())
    );
}

/// A copy of the demo pipeline and its data in a temporary folder.
fn demo_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("pipelines")).unwrap();
    std::fs::create_dir_all(dir.path().join("data/demo")).unwrap();
    for f in [
        "pipelines/byo_features.toml",
        "data/demo/original.parquet",
        "data/demo/finetuned.parquet",
    ] {
        std::fs::copy(repo().join(f), dir.path().join(f)).unwrap();
    }
    dir
}

fn parquet_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            parquet_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "parquet") {
            out.push(p);
        }
    }
}

/// Overwrites a file in place with garbage of the same size and restores its mtime, so only
/// reading it could tell.
fn poison(path: &Path) {
    let meta = std::fs::metadata(path).unwrap();
    let mtime = meta.modified().unwrap();
    std::fs::write(path, vec![0xA5u8; meta.len() as usize]).unwrap();
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
}

#[test]
fn a_cached_rerun_reads_no_data_and_an_edit_reruns_only_downstream() {
    let demo = demo_copy();
    let store = demo.path().join("store");
    let file = demo.path().join("pipelines/byo_features.toml");
    let first = xlvlm(&store).arg("run").arg(&file).output().unwrap();
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(
        stdout(&first).contains("47 ran, 0 cached"),
        "{}",
        stdout(&first)
    );

    // Every Parquet file, artifacts and inputs alike, becomes unreadable garbage.
    let mut files = Vec::new();
    parquet_files(demo.path(), &mut files);
    assert!(files.len() > 40);
    for f in &files {
        poison(f);
    }
    let second = xlvlm(&store).arg("run").arg(&file).output().unwrap();
    assert!(second.status.success(), "{}", stderr(&second));
    assert!(
        stdout(&second).contains("all 47 stages cached"),
        "{}",
        stdout(&second)
    );

    // Adding a sweep value runs exactly the new instances; editing a stage makes it (and only
    // it, here it has no downstream) stale, and `plan` says why.
    let text = std::fs::read_to_string(&file).unwrap();
    let text = text.replace("19, 20, 21] }", "19, 20, 21, 22] }").replace(
        "features = [\"original\", \"finetuned\"]\nfilter = \"toi_found\"",
        "features = [\"original\", \"finetuned\"]",
    );
    std::fs::write(&file, text).unwrap();
    let plan = xlvlm(&store).arg("plan").arg(&file).output().unwrap();
    let plan = stdout(&plan);
    let to_run: Vec<&str> = plan.lines().filter(|l| l.starts_with("run ")).collect();
    assert_eq!(to_run.len(), 3, "{plan}");
    assert!(
        plan.contains("concepts[method=kmeans,num_concepts=22]"),
        "{plan}"
    );
    assert!(
        plan.contains("concepts[method=pca,num_concepts=22]"),
        "{plan}"
    );
    let matched = to_run
        .iter()
        .find(|l| l.contains(" matched "))
        .expect(&plan);
    assert!(
        matched.contains("param `filter`: \"toi_found\" → null"),
        "{matched}"
    );
    assert!(plan.contains("3 to run, 46 cached"), "{plan}");
}

#[test]
fn a_killed_import_resumes_and_ends_with_identical_bytes() {
    let dir = tempfile::tempdir().unwrap();
    // 3000 × 32 f32 rows in 30 shards.
    let (rows, cols) = (3000usize, 32usize);
    let values: Vec<f32> = (0..rows * cols).map(|i| (i as f32 * 0.37).sin()).collect();
    write_npy(&dir.path().join("x.npy"), rows, cols, &values);
    let file = dir.path().join("exp.toml");
    std::fs::write(
        &file,
        "[experiment]\nname = \"resume\"\n\n[stage.x]\nkind = \"import\"\npath = \"x.npy\"\nshard_rows = 100\n\n[stage.m]\nkind = \"aggregate\"\nfeatures = \"x\"\n",
    )
    .unwrap();

    let reference = dir.path().join("reference");
    assert!(
        xlvlm(&reference)
            .arg("run")
            .arg(&file)
            .status()
            .unwrap()
            .success()
    );

    let store = dir.path().join("killed");
    let mut child = xlvlm(&store)
        .arg("run")
        .arg(&file)
        .env("XLVLM_TEST_SHARD_PAUSE_MS", "40")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until some but not all shards are committed, then SIGKILL.
    let deadline = Instant::now() + Duration::from_secs(60);
    let done_lines = || -> usize {
        std::fs::read_dir(store.join("staging"))
            .map(|d| {
                d.filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("shards.done")).ok())
                    .map(|t| t.lines().count())
                    .sum()
            })
            .unwrap_or(0)
    };
    while done_lines() < 5 {
        assert!(Instant::now() < deadline, "no shard was written in time");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let written = done_lines();
    assert!(
        (5..30).contains(&written),
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

    // Same artifacts, byte for byte (data files and their checksums).
    for stage in ["x", "m"] {
        let key =
            |store: &Path| std::fs::read_to_string(store.join("names/resume").join(stage)).unwrap();
        let (a, b) = (key(&reference), key(&store));
        assert_eq!(a.trim(), b.trim(), "{stage}: different keys");
        let manifest = |store: &Path| -> serde_json::Value {
            let k = a.trim();
            let path = store
                .join("objects")
                .join(&k[..2])
                .join(&k[2..])
                .join("manifest.json");
            serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
        };
        assert_eq!(
            manifest(&reference)["files"],
            manifest(&store)["files"],
            "{stage}"
        );
    }
}

#[test]
fn two_processes_share_one_store() {
    let demo = demo_copy();
    let store = demo.path().join("store");
    let file = demo.path().join("pipelines/byo_features.toml");
    let spawn = || {
        xlvlm(&store)
            .arg("run")
            .arg(&file)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success(), "{}", stderr(&a));
    assert!(b.status.success(), "{}", stderr(&b));
    let third = xlvlm(&store).arg("run").arg(&file).output().unwrap();
    assert!(
        stdout(&third).contains("all 47 stages cached"),
        "{}",
        stdout(&third)
    );
    // Every artifact is whole: its files match the checksums in its manifest.
    let names = std::fs::read_dir(store.join("names/byo-features")).unwrap();
    let mut checked = 0;
    for n in names {
        let key = std::fs::read_to_string(n.unwrap().path()).unwrap();
        let key = key.trim();
        let dir = store.join("objects").join(&key[..2]).join(&key[2..]);
        let m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
        for f in m["files"].as_array().unwrap() {
            let bytes = std::fs::read(dir.join(f["path"].as_str().unwrap())).unwrap();
            assert_eq!(blake3_hex(&bytes), f["blake3"].as_str().unwrap());
        }
        checked += 1;
    }
    assert_eq!(checked, 47);
}

fn blake3_hex(bytes: &[u8]) -> String {
    // The store's own checksum, recomputed independently of the store code via the CLI's
    // dependency tree would be circular; blake3 is a plain function of the bytes.
    blake3::hash(bytes).to_hex().to_string()
}

#[test]
fn show_dag_and_gc_work_on_a_real_run() {
    let demo = demo_copy();
    let store = demo.path().join("store");
    let file = demo.path().join("pipelines/byo_features.toml");
    assert!(
        xlvlm(&store)
            .arg("run")
            .arg(&file)
            .status()
            .unwrap()
            .success()
    );

    let show = xlvlm(&store)
        .args(["show", "byo-features/shift"])
        .output()
        .unwrap();
    let text = stdout(&show);
    assert!(show.status.success(), "{}", stderr(&show));
    assert!(
        text.contains("\"kind\": \"shift\"") && text.contains("vectors.parquet"),
        "{text}"
    );

    let dot = xlvlm(&store)
        .arg("dag")
        .arg(&file)
        .arg("--dot")
        .output()
        .unwrap();
    let dot = stdout(&dot);
    assert!(
        dot.starts_with("digraph") && dot.matches("->").count() >= 45,
        "{dot}"
    );

    // With the experiment file present nothing is garbage; without it, everything is.
    let keep = xlvlm(&store)
        .arg("gc")
        .arg(demo.path().join("pipelines"))
        .output()
        .unwrap();
    assert!(
        stdout(&keep).contains("0 unreferenced"),
        "{}",
        stdout(&keep)
    );
    let empty = demo.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let dry = xlvlm(&store)
        .arg("gc")
        .arg(&empty)
        .arg("--dry-run")
        .output()
        .unwrap();
    assert!(stdout(&dry).contains("47 unreferenced"), "{}", stdout(&dry));
    assert!(
        xlvlm(&store)
            .arg("run")
            .arg(&file)
            .output()
            .unwrap()
            .stdout
            .starts_with(b"all 47")
    );
    assert!(
        xlvlm(&store)
            .arg("gc")
            .arg(&empty)
            .status()
            .unwrap()
            .success()
    );
    let rerun = xlvlm(&store).arg("plan").arg(&file).output().unwrap();
    assert!(
        stdout(&rerun).contains("47 to run, 0 cached"),
        "{}",
        stdout(&rerun)
    );
}

#[test]
fn only_force_and_dry_run_do_what_they_say() {
    let demo = demo_copy();
    let store = demo.path().join("store");
    let file = demo.path().join("pipelines/byo_features.toml");

    let dry = xlvlm(&store)
        .arg("run")
        .arg(&file)
        .arg("--dry-run")
        .output()
        .unwrap();
    assert!(
        stdout(&dry).contains("47 to run, 0 cached"),
        "{}",
        stdout(&dry)
    );
    assert!(
        !store.join("names").exists()
            || std::fs::read_dir(store.join("names"))
                .unwrap()
                .next()
                .is_none()
    );

    // --only builds the stage and its upstream, nothing else.
    let only = xlvlm(&store)
        .args(["run", "--only", "shift"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(only.status.success(), "{}", stderr(&only));
    assert!(
        stdout(&only).contains("5 ran, 0 cached"),
        "{}",
        stdout(&only)
    );
    let plan = stdout(&xlvlm(&store).arg("plan").arg(&file).output().unwrap());
    assert!(plan.contains("42 to run, 5 cached"), "{plan}");

    // --force rebuilds a cached stage; its output is the same, so nothing downstream changes.
    let forced = xlvlm(&store)
        .args(["run", "--only", "shift", "--force", "original_toi"])
        .arg(&file)
        .output()
        .unwrap();
    let out = stdout(&forced);
    assert!(out.contains("1 ran, 4 cached"), "{out}");

    // Unknown stage names in flags are input errors with a suggestion.
    let bad = xlvlm(&store)
        .args(["run", "--only", "shfit"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        stderr(&bad).contains("did you mean `shift`?"),
        "{}",
        stderr(&bad)
    );
}

#[test]
fn model_inspect_describes_a_checkpoint_and_names_a_missing_one() {
    let store = tempfile::tempdir().unwrap();
    let out = xlvlm(store.path())
        .args(["model", "inspect"])
        .arg(repo().join("tests/fixtures/hf/llava"))
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    for want in [
        "LLaVA-1.5",
        "2 layers, hidden 64",
        "vision.layers.2",
        "projector",
        "lm.layers.1.mlp",
    ] {
        assert!(text.contains(want), "{want:?} missing from\n{text}");
    }
    let missing = xlvlm(store.path())
        .args(["model", "inspect", "no/such/checkpoint"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("no/such/checkpoint/config.json"),
        "{}",
        stderr(&missing)
    );
}

#[test]
fn missing_inputs_and_nan_features_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let file = dir.path().join("exp.toml");
    std::fs::write(
        &file,
        "[experiment]\nname = \"nan\"\n\n[stage.x]\nkind = \"import\"\npath = \"x.npy\"\n",
    )
    .unwrap();
    // The input file does not exist: an input error naming the file and the stage.
    let out = xlvlm(&store).arg("run").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("x.npy") && stderr(&out).contains("stage `x`"),
        "{}",
        stderr(&out)
    );

    // A NaN in the features: the stage fails, naming the row, and publishes nothing.
    write_npy(
        &dir.path().join("x.npy"),
        3,
        2,
        &[1.0, 2.0, 3.0, f32::NAN, 5.0, 6.0],
    );
    let out = xlvlm(&store).arg("run").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("row 1") && stderr(&out).contains("non-finite"),
        "{}",
        stderr(&out)
    );
    assert!(
        std::fs::read_dir(store.join("objects"))
            .unwrap()
            .next()
            .is_none(),
        "a failed stage published an artifact"
    );
}

#[test]
fn world_commands_name_a_missing_world_or_checkpoint() {
    let store = tempfile::tempdir().unwrap();
    let out = xlvlm(store.path())
        .args(["world", "eval", "--model", "data/toy-vlm", "--world"])
        .arg(store.path().join("no-world"))
        .current_dir(repo())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is not a shapes world"),
        "{}",
        stderr(&out)
    );
    let out = xlvlm(store.path())
        .args(["world", "train", "--world", "data/world", "--out"])
        .arg(store.path().join("out"))
        .arg("--style")
        .arg("--finetune-from")
        .arg(store.path().join("no-checkpoint"))
        .current_dir(repo())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--finetune-from") && stderr(&out).contains("not a checkpoint"),
        "{}",
        stderr(&out)
    );
}
