//! The shapes world: determinism, round trips through the readers, and truthful annotations.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;
use xlvlm_data::world::{Colour, Position, caption_agreement, caption_has_style};
use xlvlm_data::{
    AnswerTypeToAnswer, KarpathyFile, MissingImages, Sample, WorldOptions, WorldSummary,
    check_images, generate_world, read_json, read_karpathy, read_vqav2,
};

const SIZE: usize = 40;

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("world")
        .join(name);
    let _ = fs::remove_dir_all(&dir);
    dir
}

fn generate(name: &str, seed: u64, options: &WorldOptions) -> (PathBuf, WorldSummary) {
    let dir = scratch(name);
    let summary = generate_world(&dir, seed, SIZE, options).unwrap();
    (dir, summary)
}

/// Every file under `dir`, by relative path, with its bytes.
fn all_files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, files: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, files);
            } else {
                files.insert(
                    path.strip_prefix(root).unwrap().to_path_buf(),
                    fs::read(&path).unwrap(),
                );
            }
        }
    }
    let mut files = BTreeMap::new();
    walk(dir, dir, &mut files);
    files
}

#[test]
fn same_seed_gives_byte_identical_files_whatever_the_thread_count() {
    let one_thread = WorldOptions {
        threads: Some(1),
        ..WorldOptions::default()
    };
    let three_threads = WorldOptions {
        threads: Some(3),
        ..WorldOptions::default()
    };
    let (first, _) = generate("same_seed_a", 7, &one_thread);
    let (second, _) = generate("same_seed_b", 7, &three_threads);
    let (first, second) = (all_files(&first), all_files(&second));
    // 40 images, 2 caption files, 3 × 2 VQA files, the type table, scenes and summary.
    assert_eq!(first.len(), SIZE + 2 + 6 + 3);
    assert_eq!(
        first.keys().collect::<Vec<_>>(),
        second.keys().collect::<Vec<_>>()
    );
    for (path, bytes) in &first {
        assert!(
            bytes == &second[path],
            "{} differs between two runs",
            path.display()
        );
    }
}

#[test]
fn different_seeds_give_different_worlds() {
    let (first, _) = generate("seed_1", 1, &WorldOptions::default());
    let (second, _) = generate("seed_2", 2, &WorldOptions::default());
    let (first, second) = (all_files(&first), all_files(&second));
    let image = Path::new("images/train/SHAPES_train_000000000001.png");
    assert_ne!(first[image], second[image]);
    let captions = Path::new("annotations/dataset_coco.json");
    assert_ne!(first[captions], second[captions]);
    let differing = first
        .iter()
        .filter(|(path, bytes)| {
            path.extension().is_some_and(|ext| ext == "png") && second[*path] != **bytes
        })
        .count();
    assert!(
        differing > SIZE * 9 / 10,
        "only {differing} of {SIZE} images differ"
    );
}

