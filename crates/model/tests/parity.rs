//! Parity with transformers 5.24 on the committed tiny checkpoints (f32): every vision layer,
//! the projector, every decoder layer (block, attention and MLP outputs), `hidden_states`,
//! logits, interventions and greedy generation.

mod common;

use common::{B, Golden, assert_close, device, fixture, to_f32};
use xlvlm_model::{
    Batch, CaptureSpec, GenerateOptions, HookPoint, Intervention, InterventionMode, Logits,
    PixelValues, Positions, TokenRole, Vlm, WeightDType,
};

const TOL: f32 = 1e-4;

fn load(rel: &str) -> Vlm<B> {
    Vlm::<B>::load(fixture(rel).to_str().unwrap(), WeightDType::F32, &device())
        .unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn golden_batch(g: &Golden) -> Batch {
    let batch = Batch::from_padded(
        g.rows_u32("input.input_ids"),
        g.rows_i64("input.attention_mask"),
    );
    if g.has("input.pixel_values") {
        // Idefics processors add an images-per-sample axis: [batch, images, c, h, w]
        let (shape, data) = g.f32("input.pixel_values");
        let [c, h, w] = shape[shape.len() - 3..] else {
            unreachable!()
        };
        batch.with_pixel_values(PixelValues {
            data: data.clone(),
            shape: [data.len() / (c * h * w), c, h, w],
        })
    } else {
        batch
    }
}

fn all(hook: HookPoint) -> CaptureSpec {
    CaptureSpec {
        hook,
        positions: Positions::All,
    }
}

/// Every hook's capture against the goldens, plus logits.
fn check_every_layer(rel: &str, golden_dir: &str) {
    let model = load(rel);
    let g = Golden::open(golden_dir);
    let batch = golden_batch(&g);
    let captures: Vec<CaptureSpec> = model.hook_points().into_iter().map(all).collect();
    let out = model.forward(&batch, &captures, &[], Logits::All).unwrap();
    let layers = model.config().text.num_layers;
    // text hooks have one row (one prompt); vision hooks one row per image or tile, in order
    let get = |hook: HookPoint| {
        let c = out.captures.iter().find(|c| c.spec.hook == hook).unwrap();
        if !hook.is_vision() {
            assert_eq!(c.rows.len(), 1);
        }
        c.rows.iter().flat_map(|r| r.to_f32()).collect::<Vec<f32>>()
    };
    assert_close(
        &format!("{rel} hidden_states.0"),
        &get(HookPoint::Embed),
        &g.f32("text.hidden_states.0").1,
        TOL,
    );
    for i in 0..layers {
        let want_block = &g.f32(&format!("text.layer_output.{i}")).1;
        assert_close(
            &format!("{rel} layer {i}"),
            &get(HookPoint::Layer(i)),
            want_block,
            TOL,
        );
        if i + 1 < layers {
            let hs = &g.f32(&format!("text.hidden_states.{}", i + 1)).1;
            assert_close(
                &format!("{rel} hidden_states.{}", i + 1),
                &get(HookPoint::Layer(i)),
                hs,
                TOL,
            );
        }
        assert_close(
            &format!("{rel} attn {i}"),
            &get(HookPoint::Attn(i)),
            &g.f32(&format!("text.attn_output.{i}")).1,
            TOL,
        );
        assert_close(
            &format!("{rel} mlp {i}"),
            &get(HookPoint::Mlp(i)),
            &g.f32(&format!("text.mlp_output.{i}")).1,
            TOL,
        );
    }
    let last = &g.f32(&format!("text.hidden_states.{layers}")).1;
    assert_close(
        &format!("{rel} hidden_states.{layers} (final norm)"),
        &get(HookPoint::Norm),
        last,
        TOL,
    );
    if let Some(vision) = &model.config().vision {
        for i in 0..vision.num_layers() {
            let want = &g.f32(&format!("vision.layer_output.{i}")).1;
            assert_close(
                &format!("{rel} vision layer {i}"),
                &get(HookPoint::VisionLayer(i)),
                want,
                TOL,
            );
        }
        assert_close(
            &format!("{rel} projector"),
            &get(HookPoint::Projector),
            &g.f32("image_features").1,
            TOL,
        );
    }
    let logits = to_f32(out.logits.unwrap());
    assert_close(&format!("{rel} logits"), &logits, &g.f32("logits").1, TOL);
    // position metadata: roles and ids follow the prompt
    let embed = out
        .captures
        .iter()
        .find(|c| c.spec.hook == HookPoint::Embed)
        .unwrap();
    let ids = &g.rows_u32("input.input_ids")[0];
    for (k, meta) in embed.rows[0].positions.iter().enumerate() {
        assert_eq!(meta.position, k);
        assert_eq!(meta.token_id, Some(ids[k]));
        let is_image = model
            .config()
            .vision
            .as_ref()
            .is_some_and(|v| v.image_token_id() == ids[k]);
        assert_eq!(
            meta.role,
            if is_image {
                TokenRole::Image
            } else {
                TokenRole::Prompt
            }
        );
    }
}

#[test]
fn llava_transformers5_layout_matches_every_layer() {
    check_every_layer("llava", "llava");
}

#[test]
fn llava_hub_layout_and_legacy_config_match_every_layer() {
    check_every_layer("llava/hub_format", "llava");
}

#[test]
fn llama_gqa_tied_embeddings_match_every_layer() {
    check_every_layer("llama", "llama");
    check_every_layer("llama/hub_format", "llama");
}

#[test]
fn qwen2_sharded_with_biases_matches_every_layer() {
    check_every_layer("qwen2", "qwen2");
    check_every_layer("qwen2/hub_format", "qwen2");
}

#[test]
fn mistral_sliding_window_matches_every_layer() {
    check_every_layer("mistral", "mistral");
    check_every_layer("mistral/hub_format", "mistral");
}

#[test]
fn idefics2_matches_every_layer() {
    // one 37 x 56 image: the SigLIP encoder reads its 2 x 4 whole patches
    let g = Golden::open("idefics2");
    let (_, mask) = g.i64("input.pixel_attention_mask");
    assert!(
        mask.iter().all(|&m| m == 1),
        "the golden image is not padded"
    );
    check_every_layer("idefics2", "idefics2");
    check_every_layer("idefics2/hub_format", "idefics2");
}

#[test]
fn idefics3_matches_every_layer() {
    check_every_layer("idefics3", "idefics3");
    check_every_layer("idefics3/hub_format", "idefics3");
}

#[test]
fn smolvlm_matches_every_layer() {
    check_every_layer("smolvlm", "smolvlm");
    check_every_layer("smolvlm/hub_format", "smolvlm");
}

/// Idefics2 with `do_image_splitting` (four quarters and the whole image, each padded to the
/// batch's largest with a `pixel_attention_mask`): image features and logits of one prompt, and
/// of a left-padded batch of two prompts whose images differ in size, as in transformers.
#[test]
fn idefics2_split_images_match_transformers() {
    let model = load("idefics2");
    let g = Golden::open_file("idefics2", "golden_split.safetensors");
    for key in ["split", "batch"] {
        let (shape, data) = g.f32(&format!("{key}.input.pixel_values"));
        let [rows, per_row, c, h, w] = shape[..] else {
            panic!("{key}: pixel_values of shape {shape:?}")
        };
        let (mask_shape, mask) = g.i64(&format!("{key}.input.pixel_attention_mask"));
        assert_eq!(mask_shape[..], [rows, per_row, h, w]);
        let mask: Vec<bool> = mask.iter().map(|&m| m != 0).collect();
        assert!(
            mask.contains(&false),
            "{key}: the golden entries are padded"
        );
        let pixels = PixelValues {
            data: data.clone(),
            shape: [rows * per_row, c, h, w],
        };
        let features = to_f32(model.image_features(&pixels, Some(&mask)).unwrap());
        assert_close(
            &format!("idefics2 {key} image features"),
            &features,
            &g.f32(&format!("{key}.image_features")).1,
            TOL,
        );
        let batch = Batch::from_padded(
            g.rows_u32(&format!("{key}.input.input_ids")),
            g.rows_i64(&format!("{key}.input.attention_mask")),
        )
        .with_pixel_values(pixels)
        .with_pixel_attention_mask(mask);
        let out = model.forward(&batch, &[], &[], Logits::All).unwrap();
        // logits at real tokens only: what a padding position sees is not defined
        let (logit_shape, want) = g.f32(&format!("{key}.logits"));
        let vocab = logit_shape[2];
        let real: Vec<bool> = batch.attention_mask.concat();
        let at_real = |logits: &[f32]| -> Vec<f32> {
            logits
                .chunks_exact(vocab)
                .zip(&real)
                .filter(|(_, r)| **r)
                .flat_map(|(l, _)| l.iter().copied())
                .collect()
        };
        assert_close(
            &format!("idefics2 {key} logits"),
            &at_real(&to_f32(out.logits.unwrap())),
            &at_real(want),
            TOL,
        );
    }
}

/// An image whose lower-right part is padding (`pixel_attention_mask`): the padded patches take
/// bucketed position ids and are hidden as keys (from the SigLIP layers, and for Idefics2 from
/// the perceiver's latents), as in transformers' `get_image_features`.
#[test]
fn padded_image_features_match_transformers() {
    for name in ["idefics2", "idefics3", "smolvlm"] {
        let model = load(name);
        let g = Golden::open(name);
        let (shape, data) = g.f32("padded.pixel_values");
        let (mask_shape, mask) = g.i64("padded.pixel_attention_mask");
        assert_eq!(shape[0], 1);
        assert_eq!(mask_shape[1..], shape[2..]);
        let mask: Vec<bool> = mask.iter().map(|&m| m != 0).collect();
        assert!(
            mask.contains(&false),
            "{name}: the golden image has padding"
        );
        let pixels = PixelValues {
            data: data.clone(),
            shape: [1, shape[1], shape[2], shape[3]],
        };
        let features = to_f32(model.image_features(&pixels, Some(&mask)).unwrap());
        let want = &g.f32("padded.image_features").1;
        assert_close(
            &format!("{name} padded image features"),
            &features,
            want,
            TOL,
        );
        // without the mask the padding counts as image content: a different result
        let unmasked = to_f32(model.image_features(&pixels, None).unwrap());
        assert!(
            common::rel_err(&unmasked, want) > 1e-3,
            "{name}: mask had no effect"
        );
    }
}

#[test]
fn bfloat16_checkpoint_loads_into_f32() {
    let model = load("llama/bf16");
    assert_eq!(model.config().dtype, Some(WeightDType::BF16));
    let g = Golden::open("llama");
    let out = model
        .forward(&golden_batch(&g), &[], &[], Logits::All)
        .unwrap();
    // bf16 keeps 8 mantissa bits: the golden (f32 weights) is only approached, not matched
    assert_close(
        "llama bf16 logits",
        &to_f32(out.logits.unwrap()),
        &g.f32("logits").1,
        5e-2,
    );
}

fn intervention(g: &Golden, model: &Vlm<B>, mode: InterventionMode) -> Intervention {
    let hook = HookPoint::Layer(g.i64("intervention.layer").1[0] as usize);
    let vector = g.f32("intervention.vector").1.clone();
    assert_eq!(vector.len(), model.hook_width(hook));
    Intervention {
        hook,
        vector,
        alpha: g.f32("intervention.alpha").1[0],
        positions: Positions::All,
        mode,
    }
}

#[test]
fn interventions_match_transformers_forward_hooks() {
    for name in [
        "llava", "idefics2", "idefics3", "smolvlm", "llama", "qwen2", "mistral",
    ] {
        let model = load(name);
        let g = Golden::open(name);
        for (mode, key) in [
            (InterventionMode::Add, "intervention.add.logits"),
            (InterventionMode::Projected, "intervention.projected.logits"),
        ] {
            let iv = intervention(&g, &model, mode);
            let out = model
                .forward(&golden_batch(&g), &[], &[iv], Logits::All)
                .unwrap();
            let logits = to_f32(out.logits.unwrap());
            assert_close(&format!("{name} {key}"), &logits, &g.f32(key).1, TOL);
            // and the intervention really changed something
            assert!(
                common::rel_err(&logits, &g.f32("logits").1) > 1e-3,
                "{name} {key}: no effect"
            );
        }
    }
}

/// Generated ids equal the golden up to its first EOS, and every step's logits match.
fn check_generation(name: &str, batch: Batch, key: &str, interventions: &[Intervention]) {
    let model = load(name);
    let g = Golden::open(name);
    let options = GenerateOptions {
        max_new_tokens: 20,
        keep_logits: true,
        ..Default::default()
    };
    let generation = model
        .generate(&batch, &options, &[], interventions)
        .unwrap();
    let want = g.rows_u32(&format!("{key}.output_ids"));
    let eos = &model.config().eos_token_ids;
    let (lshape, want_logits) = g.f32(&format!("{key}.logits"));
    let (rows, steps, vocab) = (lshape[0], lshape[1], lshape[2]);
    for (r, want_row) in want.iter().enumerate() {
        let end = want_row
            .iter()
            .position(|t| eos.contains(t))
            .map_or(want_row.len(), |p| p + 1);
        assert_eq!(generation.ids[r], want_row[..end], "{name} {key} row {r}");
        for (s, step) in generation
            .step_logits
            .iter()
            .enumerate()
            .take(end.min(steps))
        {
            let got = to_f32(step.clone());
            let want = &want_logits[(r * steps + s) * vocab..(r * steps + s + 1) * vocab];
            assert_close(
                &format!("{name} {key} row {r} step {s}"),
                &got[r * vocab..(r + 1) * vocab],
                want,
                TOL,
            );
        }
    }
    assert_eq!(generation.ids.len(), rows);
}

#[test]
fn greedy_generation_matches_transformers() {
    for name in [
        "llava", "idefics2", "idefics3", "smolvlm", "llama", "qwen2", "mistral",
    ] {
        let g = Golden::open(name);
        check_generation(name, golden_batch(&g), "generate", &[]);
    }
}

#[test]
fn greedy_generation_with_intervention_matches_transformers() {
    for name in ["llava", "idefics2", "idefics3", "smolvlm", "llama"] {
        let g = Golden::open(name);
        let model = load(name);
        let iv = intervention(&g, &model, InterventionMode::Add);
        check_generation(name, golden_batch(&g), "generate_intervention", &[iv]);
    }
}

#[test]
fn left_padded_batch_generation_matches_transformers() {
    for name in ["llama", "qwen2", "mistral"] {
        let g = Golden::open(name);
        let batch = Batch::from_padded(
            g.rows_u32("generate_batch.input_ids"),
            g.rows_i64("generate_batch.attention_mask"),
        );
        check_generation(name, batch, "generate_batch", &[]);
    }
}

/// The same checkpoints run in f16 and bf16 (as on a GPU): close to the f32 goldens at the
/// precision of the dtype.
#[test]
fn half_precision_runs_stay_close() {
    for name in ["llava", "qwen2"] {
        let g = Golden::open(name);
        for (dtype, tol) in [(WeightDType::F16, 3e-3), (WeightDType::BF16, 2e-2)] {
            let model = Vlm::<B>::load(fixture(name).to_str().unwrap(), dtype, &device()).unwrap();
            let out = model
                .forward(&golden_batch(&g), &[], &[], Logits::All)
                .unwrap();
            let logits = to_f32(out.logits.unwrap());
            assert_close(
                &format!("{name} {dtype} logits"),
                &logits,
                &g.f32("logits").1,
                tol,
            );
        }
    }
}

/// The layout of newer Hub uploads (`model.language_model.*`, `model.vision_tower.*`,
/// `model.multi_modal_projector.*`, `lm_head.weight`), made by renaming the fixture's tensors.
#[test]
fn llava_model_prefixed_layout_matches() {
    let src = std::fs::read(fixture("llava/model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&src).unwrap();
    let renamed: Vec<(String, safetensors::tensor::TensorView<'_>)> = st
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let new = if name == "language_model.lm_head.weight" {
                "lm_head.weight".to_string()
            } else if let Some(rest) = name.strip_prefix("language_model.model.") {
                format!("model.language_model.{rest}")
            } else {
                format!("model.{name}")
            };
            (new, view)
        })
        .collect();
    assert!(
        renamed
            .iter()
            .any(|(n, _)| n.starts_with("model.vision_tower."))
    );
    let dir = std::env::temp_dir().join(format!("xlvlm-model-layout-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("model.safetensors"),
        safetensors::serialize(renamed, None).unwrap(),
    )
    .unwrap();
    std::fs::copy(fixture("llava/config.json"), dir.join("config.json")).unwrap();
    let model = Vlm::<B>::load(dir.to_str().unwrap(), WeightDType::F32, &device()).unwrap();
    let g = Golden::open("llava");
    let out = model
        .forward(&golden_batch(&g), &[], &[], Logits::All)
        .unwrap();
    assert_close(
        "model.* layout logits",
        &to_f32(out.logits.unwrap()),
        &g.f32("logits").1,
        TOL,
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
