//! The model fixtures' processor files (`tests/fixtures/hf/<name>/` at the workspace root, made
//! by transformers with `tools/refgen/make_tiny_refs.py`): rendered prompt, `input_ids` and
//! `pixel_values` equal what the HF processor produced for the model goldens.

mod common;

use std::path::PathBuf;

use safetensors::{Dtype, SafeTensors};
use xlvlm_processor::{ImageInput, Message, Padding, Processor, Prompt, Sample, load_image};

const PROMPT: &str = "What is shown in this image? Describe the colors.";

fn hf_fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/hf")
}

fn golden_i64(golden: &SafeTensors, key: &str) -> Vec<u32> {
    let view = golden.tensor(key).unwrap_or_else(|e| panic!("{key}: {e}"));
    assert_eq!(view.dtype(), Dtype::I64, "{key}");
    view.data()
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as u32)
        .collect()
}

#[test]
fn prompts_and_input_ids_equal_the_model_goldens() {
    // (fixture, checkpoint folders, whether the model takes an image)
    let models = [
        ("llava", true),
        ("idefics2", true),
        ("idefics3", true),
        ("smolvlm", true),
        ("llama", false),
        ("qwen2", false),
    ];
    let image_path = hf_fixtures().join("image.png");
    for (name, with_image) in models {
        let root = hf_fixtures().join(name);
        let meta: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(root.join("golden.json")).unwrap())
                .unwrap();
        let bytes = std::fs::read(root.join("golden.safetensors")).unwrap();
        let golden = SafeTensors::deserialize(&bytes).unwrap();
        let expected_ids = golden_i64(&golden, "input.input_ids");
        let expected_mask = golden_i64(&golden, "input.attention_mask");
        for dir in [root.clone(), root.join("hub_format")] {
            let processor = Processor::from_dir(&dir).unwrap();
            let messages = if with_image {
                vec![Message::user_with_image(PROMPT)]
            } else {
                vec![Message::text("user", PROMPT)]
            };
            let rendered = processor.render_chat(&messages, true).unwrap();
            assert_eq!(
                rendered,
                meta["prompt"].as_str().unwrap(),
                "{}",
                dir.display()
            );
            let sample = Sample {
                prompt: Prompt::Messages {
                    messages,
                    add_generation_prompt: true,
                },
                images: if with_image {
                    vec![ImageInput::Path(&image_path)]
                } else {
                    vec![]
                },
            };
            let batch = processor.encode_batch(&[sample], Padding::Left).unwrap();
            assert_eq!(
                batch.row(0),
                expected_ids.as_slice(),
                "{}: input_ids",
                dir.display()
            );
            assert_eq!(
                batch.attention_mask,
                expected_mask,
                "{}: attention_mask",
                dir.display()
            );
        }
    }
}

#[test]
fn llava_pixel_values_within_two_steps_of_the_model_golden() {
    let root = hf_fixtures().join("llava");
    let bytes = std::fs::read(root.join("golden.safetensors")).unwrap();
    let golden = SafeTensors::deserialize(&bytes).unwrap();
    let view = golden.tensor("input.pixel_values").unwrap();
    assert_eq!(view.dtype(), Dtype::F32);
    let reference: Vec<f32> = view
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let processor = Processor::from_dir(&root).unwrap();
    let image = load_image(&hf_fixtures().join("image.png")).unwrap();
    let ours = processor.preprocess_image(&image).unwrap();
    assert_eq!(ours.shape, view.shape()[1..].to_vec());
    let std = xlvlm_processor::OPENAI_CLIP_STD;
    let plane = ours.shape[1] * ours.shape[2];
    let worst = ours
        .pixel_values
        .iter()
        .zip(&reference)
        .enumerate()
        .map(|(i, (a, b))| (a - b).abs() * std[i / plane] * 255.0)
        .fold(0f32, f32::max);
    assert!(worst <= 2.0, "max difference {worst} 8-bit steps");
}

fn golden_f32(golden: &SafeTensors, key: &str) -> (Vec<usize>, Vec<f32>) {
    let view = golden.tensor(key).unwrap_or_else(|e| panic!("{key}: {e}"));
    assert_eq!(view.dtype(), Dtype::F32, "{key}");
    let values = view
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    (view.shape().to_vec(), values)
}

