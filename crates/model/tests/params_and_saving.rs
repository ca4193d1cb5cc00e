//! Every weight by its checkpoint name: visiting, replacing, saving and loading back.

mod common;

use std::collections::BTreeSet;

use burn::tensor::Tensor;
use common::{B, Golden, device, fixture, to_f32};
use safetensors::SafeTensors;
use xlvlm_model::{Batch, Logits, ModelConfig, PixelValues, Vlm, WeightDType};

fn llava_batch() -> Batch {
    let g = Golden::open("llava");
    let (shape, data) = g.f32("input.pixel_values");
    Batch::from_padded(
        g.rows_u32("input.input_ids"),
        g.rows_i64("input.attention_mask"),
    )
    .with_pixel_values(PixelValues {
        data: data.clone(),
        shape: [shape[0], shape[1], shape[2], shape[3]],
    })
}

fn logits(model: &Vlm<B>, batch: &Batch) -> Vec<f32> {
    to_f32(
        model
            .forward(batch, &[], &[], Logits::All)
            .unwrap()
            .logits
            .unwrap(),
    )
}

fn scratch_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("xlvlm-model-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn visited_names_and_shapes_are_those_of_the_hub_checkpoint() {
    let dir = fixture("llava/hub_format");
    let model = Vlm::<B>::load_dir(&dir, WeightDType::F32, &device()).unwrap();
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let mut seen = BTreeSet::new();
    model.visit_params(|name, shape, values| {
        let stored = file
            .tensor(name)
            .unwrap_or_else(|_| panic!("{name} not in the file"));
        assert_eq!(stored.shape(), shape, "{name}");
        let want: Vec<f32> = stored
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(to_f32(values), want, "{name}: values in checkpoint order");
        seen.insert(name.to_string());
    });
    let in_file: BTreeSet<String> = file.names().into_iter().map(str::to_string).collect();
    assert_eq!(seen, in_file);
}

#[test]
fn save_then_load_gives_bit_identical_logits() {
    let batch = llava_batch();
    let model = Vlm::<B>::load_dir(&fixture("llava"), WeightDType::F32, &device()).unwrap();
    let dir = scratch_dir("roundtrip");
    std::fs::copy(fixture("llava/config.json"), dir.join("config.json")).unwrap();
    model.save_checkpoint(&dir).unwrap();
    let back = Vlm::<B>::load_dir(&dir, WeightDType::F32, &device()).unwrap();
    assert_eq!(logits(&back, &batch), logits(&model, &batch));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn mapped_weights_change_the_model_and_bad_sizes_are_errors() {
    let batch = llava_batch();
    let model = Vlm::<B>::load_dir(&fixture("llava"), WeightDType::F32, &device()).unwrap();
    let before = logits(&model, &batch);
    // identity map keeps the logits exactly
    let model = model.map_params(|_, _, values| values).unwrap();
    assert_eq!(logits(&model, &batch), before);
    let model = model
        .map_params(|name, _, values| {
            if name == "language_model.model.norm.weight" {
                values.mul_scalar(2.0)
            } else {
                values
            }
        })
        .unwrap();
    assert_ne!(logits(&model, &batch), before);
    let err = model
        .map_params(|_, _, values| {
            let n = values.dims()[0];
            values.narrow(0, 0, n - 1)
        })
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("needs"), "{err}");
}

#[test]
fn init_makes_every_weight_by_name_in_the_hub_layout() {
    let config = ModelConfig::from_dir(&fixture("llava")).unwrap();
    let model = Vlm::<B>::init(
        config,
        &fixture("llava"),
        WeightDType::F32,
        &device(),
        |name, shape| {
            let n: usize = shape.iter().product();
            let fill = if name.ends_with("norm.weight") {
                1.0
            } else {
                0.01
            };
            vec![fill; n]
        },
    )
    .unwrap();
    let mut names = Vec::new();
    model.visit_params(|name, _, values: Tensor<B, 1>| {
        let v = to_f32(values);
        let want = if name.ends_with("norm.weight") {
            1.0
        } else {
            0.01
        };
        assert!(v.iter().all(|&x| x == want), "{name}");
        names.push(name.to_string());
    });
    let hub =
        Vlm::<B>::load_dir(&fixture("llava/hub_format"), WeightDType::F32, &device()).unwrap();
    let mut hub_names = Vec::new();
    hub.visit_params(|name, _, _| hub_names.push(name.to_string()));
    assert_eq!(names, hub_names);
    assert!(logits(&model, &llava_batch()).iter().all(|v| v.is_finite()));
}
