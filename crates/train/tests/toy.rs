//! The toy checkpoint pipeline on a small generated world: files that load through the normal
//! model/processor code, training that lowers the loss, determinism by seed.

use std::path::{Path, PathBuf};

use xlvlm_data::world::WorldSummary;
use xlvlm_data::{WorldOptions, generate_world};
use xlvlm_model::{Vlm, WeightDType};
use xlvlm_processor::Processor;
use xlvlm_train::{
    CAPTION_INSTRUCTION, EncodedData, PatchLabels, ToyConfig, TrainError, TrainOptions,
    build_tokenizer, caption_examples, finetune_style, train_toy, write_checkpoint_files,
};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("xlvlm-train-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn small_world(name: &str) -> PathBuf {
    let dir = scratch(name);
    let options = WorldOptions {
        threads: Some(1),
        ..WorldOptions::default()
    };
    generate_world(&dir, 7, 30, &options).unwrap();
    dir
}

fn quick_options(seed: u64) -> TrainOptions {
    TrainOptions {
        steps: 6,
        batch_size: 4,
        learning_rate: 3e-3,
        warmup_steps: 1,
        seed,
        vision_steps: 2,
        ..TrainOptions::default()
    }
}

fn train_tiny(world: &Path, out: &Path, seed: u64) -> xlvlm_train::TrainSummary {
    train_toy(
        world,
        out,
        &ToyConfig::tiny(),
        &quick_options(seed),
        &mut |_| {},
    )
    .unwrap()
}

#[test]
fn word_level_tokenizer_round_trips_and_loads_through_the_processor() {
    let world = small_world("tok");
    let summary = WorldSummary::read(&world).unwrap();
    let mut texts = summary.vocabulary.words.clone();
    texts.push(format!("USER: ASSISTANT: {CAPTION_INSTRUCTION}"));
    texts.push("two shapes: a red circle, a blue square".into());
    let tokenizer = build_tokenizer(texts.iter()).unwrap();
    let dir = scratch("tok-ckpt");
    write_checkpoint_files(&dir, &ToyConfig::tiny(), &tokenizer).unwrap();
    let processor = Processor::from_dir(&dir).unwrap();
    let tok = processor.tokenizer();
    let text = "two shapes : a red circle , a blue square";
    let ids = tok
        .encode("two shapes: a red circle, a blue square", false)
        .unwrap();
    assert!(ids.iter().all(|&id| id != 0), "no <unk> in {ids:?}");
    assert_eq!(tok.decode(&ids, true).unwrap(), text);
    assert_eq!(processor.find_word_positions(&ids, "red"), vec![4]);
    // the chat template renders the LLaVA-1.5 prompt; the image expands to one token per patch
    let rendered = processor
        .render_chat(&[xlvlm_train::caption_message()], true)
        .unwrap();
    assert_eq!(
        rendered,
        format!("USER: <image>\n{CAPTION_INSTRUCTION} ASSISTANT:")
    );
    assert_eq!(processor.image_token_id(), Some(4));
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&world).unwrap();
}

#[test]
fn training_lowers_the_loss_and_is_deterministic_by_seed() {
    let world = small_world("train");
    let (a, b, c) = (scratch("a"), scratch("b"), scratch("c"));
    let run_a = train_tiny(&world, &a, 1);
    let run_b = train_tiny(&world, &b, 1);
    train_tiny(&world, &c, 2);
    let first = run_a.loss_by_tenth.first().unwrap();
    let last = run_a.loss_by_tenth.last().unwrap();
    assert!(last < first, "loss went from {first} to {last}");
    let weights = |dir: &Path| std::fs::read(dir.join("model.safetensors")).unwrap();
    assert_eq!(run_a.loss_by_tenth, run_b.loss_by_tenth);
    assert_eq!(weights(&a), weights(&b));
    assert_ne!(weights(&a), weights(&c));
    // the checkpoint loads through the ordinary inference path
    let model =
        Vlm::<burn::backend::Flex>::load_dir(&a, WeightDType::F32, &Default::default()).unwrap();
    assert_eq!(model.num_params(), run_a.num_params);
    for dir in [a, b, c, world] {
        std::fs::remove_dir_all(dir).unwrap();
    }
}

#[test]
fn vision_pretraining_labels_every_shape_and_lowers_its_loss() {
    let world = small_world("vision");
    let out = scratch("vision-out");
    let options = TrainOptions {
        steps: 1,
        vision_steps: 40,
        ..quick_options(5)
    };
    let summary = train_toy(&world, &out, &ToyConfig::tiny(), &options, &mut |_| {}).unwrap();
    let losses = &summary.vision_loss_by_tenth;
    assert_eq!(losses.len(), 10);
    assert!(losses[9] < 0.7 * losses[0], "{losses:?}");
    // every training shape labels the patch that holds its centre (the tiny model: 4x4 patches)
    let processor = Processor::from_dir(&out).unwrap();
    let examples = caption_examples(&world, "train", false).unwrap();
    let data = EncodedData::encode(&processor, &examples).unwrap();
    let labels = PatchLabels::from_world(&world, &data, 4).unwrap();
    let scenes = WorldSummary::read(&world)
        .unwrap()
        .read_scenes(&world)
        .unwrap();
    let shapes: usize = scenes
        .iter()
        .filter(|s| s.split == "train")
        .map(|s| s.scene.shapes.len())
        .sum();
    assert_eq!(labels.shapes.iter().filter(|&&l| l != 0).count(), shapes);
    assert_eq!(labels.colours.iter().filter(|&&l| l != 0).count(), shapes);
    assert_eq!(labels.shapes.len(), data.images.len() * 16);
    for dir in [out, world] {
        std::fs::remove_dir_all(dir).unwrap();
    }
}