/// Idefics3 / SmolVLM: 4 crops + the global image of the fixture image. They equal the default
/// (torchvision) backend's `pixel_values` that the model goldens were made with (`input.*`; on
/// this image to float rounding, allowed one 8-bit step for the fixed-point Lanczos passes), and
/// stay within transformers' own backend difference (2 steps) of its PIL backend
/// (`input_pil.*`). The token roles mark exactly the `<image>` positions.
#[test]
fn idefics3_tiles_match_both_transformers_backends() {
    let image = load_image(&hf_fixtures().join("image.png")).unwrap();
    for name in ["idefics3", "smolvlm"] {
        let root = hf_fixtures().join(name);
        let bytes = std::fs::read(root.join("golden.safetensors")).unwrap();
        let golden = SafeTensors::deserialize(&bytes).unwrap();
        for dir in [root.clone(), root.join("hub_format")] {
            let processor = Processor::from_dir(&dir).unwrap();
            let sample = Sample {
                prompt: Prompt::Messages {
                    messages: vec![Message::user_with_image(PROMPT)],
                    add_generation_prompt: true,
                },
                images: vec![ImageInput::Decoded(&image)],
            };
            let batch = processor.encode_batch(&[sample], Padding::Left).unwrap();
            let pixels = batch.pixel_values.as_ref().unwrap();
            assert_eq!(pixels.sample_of_image, vec![0; 5], "{name}");
            let image_id = processor.image_token_id().unwrap();
            let roles_at_images: Vec<bool> = batch
                .token_roles
                .iter()
                .map(|r| *r == xlvlm_processor::TokenRole::Image)
                .collect();
            let ids_at_images: Vec<bool> = batch.row(0).iter().map(|&t| t == image_id).collect();
            assert_eq!(roles_at_images, ids_at_images, "{name}");
            assert_eq!(ids_at_images.iter().filter(|&&b| b).count(), 5 * 4);
            for (key, max_steps, max_mean) in [
                ("input_pil.pixel_values", 2.001, 0.05),
                ("input.pixel_values", 1.0, 0.05),
            ] {
                let (shape, reference) = golden_f32(&golden, key);
                // [batch, images, 3, h, w] -> [images, 3, h, w]
                assert_eq!(pixels.shape, shape[1..].to_vec(), "{name} {key}");
                let mask = golden_i64(
                    &golden,
                    &key.replace("pixel_values", "pixel_attention_mask"),
                );
                assert!(mask.iter().all(|&m| m == 1), "{name}: no padding expected");
                let steps: Vec<f32> = pixels
                    .data
                    .iter()
                    .zip(&reference)
                    .map(|(a, b)| (a - b).abs() * 0.5 * 255.0)
                    .collect();
                let worst = steps.iter().copied().fold(0f32, f32::max);
                let mean = steps.iter().sum::<f32>() / steps.len() as f32;
                assert!(
                    worst <= max_steps && mean <= max_mean,
                    "{name} {key}: max {worst}, mean {mean} 8-bit steps"
                );
            }
        }
    }
}

/// Idefics2: the 90 x 60 fixture image resized (bilinear) to 56 x 37, equal to the default
/// (torchvision) backend's `pixel_values` within one 8-bit step.
#[test]
fn idefics2_pixel_values_match_transformers() {
    let image = load_image(&hf_fixtures().join("image.png")).unwrap();
    let root = hf_fixtures().join("idefics2");
    let bytes = std::fs::read(root.join("golden.safetensors")).unwrap();
    let golden = SafeTensors::deserialize(&bytes).unwrap();
    let (shape, reference) = golden_f32(&golden, "input.pixel_values");
    for dir in [root.clone(), root.join("hub_format")] {
        let processor = Processor::from_dir(&dir).unwrap();
        let ours = processor.preprocess_image(&image).unwrap();
        assert_eq!(ours.shape, shape[1..].to_vec());
        let worst = ours
            .pixel_values
            .iter()
            .zip(&reference)
            .map(|(a, b)| (a - b).abs() * 0.5 * 255.0)
            .fold(0f32, f32::max);
        assert!(worst <= 1.0, "max difference {worst} 8-bit steps");
    }
}
