//! Loading edge cases, config dialects, hook validation and position selection.

mod common;

use common::{B, Golden, assert_close, device, fixture};
use xlvlm_model::{
    Batch, CaptureSpec, GenerateOptions, HookPoint, Intervention, InterventionMode, Logits,
    ModelConfig, Positions, RopeScaling, TokenRole, VisionFamily, Vlm, WeightDType, inspect,
};

fn load(rel: &str) -> Vlm<B> {
    Vlm::<B>::load(fixture(rel).to_str().unwrap(), WeightDType::F32, &device()).unwrap()
}

#[test]
fn both_config_dialects_give_the_same_model() {
    for name in ["llava", "llama", "qwen2", "mistral"] {
        let new = ModelConfig::from_dir(&fixture(name)).unwrap();
        let hub = ModelConfig::from_dir(&fixture(&format!("{name}/hub_format"))).unwrap();
        assert_eq!(
            format!("{:?}", new.text),
            format!("{:?}", hub.text),
            "{name}"
        );
        assert_eq!(new.eos_token_ids, hub.eos_token_ids, "{name}");
        assert_eq!(new.dtype, Some(WeightDType::F32));
        assert_eq!(hub.dtype, Some(WeightDType::F32));
    }
    let qwen = ModelConfig::from_dir(&fixture("qwen2")).unwrap();
    assert_eq!(qwen.text.rope_theta, 1e6);
    assert_eq!(qwen.text.rope_scaling, RopeScaling::Default);
    assert!(qwen.text.qkv_bias && !qwen.text.o_bias);
    assert_eq!((qwen.text.num_heads, qwen.text.num_kv_heads), (4, 2));
    let mistral = ModelConfig::from_dir(&fixture("mistral")).unwrap();
    assert_eq!(mistral.text.sliding_window, Some(8));
    let llama = ModelConfig::from_dir(&fixture("llama")).unwrap();
    assert!(llama.text.tie_word_embeddings);
    let llava = ModelConfig::from_dir(&fixture("llava")).unwrap();
    let Some(VisionFamily::Llava(lc)) = llava.vision else {
        panic!("llava parses as a LLaVA vision side");
    };
    assert_eq!(
        (lc.vision_feature_layer, lc.image_tokens_per_image()),
        (-2, 16)
    );
}

