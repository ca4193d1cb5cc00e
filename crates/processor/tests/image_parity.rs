//! CLIP preprocessing within about one 8-bit step of transformers' `CLIPImageProcessorPil`.

mod common;

use safetensors::SafeTensors;
use xlvlm_processor::{ClipImageConfig, ResizeTo, load_image};

/// Largest allowed difference, in 8-bit steps of the input (`|Δ| · std · 255`), for losslessly
/// stored images: transformers' two backends differ by about 2 steps; here only fixed-point
/// rounding (±1) and the float16 goldens separate the two.
const MAX_STEPS: f32 = 2.0;
/// Mean difference allowed, in 8-bit steps: catches a systematic shift (wrong mean, off-by-one
/// crop) that stays under the maximum.
const MAX_MEAN_STEPS: f32 = 0.1;
/// For JPEG input the decoders differ too (the `image` crate's vs libjpeg-turbo's IDCT and
/// chroma upsampling): `chelsea_pil_decoded.png`, PIL's decoding of the same file, stays within
/// the lossless bounds above.
const MAX_STEPS_JPEG: f32 = 4.0;
const MAX_MEAN_STEPS_JPEG: f32 = 0.5;

#[test]
fn pixel_values_match_transformers_pil_backend() {
    let meta = common::load_json("pixels.json");
    let bytes = std::fs::read(common::fixture("pixels.safetensors")).unwrap();
    let golden = SafeTensors::deserialize(&bytes).unwrap();
    let mut cases = meta["pixel_cases"].as_array().unwrap().clone();
    cases.sort_by_key(|c| c["image"].as_str().unwrap().contains("jpg"));
    assert_eq!(cases.len(), golden.len());
    for case in cases {
        let key = case["key"].as_str().unwrap();
        let image = load_image(&common::fixture(&format!(
            "images/{}",
            case["image"].as_str().unwrap()
        )))
        .unwrap();
        let config = ClipImageConfig {
            size: ResizeTo::ShortestEdge(case["shortest_edge"].as_u64().unwrap() as u32),
            crop_size: (
                case["crop_height"].as_u64().unwrap() as u32,
                case["crop_width"].as_u64().unwrap() as u32,
            ),
            ..ClipImageConfig::default()
        };
        let ours = config.preprocess(&image).unwrap();
        let view = golden.tensor(key).unwrap();
        let shape: Vec<usize> = view.shape().to_vec();
        assert_eq!(ours.shape.to_vec(), shape, "{key}: shape");
        let reference: Vec<f32> = view
            .data()
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect();
        let plane = shape[1] * shape[2];
        let (mut max_steps, mut sum_steps) = (0f32, 0f64);
        for (i, (a, b)) in ours.data.iter().zip(&reference).enumerate() {
            let steps = (a - b).abs() * config.image_std[i / plane] * 255.0;
            max_steps = max_steps.max(steps);
            sum_steps += steps as f64;
        }
        let mean_steps = (sum_steps / reference.len() as f64) as f32;
        let (max_allowed, mean_allowed) = if key.contains(".jpg@") {
            (MAX_STEPS_JPEG, MAX_MEAN_STEPS_JPEG)
        } else {
            (MAX_STEPS, MAX_MEAN_STEPS)
        };
        assert!(
            max_steps <= max_allowed,
            "{key}: max difference {max_steps} steps"
        );
        assert!(
            mean_steps <= mean_allowed,
            "{key}: mean difference {mean_steps} steps"
        );
    }
}

#[test]
fn unreadable_image_names_the_file() {
    let err = load_image(&common::fixture("pixels.json"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("pixels.json"), "{err}");
}
