//! Molmo2 against transformers 5.24 on the committed tiny checkpoint (f32), in both key layouts,
//! and the original Molmo (`model_type = "molmo"`) against the remote code of
//! allenai/Molmo-7B-D-0924 on its tiny checkpoint (`tests/fixtures/hf/molmo`, made by
//! `tools/refgen/make_molmo_refs.py`): every ViT layer, the connector (multi-layer features, pad
//! embeddings, attention pooling, projector), every decoder layer, `hidden_states`, logits,
//! interventions and 20 greedy tokens. Also the config dialects.

mod common;

use common::{B, Golden, assert_close, assert_hooks_match, device, fixture, to_f32};
use xlvlm_model::{
    Batch, CaptureSpec, GenerateOptions, HookPoint, Intervention, InterventionMode, Logits,
    ModelConfig, PatchPooling, PixelValues, Positions, QkNorm, TokenRole, VisionFamily, Vlm,
    WeightDType,
};

const TOL: f32 = 1e-4;

fn load(rel: &str) -> Vlm<B> {
    Vlm::<B>::load(fixture(rel).to_str().unwrap(), WeightDType::F32, &device())
        .unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The processor's `[crops, patches, p * p * 3]` patches (each `(y, x, channel)`) back to crops
/// `[crops, 3, side, side]`, the layout [`PixelValues`] holds.
fn crops(g: &Golden, patch: usize) -> PixelValues {
    crops_of(g, "input.pixel_values", patch)
}

/// [`crops`] of the golden `key` (leading batch dimensions are folded into the crops).
fn crops_of(g: &Golden, key: &str, patch: usize) -> PixelValues {
    let (shape, data) = g.f32(key);
    let [.., patches, dim] = shape[..] else {
        panic!("{key} shape {shape:?}")
    };
    let n = shape[..shape.len() - 2].iter().product::<usize>();
    assert_eq!(dim, patch * patch * 3);
    let grid = (patches as f64).sqrt() as usize;
    let side = grid * patch;
    let mut out = vec![0f32; n * 3 * side * side];
    for c in 0..n {
        for k in 0..patches {
            let (gy, gx) = (k / grid, k % grid);
            for py in 0..patch {
                for px in 0..patch {
                    for ch in 0..3 {
                        let v = data[(c * patches + k) * dim + (py * patch + px) * 3 + ch];
                        let (y, x) = (gy * patch + py, gx * patch + px);
                        out[((c * 3 + ch) * side + y) * side + x] = v;
                    }
                }
            }
        }
    }
    PixelValues {
        data: out,
        shape: [n, 3, side, side],
    }
}

fn pooling(g: &Golden) -> PatchPooling {
    let (shape, index) = g.i64("input.image_token_pooling");
    PatchPooling {
        index: index.clone(),
        shape: [shape[0], shape[1]],
        image_masks: None,
    }
}

fn golden_batch(g: &Golden) -> Batch {
    Batch::from_padded(
        g.rows_u32("input.input_ids"),
        g.rows_i64("input.attention_mask"),
    )
    .with_pixel_values(crops(g, 14))
    .with_patch_pooling(pooling(g))
}

fn all(hook: HookPoint) -> CaptureSpec {
    CaptureSpec {
        hook,
        positions: Positions::All,
    }
}

fn check_every_layer(rel: &str) {
    let model = load(rel);
    let g = Golden::open("molmo2");
    let captures: Vec<CaptureSpec> = model.hook_points().into_iter().map(all).collect();
    let out = model
        .forward(&golden_batch(&g), &captures, &[], Logits::All)
        .unwrap();
    let get = |hook: HookPoint| {
        let c = out.captures.iter().find(|c| c.spec.hook == hook).unwrap();
        c.rows.iter().flat_map(|r| r.to_f32()).collect::<Vec<f32>>()
    };
    let vision_layers = model.config().vision.as_ref().unwrap().num_layers();
    assert_eq!(vision_layers, 3);
    let layers = model.config().text.num_layers;
    // hidden_states.0: the image features are added to the patch tokens' embeddings
    assert_hooks_match(rel, get, &g, vision_layers, layers, TOL);
    assert_close(
        &format!("{rel} hidden_states.1"),
        &get(HookPoint::Layer(0)),
        &g.f32("text.hidden_states.1").1,
        TOL,
    );
    assert_close(
        &format!("{rel} hidden_states.{layers} (final norm)"),
        &get(HookPoint::Norm),
        &g.f32(&format!("text.hidden_states.{layers}")).1,
        TOL,
    );
    let logits = out.logits.unwrap();
    assert_eq!(logits.dims(), [1, 56, 402], "logits cover vocab_size only");
    assert_close(
        &format!("{rel} logits"),
        &to_f32(logits),
        &g.f32("logits").1,
        TOL,
    );
    let embed = out
        .captures
        .iter()
        .find(|c| c.spec.hook == HookPoint::Embed)
        .unwrap();
    let ids = &g.rows_u32("input.input_ids")[0];
    let images = embed.rows[0]
        .positions
        .iter()
        .filter(|m| m.role == TokenRole::Image)
        .count();
    assert_eq!(images, ids.iter().filter(|&&t| t == 404).count());
}

#[test]
fn molmo2_transformers5_layout_matches_every_layer() {
    check_every_layer("molmo2");
}

#[test]
fn molmo2_hub_layout_with_the_embedding_split_at_vocab_size_matches_every_layer() {
    check_every_layer("molmo2/hub_format");
}

#[test]
fn image_features_alone_match_the_connector_output() {
    let model = load("molmo2");
    let g = Golden::open("molmo2");
    let features = model
        .image_features_pooled(&crops(&g, 14), &pooling(&g))
        .unwrap();
    assert_eq!(features.dims(), [1, 13, 64]);
    assert_close(
        "image features",
        &to_f32(features),
        &g.f32("image_features").1,
        TOL,
    );
    // a pooling index past the crops' patches is an error, not a panic
    let bad = PatchPooling {
        index: vec![0, 1, 2, 80],
        shape: [1, 4],
        image_masks: None,
    };
    let err = model
        .image_features_pooled(&crops(&g, 14), &bad)
        .unwrap_err()
        .to_string();
    assert!(err.contains("80") && err.contains("80 patches"), "{err}");
    // Molmo2 has no pad embeddings, so image masks are a mistake
    let masked = PatchPooling {
        image_masks: Some(vec![1.0; 80]),
        ..pooling(&g)
    };
    let err = model
        .image_features_pooled(&crops(&g, 14), &masked)
        .unwrap_err()
        .to_string();
    assert!(err.contains("image_masks"), "{err}");
    // Molmo images without the pooling cannot be placed
    let unpooled = Batch {
        patch_pooling: None,
        ..golden_batch(&g)
    };
    let err = model
        .forward(&unpooled, &[], &[], Logits::LastToken)
        .err()
        .expect("no pooling is an error")
        .to_string();
    assert!(err.contains("image_token_pooling"), "{err}");
}

#[test]
fn interventions_match_transformers_forward_hooks() {
    let g = Golden::open("molmo2");
    check_interventions(&load("molmo2"), &g, &golden_batch(&g));
}

/// Both intervention modes at the golden layer give the reference's logits, and change them.
fn check_interventions(model: &Vlm<B>, g: &Golden, batch: &Batch) {
    let hook = HookPoint::Layer(g.i64("intervention.layer").1[0] as usize);
    for (mode, key) in [
        (InterventionMode::Add, "intervention.add.logits"),
        (InterventionMode::Projected, "intervention.projected.logits"),
    ] {
        let iv = Intervention {
            hook,
            vector: g.f32("intervention.vector").1.clone(),
            alpha: g.f32("intervention.alpha").1[0],
            positions: Positions::All,
            mode,
        };
        let out = model.forward(batch, &[], &[iv], Logits::All).unwrap();
        let logits = to_f32(out.logits.unwrap());
        assert_close(key, &logits, &g.f32(key).1, TOL);
        assert!(common::rel_err(&logits, &g.f32("logits").1) > 1e-3);
    }
}

#[test]
fn greedy_generation_matches_transformers() {
    let g = Golden::open("molmo2");
    check_greedy_generation(&load("molmo2/hub_format"), &g, &golden_batch(&g));
}

/// 20 greedy tokens and every step's logits as the reference generated them, with and without
/// an added vector.
fn check_greedy_generation(model: &Vlm<B>, g: &Golden, batch: &Batch) {
    let options = GenerateOptions {
        max_new_tokens: 20,
        keep_logits: true,
        ..Default::default()
    };
    for (key, interventions) in [
        ("generate", vec![]),
        (
            "generate_intervention",
            vec![Intervention {
                hook: HookPoint::Layer(g.i64("intervention.layer").1[0] as usize),
                vector: g.f32("intervention.vector").1.clone(),
                alpha: g.f32("intervention.alpha").1[0],
                positions: Positions::All,
                mode: InterventionMode::Add,
            }],
        ),
    ] {
        let generation = model
            .generate(batch, &options, &[], &interventions)
            .unwrap();
        let want = &g.rows_u32(&format!("{key}.output_ids"))[0];
        assert_eq!(want.len(), 20);
        assert_eq!(generation.ids[0], *want, "{key}");
        let (shape, logits) = g.f32(&format!("{key}.logits"));
        let vocab = shape[2];
        for (s, step) in generation.step_logits.iter().enumerate() {
            assert_close(
                &format!("{key} step {s}"),
                &to_f32(step.clone()),
                &logits[s * vocab..(s + 1) * vocab],
                TOL,
            );
        }
    }
}

#[test]
fn both_config_dialects_parse_as_molmo2() {
    for rel in ["molmo2", "molmo2/hub_format"] {
        let config = ModelConfig::from_dir(&fixture(rel)).unwrap();
        let Some(VisionFamily::Molmo(mc)) = &config.vision else {
            panic!("{rel}: not Molmo");
        };
        assert_eq!(mc.feature_layers, vec![-1, -3], "{rel}");
        assert_eq!(mc.image_patch_id, 404);
        assert_eq!(mc.vision.image_size, 56);
        assert!(!mc.class_token);
        let t = &config.text;
        assert_eq!(
            (t.vocab_size, t.extra_vocab, t.embedding_rows()),
            (402, 12, 414)
        );
        assert_eq!(t.qk_norm, Some(QkNorm::PerHead));
        assert_eq!(t.rope_theta, 1e6, "{rel}");
        assert_eq!((t.num_heads, t.num_kv_heads, t.head_dim), (4, 2, 16));
        assert!(!t.qkv_bias && !t.o_bias);
    }
}

/// The original Molmo's flat config (Molmo-7B-D-0924's values): the fused MLP width is halved,
/// the ViT and connector take the remote code's fixed values.
#[test]
fn original_molmo_flat_config_parses() {
    let cfg = serde_json::json!({
        "architectures": ["MolmoForCausalLM"],
        "model_type": "molmo",
        "hidden_size": 3584,
        "intermediate_size": 37888,
        "num_attention_heads": 28,
        "num_key_value_heads": 4,
        "num_hidden_layers": 28,
        "vocab_size": 152064,
        "embedding_size": 152064,
        "additional_vocab_size": 128,
        "qkv_bias": true,
        "layer_norm_eps": 1e-6,
        "layer_norm_type": "rms",
        "rope_theta": 1000000.0,
        "max_position_embeddings": 4096,
        "norm_after": false,
        "attention_layer_norm": false,
        "weight_tying": false,
        "torch_dtype": "float32"
    });
    let config = ModelConfig::from_json(&cfg, std::path::Path::new("config.json")).unwrap();
    let t = &config.text;
    assert_eq!(t.intermediate_size, 18944);
    assert_eq!((t.vocab_size, t.embedding_rows()), (152064, 152192));
    assert!(t.qkv_bias && !t.o_bias && t.qk_norm.is_none() && !t.tie_word_embeddings);
    let mut with_norms = cfg.clone();
    with_norms["attention_layer_norm"] = serde_json::json!(true);
    let normed = ModelConfig::from_json(&with_norms, std::path::Path::new("config.json")).unwrap();
    assert_eq!(normed.text.qk_norm, Some(QkNorm::Full));
    assert_eq!(t.head_dim, 128);
    let Some(VisionFamily::Molmo(mc)) = &config.vision else {
        panic!("not Molmo");
    };
    assert!(mc.class_token && mc.pre_layernorm && !mc.patch_bias);
    assert_eq!(mc.feature_layers, vec![-2, -9]);
    // without the vision_backbone extension: the remote code's fixed CLIP ViT-L/14 at 336 px
    let v = &mc.vision;
    assert_eq!(
        (
            v.image_size,
            v.patch_size,
            v.hidden_size,
            v.num_layers,
            v.num_heads
        ),
        (336, 14, 1024, 23, 16)
    );
    assert_eq!(
        (v.intermediate_size, v.hidden_act.as_str()),
        (4096, "quick_gelu")
    );
    assert_eq!(
        (mc.pool_heads, mc.pool_head_dim, mc.pool_out),
        (16, 64, 1024)
    );
    assert_eq!(mc.image_patch_id, 152066);
    assert!(mc.block_start_ids.is_empty(), "Molmo attends causally");
    let bad = serde_json::json!({"model_type": "molmo", "norm_after": true});
    let err = ModelConfig::from_json(&bad, std::path::Path::new("config.json"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("norm_after"), "{err}");
}

#[test]
fn hf_module_names_are_hook_aliases() {
    let model = load("molmo2");
    for (alias, hook) in [
        ("model.transformer.blocks.1", HookPoint::Layer(1)),
        ("model.language_model.layers.1", HookPoint::Layer(1)),
        ("model.transformer.ln_f", HookPoint::Norm),
        (
            "model.vision_backbone.image_vit.transformer.resblocks.2",
            HookPoint::VisionLayer(2),
        ),
        ("model.vision_tower.layers.2", HookPoint::VisionLayer(2)),
        (
            "model.vision_backbone.image_projector",
            HookPoint::Projector,
        ),
        ("model.multi_modal_projector", HookPoint::Projector),
    ] {
        assert_eq!(model.parse_hook(alias).unwrap(), hook, "{alias}");
    }
}

#[test]
fn parameter_count_matches_transformers() {
    let model = load("molmo2/hub_format");
    let golden: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("molmo2").join("golden.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        model.num_params(),
        golden["n_params"].as_u64().unwrap() as usize
    );
}

/// A Molmo2 model saved by xlvlm (standard names, no fused tensors) loads back to the same
/// logits.
#[test]
fn saved_checkpoint_loads_back_to_the_same_logits() {
    let model = load("molmo2/hub_format");
    let g = Golden::open("molmo2");
    let dir = std::env::temp_dir().join(format!("xlvlm-molmo2-save-{}", std::process::id()));
    model.save_checkpoint(&dir).unwrap();
    std::fs::copy(fixture("molmo2/config.json"), dir.join("config.json")).unwrap();
    let reloaded = Vlm::<B>::load_dir(&dir, WeightDType::F32, &device()).unwrap();
    let out = reloaded
        .forward(&golden_batch(&g), &[], &[], Logits::All)
        .unwrap();
    assert_close(
        "reloaded molmo2 logits",
        &to_f32(out.logits.unwrap()),
        &g.f32("logits").1,
        TOL,
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn inspect_describes_the_molmo_side_and_counts_every_parameter() {
    let golden: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("molmo2").join("golden.json")).unwrap(),
    )
    .unwrap();
    for rel in ["molmo2", "molmo2/hub_format"] {
        let info = xlvlm_model::inspect(fixture(rel).to_str().unwrap()).unwrap();
        let text = info.to_string();
        for needle in [
            "Molmo (ViT",
            "ViT 3 layers, hidden 64",
            "layers [-1, -3] concatenated (128 wide) -> attention pooling 2x2",
            "added to the patch tokens",
            "12 input-only embedding rows",
            "bidirectionally",
            "vision.layers.2",
            "projector",
        ] {
            assert!(
                text.contains(needle),
                "{rel}: missing {needle:?} in:\n{text}"
            );
        }
        assert_eq!(
            info.num_params,
            golden["n_params"].as_u64().unwrap() as usize,
            "{rel}"
        );
    }
}

/// Views present parts of stored tensors under new names without copying; bad requests are
/// errors that name the tensor.
#[test]
fn checkpoint_views_slice_and_concatenate_rows() {
    use xlvlm_model::Checkpoint;
    let dir = fixture("molmo2/hub_format");
    let mut ckpt = Checkpoint::open(&dir).unwrap();
    let base = "model.transformer.wte.embedding";
    let extra = "model.transformer.wte.new_embedding";
    let all_base = ckpt.read_f32(base, &[402, 64]).unwrap();
    let all_extra = ckpt.read_f32(extra, &[12, 64]).unwrap();
    ckpt.add_view("joined", &[(base, 400..402), (extra, 0..3)])
        .unwrap();
    assert_eq!(ckpt.shape_of("joined"), Some(&[5, 64][..]));
    let joined = ckpt.read_f32("joined", &[5, 64]).unwrap();
    assert_eq!(joined[..128], all_base[400 * 64..]);
    assert_eq!(joined[128..], all_extra[..3 * 64]);
    let err = ckpt
        .add_view("late", &[(extra, 10..13)])
        .unwrap_err()
        .to_string();
    assert!(err.contains(extra) && err.contains("12 rows"), "{err}");
    let err = ckpt
        .add_view(
            "mixed",
            &[(base, 0..1), ("model.transformer.ln_f.weight", 0..1)],
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot be concatenated"), "{err}");
    let err = ckpt
        .add_view("twice", &[("joined", 0..1)])
        .unwrap_err()
        .to_string();
    assert!(err.contains("concatenation"), "{err}");
    assert!(
        ckpt.add_view("missing", &[("no.such.tensor", 0..1)])
            .is_err()
    );
}

// ---- the original Molmo (remote code of allenai/Molmo-7B-D-0924) ----------------------------

/// The tiny Molmo fixture's ViT: 112 px crops of 8 x 8 patches, pooled 2 x 2 into 4 x 4 tokens.
const MOLMO_PATCH: usize = 14;
const MOLMO_GRID: usize = 8;

/// The remote processor's `image_input_idx` (`[crops, tokens per crop]`: the sequence position
/// each pooled token of each crop is added to, negative when unused) as the model's pooling: for
/// every `<im_patch>` position in sequence order, the 2 x 2 window of patches (crop-major patch
/// indices) its slot covers, and the `image_masks` per patch.
fn molmo_pooling(g: &Golden) -> PatchPooling {
    molmo_pooling_of(g, "input.")
}

/// [`molmo_pooling`] of the goldens `{prefix}image_input_idx` and `{prefix}image_masks`.
fn molmo_pooling_of(g: &Golden, prefix: &str) -> PatchPooling {
    let (shape, idx) = g.i64(&format!("{prefix}image_input_idx"));
    let per_crop = *shape.last().unwrap();
    let side = MOLMO_GRID / 2;
    assert_eq!(per_crop, side * side);
    let patches = MOLMO_GRID * MOLMO_GRID;
    let mut used: Vec<(i64, usize, usize)> = idx
        .iter()
        .enumerate()
        .filter(|&(_, &pos)| pos >= 0)
        .map(|(k, &pos)| (pos, k / per_crop, k % per_crop))
        .collect();
    used.sort_unstable();
    let index = used
        .iter()
        .flat_map(|&(_, crop, slot)| {
            let (r, c) = (slot / side, slot % side);
            [(0, 0), (0, 1), (1, 0), (1, 1)]
                .map(|(dy, dx)| (crop * patches + (2 * r + dy) * MOLMO_GRID + 2 * c + dx) as i64)
        })
        .collect();
    PatchPooling {
        index,
        shape: [used.len(), 4],
        image_masks: Some(g.f32(&format!("{prefix}image_masks")).1.clone()),
    }
}

fn molmo_batch(g: &Golden) -> Batch {
    Batch::from_padded(
        g.rows_u32("input.input_ids"),
        g.rows_i64("input.attention_mask"),
    )
    .with_pixel_values(crops_of(g, "input.images", MOLMO_PATCH))
    .with_patch_pooling(molmo_pooling(g))
}

#[test]
fn molmo_remote_code_matches_every_layer() {
    let model = load("molmo");
    let g = Golden::open("molmo");
    let captures: Vec<CaptureSpec> = model.hook_points().into_iter().map(all).collect();
    let out = model
        .forward(&molmo_batch(&g), &captures, &[], Logits::All)
        .unwrap();
    let get = |hook: HookPoint| {
        let c = out.captures.iter().find(|c| c.spec.hook == hook).unwrap();
        c.rows.iter().flat_map(|r| r.to_f32()).collect::<Vec<f32>>()
    };
    let vision_layers = model.config().vision.as_ref().unwrap().num_layers();
    assert_eq!(vision_layers, 4);
    let layers = model.config().text.num_layers;
    assert_hooks_match("molmo", get, &g, vision_layers, layers, TOL);
    assert_close(
        "molmo hidden_states.1",
        &get(HookPoint::Layer(0)),
        &g.f32("text.hidden_states.1").1,
        TOL,
    );
    assert_close(
        &format!("molmo hidden_states.{layers} (final norm)"),
        &get(HookPoint::Norm),
        &g.f32(&format!("text.hidden_states.{layers}")).1,
        TOL,
    );
    let logits = out.logits.unwrap();
    assert_eq!(logits.dims(), [1, 79, 384], "logits cover embedding_size");
    assert_close("molmo logits", &to_f32(logits), &g.f32("logits").1, TOL);
    let embed = out
        .captures
        .iter()
        .find(|c| c.spec.hook == HookPoint::Embed)
        .unwrap();
    let images = embed.rows[0]
        .positions
        .iter()
        .filter(|m| m.role == TokenRole::Image)
        .count();
    assert_eq!(images, 32, "every <im_patch> token is an image position");
}

#[test]
fn molmo_image_features_match_and_need_the_image_masks() {
    let model = load("molmo");
    let g = Golden::open("molmo");
    let pixels = crops_of(&g, "input.images", MOLMO_PATCH);
    let pooling = molmo_pooling(&g);
    let features = model.image_features_pooled(&pixels, &pooling).unwrap();
    assert_eq!(features.dims(), [1, 32, 64]);
    assert_close(
        "molmo image features",
        &to_f32(features),
        &g.f32("image_features").1,
        TOL,
    );
    // the pad embeddings matter: without them (all patches real) the features differ
    let unmasked = PatchPooling {
        image_masks: Some(vec![1.0; 2 * 64]),
        ..pooling.clone()
    };
    let plain = model.image_features_pooled(&pixels, &unmasked).unwrap();
    assert!(common::rel_err(&to_f32(plain), &g.f32("image_features").1) > 1e-3);
    let err = model
        .image_features_pooled(
            &pixels,
            &PatchPooling {
                image_masks: None,
                ..pooling
            },
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("image_masks"), "{err}");
}

#[test]
fn molmo_interventions_match_remote_forward_hooks() {
    let g = Golden::open("molmo");
    check_interventions(&load("molmo"), &g, &molmo_batch(&g));
}

#[test]
fn molmo_greedy_generation_matches_the_remote_model() {
    let g = Golden::open("molmo");
    check_greedy_generation(&load("molmo"), &g, &molmo_batch(&g));
}

/// The tiny checkpoint's `vision_backbone` / `vit_layers` (xlvlm's extension of the flat config)
/// replace the fixed 0924 vision side; the parameter count is the remote model's.
#[test]
fn molmo_tiny_config_reads_the_vision_extension() {
    let config = ModelConfig::from_dir(&fixture("molmo")).unwrap();
    let Some(VisionFamily::Molmo(mc)) = &config.vision else {
        panic!("not Molmo");
    };
    assert_eq!(mc.feature_layers, vec![-2, -4]);
    assert_eq!(
        (
            mc.vision.image_size,
            mc.vision.hidden_size,
            mc.vision.num_layers
        ),
        (112, 32, 4)
    );
    assert_eq!((mc.pool_heads, mc.pool_head_dim, mc.pool_out), (2, 16, 32));
    assert_eq!(mc.image_patch_id, 386);
    let t = &config.text;
    assert_eq!((t.vocab_size, t.embedding_rows()), (384, 512));
    let golden: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("molmo").join("golden.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        load("molmo").num_params(),
        golden["n_params"].as_u64().unwrap() as usize
    );
    let mut odd: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("molmo").join("config.json")).unwrap(),
    )
    .unwrap();
    odd["vision_backbone"]["image_default_input_size"] = serde_json::json!([126, 126]);
    let err = ModelConfig::from_json(&odd, std::path::Path::new("config.json"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("odd"), "{err}");
}

/// Images that tile into several crops (overlap margins, pooled tokens the processor leaves
/// unused): the inputs are the remote processor's (`processor_golden.safetensors`, `tiny.k.*`),
/// the connector output and the last logits the remote model's.
#[test]
fn molmo_multi_crop_images_match_the_remote_model() {
    let model = load("molmo");
    let g = Golden::open("molmo");
    let inputs = Golden::open_file("molmo", "processor_golden.safetensors");
    for (k, tokens) in [(1, 56), (2, 52)] {
        let prefix = format!("tiny.{k}.");
        let ids: Vec<u32> = inputs
            .i64(&format!("{prefix}input_ids"))
            .1
            .iter()
            .map(|&t| t as u32)
            .collect();
        let pixels = crops_of(&inputs, &format!("{prefix}images"), MOLMO_PATCH);
        assert_eq!(
            pixels.shape[0], 5,
            "case {k}: the global crop and four tiles"
        );
        let pooling = molmo_pooling_of(&inputs, &prefix);
        assert_eq!(pooling.shape, [tokens, 4], "case {k}");
        let features = model.image_features_pooled(&pixels, &pooling).unwrap();
        assert_close(
            &format!("case {k} image features"),
            &to_f32(features),
            &g.f32(&format!("case.{k}.image_features")).1,
            TOL,
        );
        let mask = vec![1i64; ids.len()];
        let batch = Batch::from_padded(vec![ids], vec![mask])
            .with_pixel_values(pixels)
            .with_patch_pooling(pooling);
        let out = model.forward(&batch, &[], &[], Logits::LastToken).unwrap();
        assert_close(
            &format!("case {k} last logits"),
            &to_f32(out.logits.unwrap()),
            &g.f32(&format!("case.{k}.last_logits")).1,
            TOL,
        );
    }
}