#[test]
fn fine_tune_keeps_the_files_and_changes_the_weights() {
    let world = small_world("ft");
    let (base, tuned) = (scratch("base"), scratch("tuned"));
    train_tiny(&world, &base, 3);
    let summary = finetune_style(&base, &world, &tuned, &quick_options(3), &mut |_| {}).unwrap();
    assert_eq!(summary.finetuned_from.as_deref(), base.to_str());
    for name in ["config.json", "tokenizer.json", "chat_template.json"] {
        assert_eq!(
            std::fs::read(base.join(name)).unwrap(),
            std::fs::read(tuned.join(name)).unwrap(),
            "{name}"
        );
    }
    assert_ne!(
        std::fs::read(base.join("model.safetensors")).unwrap(),
        std::fs::read(tuned.join("model.safetensors")).unwrap()
    );
    let err = finetune_style(&base, &world, &base, &quick_options(3), &mut |_| {}).unwrap_err();
    assert!(
        matches!(err, TrainError::Option { option: "out", .. }),
        "{err}"
    );
    for dir in [base, tuned, world] {
        std::fs::remove_dir_all(dir).unwrap();
    }
}

#[test]
fn bad_options_are_errors_naming_the_option() {
    let world = small_world("bad");
    let out = scratch("bad-out");
    let options = TrainOptions {
        steps: 0,
        ..quick_options(0)
    };
    let err = train_toy(&world, &out, &ToyConfig::tiny(), &options, &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("steps"), "{err}");
    let config = ToyConfig {
        patch_size: 10,
        ..ToyConfig::tiny()
    };
    let err = train_toy(&world, &out, &config, &quick_options(0), &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("patch_size"), "{err}");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::remove_dir_all(&world).unwrap();
}

#[test]
fn autodiff_gradients_match_finite_differences() {
    use burn::tensor::{Tensor, TensorData};
    use xlvlm_model::ModelConfig;
    use xlvlm_train::{
        EncodedData, TrainBackend, caption_examples, init_weights, response_loss, vqa_examples,
    };

    let world = small_world("grad");
    let dir = scratch("grad-ckpt");
    let summary = WorldSummary::read(&world).unwrap();
    let mut texts = summary.vocabulary.words.clone();
    texts.push(format!(
        "USER: ASSISTANT: {CAPTION_INSTRUCTION} {}",
        xlvlm_train::VQA_INSTRUCTION
    ));
    let mut examples = caption_examples(&world, "train", false).unwrap();
    examples.extend(vqa_examples(&world, "train").unwrap());
    texts.extend(
        examples
            .iter()
            .flat_map(|e| [e.instruction.clone(), e.responses[0].clone()]),
    );
    write_checkpoint_files(
        &dir,
        &ToyConfig::tiny(),
        &build_tokenizer(texts.iter()).unwrap(),
    )
    .unwrap();
    let processor = Processor::from_dir(&dir).unwrap();
    let device = Default::default();
    let config = ModelConfig::from_dir(&dir).unwrap();
    let model = Vlm::<TrainBackend>::init(config, &dir, WeightDType::F32, &device, init_weights(5))
        .unwrap();
    let data = EncodedData::encode(&processor, &examples[..12]).unwrap();
    let batch = data.batch(&[(0, 0), (3, 0), (7, 0), (11, 0)]);

    let mut leaves = Vec::new();
    let model = model
        .map_params(|name, _, values| {
            let leaf = values.require_grad();
            leaves.push((name.to_string(), leaf.clone()));
            leaf
        })
        .unwrap();
    let grads = response_loss(&model, &batch).unwrap().backward();
    let mut model = model
        .map_params(|_, _, values| Tensor::from_inner(values.inner()))
        .unwrap();
    let checked = [
        "vision_tower.vision_model.embeddings.patch_embedding.weight",
        "vision_tower.vision_model.encoder.layers.0.mlp.fc1.weight",
        "multi_modal_projector.linear_1.weight",
        "language_model.model.embed_tokens.weight",
        "language_model.model.layers.0.mlp.down_proj.weight",
        "language_model.lm_head.weight",
    ];
    for name in checked {
        let leaf = &leaves.iter().find(|(n, _)| n == name).unwrap().1;
        let grad: Vec<f32> = leaf.grad(&grads).unwrap().into_data().into_vec().unwrap();
        let index = (0..grad.len())
            .max_by(|&a, &b| grad[a].abs().total_cmp(&grad[b].abs()))
            .unwrap();
        let eps = 1e-2f32;
        let shift = |model: Vlm<TrainBackend>, delta: f32| {
            model
                .map_params(|n, _, values| {
                    if n != name {
                        return values;
                    }
                    let mut v: Vec<f32> = values.into_data().into_vec().unwrap();
                    v[index] += delta;
                    let len = v.len();
                    Tensor::from_data(TensorData::new(v, [len]), &device)
                })
                .unwrap()
        };
        model = shift(model, eps);
        let plus: f32 = response_loss(&model, &batch).unwrap().into_scalar();
        model = shift(model, -2.0 * eps);
        let minus: f32 = response_loss(&model, &batch).unwrap().into_scalar();
        model = shift(model, eps);
        let numeric = (plus - minus) / (2.0 * eps);
        let analytic = grad[index];
        assert!(
            analytic.abs() > 1e-6,
            "{name}: no gradient reaches this weight"
        );
        assert!(
            (analytic - numeric).abs() <= 0.05 * numeric.abs() + 1e-4,
            "{name}[{index}]: autodiff {analytic}, finite differences {numeric}"
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&world).unwrap();
}
