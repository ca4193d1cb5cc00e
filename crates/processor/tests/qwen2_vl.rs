//! Qwen2-VL processing against transformers 5.24 (`tools/refgen/qwen2_vl_processor_refs.py` and
//! the model fixture `tests/fixtures/hf/qwen2_vl`): `smart_resize`, `pixel_values` of both image
//! backends, `image_grid_thw`, and whole batches (ids, mask, `<|image_pad|>` expansion).

mod common;

use std::path::PathBuf;

use safetensors::{Dtype, SafeTensors};
use xlvlm_processor::{
    ImageInput, Message, OPENAI_CLIP_STD, Padding, Processor, Prompt, Qwen2VlImages, Sample,
    TokenRole, load_image, smart_resize,
};

fn hf_fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/hf")
        .join(rel)
}

fn image_path(name: &str) -> PathBuf {
    if name == "image.png" {
        hf_fixture(name)
    } else {
        common::fixture(&format!("images/{name}"))
    }
}

fn floats(st: &SafeTensors, key: &str) -> (Vec<usize>, Vec<f32>) {
    let view = st.tensor(key).unwrap_or_else(|e| panic!("{key}: {e}"));
    let values = match view.dtype() {
        Dtype::F16 => view
            .data()
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::F32 => view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect(),
        other => panic!("{key}: unexpected dtype {other:?}"),
    };
    (view.shape().to_vec(), values)
}

fn ints(st: &SafeTensors, key: &str) -> Vec<usize> {
    let view = st.tensor(key).unwrap_or_else(|e| panic!("{key}: {e}"));
    assert_eq!(view.dtype(), Dtype::I64, "{key}");
    view.data()
        .chunks_exact(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as usize)
        .collect()
}

/// `n` uint8 steps in normalised units of the narrowest channel.
fn steps(n: f32) -> f32 {
    n / 255.0
        / OPENAI_CLIP_STD
            .iter()
            .copied()
            .fold(f32::INFINITY, f32::min)
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()))
}

#[test]
fn smart_resize_equals_transformers() {
    let cases = common::load_json("qwen2_vl/smart_resize_cases.json");
    let cases = cases.as_array().unwrap();
    assert!(cases.len() > 500);
    for case in cases {
        let n = |k: &str| case[k].as_u64().unwrap();
        let got = smart_resize(
            n("height") as u32,
            n("width") as u32,
            n("factor") as u32,
            n("min_pixels"),
            n("max_pixels"),
        )
        .unwrap();
        let want = &case["resized"];
        assert_eq!(
            [got.0 as u64, got.1 as u64],
            [want[0].as_u64().unwrap(), want[1].as_u64().unwrap()],
            "{case}"
        );
    }
}

/// The fixture's image-processor settings with the given pixel range.
fn images_with(min_pixels: u64, max_pixels: u64) -> Qwen2VlImages {
    let path = hf_fixture("qwen2_vl/processor_config.json");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut settings = config["image_processor"].clone();
    settings["size"] = serde_json::json!({"shortest_edge": min_pixels, "longest_edge": max_pixels});
    Qwen2VlImages::from_json(&settings, &path, "<|image_pad|>".into()).unwrap()
}

#[test]
fn pixel_values_and_grids_equal_both_image_backends() {
    let bytes = std::fs::read(common::fixture("qwen2_vl/pixels.safetensors")).unwrap();
    let golden = SafeTensors::deserialize(&bytes).unwrap();
    let cases = common::load_json("qwen2_vl/pixel_cases.json");
    for (i, case) in cases.as_array().unwrap().iter().enumerate() {
        let images = images_with(
            case["min_pixels"].as_u64().unwrap(),
            case["max_pixels"].as_u64().unwrap(),
        );
        let image = load_image(&image_path(case["image"].as_str().unwrap())).unwrap();
        let got = images.patches(&image).unwrap();
        for (backend, tolerance) in [("pil", steps(1.0) + 2e-3), ("tv", steps(2.0))] {
            let grid = ints(&golden, &format!("{backend}.{i}.image_grid_thw"));
            assert_eq!(got.grid_thw.to_vec(), grid, "{backend} case {i} {case}");
            let (shape, want) = floats(&golden, &format!("{backend}.{i}.pixel_values"));
            assert_eq!(shape, [grid.iter().product::<usize>(), images.patch_dim()]);
            let diff = max_abs_diff(&got.data, &want);
            assert!(
                diff <= tolerance,
                "{backend} case {i} {case}: max |diff| {diff} > {tolerance}"
            );
        }
    }
}