#[test]
fn rope_scaling_types_parse_and_unknown_ones_are_errors() {
    let path = std::path::Path::new("config.json");
    let cfg = serde_json::json!({"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4,
        "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
        "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}, "rope_theta": 500000.0});
    let parsed = ModelConfig::from_json(&cfg, path).unwrap();
    assert!(matches!(
        parsed.text.rope_scaling,
        RopeScaling::Llama3 { factor: 8.0, .. }
    ));
    assert_eq!(parsed.text.rope_theta, 500000.0);
    let cfg = serde_json::json!({"model_type": "llama", "rope_parameters": {"rope_type": "yarn", "rope_theta": 1.0}});
    let err = ModelConfig::from_json(&cfg, path).unwrap_err().to_string();
    assert!(err.contains("yarn") && err.contains("config.json"), "{err}");
    let err = ModelConfig::from_json(&serde_json::json!({"model_type": "gpt2"}), path)
        .unwrap_err()
        .to_string();
    assert!(err.contains("gpt2"), "{err}");
}

#[test]
fn missing_weights_are_errors_that_name_the_place() {
    let tmp = std::env::temp_dir().join(format!("xlvlm-model-missing-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::copy(fixture("llama/config.json"), tmp.join("config.json")).unwrap();
    let err = Vlm::<B>::load(tmp.to_str().unwrap(), WeightDType::F32, &device())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("model.safetensors"), "{err}");
    // weights of another model (LLaVA) under the llama config
    std::fs::copy(
        fixture("llava/model.safetensors"),
        tmp.join("model.safetensors"),
    )
    .unwrap();
    let err = Vlm::<B>::load(tmp.to_str().unwrap(), WeightDType::F32, &device())
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("model.safetensors") || err.contains("missing tensor"),
        "{err}"
    );
    std::fs::remove_dir_all(&tmp).unwrap();
}

#[test]
fn inspect_reports_family_sizes_and_hooks() {
    let info = inspect(fixture("llava").to_str().unwrap()).unwrap();
    let text = info.to_string();
    for needle in [
        "LLaVA-1.5",
        "2 layers",
        "CLIP 3 layers",
        "16 image tokens",
        "float32",
        "vision.layers.2",
        "projector",
        "lm.layers.1.mlp",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    // the stored parameter count equals transformers' count (golden.json); tied embeddings once
    for name in ["llava", "llama", "qwen2"] {
        let info = inspect(fixture(name).to_str().unwrap()).unwrap();
        let golden: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(fixture(name).join("golden.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(
            info.num_params as u64,
            golden["n_params"].as_u64().unwrap(),
            "{name}"
        );
    }
    // the loaded model skips only CLIP's unused post_layernorm (weight + bias)
    assert_eq!(load("llava").num_params() + 2 * 64, info.num_params);
    assert_eq!(
        load("llama").num_params(),
        inspect(fixture("llama").to_str().unwrap())
            .unwrap()
            .num_params
    );
}

#[test]
fn bad_hooks_and_vectors_are_rejected() {
    let model = load("llama");
    let err = model.parse_hook("lm.layers.9").unwrap_err().to_string();
    assert!(err.contains("lm.layers.{0..=2}"), "{err}");
    assert!(model.parse_hook("vision.layers.0").is_err());
    assert_eq!(
        model.parse_hook("model.layers.2.mlp").unwrap(),
        HookPoint::Mlp(2)
    );
    let batch = Batch::left_padded(vec![vec![1, 5, 6]], 0);
    let bad_width = Intervention {
        hook: HookPoint::Layer(0),
        vector: vec![1.0; 3],
        alpha: 1.0,
        positions: Positions::All,
        mode: InterventionMode::Add,
    };
    let err = model
        .forward(&batch, &[], &[bad_width], Logits::None)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("width 64"), "{err}");
    let capture = CaptureSpec {
        hook: HookPoint::Projector,
        positions: Positions::All,
    };
    assert!(
        model
            .forward(&batch, &[capture], &[], Logits::None)
            .is_err()
    );
    let oov = Batch::left_padded(vec![vec![1, 100_000]], 0);
    let err = model
        .forward(&oov, &[], &[], Logits::None)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("100000"), "{err}");
}

#[test]
fn llava_without_pixels_or_with_wrong_token_count_is_an_error() {
    let model = load("llava");
    let g = Golden::open("llava");
    let batch = Batch::from_padded(
        g.rows_u32("input.input_ids"),
        g.rows_i64("input.attention_mask"),
    );
    let err = model
        .forward(&batch, &[], &[], Logits::None)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("no pixel_values"), "{err}");
    // two images for one image's worth of tokens
    let (shape, data) = g.f32("input.pixel_values");
    let two = xlvlm_model::PixelValues {
        data: [data.as_slice(), data.as_slice()].concat(),
        shape: [2, shape[1], shape[2], shape[3]],
    };
    let err = model
        .forward(
            &batch.clone().with_pixel_values(two),
            &[],
            &[],
            Logits::None,
        )
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("16 image tokens") && err.contains("2 image(s)"),
        "{err}"
    );
    // pixel values of the wrong size
    let small = xlvlm_model::PixelValues {
        data: vec![0.0; 3 * 28 * 28],
        shape: [1, 3, 28, 28],
    };
    let err = model
        .forward(&batch.with_pixel_values(small), &[], &[], Logits::None)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("[N, 3, 56, 56]"), "{err}");
}

/// Captures made during generation (KV cache, one token per step) equal a plain forward over
/// the prompt plus the generated tokens, and carry the right roles.
#[test]
fn generation_captures_equal_a_full_forward() {
    let model = load("qwen2");
    let prompt = vec![vec![5u32, 17, 33, 40, 8], vec![9, 12, 3]];
    let batch = Batch::left_padded(prompt.clone(), 0);
    let capture = CaptureSpec {
        hook: HookPoint::Layer(1),
        positions: Positions::All,
    };
    let last = CaptureSpec {
        hook: HookPoint::Norm,
        positions: Positions::LastPromptToken,
    };
    let generated = CaptureSpec {
        hook: HookPoint::Attn(0),
        positions: Positions::Generated,
    };
    let options = GenerateOptions {
        max_new_tokens: 6,
        eos_token_ids: Some(vec![]),
        ..Default::default()
    };
    let generation = model
        .generate(&batch, &options, &[capture.clone(), last, generated], &[])
        .unwrap();
    for (r, ids) in generation.ids.iter().enumerate() {
        assert_eq!(ids.len(), 6);
        let mut full = prompt[r].clone();
        full.extend(&ids[..5]); // the last generated token is never fed back
        let reference = model
            .forward(
                &Batch::left_padded(vec![full.clone()], 0),
                std::slice::from_ref(&capture),
                &[],
                Logits::None,
            )
            .unwrap();
        let row = &generation.captures[0].rows[r];
        assert_eq!(row.positions.len(), full.len());
        assert_close(
            "cached vs full",
            &row.to_f32(),
            &reference.captures[0].rows[0].to_f32(),
            1e-4,
        );
        let roles: Vec<TokenRole> = row.positions.iter().map(|m| m.role).collect();
        assert_eq!(
            roles.iter().filter(|&&r| r == TokenRole::Generated).count(),
            5
        );
        let ids_seen: Vec<u32> = row.positions.iter().map(|m| m.token_id.unwrap()).collect();
        assert_eq!(ids_seen, full);
        let last_meta = &generation.captures[1].rows[r].positions;
        assert_eq!(last_meta.len(), 1);
        assert_eq!(last_meta[0].position, prompt[r].len() - 1);
        assert_eq!(generation.captures[2].rows[r].positions.len(), 5);
    }
}

