//! The committed toy checkpoints (`data/toy-vlm`, `data/toy-vlm-finetuned`) load through the
//! ordinary model and processor code and answer held-out questions of the committed world.

use std::path::{Path, PathBuf};

use burn::backend::Flex;
use xlvlm_data::read_vqav2;
use xlvlm_data::world::{WorldSummary, caption_has_style};
use xlvlm_model::{Vlm, WeightDType};
use xlvlm_processor::Processor;
use xlvlm_train::{caption_message, generate_texts, vqa_message};

fn data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../data")
        .join(rel)
}

fn load(rel: &str) -> (Vlm<Flex>, Processor) {
    let dir = data(rel);
    let model = Vlm::<Flex>::load_dir(&dir, WeightDType::F32, &Default::default()).unwrap();
    (model, Processor::from_dir(&dir).unwrap())
}

#[test]
fn the_toy_model_answers_test_questions() {
    let world_dir = data("world");
    let world = WorldSummary::read(&world_dir).unwrap();
    let questions = read_vqav2(&world.vqa_options(&world_dir, "test").unwrap()).unwrap();
    // the questions of the first ten test images; answering by the language prior alone (the
    // most frequent answer per question type) gets about a third of them right, the committed
    // model 48 of 50 (91% over the whole test split, data/README.md)
    let first: Vec<_> = questions.iter().take(50).collect();
    let prompts: Vec<_> = first
        .iter()
        .map(|q| {
            (
                vqa_message(q.prompt.as_deref().unwrap()),
                q.image.clone().unwrap(),
            )
        })
        .collect();
    let (model, processor) = load("toy-vlm");
    let answers = generate_texts(&model, &processor, &prompts, 4, 16).unwrap();
    let correct = first
        .iter()
        .zip(&answers)
        .filter(|(q, a)| q.response.as_deref() == Some(a.as_str()))
        .count();
    let shown: Vec<_> = first
        .iter()
        .zip(&answers)
        .map(|(q, a)| {
            format!(
                "{} -> {a} ({})",
                q.prompt.as_deref().unwrap(),
                q.response.as_deref().unwrap()
            )
        })
        .collect();
    assert!(correct >= 45, "{correct}/50 correct:\n{}", shown.join("\n"));
}

#[test]
fn only_the_fine_tuned_model_captions_in_the_style_variant() {
    let world_dir = data("world");
    let world = WorldSummary::read(&world_dir).unwrap();
    let scenes = world.read_scenes(&world_dir).unwrap();
    let images: Vec<_> = scenes
        .iter()
        .filter(|s| s.split == "test")
        .take(4)
        .map(|s| {
            world_dir
                .join(&world.image_root)
                .join("test")
                .join(&s.filename)
        })
        .collect();
    let prompts: Vec<_> = images
        .iter()
        .map(|path| (caption_message(), path.clone()))
        .collect();
    let styled = |rel: &str| {
        let (model, processor) = load(rel);
        let captions = generate_texts(&model, &processor, &prompts, 40, 4).unwrap();
        let count = captions.iter().filter(|c| caption_has_style(c)).count();
        (count, captions)
    };
    let (base, base_captions) = styled("toy-vlm");
    let (tuned, tuned_captions) = styled("toy-vlm-finetuned");
    assert_eq!(base, 0, "{base_captions:?}");
    assert!(tuned >= 3, "{tuned_captions:?}");
}
