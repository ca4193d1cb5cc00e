//! Idefics3 / SmolVLM specifics beyond numeric parity (which `parity.rs` checks): config parsing,
//! `inspect`, hook aliases, parameter counts, saving and bad input.

mod common;

use common::{B, Golden, assert_close, device, fixture, to_f32};
use xlvlm_model::{
    Batch, HookPoint, Logits, ModelConfig, PixelValues, VisionFamily, Vlm, WeightDType, inspect,
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
fn saved_checkpoint_loads_back_to_the_same_logits() {
    let model = load("idefics3");
    let g = Golden::open("idefics3");
    let dir = std::env::temp_dir().join(format!("xlvlm-idefics3-save-{}", std::process::id()));
    model.save_checkpoint(&dir).unwrap();
    std::fs::copy(fixture("idefics3/config.json"), dir.join("config.json")).unwrap();
    let reloaded = Vlm::<B>::load_dir(&dir, WeightDType::F32, &device()).unwrap();
    let out = reloaded
        .forward(&golden_batch(&g), &[], &[], Logits::All)
        .unwrap();
    assert_close(
        "reloaded idefics3 logits",
        &to_f32(out.logits.unwrap()),
        &g.f32("logits").1,
        1e-4,
    );
    std::fs::remove_dir_all(&dir).unwrap();
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
    // tiles whose side is not a multiple of the patch size
    let odd = PixelValues {
        data: vec![0.0; 5 * c * 50 * 50],
        shape: [5, c, 50, 50],
    };
    let err = model
        .forward(&batch.with_pixel_values(odd), &[], &[], Logits::None)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("multiples of the patch size 14"), "{err}");
}
