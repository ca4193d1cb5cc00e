//! Qwen2-VL parity with transformers 5.24 on the committed tiny checkpoint (f32): every vision
//! block, the merger output, every decoder layer (block, attention, MLP), `hidden_states`, logits,
//! interventions and greedy generation with M-RoPE positions; both config dialects, both key
//! layouts, tied and untied embeddings.

mod common;

use common::{B, Golden, assert_close, assert_hooks_match, device, fixture, to_f32};
use xlvlm_model::{
    Batch, CaptureSpec, GenerateOptions, HookPoint, ImagePatches, Intervention, InterventionMode,
    Logits, ModelConfig, Positions, Qwen2VlConfig, TokenRole, VisionFamily, Vlm, WeightDType,
    rope_index,
};

const TOL: f32 = 1e-4;
const NAME: &str = "qwen2_vl";

fn load(rel: &str) -> Vlm<B> {
    Vlm::<B>::load(fixture(rel).to_str().unwrap(), WeightDType::F32, &device())
        .unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The processor outputs of the golden: ids, mask, flattened patches and `image_grid_thw`.
fn golden_batch(g: &Golden) -> Batch {
    batch_from(g, "input")
}

fn batch_from(g: &Golden, prefix: &str) -> Batch {
    let (shape, data) = g.f32(&format!("{prefix}.pixel_values"));
    let grid_thw = g
        .rows_i64(&format!("{prefix}.image_grid_thw"))
        .into_iter()
        .map(|r| [r[0] as usize, r[1] as usize, r[2] as usize])
        .collect();
    Batch::from_padded(
        g.rows_u32(&format!("{prefix}.input_ids")),
        g.rows_i64(&format!("{prefix}.attention_mask")),
    )
    .with_image_patches(ImagePatches {
        data: data.clone(),
        patch_dim: shape[1],
        grid_thw,
    })
}

fn qwen2_vl_config(config: &ModelConfig) -> &Qwen2VlConfig {
    match &config.vision {
        Some(VisionFamily::Qwen2Vl(q)) => q,
        other => panic!("expected a Qwen2-VL vision side, got {other:?}"),
    }
}

fn all(hook: HookPoint) -> CaptureSpec {
    CaptureSpec {
        hook,
        positions: Positions::All,
    }
}

fn check_every_layer(rel: &str) {
    let model = load(rel);
    let g = Golden::open(NAME);
    let batch = golden_batch(&g);
    let captures: Vec<CaptureSpec> = model.hook_points().into_iter().map(all).collect();
    let out = model.forward(&batch, &captures, &[], Logits::All).unwrap();
    let get = |hook: HookPoint| {
        let c = out.captures.iter().find(|c| c.spec.hook == hook).unwrap();
        assert_eq!(c.rows.len(), 1, "{hook}: one image, one row");
        c.rows[0].to_f32()
    };
    let vision = qwen2_vl_config(model.config());
    let layers = model.config().text.num_layers;
    assert_hooks_match(rel, get, &g, vision.vision.depth, layers, TOL);
    for i in 0..layers {
        if i + 1 < layers {
            assert_close(
                &format!("{rel} hidden_states.{}", i + 1),
                &get(HookPoint::Layer(i)),
                &g.f32(&format!("text.hidden_states.{}", i + 1)).1,
                TOL,
            );
        }
    }
    assert_close(
        &format!("{rel} hidden_states.{layers} (final norm)"),
        &get(HookPoint::Norm),
        &g.f32(&format!("text.hidden_states.{layers}")).1,
        TOL,
    );
    assert_close(
        &format!("{rel} logits"),
        &to_f32(out.logits.unwrap()),
        &g.f32("logits").1,
        TOL,
    );
    // roles: the <|image_pad|> tokens are image positions, the rest prompt
    let embed = out
        .captures
        .iter()
        .find(|c| c.spec.hook == HookPoint::Embed)
        .unwrap();
    let ids = &g.rows_u32("input.input_ids")[0];
    let image_positions = embed.rows[0]
        .positions
        .iter()
        .filter(|m| m.role == TokenRole::Image)
        .count();
    assert_eq!(image_positions, 6);
    for meta in &embed.rows[0].positions {
        assert_eq!(
            meta.role == TokenRole::Image,
            ids[meta.position] == vision.image_token_id
        );
    }
}

#[test]
fn transformers5_layout_and_nested_config_match_every_layer() {
    check_every_layer(NAME);
}

#[test]
fn hub_layout_and_flat_config_match_every_layer() {
    check_every_layer(&format!("{NAME}/hub_format"));
}

#[test]
fn both_config_dialects_parse_to_the_same_model() {
    let nested = ModelConfig::from_dir(&fixture(NAME)).unwrap();
    let flat = ModelConfig::from_dir(&fixture(&format!("{NAME}/hub_format"))).unwrap();
    for c in [&nested, &flat] {
        assert_eq!(c.text.mrope_section.as_deref(), Some(&[2, 3, 3][..]));
        assert_eq!(c.text.rope_theta, 1_000_000.0);
        assert_eq!(c.text.num_kv_heads, 2);
        assert!(c.text.qkv_bias && !c.text.o_bias);
        assert!(c.text.tie_word_embeddings);
        assert_eq!(c.eos_token_ids, vec![0]);
    }
    assert_eq!(qwen2_vl_config(&nested), qwen2_vl_config(&flat));
    let q = qwen2_vl_config(&nested);
    assert_eq!(
        (
            q.image_token_id,
            q.vision.depth,
            q.vision.embed_dim,
            q.vision.hidden_size
        ),
        (405, 2, 64, 64)
    );
    assert_eq!(q.tokens_for_grid([1, 4, 6]), 6);
}

#[test]
fn mrope_section_that_does_not_fill_the_head_is_a_config_error() {
    let text = std::fs::read_to_string(fixture(&format!("{NAME}/hub_format/config.json"))).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["rope_scaling"]["mrope_section"] = serde_json::json!([2, 3, 4]);
    let err = ModelConfig::from_json(&json, std::path::Path::new("config.json"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("mrope_section") && err.contains("head_dim"),
        "{err}"
    );
}

/// 3D positions and the rope delta of the prompt equal transformers' `get_rope_index`.
#[test]
fn rope_index_matches_transformers() {
    let g = Golden::open(NAME);
    let ids = &g.rows_u32("input.input_ids")[0];
    let grids: Vec<[usize; 3]> = g
        .rows_i64("input.image_grid_thw")
        .into_iter()
        .map(|r| [r[0] as usize, r[1] as usize, r[2] as usize])
        .collect();
    let (positions, delta) = rope_index(ids, 405, &mut grids.into_iter(), 2).unwrap();
    let (shape, want) = g.i64("rope.position_ids");
    let seq = shape[2];
    for (s, p) in positions.iter().enumerate() {
        for (r, &v) in p.iter().enumerate() {
            assert_eq!(v as i64, want[r * seq + s], "row {r}, token {s}");
        }
    }
    assert_eq!(delta, g.i64("rope.deltas").1[0]);
}

fn intervention(g: &Golden, mode: InterventionMode) -> Intervention {
    Intervention {
        hook: HookPoint::Layer(g.i64("intervention.layer").1[0] as usize),
        vector: g.f32("intervention.vector").1.clone(),
        alpha: g.f32("intervention.alpha").1[0],
        positions: Positions::All,
        mode,
    }
}

#[test]
fn interventions_match_transformers_forward_hooks() {
    let model = load(NAME);
    let g = Golden::open(NAME);
    for (mode, key) in [
        (InterventionMode::Add, "intervention.add.logits"),
        (InterventionMode::Projected, "intervention.projected.logits"),
    ] {
        let out = model
            .forward(
                &golden_batch(&g),
                &[],
                &[intervention(&g, mode)],
                Logits::All,
            )
            .unwrap();
        assert_close(key, &to_f32(out.logits.unwrap()), &g.f32(key).1, TOL);
    }
}

/// Generated ids equal transformers' and so do the logits of every step (the tiny random model
/// repeats one token, so the logits are what tells a wrong rope delta apart).
fn check_generation(batch: &Batch, key: &str, interventions: &[Intervention]) {
    let model = load(NAME);
    let g = Golden::open(NAME);
    let options = GenerateOptions {
        max_new_tokens: 20,
        keep_logits: true,
        ..Default::default()
    };
    let generation = model.generate(batch, &options, &[], interventions).unwrap();
    let eos = &model.config().eos_token_ids;
    let (shape, want_logits) = g.f32(&format!("{key}.logits"));
    let (rows, steps, vocab) = (shape[0], shape[1], shape[2]);
    assert_eq!(generation.ids.len(), rows);
    for (r, want) in g.rows_u32(&format!("{key}.output_ids")).iter().enumerate() {
        let end = want
            .iter()
            .position(|t| eos.contains(t))
            .map_or(want.len(), |p| p + 1);
        assert_eq!(generation.ids[r], want[..end], "{key} row {r}");
        for (s, step) in generation.step_logits.iter().enumerate().take(end) {
            let at = (r * steps + s) * vocab;
            assert_close(
                &format!("{key} row {r} step {s}"),
                &to_f32(step.clone())[r * vocab..(r + 1) * vocab],
                &want_logits[at..at + vocab],
                TOL,
            );
        }
    }
}

#[test]
fn greedy_generation_matches_transformers() {
    let g = Golden::open(NAME);
    check_generation(&golden_batch(&g), "generate", &[]);
}

#[test]
fn greedy_generation_with_intervention_matches_transformers() {
    let g = Golden::open(NAME);
    check_generation(
        &golden_batch(&g),
        "generate_intervention",
        &[intervention(&g, InterventionMode::Add)],
    );
}

/// Two left-padded chats, three images of different sizes (grids 4x6, 2x10, 8x4): the vision
/// tower runs them as one padded batch, each row gets its own 3D positions and rope delta.
#[test]
fn left_padded_batch_of_differently_sized_images_matches_transformers() {
    let model = load(NAME);
    let g = Golden::open(NAME);
    let batch = batch_from(&g, "batch.input");
    assert_eq!(batch.image_patches.as_ref().unwrap().num_images(), 3);
    let out = model.forward(&batch, &[], &[], Logits::All).unwrap();
    let got = to_f32(out.logits.unwrap());
    let (shape, want) = g.f32("batch.logits");
    let (seq, vocab) = (shape[1], shape[2]);
    // padding positions hold no prediction (transformers and xlvlm give them other positions)
    for (r, mask) in batch.attention_mask.iter().enumerate() {
        for (s, _) in mask.iter().enumerate().filter(|(_, m)| **m) {
            let at = (r * seq + s) * vocab;
            assert_close(
                &format!("batch row {r} position {s}"),
                &got[at..at + vocab],
                &want[at..at + vocab],
                TOL,
            );
        }
    }
    check_generation(&batch, "batch.generate", &[]);
}

/// Newer Hub uploads (`model.language_model.*`, `model.visual.*`) with an untied `lm_head`:
/// made from the fixture by renaming its tensors and writing the embedding as the head.
#[test]
fn nested_key_layout_with_untied_head_matches() {
    let src = std::fs::read(fixture(&format!("{NAME}/model.safetensors"))).unwrap();
    let st = safetensors::SafeTensors::deserialize(&src).unwrap();
    let mut renamed: Vec<(String, safetensors::tensor::TensorView<'_>)> = st
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let new = match name.strip_prefix("model.") {
                Some(rest) => format!("model.language_model.{rest}"),
                None => format!("model.{name}"),
            };
            (new, view)
        })
        .collect();
    let embed = st.tensor("model.embed_tokens.weight").unwrap();
    renamed.push(("lm_head.weight".into(), embed));
    assert!(renamed.iter().any(|(n, _)| n.starts_with("model.visual.")));
    let dir = std::env::temp_dir().join(format!("xlvlm-qwen2vl-layout-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("model.safetensors"),
        safetensors::serialize(renamed, None).unwrap(),
    )
    .unwrap();
    let text = std::fs::read_to_string(fixture(&format!("{NAME}/config.json"))).unwrap();
    let mut config: serde_json::Value = serde_json::from_str(&text).unwrap();
    config["tie_word_embeddings"] = false.into();
    config["text_config"]["tie_word_embeddings"] = false.into();
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    let model = Vlm::<B>::load(dir.to_str().unwrap(), WeightDType::F32, &device()).unwrap();
    assert!(!model.config().text.tie_word_embeddings);
    let mut names = Vec::new();
    model.visit_params(|name, _, _| names.push(name.to_string()));
    assert!(names.iter().any(|n| n == "lm_head.weight"));
    assert!(
        names
            .iter()
            .any(|n| n == "model.visual.merger.mlp.2.weight")
    );
    let g = Golden::open(NAME);
    let out = model
        .forward(&golden_batch(&g), &[], &[], Logits::All)
        .unwrap();
    assert_close(
        "model.language_model.* layout logits",
        &to_f32(out.logits.unwrap()),
        &g.f32("logits").1,
        TOL,
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn hook_aliases_and_bad_image_input() {
    let model = load(NAME);
    assert_eq!(
        model.parse_hook("model.layers.1").unwrap(),
        HookPoint::Layer(1)
    );
    assert_eq!(
        model
            .parse_hook("model.language_model.layers.0.mlp")
            .unwrap(),
        HookPoint::Mlp(0)
    );
    assert_eq!(
        model.parse_hook("visual.blocks.1").unwrap(),
        HookPoint::VisionLayer(1)
    );
    assert_eq!(
        model.parse_hook("model.visual.blocks.0").unwrap(),
        HookPoint::VisionLayer(0)
    );
    assert_eq!(
        model.parse_hook("visual.merger").unwrap(),
        HookPoint::Projector
    );
    assert!(model.parse_hook("visual.blocks.2").is_err());

    let g = Golden::open(NAME);
    // a grid that does not match the run of image tokens
    let mut batch = golden_batch(&g);
    let patches = batch.image_patches.as_mut().unwrap();
    patches.grid_thw = vec![[1, 6, 4]];
    let ok = model.forward(&batch, &[], &[], Logits::None);
    assert!(ok.is_ok(), "same token count, other shape: {:?}", ok.err());
    let patches = batch.image_patches.as_mut().unwrap();
    patches.grid_thw = vec![[1, 4, 4]];
    let err = model
        .forward(&batch, &[], &[], Logits::None)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("patches") || err.contains("grid"), "{err}");
    // no images for the image tokens
    let mut batch = golden_batch(&g);
    batch.image_patches = None;
    let err = model
        .forward(&batch, &[], &[], Logits::None)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("image tokens"), "{err}");
}

#[test]
fn inspect_describes_the_vision_side() {
    let info = xlvlm_model::inspect(fixture(NAME).to_str().unwrap()).unwrap();
    assert!(info.hook_points.contains(&HookPoint::VisionLayer(1)));
    assert!(info.hook_points.contains(&HookPoint::Projector));
    let text = info.to_string();
    assert!(
        text.contains("Qwen2-VL") && text.contains("2 blocks"),
        "{text}"
    );
}

/// The checkpoint run in f16 and bf16 (as on a GPU) stays close to the f32 golden at the
/// precision of the dtype (the vision rotary embedding is applied in f32 either way).
#[test]
fn half_precision_runs_stay_close() {
    let g = Golden::open(NAME);
    for (dtype, tol) in [(WeightDType::F16, 3e-3), (WeightDType::BF16, 2e-2)] {
        let model = Vlm::<B>::load(fixture(NAME).to_str().unwrap(), dtype, &device()).unwrap();
        let out = model
            .forward(&golden_batch(&g), &[], &[], Logits::All)
            .unwrap();
        assert_close(
            &format!("{dtype} logits"),
            &to_f32(out.logits.unwrap()),
            &g.f32("logits").1,
            tol,
        );
    }
}

/// `get_image_features` alone: the merger output of the fixture image.
#[test]
fn image_patch_features_match_transformers() {
    let model = load(NAME);
    let g = Golden::open(NAME);
    let patches = golden_batch(&g).image_patches.unwrap();
    let features = model.image_patch_features(&patches).unwrap();
    assert_eq!(features.dims(), [6, 64]);
    assert_close(
        "image_patch_features",
        &to_f32(features),
        &g.f32("image_features").1,
        TOL,
    );
}

/// Vision captures belong to batch rows: row 1's two images (20 and 32 patches) give one row of
/// 52 positions, numbered on across its images; padding that evens out image sizes is never
/// captured; row 0's image is the fixture's, so its first block output is the golden's.
#[test]
fn vision_captures_of_a_batch_follow_the_rows() {
    let model = load(NAME);
    let g = Golden::open(NAME);
    let batch = batch_from(&g, "batch.input");
    let captures = [all(HookPoint::VisionLayer(0)), all(HookPoint::Projector)];
    let out = model.forward(&batch, &captures, &[], Logits::None).unwrap();
    let rows = |hook: HookPoint| {
        &out.captures
            .iter()
            .find(|c| c.spec.hook == hook)
            .unwrap()
            .rows
    };
    let layer = rows(HookPoint::VisionLayer(0));
    let merger = rows(HookPoint::Projector);
    assert_eq!(layer.len(), 2);
    for (r, (patches, tokens)) in [(24, 6), (20 + 32, 5 + 8)].into_iter().enumerate() {
        let positions: Vec<usize> = layer[r].positions.iter().map(|m| m.position).collect();
        assert_eq!(positions, (0..patches).collect::<Vec<_>>(), "row {r}");
        assert_eq!(merger[r].positions.len(), tokens, "row {r}");
    }
    assert_close(
        "row 0 vision block 0",
        &layer[0].to_f32(),
        &g.f32("vision.layer_output.0").1,
        TOL,
    );
}

/// The flat `config.json` layout of Qwen/Qwen2-VL-7B-Instruct on the Hub (its keys and values,
/// weights aside) parses to the model the seed uses: 28 decoder layers, M-RoPE [16, 24, 24] over
/// head_dim 128, an untied head, and a 32-block ViT spelled with `in_chans`.
#[test]
fn hub_qwen2_vl_7b_config_parses() {
    let json = serde_json::json!({
        "architectures": ["Qwen2VLForConditionalGeneration"],
        "attention_dropout": 0.0, "bos_token_id": 151643, "eos_token_id": 151645,
        "vision_start_token_id": 151652, "vision_end_token_id": 151653,
        "vision_token_id": 151654, "image_token_id": 151655, "video_token_id": 151656,
        "hidden_act": "silu", "hidden_size": 3584, "initializer_range": 0.02,
        "intermediate_size": 18944, "max_position_embeddings": 32768, "max_window_layers": 28,
        "model_type": "qwen2_vl", "num_attention_heads": 28, "num_hidden_layers": 28,
        "num_key_value_heads": 4, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
        "sliding_window": 32768, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
        "transformers_version": "4.41.2", "use_cache": true, "use_sliding_window": false,
        "vision_config": {"depth": 32, "embed_dim": 1280, "mlp_ratio": 4, "num_heads": 16,
            "in_chans": 3, "hidden_size": 3584, "patch_size": 14, "spatial_merge_size": 2,
            "spatial_patch_size": 14, "temporal_patch_size": 2},
        "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
        "vocab_size": 152064
    });
    let config = ModelConfig::from_json(&json, std::path::Path::new("config.json")).unwrap();
    let t = &config.text;
    assert_eq!(
        (
            t.num_layers,
            t.hidden_size,
            t.num_heads,
            t.num_kv_heads,
            t.head_dim
        ),
        (28, 3584, 28, 4, 128)
    );
    assert_eq!(t.mrope_section.as_deref(), Some(&[16, 24, 24][..]));
    assert!(!t.tie_word_embeddings && t.sliding_window.is_none());
    assert_eq!(config.eos_token_ids, vec![151645]);
    let q = qwen2_vl_config(&config);
    assert_eq!(
        (
            q.vision.depth,
            q.vision.embed_dim,
            q.vision.in_channels,
            q.vision.mlp_hidden()
        ),
        (32, 1280, 3, 5120)
    );
    assert_eq!(q.image_token_id, 151655);
    assert_eq!(
        xlvlm_model::parse_hook("model.layers.27", 28, 32).unwrap(),
        HookPoint::Layer(27)
    );
}
