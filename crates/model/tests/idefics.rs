//! Idefics2, Idefics3 and SmolVLM specifics beyond numeric parity (which `parity.rs` checks):
//! config parsing, `inspect`, hook aliases, parameter counts, saving and bad input.

mod common;

use common::{B, Golden, assert_close, device, fixture, to_f32};
use xlvlm_model::{
    Batch, CaptureSpec, HookPoint, Logits, ModelConfig, PixelValues, Positions, TokenRole,
    VisionFamily, Vlm, WeightDType, inspect,
};

fn load(rel: &str) -> Vlm<B> {
    Vlm::<B>::load(fixture(rel).to_str().unwrap(), WeightDType::F32, &device())
        .unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The golden prompt and its 5 tiles (4 crops + the global image).
fn golden_batch(g: &Golden) -> Batch {
    let (shape, data) = g.f32("input.pixel_values");
    let [c, h, w] = shape[shape.len() - 3..] else {
        unreachable!()
    };
    Batch::from_padded(
        g.rows_u32("input.input_ids"),
        g.rows_i64("input.attention_mask"),
    )
    .with_pixel_values(PixelValues {
        data: data.clone(),
        shape: [data.len() / (c * h * w), c, h, w],
    })
}

#[test]
fn configs_of_both_dialects_parse_as_idefics3() {
    for rel in [
        "idefics3",
        "idefics3/hub_format",
        "smolvlm",
        "smolvlm/hub_format",
    ] {
        let config = ModelConfig::from_dir(&fixture(rel)).unwrap();
        let Some(VisionFamily::Idefics3(ic)) = &config.vision else {
            panic!("{rel}: not parsed as Idefics3");
        };
        assert_eq!(ic.scale_factor, 2, "{rel}");
        // 56 px tiles, 14 px patches: 16 patches, 4 tokens after the 2x2 pixel shuffle
        assert_eq!(ic.image_tokens_per_image(), 4, "{rel}");
        assert_eq!(ic.vision.hidden_act, "gelu_pytorch_tanh");
        assert_eq!(config.text.rms_norm_eps, 1e-5);
        assert_eq!((config.text.num_heads, config.text.num_kv_heads), (4, 2));
        assert!(!config.text.tie_word_embeddings);
        let report: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(fixture(rel.split('/').next().unwrap()).join("golden.json"))
                .unwrap(),
        )
        .unwrap();
        // the processor's 5 tiles of 4 tokens each
        assert_eq!(
            report["n_image_tokens"].as_u64().unwrap() as usize,
            5 * ic.image_tokens_per_image()
        );
    }
}

#[test]
fn bad_idefics3_configs_are_errors_naming_the_problem() {
    let path = std::path::Path::new("config.json");
    let base = |extra: serde_json::Value| {
        let mut cfg = serde_json::json!({
            "model_type": "idefics3",
            "text_config": {"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4},
            "vision_config": {"hidden_size": 64, "num_attention_heads": 4, "image_size": 56, "patch_size": 14},
        });
        cfg.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        ModelConfig::from_json(&cfg, path)
    };
    assert!(base(serde_json::json!({})).is_ok());
    let err = base(serde_json::json!({"scale_factor": 3}))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("scale_factor 3") && err.contains("config.json"),
        "{err}"
    );
    let err = base(serde_json::json!({"vision_config": {"model_type": "clip_vision_model"}}))
        .unwrap_err()
        .to_string();
    assert!(err.contains("clip_vision_model"), "{err}");
    let err = base(serde_json::json!({"model_type": "idefics9"}))
        .unwrap_err()
        .to_string();
    assert!(err.contains("idefics3") && err.contains("smolvlm"), "{err}");
}

#[test]
fn inspect_describes_the_siglip_side_and_counts_every_parameter() {
    for name in ["idefics3", "smolvlm"] {
        let info = inspect(fixture(name).to_str().unwrap()).unwrap();
        let text = info.to_string();
        for needle in [
            "Idefics3/SmolVLM",
            "SigLIP 2 layers",
            "4 image tokens per tile",
            "pixel shuffle x2 (64 -> 256) -> linear 64",
            "vision.layers.1",
            "projector",
            "lm.layers.1.mlp",
        ] {
            assert!(
                text.contains(needle),
                "{name}: missing {needle:?} in:\n{text}"
            );
        }
        let golden: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(fixture(name).join("golden.json")).unwrap(),
        )
        .unwrap();
        let n_params = golden["n_params"].as_u64().unwrap() as usize;
        assert_eq!(info.num_params, n_params, "{name}");
        // every stored weight is used (the post-layernorm feeds the connector)
        assert_eq!(load(name).num_params(), n_params, "{name}");
    }
}

#[test]
fn hf_module_names_are_hook_aliases() {
    let model = load("smolvlm");
    for (name, want) in [
        ("model.text_model.layers.1", HookPoint::Layer(1)),
        ("model.text_model.layers.0.self_attn", HookPoint::Attn(0)),
        ("model.text_model.norm", HookPoint::Norm),
        (
            "model.vision_model.encoder.layers.1",
            HookPoint::VisionLayer(1),
        ),
        ("model.connector", HookPoint::Projector),
    ] {
        assert_eq!(model.parse_hook(name).unwrap(), want, "{name}");
    }
    let err = model
        .parse_hook("model.vision_model.encoder.layers.2")
        .unwrap_err()
        .to_string();
    assert!(err.contains("vision.layers.{0..=1}"), "{err}");
    assert_eq!(model.hook_width(HookPoint::VisionLayer(0)), 64);
    assert_eq!(model.hook_width(HookPoint::Projector), 64);
}

