//! The concept-dictionary and steering pipelines run unchanged on the other model families: the
//! tiny SmolVLM fixture (Idefics3 architecture: SigLIP tiles, pixel-shuffle connector, Llama
//! decoder), Idefics2 fixture (SigLIP, perceiver resampler, Mistral decoder), Qwen2-VL fixture
//! (dynamic-resolution ViT with 2D rotary, patch merger, Qwen2 decoder with M-RoPE), Molmo2
//! fixture (multi-crop ViT, attention pooling of patches, Molmo-named decoder) and original Molmo
//! fixture (Molmo-7B-D's layout made by its remote code: CLIP ViT with class token, padding
//! embeddings, its own prompt format) extract features
//! at decoder and vision hooks named the Hugging Face way, build a dictionary, and steer;
//! `model inspect` describes them.

mod support;

use support::*;

fn fixture(name: &str) -> std::path::PathBuf {
    repo().join("tests/fixtures/hf").join(name)
}

#[test]
fn smolvlm_extracts_decomposes_and_steers_through_the_cli() {
    // the shapes world's 64-pixel images become 2 x 2 tiles + the global image: 5 tiles of
    // 16 SigLIP patches per sample at the encoder, 5 x 4 image tokens after the connector
    pipeline_runs("smolvlm", IDEFICS_HOOKS, 5 * 16, 5 * 4);
}

#[test]
fn idefics2_extracts_decomposes_and_steers_through_the_cli() {
    // 64-pixel images resized to 56: 4 x 4 patches, 8 perceiver latents
    pipeline_runs("idefics2", IDEFICS_HOOKS, 16, 8);
}

#[test]
fn qwen2_vl_extracts_decomposes_and_steers_through_the_cli() {
    // 64-pixel images resized to 56 (multiples of 28): 4 x 4 patches of 14 at the encoder,
    // merged 2 x 2 into 4 image tokens
    pipeline_runs("qwen2_vl", QWEN2_VL_HOOKS, 16, 4);
}

#[test]
fn molmo2_extracts_decomposes_and_steers_through_the_cli() {
    // a 64-pixel image becomes 5 crops of 56 pixels (4 x 4 patches of 14 each) whose patches
    // pool into 13 image tokens, as transformers' Molmo2Processor makes them for these images
    pipeline_runs("molmo2", MOLMO_HOOKS, 5 * 16, 13);
}

#[test]
fn molmo_extracts_decomposes_and_steers_through_the_cli() {
    // a 64-pixel image becomes the global view and one crop of 112 pixels (8 x 8 patches of 14
    // and the class token at the encoder); the global view pools into 4 x 4 tokens and the
    // crop's kept window into 4 x 4 more
    pipeline_runs("molmo", MOLMO_HOOKS, 2 * 65, 32);
}

#[test]
fn molmo_batches_give_what_one_prompt_at_a_time_gives() {
    // rows of different lengths (left padding), each row's crops pooled into its own tokens
    for name in ["molmo", "molmo2"] {
        let [one, many] = [1, 8].map(|batch_size| batched_extraction(name, batch_size));
        for (label, (a, b)) in ["decoder", "vision", "projector"]
            .iter()
            .zip(one.iter().zip(&many))
        {
            assert_eq!(
                strings(a, "sample_id"),
                strings(b, "sample_id"),
                "{name} {label}"
            );
            assert_eq!(a.ints("position"), b.ints("position"), "{name} {label}");
            let ((da, va), (db, vb)) = (a.vector("vector").unwrap(), b.vector("vector").unwrap());
            assert_eq!(da, db);
            let scale = va.iter().fold(0f32, |m, v| m.max(v.abs()));
            let diff = va
                .iter()
                .zip(vb)
                .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
            assert!(
                diff <= 1e-4 * scale,
                "{name} {label}: batched differs by {diff} (scale {scale})"
            );
        }
        assert_eq!(
            strings(&one[3], "generation"),
            strings(&many[3], "generation"),
            "{name}: generations"
        );
    }
}

/// Decoder states of generated tokens, ViT states and projector outputs of the VQA samples, and
/// the generations, extracted by the tiny fixture `name` at `batch_size` rows per call.
fn batched_extraction(name: &str, batch_size: usize) -> [xlvlm_store::FeatureTable; 4] {
    let [decoder_hook, vision_hook, connector_hook] = MOLMO_HOOKS;
    let dir = tempfile::tempdir().unwrap();
    let file = world_experiment(
        dir.path(),
        "batched",
        &format!(
            r#"
[models.vlm]
path = "{model}"

[stage.decoder]
kind = "extract"
batch_size = {batch_size}
model = "vlm"
data = "vqa"
hooks = ["{decoder_hook}"]
generate = {{ max_new_tokens = 3 }}
tokens = {{ among = "generated" }}

[stage.vision]
kind = "extract"
batch_size = {batch_size}
model = "vlm"
data = "vqa"
mode = "teacher_forcing"
hooks = ["{vision_hook}"]

[stage.projector]
from = "vision"
hooks = ["{connector_hook}"]
"#,
            model = fixture(name).display(),
        ),
    );
    let store = dir.path().join("store");
    run_ok(&store, &file);
    let table = |label: &str, prefix: &str| read_table(&artifact(&store, "batched", label), prefix);
    [
        table("decoder", "shard"),
        table("vision", "shard"),
        table("projector", "shard"),
        table("decoder", "generations"),
    ]
}

