//! The readers on hand-made excerpts of the real COCO Karpathy, VQAv2 and JSONL formats.

use std::fs;
use std::path::{Path, PathBuf};

use xlvlm_data::{
    AnswerTypeToAnswer, DataError, DatasetSource, JsonlOptions, KarpathyOptions, MissingImages,
    SampleFilter, Selection, Task, VqaOptions, check_images, read_jsonl, read_karpathy, read_vqav2,
};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A fresh, empty folder for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("readers")
        .join(name);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn karpathy_options(splits: &[&str]) -> KarpathyOptions {
    KarpathyOptions {
        annotation_file: fixtures().join("coco/karpathy/dataset_coco.json"),
        image_root: PathBuf::from("/coco"),
        splits: splits.iter().map(|split| split.to_string()).collect(),
        selection: Selection::default(),
    }
}

fn vqa_options() -> VqaOptions {
    VqaOptions::for_split(&fixtures().join("vqav2"), Path::new("/coco"), "val2014")
}

#[test]
fn karpathy_reads_one_split_with_all_captions() {
    let samples = read_karpathy(&karpathy_options(&["test"])).unwrap();
    assert_eq!(samples.len(), 1);
    let sample = &samples[0];
    assert_eq!(sample.id, "COCO_val2014_000000000042");
    assert_eq!(sample.task, Task::Captioning);
    assert_eq!(
        sample.image.as_deref(),
        Some(Path::new("/coco/val2014/COCO_val2014_000000000042.jpg"))
    );
    assert_eq!(sample.prompt, None);
    assert_eq!(sample.references.len(), 5);
    assert_eq!(sample.references[2], "The puppy naps on a red cushion. ");
    assert_eq!(
        sample.response.as_deref(),
        Some("A brown dog sleeping on a red sofa.")
    );
    assert_eq!(sample.meta.image_id, Some(42));
    assert_eq!(sample.meta.split.as_deref(), Some("test"));
}

#[test]
fn karpathy_train_leaves_out_restval_unless_asked() {
    let ids = |splits: &[&str]| -> Vec<String> {
        read_karpathy(&karpathy_options(splits))
            .unwrap()
            .into_iter()
            .map(|sample| sample.id)
            .collect()
    };
    assert_eq!(ids(&["train"]), ["COCO_train2014_000000000009"]);
    // File order, whatever the order of the requested splits.
    assert_eq!(
        ids(&["train", "restval"]),
        ["COCO_val2014_000000000073", "COCO_train2014_000000000009"]
    );
}

#[test]
fn karpathy_unknown_split_names_the_present_ones() {
    let error = read_karpathy(&karpathy_options(&["validation"])).unwrap_err();
    let message = error.to_string();
    assert!(message.contains("dataset_coco.json"), "{message}");
    assert!(message.contains("`validation`"), "{message}");
    assert!(message.contains("restval, test, train"), "{message}");
}

#[test]
fn karpathy_infers_the_image_folder_when_filepath_is_absent() {
    let dir = scratch("karpathy_no_filepath");
    let file = dir.join("dataset_coco.json");
    fs::write(
        &file,
        r#"{"images": [{"filename": "COCO_train2014_000000000009.jpg", "imgid": 0,
            "split": "train", "sentences": [{"raw": "a plate of food"}]}]}"#,
    )
    .unwrap();
    let samples = read_karpathy(&KarpathyOptions {
        annotation_file: file,
        ..karpathy_options(&["train"])
    })
    .unwrap();
    assert_eq!(
        samples[0].image.as_deref(),
        Some(Path::new("/coco/train2014/COCO_train2014_000000000009.jpg"))
    );
    // Without cocoid the Karpathy imgid is the only id there is.
    assert_eq!(samples[0].meta.image_id, Some(0));
}

