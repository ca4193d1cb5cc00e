//! Molmo2's image processor and image-token layout against transformers 5.24 (the processor
//! outputs recorded in `tests/fixtures/hf/molmo2/golden.safetensors` at the workspace root, made
//! by `tools/refgen/make_tiny_refs.py`): crops, `image_token_pooling`, `image_grids` and the
//! prompt's `input_ids`.

use std::path::PathBuf;

mod common;

use common::golden_ints;
use safetensors::SafeTensors;
use xlvlm_processor::{
    ImageInput, Message, Molmo2ImageConfig, Padding, Processor, Prompt, Sample, TokenRole,
    load_image,
};

const PROMPT: &str = "What is shown in this image? Describe the colors.";

fn molmo2() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/hf/molmo2")
}

fn config() -> Molmo2ImageConfig {
    let path = molmo2().join("processor_config.json");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    Molmo2ImageConfig::from_processor_config(&json, &path).unwrap()
}

#[test]
fn crops_pooling_and_grid_equal_transformers() {
    let bytes = std::fs::read(molmo2().join("golden.safetensors")).unwrap();
    let golden = SafeTensors::deserialize(&bytes).unwrap();
    let image = load_image(&molmo2().join("../image.png")).unwrap();
    let out = config().preprocess(&image).unwrap();

    let (_, grid) = golden_ints(&golden, "input.image_grids");
    assert_eq!(out.grid.map(|g| g as i64).to_vec(), grid);
    let (shape, pooling) = golden_ints(&golden, "input.image_token_pooling");
    assert_eq!(out.pooling_shape.to_vec(), shape);
    assert_eq!(out.token_pooling, pooling);

    // transformers' pixel_values are patches [crops, patches, p * p * 3] in (y, x, channel)
    // order; ours are crops [crops, 3, side, side]
    let view = golden.tensor("input.pixel_values").unwrap();
    let want: Vec<f32> = view
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let [crops, patches, dim] = view.shape()[..] else {
        panic!("pixel_values shape {:?}", view.shape())
    };
    let [n, channels, side, _] = out.shape;
    assert_eq!((n, channels), (crops, 3));
    let p = 14;
    let g = side / p;
    assert_eq!((patches, dim), (g * g, p * p * 3));
    let mut max_diff = 0f32;
    for c in 0..crops {
        for k in 0..patches {
            for py in 0..p {
                for px in 0..p {
                    for ch in 0..3 {
                        let hf = want[(c * patches + k) * dim + (py * p + px) * 3 + ch];
                        let (y, x) = ((k / g) * p + py, (k % g) * p + px);
                        let ours = out.pixel_values[((c * 3 + ch) * side + y) * side + x];
                        max_diff = max_diff.max((hf - ours).abs());
                    }
                }
            }
        }
    }
    // std 0.5: one 8-bit step is 2/255 in normalised units. The resize is the same arithmetic
    // as PyTorch's, but a value that lands on .5 may round the other way: at most one step
    // (measured: exactly one step at the worst pixel)
    assert!(
        max_diff <= 1.0 / 255.0 / 0.5 + 1e-6,
        "max |diff| {max_diff}"
    );
}

/// The whole processor: rendered chat, `<|image|>` expanded, BOS in front, ids, crops and the
/// batch's token pooling, as transformers' `Molmo2Processor` gives them.
#[test]
fn processor_batch_equals_transformers() {
    let bytes = std::fs::read(molmo2().join("golden.safetensors")).unwrap();
    let golden = SafeTensors::deserialize(&bytes).unwrap();
    let processor = Processor::from_dir(molmo2()).unwrap();
    let image_path = molmo2().join("../image.png");
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
    let (_, want) = golden_ints(&golden, "input.input_ids");
    let ids: Vec<i64> = batch.tokens(0).iter().map(|&t| i64::from(t)).collect();
    assert_eq!(ids, want);
    // the vision features land on <im_patch>
    let patch = processor.tokenizer().token_to_id("<im_patch>").unwrap();
    assert_eq!(processor.image_token_id(), Some(patch));
    for (&id, role) in batch.input_ids.iter().zip(&batch.token_roles) {
        assert_eq!(*role == TokenRole::Image, id == patch);
    }
    let pixels = batch.pixel_values.as_ref().unwrap();
    assert_eq!(pixels.shape, vec![5, 3, 56, 56]);
    assert_eq!(pixels.sample_of_image, vec![0; 5]);
    let pooling = pixels.token_pooling.as_ref().unwrap();
    let (shape, want_pooling) = golden_ints(&golden, "input.image_token_pooling");
    assert_eq!(
        (pooling.index.len() / pooling.window, pooling.window),
        (shape[0], shape[1])
    );
    assert_eq!(pooling.index, want_pooling);

    // two images in one batch: the second image's patches count on from the first's entries
    let two = processor
        .encode_batch(&[sample.clone(), sample], Padding::Left)
        .unwrap();
    let pooling = two
        .pixel_values
        .as_ref()
        .unwrap()
        .token_pooling
        .as_ref()
        .unwrap();
    let (first, second) = pooling.index.split_at(want_pooling.len());
    assert_eq!(first, want_pooling);
    let shifted: Vec<i64> = want_pooling
        .iter()
        .map(|&i| if i >= 0 { i + 5 * 16 } else { i })
        .collect();
    assert_eq!(second, shifted);
}

#[test]
fn bad_settings_name_the_file_and_key() {
    let path = std::path::Path::new("processor_config.json");
    let err = Molmo2ImageConfig::from_processor_config(
        &serde_json::json!({"image_processor": {"size": {"height": 56, "width": 42}}}),
        path,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("size") && err.contains("processor_config.json"),
        "{err}"
    );
    let err = Molmo2ImageConfig::from_processor_config(
        &serde_json::json!({"image_processor": {"resample": 3}}),
        path,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("bilinear"), "{err}");
}