#[test]
fn batch_equals_qwen2_vl_processor() {
    let case = common::load_json("qwen2_vl/batch_case.json");
    let processor = Processor::from_dir(hf_fixture("qwen2_vl")).unwrap();
    assert_eq!(processor.images().unwrap().family(), "qwen2_vl");
    let paths: Vec<Vec<PathBuf>> = case["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|n| image_path(n.as_str().unwrap()))
                .collect()
        })
        .collect();
    let samples: Vec<Sample> = case["chats"]
        .as_array()
        .unwrap()
        .iter()
        .zip(&paths)
        .map(|(chat, row)| Sample {
            prompt: Prompt::Messages {
                messages: common::messages(chat),
                add_generation_prompt: true,
            },
            images: row.iter().map(|p| ImageInput::Path(p)).collect(),
        })
        .collect();
    let batch = processor.encode_batch(&samples, Padding::Left).unwrap();
    for (r, prompt) in case["prompts"].as_array().unwrap().iter().enumerate() {
        assert_eq!(batch.prompts[r], prompt.as_str().unwrap());
    }
    let want_ids: Vec<u32> = case["input_ids"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(common::ids)
        .collect();
    assert_eq!(batch.input_ids, want_ids);
    let want_mask: Vec<u32> = case["attention_mask"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(common::ids)
        .collect();
    assert_eq!(batch.attention_mask, want_mask);
    let types: Vec<u32> = case["mm_token_type_ids"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(common::ids)
        .collect();
    for (role, kind) in batch.token_roles.iter().zip(&types) {
        assert_eq!(*role == TokenRole::Image, *kind == 1);
    }
    let pixels = batch.pixel_values.unwrap();
    let grids: Vec<Vec<usize>> = pixels.image_grid_thw.iter().map(|g| g.to_vec()).collect();
    let want_grids: Vec<Vec<usize>> =
        serde_json::from_value(case["image_grid_thw"].clone()).unwrap();
    assert_eq!(grids, want_grids);
    let want_shape: Vec<usize> =
        serde_json::from_value(case["pixel_values_shape"].clone()).unwrap();
    assert_eq!(pixels.shape, want_shape);
    assert_eq!(pixels.data.len(), want_shape.iter().product::<usize>());
    assert_eq!(pixels.sample_of_image, vec![0, 1, 1]);
}

/// The model golden's inputs (made by the default, torchvision, image backend).
#[test]
fn model_fixture_inputs_are_reproduced() {
    let bytes = std::fs::read(hf_fixture("qwen2_vl/golden.safetensors")).unwrap();
    let golden = SafeTensors::deserialize(&bytes).unwrap();
    let want_ids: Vec<u32> = ints(&golden, "input.input_ids")
        .into_iter()
        .map(|v| v as u32)
        .collect();
    let (_, want_pixels) = floats(&golden, "input.pixel_values");
    for dir in ["qwen2_vl", "qwen2_vl/hub_format"] {
        let processor = Processor::from_dir(hf_fixture(dir)).unwrap();
        let image = hf_fixture("image.png");
        let sample = Sample {
            prompt: Prompt::Messages {
                messages: vec![Message::user_with_image(
                    "What is shown in this image? Describe the colors.",
                )],
                add_generation_prompt: true,
            },
            images: vec![ImageInput::Path(&image)],
        };
        let batch = processor.encode_batch(&[sample], Padding::Left).unwrap();
        assert_eq!(batch.input_ids, want_ids, "{dir}");
        let pixels = batch.pixel_values.unwrap();
        assert_eq!(
            pixels
                .image_grid_thw
                .iter()
                .flatten()
                .copied()
                .collect::<Vec<_>>(),
            ints(&golden, "input.image_grid_thw")
        );
        let diff = max_abs_diff(&pixels.data, &want_pixels);
        assert!(diff <= steps(2.0), "{dir}: max |diff| {diff}");
    }
}

#[test]
fn images_and_placeholders_must_agree() {
    let processor = Processor::from_dir(hf_fixture("qwen2_vl")).unwrap();
    let image = hf_fixture("image.png");
    let sample = Sample {
        prompt: Prompt::Messages {
            messages: vec![Message::text("user", "no image here")],
            add_generation_prompt: true,
        },
        images: vec![ImageInput::Path(&image)],
    };
    let err = processor
        .encode_batch(&[sample], Padding::Left)
        .unwrap_err()
        .to_string();
    assert!(err.contains("<|image_pad|>"), "{err}");
}