/// A family's Hugging Face module names for decoder layer 1, vision layer 1 and the connector.
type HookNames = [&'static str; 3];
const IDEFICS_HOOKS: HookNames = [
    "model.text_model.layers.1",
    "model.vision_model.encoder.layers.1",
    "model.connector",
];
const QWEN2_VL_HOOKS: HookNames = ["model.layers.1", "visual.blocks.1", "visual.merger"];
const MOLMO_HOOKS: HookNames = [
    "model.transformer.blocks.1",
    "model.vision_backbone.image_vit.transformer.resblocks.1",
    "model.vision_backbone.image_projector",
];

/// extract (decoder and vision hooks) -> aggregate -> decompose, extract x2 -> shift -> steer
/// with an alpha sweep, on the tiny fixture `name`, whose images give `vision_rows` encoder
/// positions and `projector_rows` image tokens per sample.
fn pipeline_runs(name: &str, hooks: HookNames, vision_rows: usize, projector_rows: usize) {
    let [decoder_hook, vision_hook, connector_hook] = hooks;
    let dir = tempfile::tempdir().unwrap();
    let file = world_experiment(
        dir.path(),
        "family",
        &format!(
            r#"
[models.vlm]
path = "{model}"

[stage.base]
kind = "extract"
batch_size = 8
model = "vlm"
data = "captions"
hooks = ["{decoder_hook}"]
generate = {{ max_new_tokens = 4 }}
tokens = {{ mean_before = [] }}

[stage.yes]
kind = "extract"
batch_size = 8
model = "vlm"
data = "vqa"
hooks = ["lm.layers.1"]
generate = {{ max_new_tokens = 4 }}
tokens = {{ among = "generated", index = -1 }}

[stage.vision]
kind = "extract"
batch_size = 8
model = "vlm"
data = "captions"
mode = "teacher_forcing"
hooks = ["{vision_hook}"]

[stage.tiles]
from = "vision"
hooks = ["{connector_hook}"]

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
batch_size = 8
model = "vlm"
data = "captions"
vector = "shift"
hooks = ["lm.layers.0", "lm.layers.1"]
alpha = {{ sweep = [0, 400] }}
generate = {{ max_new_tokens = 4 }}
"#,
            model = fixture(name).display(),
        ),
    );
    let store = dir.path().join("store");
    run_ok(&store, &file);

    // one mean state per caption at the decoder, named by the stable hook
    let base = read_table(&artifact(&store, "family", "base"), "shard");
    assert_eq!(strings(&base, "sample_id").len(), 8);
    assert!(strings(&base, "hook").iter().all(|h| h == "lm.layers.1"));
    assert_eq!(base.vector("vector").unwrap().0, 64);

    for (label, hook, per_sample) in [
        ("vision", "vision.layers.1", vision_rows),
        ("tiles", "projector", projector_rows),
    ] {
        let t = read_table(&artifact(&store, "family", label), "shard");
        let ids = strings(&t, "sample_id");
        assert_eq!(ids.len(), 8 * per_sample, "{label}");
        assert!(strings(&t, "hook").iter().all(|h| h == hook), "{label}");
        assert!(strings(&t, "token_role").iter().all(|r| r == "image"));
        let positions = t.ints("position").unwrap();
        let first = &ids[0];
        let of_first: Vec<i64> = ids
            .iter()
            .zip(positions)
            .filter(|(id, _)| *id == first)
            .map(|(_, &p)| p)
            .collect();
        assert_eq!(
            of_first,
            (0..per_sample as i64).collect::<Vec<_>>(),
            "{label}"
        );
    }
    assert!(std::fs::metadata(artifact(&store, "family", "concepts")).is_ok());

    // steering: alpha = 0 is the unsteered generation, a large alpha changes some
    let generations = |label: &str| {
        strings(
            &read_table(&artifact(&store, "family", label), "generations"),
            "generation",
        )
    };
    assert_eq!(generations("base"), generations("steered[alpha=0]"));
    let changed = generations("base")
        .iter()
        .zip(generations("steered[alpha=400]"))
        .filter(|(a, b)| **a != *b)
        .count();
    assert!(changed > 0, "alpha = 400 changed no generation");
}

#[test]
fn model_inspect_describes_smolvlm() {
    let dir = tempfile::tempdir().unwrap();
    let out = xlvlm(dir.path())
        .args(["model", "inspect"])
        .arg(fixture("smolvlm"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for needle in [
        "Idefics3/SmolVLM",
        "model_type smolvlm",
        "decoder Llama",
        "SigLIP 2 layers",
        "4 image tokens per tile",
        "pixel shuffle x2",
        "vision.layers.1",
        "projector",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}