#[test]
fn karpathy_type_error_names_file_path_and_line() {
    let dir = scratch("karpathy_type_error");
    let file = dir.join("dataset_coco.json");
    fs::write(
        &file,
        "{\"images\": [\n {\"filename\": \"a.jpg\", \"imgid\": 0, \"split\": \"train\",\n  \
         \"sentences\": [{\"raw\": 17}]}]}",
    )
    .unwrap();
    let error = read_karpathy(&KarpathyOptions {
        annotation_file: file.clone(),
        ..karpathy_options(&["train"])
    })
    .unwrap_err();
    match &error {
        DataError::Json {
            path,
            json_path,
            line,
            ..
        } => {
            assert_eq!(path, &file);
            assert_eq!(json_path, "images[0].sentences[0].raw");
            assert_eq!(*line, 3);
        }
        other => panic!("expected a JSON error, got {other:?}"),
    }
    let message = error.to_string();
    assert!(message.contains("expected a string"), "{message}");
}

#[test]
fn karpathy_image_without_captions_is_an_error() {
    let dir = scratch("karpathy_no_captions");
    let file = dir.join("dataset_coco.json");
    fs::write(
        &file,
        r#"{"images": [{"filename": "a.jpg", "imgid": 0, "split": "val", "sentences": []}]}"#,
    )
    .unwrap();
    let error = read_karpathy(&KarpathyOptions {
        annotation_file: file,
        ..karpathy_options(&["val"])
    })
    .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("images[0] (`a.jpg`) has no sentences"),
        "{error}"
    );
}

#[test]
fn vqa_joins_questions_and_annotations() {
    let samples = read_vqav2(&vqa_options()).unwrap();
    let ids: Vec<&str> = samples.iter().map(|sample| sample.id.as_str()).collect();
    assert_eq!(ids, ["42000", "42001", "73000"]);

    let count = &samples[1];
    assert_eq!(count.task, Task::Vqa);
    // The question is trimmed, as the seed does before adding the answer prompt.
    assert_eq!(
        count.prompt.as_deref(),
        Some("How many cushions are on the sofa?")
    );
    assert_eq!(count.response.as_deref(), Some("2"));
    assert_eq!(
        count.references,
        ["2", "2", "two", "2", "3", "2", "2", "2", "2", "1"]
    );
    assert_eq!(count.meta.answer_type.as_deref(), Some("number"));
    assert_eq!(count.meta.question_type.as_deref(), Some("how many"));
    assert_eq!(count.meta.question_id, Some(42001));
    assert_eq!(count.meta.image_id, Some(42));
    assert_eq!(
        count.image.as_deref(),
        Some(Path::new("/coco/val2014/COCO_val2014_000000000042.jpg"))
    );
    assert_eq!(samples[2].references[3], "dark red");
}

#[test]
fn vqa_filters_match_whole_values() {
    let select = |filter: SampleFilter| -> Vec<String> {
        let mut options = vqa_options();
        options.selection.filter = filter;
        read_vqav2(&options)
            .unwrap()
            .into_iter()
            .map(|sample| sample.id)
            .collect()
    };
    let by_type = select(SampleFilter {
        answer_types: vec!["yes/no".into(), "other".into()],
        ..SampleFilter::default()
    });
    assert_eq!(by_type, ["42000", "73000"]);
    // `re` is part of `red` but not an answer: nothing is selected.
    let substring = select(SampleFilter {
        answers: vec!["re".into()],
        ..SampleFilter::default()
    });
    assert!(substring.is_empty(), "{substring:?}");
    let by_answer = select(SampleFilter {
        answers: vec![" Red".into()],
        image_ids: vec![73],
        ..SampleFilter::default()
    });
    assert_eq!(by_answer, ["73000"]);
}

#[test]
fn vqa_without_annotations_has_questions_only() {
    let mut options = vqa_options();
    options.annotations_file = None;
    let samples = read_vqav2(&options).unwrap();
    assert_eq!(samples.len(), 3);
    assert!(
        samples
            .iter()
            .all(|sample| sample.response.is_none() && sample.references.is_empty())
    );
}