#[test]
fn saved_checkpoints_load_back_to_the_same_logits() {
    for name in ["idefics2", "idefics3"] {
        let model = load(name);
        let g = Golden::open(name);
        let dir = std::env::temp_dir().join(format!("xlvlm-{name}-save-{}", std::process::id()));
        model.save_checkpoint(&dir).unwrap();
        std::fs::copy(fixture(name).join("config.json"), dir.join("config.json")).unwrap();
        let reloaded = Vlm::<B>::load_dir(&dir, WeightDType::F32, &device()).unwrap();
        let out = reloaded
            .forward(&golden_batch(&g), &[], &[], Logits::All)
            .unwrap();
        assert_close(
            &format!("reloaded {name} logits"),
            &to_f32(out.logits.unwrap()),
            &g.f32("logits").1,
            1e-4,
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn tiles_must_match_the_image_tokens() {
    let model = load("idefics3");
    let g = Golden::open("idefics3");
    let batch = golden_batch(&g);
    let pixels = batch.pixel_values.clone().unwrap();
    // four tiles for five tiles' worth of image tokens
    let [_, c, h, w] = pixels.shape;
    let four = PixelValues {
        data: pixels.data[..4 * c * h * w].to_vec(),
        shape: [4, c, h, w],
    };
    let err = model
        .forward(
            &batch.clone().with_pixel_values(four),
            &[],
            &[],
            Logits::None,
        )
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("20 image tokens") && err.contains("4 image(s)"),
        "{err}"
    );
    // 50-pixel tiles: 3 x 3 whole patches (the rest is not read, as by the convolution), which
    // the 2 x 2 pixel shuffle cannot group
    let odd = PixelValues {
        data: vec![0.0; 5 * c * 50 * 50],
        shape: [5, c, 50, 50],
    };
    let err = model
        .forward(&batch.with_pixel_values(odd), &[], &[], Logits::None)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("square patch grid") && err.contains("9 patches"),
        "{err}"
    );
}

/// Vision captures have one row per prompt: its 5 tiles one after another, positions counting
/// on (16 patches per tile at the encoder, 4 tokens per tile after the connector).
#[test]
fn vision_captures_group_a_prompts_tiles() {
    let model = load("smolvlm");
    let g = Golden::open("smolvlm");
    let capture = |hook, positions| CaptureSpec { hook, positions };
    let out = model
        .forward(
            &golden_batch(&g),
            &[
                capture(HookPoint::VisionLayer(1), Positions::All),
                capture(HookPoint::Projector, Positions::All),
                capture(HookPoint::VisionLayer(0), Positions::Index(-1)),
                capture(
                    HookPoint::VisionLayer(0),
                    Positions::Range {
                        start: 16,
                        end: Some(18),
                    },
                ),
            ],
            &[],
            Logits::None,
        )
        .unwrap();
    for (c, (want_positions, golden)) in out.captures.iter().zip([
        ((0..80).collect::<Vec<usize>>(), "vision.layer_output.1"),
        ((0..20).collect(), "image_features"),
    ]) {
        assert_eq!(c.rows.len(), 1, "{}", c.spec.hook);
        let row = &c.rows[0];
        let positions: Vec<usize> = row.positions.iter().map(|m| m.position).collect();
        assert_eq!(positions, want_positions, "{}", c.spec.hook);
        assert!(row.positions.iter().all(|m| m.role == TokenRole::Image));
        assert_close(golden, &row.to_f32(), &g.f32(golden).1, 1e-4);
    }
    // the last position is the global image's last patch; a range reaches into the second tile
    let layer0 = &g.f32("vision.layer_output.0").1;
    let last = &out.captures[2].rows[0];
    assert_eq!(last.positions[0].position, 79);
    assert_close(
        "last patch",
        &last.to_f32(),
        &layer0[79 * 64..80 * 64],
        1e-4,
    );
    let range = &out.captures[3].rows[0];
    assert_close(
        "second tile",
        &range.to_f32(),
        &layer0[16 * 64..18 * 64],
        1e-4,
    );
}

#[test]
fn idefics2_config_inspect_and_parameters() {
    for rel in ["idefics2", "idefics2/hub_format"] {
        let config = ModelConfig::from_dir(&fixture(rel)).unwrap();
        let Some(VisionFamily::Idefics2(ic)) = &config.vision else {
            panic!("{rel}: not parsed as Idefics2");
        };
        let p = &ic.perceiver;
        assert_eq!(
            (
                p.n_latents,
                p.depth,
                p.num_heads,
                p.num_kv_heads,
                p.head_dim
            ),
            (8, 2, 4, 2, 16),
            "{rel}"
        );
        assert_eq!(p.rms_norm_eps, 1e-5);
        assert_eq!(config.text.family, xlvlm_model::TextFamily::Mistral);
    }
    let info = inspect(fixture("idefics2").to_str().unwrap()).unwrap();
    let text = info.to_string();
    for needle in [
        "Idefics2 (SigLIP",
        "decoder Mistral",
        "8 image tokens per image",
        "perceiver 8 latents, 2 layers",
        "vision.layers.1",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    let golden: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("idefics2").join("golden.json")).unwrap(),
    )
    .unwrap();
    let n_params = golden["n_params"].as_u64().unwrap() as usize;
    assert_eq!(info.num_params, n_params);
    assert_eq!(load("idefics2").num_params(), n_params);
    // HF names of the resampler's model are aliases of the connector output
    assert_eq!(
        load("idefics2").parse_hook("model.connector").unwrap(),
        HookPoint::Projector
    );
}
