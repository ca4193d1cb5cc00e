//! Token ids and decoded text equal to Python `tokenizers`/transformers on the same files.

mod common;

use xlvlm_processor::{Padding, TextTokenizer};

#[test]
fn ids_and_decoding_equal_transformers() {
    let cases = common::load_json("tokenizer_cases.json");
    let cases = cases.as_object().expect("checkpoint -> cases");
    assert_eq!(cases.len(), 3);
    for (checkpoint, entry) in cases {
        let tok = TextTokenizer::from_dir(common::fixture(checkpoint)).unwrap();
        for case in entry["cases"].as_array().unwrap() {
            let text = case["text"].as_str().unwrap();
            let ids = tok.encode(text, true).unwrap();
            assert_eq!(
                ids,
                common::ids(&case["ids"]),
                "{checkpoint}: {text:?} with special tokens"
            );
            assert_eq!(
                tok.encode(text, false).unwrap(),
                common::ids(&case["ids_no_special"]),
                "{checkpoint}: {text:?} without special tokens"
            );
            assert_eq!(
                tok.decode(&ids, false).unwrap(),
                case["decoded"].as_str().unwrap(),
                "{checkpoint}: decode {text:?}"
            );
            assert_eq!(
                tok.decode(&ids, true).unwrap(),
                case["decoded_skip_special"].as_str().unwrap(),
                "{checkpoint}: decode {text:?} skipping special tokens"
            );
        }
        let id_or_none = |v: &serde_json::Value| v.as_u64().map(|n| n as u32);
        assert_eq!(
            tok.bos().map(|t| t.id),
            id_or_none(&entry["bos_token_id"]),
            "{checkpoint} bos"
        );
        assert_eq!(
            tok.eos().map(|t| t.id),
            id_or_none(&entry["eos_token_id"]),
            "{checkpoint} eos"
        );
        assert_eq!(
            Some(tok.pad_id()),
            id_or_none(&entry["pad_token_id"]),
            "{checkpoint} pad"
        );
        let side = match tok.default_padding() {
            Padding::Left => "left",
            Padding::Right => "right",
        };
        assert_eq!(
            side,
            entry["padding_side"].as_str().unwrap(),
            "{checkpoint} padding side"
        );
    }
}

#[test]
fn missing_tokenizer_names_the_folder() {
    let dir = common::fixture("images");
    let err = TextTokenizer::from_dir(&dir).unwrap_err().to_string();
    assert!(
        err.contains("tokenizer.json") && err.contains("images"),
        "{err}"
    );
}

#[test]
fn add_bos_token_in_config_rebuilds_the_post_processor() {
    // transformers 5 rebuilds the post-processor from add_bos_token / add_eos_token when the
    // config names them: here it turns the BOS off and the EOS on.
    let json = common::fixture("llava_spm/tokenizer.json");
    let config = serde_json::json!({
        "bos_token": "<s>", "eos_token": "</s>", "add_bos_token": false, "add_eos_token": true
    });
    let tok = TextTokenizer::from_files(
        &json,
        &config,
        std::path::Path::new("tokenizer_config.json"),
    )
    .unwrap();
    let plain = tok.encode("no snow", false).unwrap();
    let with_special = tok.encode("no snow", true).unwrap();
    let eos = tok.eos().unwrap().id;
    assert_eq!(with_special, [plain, vec![eos]].concat());
}