#[test]
fn the_readers_read_every_generated_file() {
    let (dir, summary) = generate("round_trip", 3, &WorldOptions::default());
    assert_eq!(summary, WorldSummary::read(&dir).unwrap());
    assert_eq!(summary.splits["train"].images, 32);
    assert_eq!(summary.splits["val"].images, 4);
    assert_eq!(summary.splits["test"].images, 4);

    let mut all_captions = Vec::new();
    for split in ["train", "val", "test"] {
        for style in [false, true] {
            let mut samples =
                read_karpathy(&summary.karpathy_options(&dir, &[split], style)).unwrap();
            assert_eq!(samples.len(), summary.splits[split].images);
            assert_eq!(check_images(&mut samples, MissingImages::Error).unwrap(), 0);
            assert!(samples.iter().all(|sample| sample.references.len() == 5));
            assert!(
                samples
                    .iter()
                    .all(|sample| sample.id.starts_with(&format!("SHAPES_{split}_")))
            );
            if !style {
                all_captions.extend(samples);
            }
        }
        let mut questions = read_vqav2(&summary.vqa_options(&dir, split).unwrap()).unwrap();
        assert_eq!(questions.len(), summary.splits[split].questions);
        assert_eq!(questions.len(), 5 * summary.splits[split].images);
        assert_eq!(
            check_images(&mut questions, MissingImages::Error).unwrap(),
            0
        );
        assert!(questions.iter().all(|sample| sample.references.len() == 10));
        // The question's image is the captioned image with the same id.
        for question in &questions {
            let image_id = question.meta.image_id.unwrap();
            let captioned = all_captions
                .iter()
                .find(|sample| sample.meta.image_id == Some(image_id))
                .unwrap();
            assert_eq!(question.image, captioned.image);
        }
    }
    let table = AnswerTypeToAnswer::read(&dir.join(&summary.answer_type_to_answer_file)).unwrap();
    assert_eq!(table.answer_type["yes/no"].len(), 2 * SIZE);
    let word_to_type = table.word_to_answer_type();
    assert_eq!(word_to_type["yes"], "yes/no");
    assert_eq!(word_to_type.get("2").map(String::as_str), Some("number"));
    for word in ["red", "circle", "yes", "how", "left"] {
        assert!(
            summary.vocabulary.words.iter().any(|known| known == word),
            "{word} missing"
        );
    }
}

#[test]
fn images_show_the_described_scene() {
    let options = WorldOptions {
        image_size: 96,
        ..WorldOptions::default()
    };
    let (dir, summary) = generate("rendering", 4, &options);
    let scenes: Vec<Value> = read_json(&dir.join(&summary.scenes_file)).unwrap();
    assert_eq!(scenes.len(), SIZE);
    let colours: BTreeMap<&str, [u8; 3]> =
        Colour::ALL.iter().map(|c| (c.name(), c.rgb())).collect();
    for scene in &scenes {
        let split = scene["split"].as_str().unwrap();
        let file = dir
            .join("images")
            .join(split)
            .join(scene["filename"].as_str().unwrap());
        let image = image::open(&file).unwrap().into_rgb8();
        assert_eq!(image.dimensions(), (96, 96));
        for shape in scene["shapes"].as_array().unwrap() {
            let (x, y) = (shape["x"].as_f64().unwrap(), shape["y"].as_f64().unwrap());
            let pixel = image.get_pixel(x as u32, y as u32).0;
            assert_eq!(
                pixel,
                colours[shape["colour"].as_str().unwrap()],
                "{}",
                file.display()
            );
        }
        // A corner is background, never a shape colour.
        let corner = image.get_pixel(0, 0).0;
        assert!(
            !colours.values().any(|&rgb| rgb == corner),
            "{}",
            file.display()
        );
    }
}

/// The scene of every image, keyed by image id, as plain (shape, colour, position) triples.
fn scenes_by_image(dir: &Path, summary: &WorldSummary) -> BTreeMap<u64, Vec<[String; 3]>> {
    let scenes: Vec<Value> = read_json(&dir.join(&summary.scenes_file)).unwrap();
    scenes
        .iter()
        .map(|scene| {
            let shapes = scene["shapes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|shape| {
                    ["shape", "colour", "position"]
                        .map(|key| shape[key].as_str().unwrap().to_string())
                })
                .collect();
            (scene["image_id"].as_u64().unwrap(), shapes)
        })
        .collect()
}

fn position_of_phrase(text: &str) -> Option<&'static str> {
    Position::ALL
        .iter()
        .find(|position| text.contains(position.phrase()))
        .map(|position| position.name())
}

