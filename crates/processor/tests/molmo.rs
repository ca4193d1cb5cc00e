//! The original Molmo's processor against its own code: the remote `MolmoImageProcessor` /
//! `MolmoProcessor` that ship with allenai/Molmo-7B-D-0924, run by
//! `tools/refgen/make_molmo_refs.py` into `tests/fixtures/hf/molmo/processor_golden.safetensors`
//! (workspace root). `real.*` cases use the checkpoint's own settings (336 px crops, up to 12),
//! `tiny.*` the tiny fixture's whole processor (prompt, ids, crops, token map, masks).

use std::path::PathBuf;

mod common;

use common::{golden_floats, golden_ints};
use safetensors::SafeTensors;
use xlvlm_processor::{
    ImageInput, Message, MolmoImageConfig, Padding, Processor, Prompt, Sample, TokenRole,
    load_image,
};

const PROMPT: &str = "What is shown in this image? Describe the colors.";
const IMAGES: [&str; 3] = ["../image.png", "tall_57x230.png", "wide_700x410.png"];

/// Molmo-7B-D-0924's `preprocessor_config.json` (the settings; `auto_map` left out).
const REAL_CONFIG: &str = r#"{
  "base_image_input_size": [336, 336], "do_normalize": true,
  "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_padding_mask": true,
  "image_patch_size": 14, "image_processor_type": "MolmoImageProcessor",
  "image_std": [0.26862954, 0.26130258, 0.27577711], "image_token_length_h": 12,
  "image_token_length_w": 12, "max_crops": 12, "overlap_margins": [4, 4],
  "processor_class": "MolmoProcessor"
}"#;

// the real checkpoint's ids of <im_start>, <im_end>, <im_patch>, <im_col>
const IM_START: i64 = 152064;
const IM_END: i64 = 152065;
const IM_PATCH: i64 = 152066;
const IM_COL: i64 = 152067;

fn molmo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/hf/molmo")
}

fn golden() -> Vec<u8> {
    std::fs::read(molmo().join("processor_golden.safetensors")).unwrap()
}

