//! Whole-word positions equal a regex on the text mapped to tokens through the Python
//! tokenizer's own offsets; stop strings.

mod common;

use xlvlm_processor::{MatchCase, StopStrings, TextTokenizer, find_word_spans};

#[test]
fn whole_words_match_python_offsets() {
    let cases = common::load_json("word_cases.json");
    let cases = cases.as_array().unwrap();
    let spm = TextTokenizer::from_dir(common::fixture("llava_spm")).unwrap();
    let bytelevel = TextTokenizer::from_dir(common::fixture("bytelevel")).unwrap();
    let mut found = 0;
    for case in cases {
        let tok = match case["tokenizer"].as_str().unwrap() {
            "llava_spm" => &spm,
            _ => &bytelevel,
        };
        let text = case["text"].as_str().unwrap();
        let ids = tok.encode(text, false).unwrap();
        assert_eq!(ids, common::ids(&case["ids"]), "{text:?}");
        let word = case["word"].as_str().unwrap();
        let case_mode = if case["case_insensitive"].as_bool().unwrap() {
            MatchCase::Insensitive
        } else {
            MatchCase::Sensitive
        };
        let spans: Vec<[usize; 2]> = find_word_spans(tok, &ids, word, case_mode)
            .iter()
            .map(|s| [s.first, s.last])
            .collect();
        let expected: Vec<[usize; 2]> = case["spans"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                [
                    s[0].as_u64().unwrap() as usize,
                    s[1].as_u64().unwrap() as usize,
                ]
            })
            .collect();
        assert_eq!(
            spans, expected,
            "{} {text:?} {word:?} {case_mode:?} {}",
            case["tokenizer"], case["pieces"]
        );
        found += spans.len();
    }
    assert!(found > 20, "only {found} occurrences in the cases");
}

#[test]
fn no_is_not_found_inside_snow_not_or_now() {
    let tok = TextTokenizer::from_dir(common::fixture("llava_spm")).unwrap();
    // Pieces: ▁No , ▁there ▁is ▁no ▁snow ▁on ▁ it . ▁No t ▁no w <0x21>
    let ids = tok
        .encode("No, there is no snow on it. Not now!", false)
        .unwrap();
    let spans = find_word_spans(&tok, &ids, "no", MatchCase::Insensitive);
    let firsts: Vec<usize> = spans.iter().map(|s| s.first).collect();
    assert_eq!(firsts, [0, 4]);
    // The hidden state that predicts the second "no" sits on "▁is".
    assert_eq!(spans[1].predicted_at(), Some(3));
    assert_eq!(spans[0].predicted_at(), None);
    // BOS and other special tokens are boundaries, never text.
    let with_bos = tok.encode("no", true).unwrap();
    let spans = find_word_spans(&tok, &with_bos, "no", MatchCase::Sensitive);
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].first, 1);
}

#[test]
fn stop_strings_end_in_the_newest_token() {
    for dir in ["llava_spm", "bytelevel"] {
        let tok = TextTokenizer::from_dir(common::fixture(dir)).unwrap();
        let stops = StopStrings::new(&tok, &["snow.", "ASSISTANT:"]);
        let ids = tok.encode("there is snow.", false).unwrap();
        assert!(stops.matches(&ids), "{dir}: full stop string at the end");
        assert!(
            !stops.matches(&ids[..ids.len() - 1]),
            "{dir}: not yet complete"
        );
        let ids = tok.encode("snow. And then more", false).unwrap();
        assert!(
            !stops.matches(&ids),
            "{dir}: stop string long before the end"
        );
        let ids = tok.encode("USER: hi ASSISTANT:", false).unwrap();
        assert!(stops.matches(&ids), "{dir}: spans several tokens");
        assert!(!StopStrings::new::<&str>(&tok, &[]).matches(&ids));
    }
}

#[test]
fn a_special_token_can_be_a_stop_string() {
    let tok = TextTokenizer::from_dir(common::fixture("bytelevel")).unwrap();
    let stops = StopStrings::new(&tok, &["<|im_end|>"]);
    let ids = tok.encode("yes<|im_end|>", false).unwrap();
    assert!(stops.matches(&ids));
    assert!(!stops.matches(&ids[..ids.len() - 1]));
}