#[test]
fn vqa_question_without_annotation_is_an_error() {
    let dir = scratch("vqa_unmatched");
    let questions = dir.join("questions.json");
    fs::write(
        &questions,
        r#"{"questions": [{"image_id": 42, "question": "Is the dog asleep?", "question_id": 42000},
                          {"image_id": 42, "question": "Is it night?", "question_id": 42999}]}"#,
    )
    .unwrap();
    let mut options = vqa_options();
    options.questions_file = questions;
    let error = read_vqav2(&options).unwrap_err().to_string();
    assert!(
        error.contains("v2_mscoco_val2014_annotations.json"),
        "{error}"
    );
    assert!(
        error.contains("no annotation for question_id 42999"),
        "{error}"
    );
}

#[test]
fn vqa_bad_answer_names_its_json_path() {
    let dir = scratch("vqa_bad_answer");
    let annotations = dir.join("annotations.json");
    fs::write(
        &annotations,
        r#"{"annotations": [{"question_type": "is the", "multiple_choice_answer": "yes",
            "answers": [{"answer": "yes"}, {"answer": ["no"]}], "image_id": 42,
            "answer_type": "yes/no", "question_id": 42000}]}"#,
    )
    .unwrap();
    let mut options = vqa_options();
    options.annotations_file = Some(annotations);
    let error = read_vqav2(&options).unwrap_err().to_string();
    assert!(error.contains("annotations.json:2:"), "{error}");
    assert!(
        error.contains("`annotations[0].answers[1].answer`"),
        "{error}"
    );
}

#[test]
fn vqa_image_template_is_checked() {
    let mut options = vqa_options();
    options.image_template = "{split}/{id}.jpg".into();
    let error = read_vqav2(&options).unwrap_err().to_string();
    assert!(error.contains("image_template"), "{error}");
}

