//! Whole processor outputs (placeholder expansion, BOS, padding) equal transformers'
//! `LlavaProcessor` on the same checkpoint files and images.

mod common;

use xlvlm_processor::{ImageInput, Padding, Processor, Prompt, Sample, TokenRole};

#[test]
fn batches_equal_llava_processor() {
    let cases = common::load_json("processor_cases.json");
    let cases = cases.as_array().unwrap();
    assert!(cases.len() >= 6);
    for case in cases {
        let checkpoint = case["checkpoint"].as_str().unwrap();
        let processor = Processor::from_dir(common::fixture(checkpoint)).unwrap();
        let conversations = common::load_json("chat_cases.json");
        let image_paths: Vec<Vec<std::path::PathBuf>> = case["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|list| {
                list.as_array()
                    .unwrap()
                    .iter()
                    .map(|n| common::fixture(&format!("images/{}", n.as_str().unwrap())))
                    .collect()
            })
            .collect();
        let names: Vec<&str> = case["conversations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        let samples: Vec<Sample> = if names.is_empty() {
            case["prompts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| Sample {
                    prompt: Prompt::Text(p.as_str().unwrap().to_owned()),
                    images: vec![],
                })
                .collect()
        } else {
            names
                .iter()
                .zip(&image_paths)
                .map(|(name, paths)| {
                    let conv = conversations["checkpoint_cases"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .find(|c| c["conversation"] == *name)
                        .unwrap();
                    Sample {
                        prompt: Prompt::Messages {
                            messages: common::messages(&conv["messages"]),
                            add_generation_prompt: true,
                        },
                        images: paths.iter().map(|p| ImageInput::Path(p)).collect(),
                    }
                })
                .collect()
        };
        let padding = match case["padding_side"].as_str().unwrap() {
            "left" => Padding::Left,
            _ => Padding::Right,
        };
        let batch = processor.encode_batch(&samples, padding).unwrap();
        let what = format!("{checkpoint} {:?} {:?}", names, padding);
        let expected_rows = case["input_ids"].as_array().unwrap();
        assert_eq!(batch.batch_size, expected_rows.len(), "{what}");
        for (i, row) in expected_rows.iter().enumerate() {
            assert_eq!(
                batch.row(i),
                common::ids(row).as_slice(),
                "{what}: input_ids row {i}"
            );
            let mask = common::ids(&case["attention_mask"][i]);
            assert_eq!(
                &batch.attention_mask[i * batch.seq_len..(i + 1) * batch.seq_len],
                mask.as_slice(),
                "{what}: attention_mask row {i}"
            );
        }
        for (i, prompt) in case["prompts"].as_array().unwrap().iter().enumerate() {
            assert_eq!(
                batch.prompts[i],
                prompt.as_str().unwrap(),
                "{what}: prompt {i}"
            );
        }
        let image_id = case["image_token_id"].as_u64().unwrap() as u32;
        assert_eq!(processor.image_token_id(), Some(image_id));
        for (pos, (&id, role)) in batch.input_ids.iter().zip(&batch.token_roles).enumerate() {
            let expect = if batch.attention_mask[pos] == 0 {
                TokenRole::Pad
            } else if id == image_id {
                TokenRole::Image
            } else {
                TokenRole::Prompt
            };
            assert_eq!(*role, expect, "{what}: role at {pos}");
        }
        match case["pixel_values_shape"].as_array() {
            Some(shape) => {
                let pv = batch.pixel_values.as_ref().expect("pixel values");
                let shape: Vec<usize> =
                    shape.iter().map(|v| v.as_u64().unwrap() as usize).collect();
                assert_eq!(pv.shape, shape, "{what}");
                assert_eq!(pv.data.len(), shape.iter().product::<usize>());
                let owners: Vec<usize> = image_paths
                    .iter()
                    .enumerate()
                    .flat_map(|(i, p)| std::iter::repeat_n(i, p.len()))
                    .collect();
                assert_eq!(pv.sample_of_image, owners);
            }
            None => assert!(batch.pixel_values.is_none()),
        }
    }
}

#[test]
fn placeholder_and_image_counts_must_agree() {
    let processor = Processor::from_dir(common::fixture("llava_spm")).unwrap();
    let sample = Sample {
        prompt: Prompt::Text("USER: <image>\nHi".into()),
        images: vec![],
    };
    let err = processor
        .encode_batch(&[sample], Padding::Left)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("1 <image> placeholder(s) but 0 image(s)"),
        "{err}"
    );
}

#[test]
fn text_only_checkpoint_rejects_images() {
    let processor = Processor::from_dir(common::fixture("bytelevel")).unwrap();
    assert!(processor.images().is_none());
    let path = common::fixture("images/synthetic.png");
    let sample = Sample {
        prompt: Prompt::Text("hi".into()),
        images: vec![ImageInput::Path(&path)],
    };
    let err = processor
        .encode_batch(&[sample], Padding::Left)
        .unwrap_err()
        .to_string();
    assert!(err.contains("no image processor"), "{err}");
}

#[test]
fn unsupported_processor_class_is_named_with_the_supported_ones() {
    let dir = std::env::temp_dir().join(format!("xlvlm-processor-class-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for file in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(
            common::fixture(&format!("llava_spm/{file}")),
            dir.join(file),
        )
        .unwrap();
    }
    let config = serde_json::json!({
        "processor_class": "PaliGemmaProcessor",
        "image_processor": {"image_seq_length": 256}
    });
    std::fs::write(dir.join("processor_config.json"), config.to_string()).unwrap();
    let err = Processor::from_dir(&dir).unwrap_err().to_string();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        err.contains("PaliGemmaProcessor") && err.contains("LlavaProcessor"),
        "{err}"
    );
    assert!(err.contains("processor_config.json"), "{err}");
}

#[test]
fn processor_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>(_: &T) {}
    let processor = Processor::from_dir(common::fixture("llava_spm")).unwrap();
    assert_send_sync(&processor);
    let rendered: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    processor
                        .render_chat(&[xlvlm_processor::Message::user_with_image("hi")], true)
                        .unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(rendered[0], "USER: <image>\nhi ASSISTANT:");
    assert_eq!(rendered[0], rendered[1]);
}
