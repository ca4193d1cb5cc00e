//! The model fixtures' processor files (`tests/fixtures/hf/<name>/` at the workspace root, made
//! by transformers with `tools/refgen/make_tiny_refs.py`): rendered prompt, `input_ids` and
//! `pixel_values` equal what the HF processor produced for the model goldens.

mod common;

use std::path::PathBuf;

use safetensors::{Dtype, SafeTensors};
use xlvlm_processor::{
    ContentPart, ImageInput, Message, Padding, Processor, Prompt, Sample, load_image,
};

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

/// The idefics2 fixture's checkpoint files copied to a fresh folder with
/// `do_image_splitting: true`, as the real idefics2-8b asks for it.
fn idefics2_with_splitting() -> PathBuf {
    let from = hf_fixtures().join("idefics2");
    let to = std::env::temp_dir().join(format!("xlvlm-idefics2-split-{}", std::process::id()));
    std::fs::create_dir_all(&to).unwrap();
    for entry in std::fs::read_dir(&from).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if name.ends_with(".jinja") || (name.ends_with(".json") && !name.starts_with("golden")) {
            std::fs::copy(&path, to.join(&name)).unwrap();
        }
    }
    let config_path = to.join("processor_config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    config["image_processor"]["do_image_splitting"] = true.into();
    std::fs::write(&config_path, config.to_string()).unwrap();
    to
}

/// Idefics2 with image splitting (four quarters and the whole image) on one prompt, and on a
/// left-padded batch of two prompts whose images differ in size: ids and the pixel mask equal
/// transformers' exactly, pixels within 2 8-bit steps (its two backends differ by that much).
#[test]
fn idefics2_split_images_match_transformers() {
    let root = hf_fixtures().join("idefics2");
    let bytes = std::fs::read(root.join("golden_split.safetensors")).unwrap();
    let golden = SafeTensors::deserialize(&bytes).unwrap();
    let dir = idefics2_with_splitting();
    let processor = Processor::from_dir(&dir).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let image = load_image(&hf_fixtures().join("image.png")).unwrap();
    let small = load_image(&root.join("image_40x100.png")).unwrap();
    let with_image = Message::user_with_image(PROMPT);
    let image_last = Message::new(
        "user",
        vec![
            ContentPart::Text {
                text: "Describe".into(),
            },
            ContentPart::Image,
        ],
    );
    let sample = |message: &Message, image| Sample {
        prompt: Prompt::Messages {
            messages: vec![message.clone()],
            add_generation_prompt: true,
        },
        images: vec![ImageInput::Decoded(image)],
    };
    let cases = [
        ("split", vec![sample(&with_image, &image)]),
        (
            "batch",
            vec![sample(&with_image, &image), sample(&image_last, &small)],
        ),
    ];
    for (key, samples) in cases {
        let batch = processor.encode_batch(&samples, Padding::Left).unwrap();
        assert_eq!(
            batch.input_ids,
            golden_i64(&golden, &format!("{key}.input.input_ids")),
            "{key}: input_ids"
        );
        assert_eq!(
            batch.attention_mask,
            golden_i64(&golden, &format!("{key}.input.attention_mask")),
            "{key}: attention_mask"
        );
        let pixels = batch.pixel_values.as_ref().unwrap();
        let (shape, reference) = golden_f32(&golden, &format!("{key}.input.pixel_values"));
        // transformers keeps an images-per-sample axis: [samples, entries, 3, H, W]
        assert_eq!(pixels.shape, [shape[0] * shape[1], 3, shape[3], shape[4]]);
        let mask: Vec<u32> = pixels
            .pixel_attention_mask
            .as_ref()
            .unwrap()
            .iter()
            .map(|&m| m as u32)
            .collect();
        let want_mask = golden_i64(&golden, &format!("{key}.input.pixel_attention_mask"));
        assert_eq!(mask, want_mask, "{key}: pixel_attention_mask");
        assert!(
            want_mask.contains(&0),
            "{key}: the golden entries are padded"
        );
        let worst = pixels
            .data
            .iter()
            .zip(&reference)
            .map(|(a, b)| (a - b).abs() * 0.5 * 255.0)
            .fold(0f32, f32::max);
        assert!(worst <= 2.0, "{key}: max difference {worst} 8-bit steps");
    }
}
