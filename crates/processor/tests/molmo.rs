//! Molmo2's image processor and image-token layout against transformers 5.24 (the processor
//! outputs recorded in `tests/fixtures/hf/molmo2/golden.safetensors` at the workspace root, made
//! by `tools/refgen/make_tiny_refs.py`): crops, `image_token_pooling`, `image_grids` and the
//! prompt's `input_ids`.

use std::path::PathBuf;

use safetensors::{Dtype, SafeTensors};
use xlvlm_processor::{ChatTemplate, Message, Molmo2ImageConfig, TextTokenizer, load_image};

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

fn ints(golden: &SafeTensors, key: &str) -> (Vec<usize>, Vec<i64>) {
    let view = golden.tensor(key).unwrap_or_else(|e| panic!("{key}: {e}"));
    let values = match view.dtype() {
        Dtype::I64 => view
            .data()
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
            .collect(),
        Dtype::I32 => view
            .data()
            .chunks_exact(4)
            .map(|b| i64::from(i32::from_le_bytes(b.try_into().unwrap())))
            .collect(),
        other => panic!("{key}: dtype {other:?}"),
    };
    (view.shape().to_vec(), values)
}

#[test]
fn crops_pooling_and_grid_equal_transformers() {
    let bytes = std::fs::read(molmo2().join("golden.safetensors")).unwrap();
    let golden = SafeTensors::deserialize(&bytes).unwrap();
    let image = load_image(&molmo2().join("../image.png")).unwrap();
    let out = config().preprocess(&image).unwrap();

    let (_, grid) = ints(&golden, "input.image_grids");
    assert_eq!(out.grid.map(|g| g as i64).to_vec(), grid);
    let (shape, pooling) = ints(&golden, "input.image_token_pooling");
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

#[test]
fn prompt_ids_equal_transformers() {
    let bytes = std::fs::read(molmo2().join("golden.safetensors")).unwrap();
    let golden = SafeTensors::deserialize(&bytes).unwrap();
    let tokenizer = TextTokenizer::from_dir(molmo2()).unwrap();
    let template = ChatTemplate::find_in_dir(&molmo2()).unwrap().unwrap();
    let rendered = template
        .render(
            &[Message::user_with_image(PROMPT)],
            true,
            tokenizer.special_tokens_map(),
        )
        .unwrap();
    let image = load_image(&molmo2().join("../image.png")).unwrap();
    let cfg = config();
    let out = cfg.preprocess(&image).unwrap();
    // Molmo2Processor expands <|image|> and prepends the BOS token, or EOS when there is none
    let bos = tokenizer
        .bos()
        .or(tokenizer.eos())
        .map(|t| t.text.clone())
        .unwrap();
    let text = cfg.expand_prompt(&rendered, &[out.grid], &bos).unwrap();
    assert!(text.starts_with("<|endoftext|><|im_start|>user\n<low_res_im_start><im_patch>"));
    // a prompt that already starts with it is left alone; placeholders and images must agree
    assert_eq!(cfg.expand_prompt(&text, &[], &bos).unwrap(), text);
    let err = cfg
        .expand_prompt(&rendered, &[], &bos)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("1 <|image|> placeholders but 0 images"),
        "{err}"
    );
    let ids = tokenizer.encode(&text, true).unwrap();
    let (_, want) = ints(&golden, "input.input_ids");
    assert_eq!(ids.iter().map(|&t| i64::from(t)).collect::<Vec<_>>(), want);
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