/// Answers a generated question from the scene alone, independently of the generator's code.
fn expected_answer(question: &str, shapes: &[[String; 3]]) -> String {
    let question = question.trim_end_matches('?');
    let yes_no = |present: bool| if present { "yes" } else { "no" }.to_string();
    if let Some(thing) = question.strip_prefix("is there ") {
        let words: Vec<&str> = thing.split(' ').skip(1).collect();
        return yes_no(match words.as_slice() {
            [colour, "shape"] => shapes.iter().any(|s| s[1] == *colour),
            [colour, kind] => shapes.iter().any(|s| s[1] == *colour && s[0] == *kind),
            [kind] => shapes.iter().any(|s| s[0] == *kind),
            _ => panic!("unexpected question `{question}`"),
        });
    }
    if let Some(rest) = question.strip_prefix("how many ") {
        let noun = rest.trim_end_matches(" are there");
        let count = if noun == "shapes" {
            shapes.len()
        } else {
            shapes
                .iter()
                .filter(|s| format!("{}s", s[0]) == noun)
                .count()
        };
        return count.to_string();
    }
    if let Some(rest) = question.strip_prefix("what color is the ") {
        let matching: Vec<&[String; 3]> = match position_of_phrase(rest) {
            Some(position) => shapes.iter().filter(|s| s[2] == position).collect(),
            None => shapes.iter().filter(|s| s[0] == rest).collect(),
        };
        assert_eq!(matching.len(), 1, "`{question}` is ambiguous in {shapes:?}");
        return matching[0][1].clone();
    }
    if question.starts_with("what shape is ") {
        let position = position_of_phrase(question).unwrap();
        let matching: Vec<&[String; 3]> = shapes.iter().filter(|s| s[2] == position).collect();
        assert_eq!(matching.len(), 1, "`{question}` is ambiguous in {shapes:?}");
        return matching[0][0].clone();
    }
    panic!("unexpected question `{question}`")
}

#[test]
fn answers_agree_with_the_scenes_and_yes_no_is_balanced() {
    let (dir, summary) = generate("answers", 5, &WorldOptions::default());
    let scenes = scenes_by_image(&dir, &summary);
    let mut by_type: BTreeMap<String, usize> = BTreeMap::new();
    for split in ["train", "val", "test"] {
        let questions: Vec<Sample> =
            read_vqav2(&summary.vqa_options(&dir, split).unwrap()).unwrap();
        let mut yes = 0;
        let mut no = 0;
        for question in &questions {
            let shapes = &scenes[&question.meta.image_id.unwrap()];
            let prompt = question.prompt.as_deref().unwrap();
            let answer = question.response.as_deref().unwrap();
            assert_eq!(
                answer,
                expected_answer(prompt, shapes),
                "`{prompt}` in {shapes:?}"
            );
            // Annotators agree, up to count words.
            let majority = question
                .references
                .iter()
                .filter(|r| r.as_str() == answer)
                .count();
            assert!(majority >= 9, "{:?}", question.references);
            yes += usize::from(answer == "yes");
            no += usize::from(answer == "no");
            *by_type
                .entry(question.meta.answer_type.clone().unwrap())
                .or_default() += 1;
        }
        assert_eq!(yes, no, "split {split}");
        assert_eq!(yes, summary.splits[split].images);
    }
    assert_eq!(by_type["yes/no"], 2 * SIZE);
    assert_eq!(by_type["number"], SIZE);
    assert_eq!(by_type["other"], 2 * SIZE);
}

#[test]
fn captions_name_the_drawn_colours_and_shapes() {
    let (dir, summary) = generate("captions", 6, &WorldOptions::default());
    let scenes = scenes_by_image(&dir, &summary);
    let captions = KarpathyFile::read(&dir.join(&summary.captions_file)).unwrap();
    for image in &captions.images {
        let shapes = &scenes[&image.cocoid.unwrap()];
        for sentence in &image.sentences {
            for [kind, colour, _] in shapes {
                assert!(
                    sentence.raw.contains(&format!("{colour} {kind}")),
                    "`{}` misses the {colour} {kind}",
                    sentence.raw
                );
            }
            let mentioned_colours = Colour::ALL
                .iter()
                .filter(|colour| sentence.tokens.iter().any(|token| token == colour.name()))
                .count();
            let distinct_colours: std::collections::BTreeSet<&String> =
                shapes.iter().map(|s| &s[1]).collect();
            assert_eq!(
                mentioned_colours,
                distinct_colours.len(),
                "`{}`",
                sentence.raw
            );
        }
    }
}