#[test]
fn stop_predicate_and_eos_end_rows() {
    let model = load("llama");
    let batch = Batch::left_padded(vec![vec![1, 20, 30], vec![1, 40]], 0);
    let stop = |ids: &[u32]| ids.len() >= 3;
    let options = GenerateOptions {
        max_new_tokens: 10,
        eos_token_ids: Some(vec![]),
        stop: Some(&stop),
        keep_logits: false,
    };
    let generation = model.generate(&batch, &options, &[], &[]).unwrap();
    assert!(generation.ids.iter().all(|ids| ids.len() == 3));
    assert!(
        generation
            .finish
            .iter()
            .all(|f| *f == xlvlm_model::FinishReason::Stop)
    );
    // whatever the first token is, declaring it EOS ends the row there
    let first = generation.ids[0][0];
    let options = GenerateOptions {
        max_new_tokens: 10,
        eos_token_ids: Some(vec![first]),
        ..Default::default()
    };
    let generation = model.generate(&batch, &options, &[], &[]).unwrap();
    assert_eq!(generation.ids[0], vec![first]);
    assert_eq!(generation.finish[0], xlvlm_model::FinishReason::Eos);
}

/// The projector output is what lands at the image-token positions of `lm.embed`, and an
/// additive intervention at the projector moves exactly those positions by `alpha * v`.
#[test]
fn projector_hooks_feed_the_image_positions() {
    let model = load("llava");
    let g = Golden::open("llava");
    let (shape, data) = g.f32("input.pixel_values");
    let batch = Batch::from_padded(
        g.rows_u32("input.input_ids"),
        g.rows_i64("input.attention_mask"),
    )
    .with_pixel_values(xlvlm_model::PixelValues {
        data: data.clone(),
        shape: [shape[0], shape[1], shape[2], shape[3]],
    });
    let captures = [
        CaptureSpec {
            hook: HookPoint::Projector,
            positions: Positions::All,
        },
        CaptureSpec {
            hook: HookPoint::Embed,
            positions: Positions::Image,
        },
        CaptureSpec {
            hook: HookPoint::Embed,
            positions: Positions::Prompt,
        },
    ];
    let plain = model.forward(&batch, &captures, &[], Logits::None).unwrap();
    let projector = plain.captures[0].rows[0].to_f32();
    assert_eq!(plain.captures[1].rows[0].positions.len(), 16);
    assert_close(
        "image rows of lm.embed",
        &plain.captures[1].rows[0].to_f32(),
        &projector,
        0.0,
    );
    let vector: Vec<f32> = (0..64).map(|i| (i as f32 * 0.37).sin()).collect();
    let steer = Intervention {
        hook: HookPoint::Projector,
        vector: vector.clone(),
        alpha: 3.0,
        positions: Positions::All,
        mode: InterventionMode::Add,
    };
    let steered = model
        .forward(&batch, &captures, &[steer], Logits::None)
        .unwrap();
    let expected: Vec<f32> = projector
        .iter()
        .enumerate()
        .map(|(k, v)| v + 3.0 * vector[k % 64])
        .collect();
    assert_close(
        "steered image rows",
        &steered.captures[1].rows[0].to_f32(),
        &expected,
        1e-6,
    );
    assert_close(
        "prompt rows untouched",
        &steered.captures[2].rows[0].to_f32(),
        &plain.captures[2].rows[0].to_f32(),
        0.0,
    );
}