#[test]
fn answer_type_to_answer_reads_and_maps_words() {
    let table =
        AnswerTypeToAnswer::read(&fixtures().join("vqav2/answer_type_to_answer.json")).unwrap();
    assert_eq!(table.question_type["how many"], ["2", "1", "3"]);
    let word_to_type = table.word_to_answer_type();
    // "2" is listed 3 times as a number and once as other.
    assert_eq!(word_to_type["2"], "number");
    assert_eq!(word_to_type["yes"], "yes/no");
    assert_eq!(word_to_type["red"], "other");

    let dir = scratch("answer_type_missing_key");
    let file = dir.join("types.json");
    fs::write(&file, r#"{"answer_type": {"yes/no": ["yes"]}}"#).unwrap();
    let error = AnswerTypeToAnswer::read(&file).unwrap_err().to_string();
    assert!(error.contains("missing field `question_type`"), "{error}");

    // A valid document followed by more text is refused, not silently truncated.
    fs::write(&file, "{\"answer_type\": {}, \"question_type\": {}}\n}").unwrap();
    let error = AnswerTypeToAnswer::read(&file).unwrap_err().to_string();
    assert!(error.contains("types.json:2:1"), "{error}");
    assert!(error.contains("trailing characters"), "{error}");
}

#[test]
fn answer_type_to_answer_is_built_from_samples() {
    let samples = read_vqav2(&vqa_options()).unwrap();
    let table = AnswerTypeToAnswer::from_samples(&samples);
    assert_eq!(table.answer_type["yes/no"], ["yes"]);
    assert_eq!(table.question_type["what color is the"], ["red"]);
}

#[test]
fn jsonl_reads_ids_prompts_and_answers() {
    let file = fixtures().join("custom/samples.jsonl");
    let samples = read_jsonl(&JsonlOptions {
        file,
        image_root: None,
        selection: Selection::default(),
    })
    .unwrap();
    assert_eq!(samples.len(), 3);
    assert_eq!(samples[0].id, "kitchen-1");
    assert_eq!(samples[0].task, Task::Custom);
    assert_eq!(
        samples[0].image.as_deref(),
        Some(fixtures().join("custom/images/kitchen.png").as_path())
    );
    assert_eq!(samples[0].references, ["a bowl of fruit"]);
    assert_eq!(samples[1].id, "2");
    assert_eq!(samples[1].response, None);
    assert_eq!(samples[1].references.len(), 2);
    assert_eq!(samples[2].image, None);
    assert!(samples[2].references.is_empty());
}

#[test]
fn jsonl_errors_name_the_line() {
    let dir = scratch("jsonl_errors");
    let file = dir.join("data.jsonl");
    let read = |content: &str| {
        fs::write(&file, content).unwrap();
        read_jsonl(&JsonlOptions {
            file: file.clone(),
            image_root: None,
            selection: Selection::default(),
        })
        .unwrap_err()
        .to_string()
    };
    let misspelt = read("{\"id\": 1, \"prompt\": \"a\"}\n{\"id\": 2, \"promt\": \"b\"}\n");
    assert!(misspelt.contains("data.jsonl:2:"), "{misspelt}");
    assert!(misspelt.contains("unknown field `promt`"), "{misspelt}");
    let duplicate = read("{\"id\": 1, \"prompt\": \"a\"}\n{\"id\": \"1\", \"prompt\": \"b\"}\n");
    assert!(
        duplicate.contains("line 2: id `1` occurs twice"),
        "{duplicate}"
    );
    let truncated = read("{\"id\": 1, \"prompt\": \"a\"}\n\n{\"id\": 3, \"prompt\": \n");
    assert!(truncated.contains("data.jsonl:3:"), "{truncated}");
}

#[test]
fn missing_images_are_reported_or_skipped() {
    let root = scratch("missing_images");
    fs::create_dir_all(root.join("val2014")).unwrap();
    fs::write(
        root.join("val2014/COCO_val2014_000000000042.jpg"),
        b"present",
    )
    .unwrap();
    let mut options = vqa_options();
    options.image_root = root.clone();
    let samples = read_vqav2(&options).unwrap();

    let mut strict = samples.clone();
    let error = check_images(&mut strict, MissingImages::Error).unwrap_err();
    match error {
        DataError::MissingImage { sample_id, image } => {
            assert_eq!(sample_id, "73000");
            assert_eq!(image, root.join("val2014/COCO_val2014_000000000073.jpg"));
        }
        other => panic!("expected a missing image, got {other:?}"),
    }

    let mut lenient = samples;
    assert_eq!(check_images(&mut lenient, MissingImages::Skip).unwrap(), 1);
    let kept: Vec<&str> = lenient.iter().map(|sample| sample.id.as_str()).collect();
    assert_eq!(kept, ["42000", "42001"]);
    assert_eq!(check_images(&mut lenient, MissingImages::Error).unwrap(), 0);
}

#[test]
fn missing_annotation_file_names_the_file() {
    let mut options = vqa_options();
    options.questions_file = PathBuf::from("/nonexistent/questions.json");
    let error = read_vqav2(&options).unwrap_err().to_string();
    assert!(
        error.starts_with("cannot read /nonexistent/questions.json"),
        "{error}"
    );
}

#[test]
fn dataset_source_reads_checks_and_lists_its_files() {
    let root = scratch("dataset_source");
    fs::create_dir_all(root.join("val2014")).unwrap();
    fs::write(
        root.join("val2014/COCO_val2014_000000000073.jpg"),
        b"present",
    )
    .unwrap();
    let mut options = vqa_options();
    options.image_root = root;
    let source = DatasetSource::Vqav2(options.clone());
    assert_eq!(
        source.annotation_files(),
        [
            options.questions_file.as_path(),
            options.annotations_file.as_deref().unwrap()
        ]
    );
    let loaded = source.load(MissingImages::Skip).unwrap();
    assert_eq!(loaded.skipped_missing_images, 2);
    assert_eq!(loaded.samples.len(), 1);
    assert!(source.load(MissingImages::Error).is_err());

    let captions = DatasetSource::Karpathy(karpathy_options(&["test", "restval"]));
    assert_eq!(captions.read().unwrap().len(), 2);
}