#[test]
fn style_variant_opens_with_positions_and_the_original_never_does() {
    let (dir, summary) = generate("style", 8, &WorldOptions::default());
    let scenes = scenes_by_image(&dir, &summary);
    let original = KarpathyFile::read(&dir.join(&summary.captions_file)).unwrap();
    let style = KarpathyFile::read(&dir.join(&summary.style_captions_file)).unwrap();
    assert_eq!(original.images.len(), style.images.len());
    for (plain, styled) in original.images.iter().zip(&style.images) {
        assert_eq!(plain.filename, styled.filename);
        assert!(
            plain.sentences.iter().all(|s| !caption_has_style(&s.raw)),
            "{:?}",
            plain.sentences
        );
        let shapes = &scenes[&styled.cocoid.unwrap()];
        for sentence in &styled.sentences {
            assert!(caption_has_style(&sentence.raw), "`{}`", sentence.raw);
            for [kind, colour, position] in shapes {
                let phrase = Position::ALL
                    .iter()
                    .find(|p| p.name() == position)
                    .unwrap()
                    .phrase();
                assert!(
                    sentence.raw.contains(phrase),
                    "`{}` misses {phrase}",
                    sentence.raw
                );
                assert!(
                    sentence.raw.contains(&format!("{colour} {kind}")),
                    "`{}`",
                    sentence.raw
                );
            }
            assert_ne!(plain.sentences[0].raw, sentence.raw);
        }
    }
}

#[test]
fn bad_requests_are_refused_before_writing() {
    let dir = scratch("refused");
    let error = generate_world(&dir, 0, 2, &WorldOptions::default()).unwrap_err();
    assert!(error.to_string().contains("`size`"), "{error}");
    let error = generate_world(
        &dir,
        0,
        10,
        &WorldOptions {
            image_size: 8,
            ..WorldOptions::default()
        },
    )
    .unwrap_err();
    assert!(error.to_string().contains("`image_size`"), "{error}");
    assert!(!dir.exists());

    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("old.txt"), b"left over").unwrap();
    let error = generate_world(&dir, 0, 10, &WorldOptions::default()).unwrap_err();
    assert!(error.to_string().contains("not empty"), "{error}");
}

#[test]
fn caption_agreement_scores_colour_and_shape_words() {
    let (dir, summary) = generate("agreement", 9, &WorldOptions::default());
    let scenes = summary.read_scenes(&dir).unwrap();
    assert_eq!(scenes.len(), SIZE);
    let captions = KarpathyFile::read(&dir.join(&summary.captions_file)).unwrap();
    for (image, world_scene) in captions.images.iter().zip(&scenes) {
        assert_eq!(image.filename, world_scene.filename);
        let scene = &world_scene.scene;
        for sentence in &image.sentences {
            let agreement = caption_agreement(&sentence.raw, scene);
            assert!(agreement.colour_words >= 1);
            assert_eq!(agreement.correct_colour_words, agreement.colour_words);
            assert_eq!(agreement.correct_shape_words, agreement.shape_words);
            assert_eq!(agreement.mentioned_scene_colours, agreement.scene_colours);
            assert_eq!(agreement.mentioned_scene_shapes, agreement.scene_shapes);
        }
        // A caption naming a colour that is not drawn, and a plural shape word.
        let absent = Colour::ALL
            .iter()
            .find(|colour| !scene.has_colour(**colour))
            .unwrap();
        let wrong = format!("two {} circles", absent.name());
        let agreement = caption_agreement(&wrong, scene);
        assert_eq!(
            (agreement.colour_words, agreement.correct_colour_words),
            (1, 0)
        );
        assert_eq!(agreement.shape_words, 1);
        assert_eq!(agreement.mentioned_scene_colours, 0);
    }
}