/// Crops `[crops, 3, side, side]` in the remote layout `[crops, patches, p * p * 3]`
/// (`(y, x, channel)` within a patch), flattened.
fn as_patches(pixels: &[f32], [crops, _, side, _]: [usize; 4], p: usize) -> Vec<f32> {
    let g = side / p;
    let mut out = Vec::with_capacity(pixels.len());
    for c in 0..crops {
        for k in 0..g * g {
            for py in 0..p {
                for px in 0..p {
                    for ch in 0..3 {
                        let (y, x) = ((k / g) * p + py, (k % g) * p + px);
                        out.push(pixels[((c * 3 + ch) * side + y) * side + x]);
                    }
                }
            }
        }
    }
    out
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

// TensorFlow's resize and ours sum the same f32 products, possibly in another order: a few ulps
// of values of size ~2 after normalisation (measured: at most 9.5e-7)
const PIXEL_TOLERANCE: f32 = 1e-5;

#[test]
fn checkpoint_settings_match_the_remote_image_processor() {
    let bytes = golden();
    let golden = SafeTensors::deserialize(&bytes).unwrap();
    let json: serde_json::Value = serde_json::from_str(REAL_CONFIG).unwrap();
    let config = MolmoImageConfig::from_json(&json, "preprocessor_config.json".as_ref()).unwrap();
    assert_eq!(config, MolmoImageConfig::default());
    for (k, name) in IMAGES.iter().enumerate() {
        let image = load_image(&molmo().join(name)).unwrap();
        let out = config.preprocess(&image).unwrap();

        // the image's tokens
        let (_, tokens) = golden_ints(&golden, &format!("real.{k}.image_tokens"));
        let placeholder = config.placeholder(out.grid);
        let ours: Vec<i64> = placeholder
            .split_inclusive('>')
            .map(|t| match t {
                "<im_start>" => IM_START,
                "<im_end>" => IM_END,
                "<im_patch>" => IM_PATCH,
                "<im_col>" => IM_COL,
                other => panic!("{other}"),
            })
            .collect();
        assert_eq!(ours, tokens, "{name}: image tokens");

        // slot -> token position: ours counts <im_patch> tokens, the remote code positions
        let patch_positions: Vec<i64> = (0..tokens.len() as i64)
            .filter(|&i| tokens[i as usize] == IM_PATCH)
            .collect();
        let (shape, want_idx) = golden_ints(&golden, &format!("real.{k}.image_input_idx"));
        assert_eq!(shape, vec![out.shape[0], 144], "{name}");
        let ours: Vec<i64> = out
            .image_input_idx
            .iter()
            .map(|&t| {
                if t < 0 {
                    -100
                } else {
                    patch_positions[t as usize]
                }
            })
            .collect();
        let want: Vec<i64> = want_idx.iter().map(|&t| t.max(-100)).collect();
        assert_eq!(ours, want, "{name}: image_input_idx");

        let (_, masks) = golden_floats(&golden, &format!("real.{k}.image_masks"));
        assert_eq!(out.image_masks, masks, "{name}: image_masks");

        let (_, shape) = golden_ints(&golden, &format!("real.{k}.shape"));
        assert_eq!(shape, vec![out.shape[0] as i64, 576, 588], "{name}");
        let patches = as_patches(&out.pixel_values, out.shape, 14);
        let strided: Vec<f32> = patches.iter().step_by(61).copied().collect();
        let (_, want) = golden_floats(&golden, &format!("real.{k}.pixels_strided"));
        let diff = max_abs_diff(&strided, &want);
        assert!(diff <= PIXEL_TOLERANCE, "{name}: pixels differ by {diff}");
        let (_, sums) = golden_floats(&golden, &format!("real.{k}.crop_sums"));
        for (crop, want) in patches.chunks(576 * 588).zip(sums) {
            let ours: f64 = crop.iter().map(|&v| f64::from(v)).sum();
            assert!(
                (ours - f64::from(want)).abs() <= 1e-5 * f64::from(want.abs()).max(1.0) + 0.05,
                "{name}: crop sum {ours} vs {want}"
            );
        }
    }
}

/// The whole processor on the tiny fixture: the prompt framed as `MolmoProcessor` frames it, the
/// image tokens first, EOS in front (the Qwen2 tokenizer has no BOS), ids, crops, masks, and
/// each `<im_patch>` token pooling the crop window `image_input_idx` sends to it.
#[test]
fn tiny_processor_matches_the_remote_processor() {
    let bytes = golden();
    let golden = SafeTensors::deserialize(&bytes).unwrap();
    let processor = Processor::from_dir(molmo()).unwrap();
    let patch = processor.tokenizer().token_to_id("<im_patch>").unwrap();
    assert_eq!(processor.image_token_id(), Some(patch));
    for (k, name) in IMAGES.iter().enumerate() {
        let image_path = molmo().join(name);
        let sample = Sample {
            prompt: Prompt::Messages {
                messages: vec![Message::user_with_image(PROMPT)],
                add_generation_prompt: true,
            },
            images: vec![ImageInput::Path(&image_path)],
        };
        let batch = processor
            .encode_batch(std::slice::from_ref(&sample), Padding::Left)
            .unwrap();
        let (_, want_ids) = golden_ints(&golden, &format!("tiny.{k}.input_ids"));
        let ids: Vec<i64> = batch.tokens(0).iter().map(|&t| i64::from(t)).collect();
        assert_eq!(ids, want_ids, "{name}: input_ids");
        for (&id, role) in batch.input_ids.iter().zip(&batch.token_roles) {
            assert_eq!(*role == TokenRole::Image, id == patch);
        }

        let pixels = batch.pixel_values.as_ref().unwrap();
        let shape: [usize; 4] = pixels.shape.as_slice().try_into().unwrap();
        let (want_shape, want) = golden_floats(&golden, &format!("tiny.{k}.images"));
        assert_eq!(want_shape, vec![shape[0], 64, 588], "{name}");
        let diff = max_abs_diff(&as_patches(&pixels.data, shape, 14), &want);
        assert!(diff <= PIXEL_TOLERANCE, "{name}: pixels differ by {diff}");

        let pooling = pixels.token_pooling.as_ref().unwrap();
        let (_, masks) = golden_floats(&golden, &format!("tiny.{k}.image_masks"));
        assert_eq!(
            pooling.patch_masks.as_deref(),
            Some(masks.as_slice()),
            "{name}"
        );
        // every slot the remote code maps to a position: the token there pools that slot's
        // 2 x 2 window of the slot's crop
        let positions: Vec<usize> = (0..ids.len())
            .filter(|&i| ids[i] == i64::from(patch))
            .collect();
        assert_eq!(pooling.index.len(), positions.len() * 4, "{name}");
        let (_, idx) = golden_ints(&golden, &format!("tiny.{k}.image_input_idx"));
        let mut fed = 0;
        for (slot, &pos) in idx.iter().enumerate() {
            if pos < 0 {
                continue;
            }
            let token = positions.iter().position(|&p| p as i64 == pos).unwrap();
            let (crop, within) = (slot / 16, slot % 16);
            let (r, c) = (within / 4, within % 4);
            let window: Vec<i64> = [(0, 0), (0, 1), (1, 0), (1, 1)]
                .iter()
                .map(|(dy, dx)| (crop * 64 + (2 * r + dy) * 8 + 2 * c + dx) as i64)
                .collect();
            assert_eq!(
                &pooling.index[token * 4..token * 4 + 4],
                window.as_slice(),
                "{name}"
            );
            fed += 1;
        }
        assert_eq!(
            fed,
            positions.len(),
            "{name}: every <im_patch> token is fed"
        );
    }
}

#[test]
fn the_checkpoint_chat_template_gives_way_to_molmos_prompt_format() {
    let processor = Processor::from_dir(molmo()).unwrap();
    let text = processor
        .render_chat(&[Message::user_with_image("Hi?")], true)
        .unwrap();
    assert_eq!(text, "<|image|> User: Hi? Assistant:");
    let err = processor
        .render_chat(&[Message::text("system", "Be brief.")], false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("user and assistant"), "{err}");
}

#[test]
fn bad_settings_name_the_file_and_key() {
    let path = std::path::Path::new("preprocessor_config.json");
    let err = MolmoImageConfig::from_json(
        &serde_json::json!({"base_image_input_size": [336, 224]}),
        path,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("base_image_input_size") && err.contains("preprocessor_config.json"),
        "{err}"
    );
    let err = MolmoImageConfig::from_json(&serde_json::json!({"image_token_length_w": 10}), path)
        .unwrap_err()
        .to_string();
    assert!(err.contains("image_token_length"), "{err}");
}
