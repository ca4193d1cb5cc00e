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
    let models = [("llava", true), ("llama", false), ("qwen2", false)];
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
