//! Helpers shared by the model-stage tests: a shapes world, the tiny LLaVA fixture, running
//! the binary and reading the artifacts it wrote.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use xlvlm_store::{Column, FeatureTable, read_parquet};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The tiny random-weight LLaVA checkpoint (2 decoder layers, width 64).
pub fn tiny_llava() -> PathBuf {
    repo().join("tests/fixtures/hf/llava")
}

pub fn xlvlm(store: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_xlvlm"));
    c.env("XLVLM_STORE", store)
        .env_remove("RUST_LOG")
        .env_remove("XLVLM_TEST_SHARD_PAUSE_MS");
    c
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs `xlvlm run file` and fails the test with its stderr if it fails.
pub fn run_ok(store: &Path, file: &Path) -> Output {
    let out = xlvlm(store).arg("run").arg(file).output().unwrap();
    assert!(out.status.success(), "xlvlm run failed:\n{}", stderr(&out));
    out
}

/// A shapes world of 24 images in `dir/world`, and the `[models]`/`[data]` sections that read
/// it with the tiny LLaVA: `vqa` (train questions) and `captions` (train captions).
pub fn world_sections(dir: &Path) -> String {
    let world = dir.join("world");
    let options = xlvlm_data::WorldOptions {
        threads: Some(1),
        ..Default::default()
    };
    let summary = xlvlm_data::generate_world(&world, 3, 24, &options).unwrap();
    let train = &summary.splits["train"];
    format!(
        r#"
[models.tiny]
path = "{model}"

[data.vqa]
format = "vqav2"
questions = "{q}"
annotations = "{a}"
images = "{images}"
image_template = "{template}"
split = "train"
limit = 16

[data.captions]
format = "coco_karpathy"
annotations = "{captions}"
images = "{images}"
split = "train"
limit = 8
"#,
        model = tiny_llava().display(),
        q = world.join(&train.questions_file).display(),
        a = world.join(&train.annotations_file).display(),
        images = world.join(&summary.image_root).display(),
        template = summary.image_template,
        captions = world.join(&summary.captions_file).display(),
    )
}

/// Writes `dir/exp.toml`: experiment `name` over a shapes world in `dir` (see
/// [`world_sections`]) with the given stage sections; returns its path.
pub fn world_experiment(dir: &Path, name: &str, stages: &str) -> PathBuf {
    let file = dir.join("exp.toml");
    let text = format!(
        "[experiment]\nname = \"{name}\"\n{}\n{stages}",
        world_sections(dir)
    );
    std::fs::write(&file, text).unwrap();
    file
}

/// The artifact folder a stage's name points at.
pub fn artifact(store: &Path, experiment: &str, label: &str) -> PathBuf {
    let key = std::fs::read_to_string(store.join("names").join(experiment).join(label))
        .unwrap_or_else(|e| panic!("no name for `{label}`: {e}"));
    let key = key.trim();
    store.join("objects").join(&key[..2]).join(&key[2..])
}

/// The files `prefix-*.parquet` of an artifact, concatenated in order.
pub fn read_table(dir: &Path, prefix: &str) -> FeatureTable {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.starts_with(&format!("{prefix}-")) && name.ends_with(".parquet")
        })
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no {prefix}-*.parquet in {}",
        dir.display()
    );
    let mut out: Option<FeatureTable> = None;
    for f in files {
        let part = read_parquet(&f).unwrap();
        out = Some(match out {
            None => part,
            Some(mut acc) => {
                for ((_, a), (_, b)) in acc.columns.iter_mut().zip(part.columns) {
                    match (a, b) {
                        (Column::Utf8(a), Column::Utf8(b)) => a.extend(b),
                        (Column::Int64(a), Column::Int64(b)) => a.extend(b),
                        (Column::Bool(a), Column::Bool(b)) => a.extend(b),
                        (Column::Float64(a), Column::Float64(b)) => a.extend(b),
                        (Column::Vector { values: a, .. }, Column::Vector { values: b, .. }) => {
                            a.extend(b)
                        }
                        _ => panic!("shards disagree"),
                    }
                }
                acc
            }
        });
    }
    out.unwrap()
}

pub fn strings(t: &FeatureTable, name: &str) -> Vec<String> {
    t.strings(name)
        .unwrap_or_else(|| panic!("no utf8 column {name}"))
        .to_vec()
}

/// Writes a row-major f32 matrix as a version-1 `.npy` file (NumPy's NEP 1 format).
pub fn write_npy(path: &Path, rows: usize, cols: usize, values: &[f32]) {
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for v in values {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    std::fs::write(path, bytes).unwrap();
}

/// Width and vocabulary of the tiny LLaVA fixture's decoder.
pub const TINY_HIDDEN: usize = 64;
pub const TINY_VOCAB: usize = 448;

/// The tiny LLaVA fixture's config and tokenizer in `dir`, with a `model.safetensors` holding
/// only what grounding reads: an LM head with the given `(token, dimension, value)` entries (zero
/// elsewhere), a constant embedding (which names the key layout) and, optionally, a final norm
/// weight.
pub fn planted_checkpoint(dir: &Path, head_entries: &[(usize, usize, f32)], norm: Option<&[f32]>) {
    use safetensors::tensor::TensorView;
    std::fs::create_dir_all(dir).unwrap();
    let fixture = tiny_llava();
    for f in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(fixture.join(f), dir.join(f)).unwrap();
    }
    let mut head = vec![0f32; TINY_VOCAB * TINY_HIDDEN];
    for &(token, dim, value) in head_entries {
        head[token * TINY_HIDDEN + dim] = value;
    }
    let embed = vec![0.5f32; TINY_VOCAB * TINY_HIDDEN];
    let bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let (head, embed) = (bytes(&head), bytes(&embed));
    let norm = norm.map(bytes);
    let matrix = [TINY_VOCAB, TINY_HIDDEN];
    let mut tensors = vec![
        (
            "language_model.lm_head.weight",
            TensorView::new(safetensors::Dtype::F32, matrix.to_vec(), &head).unwrap(),
        ),
        (
            "language_model.model.embed_tokens.weight",
            TensorView::new(safetensors::Dtype::F32, matrix.to_vec(), &embed).unwrap(),
        ),
    ];
    if let Some(norm) = &norm {
        tensors.push((
            "language_model.model.norm.weight",
            TensorView::new(safetensors::Dtype::F32, vec![TINY_HIDDEN], norm).unwrap(),
        ));
    }
    safetensors::serialize_to_file(tensors, None, &dir.join("model.safetensors")).unwrap();
}
