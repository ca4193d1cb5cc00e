//! Rendered chat templates equal transformers' `apply_chat_template(..., tokenize=False)`.

mod common;

use xlvlm_processor::{ChatTemplate, ChatTemplateSource, Processor};

#[test]
fn templates_render_exactly_like_transformers() {
    let all = common::load_json("chat_cases.json");
    let specials: Vec<(String, String)> = all["specials"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect();
    let cases = all["cases"].as_array().unwrap();
    assert!(cases.len() >= 30, "{} cases", cases.len());
    assert!(cases.iter().any(|c| {
        c["vars"]["add_vision_id"] == true
            && c["expected"]
                .as_str()
                .is_some_and(|e| e.contains("Picture 1: "))
    }));
    for case in cases {
        let name = case["template"].as_str().unwrap();
        let text = all["templates"][name].as_str().unwrap().to_owned();
        let template = ChatTemplate::new(text, ChatTemplateSource::ChatTemplateJinja).unwrap();
        let messages = common::messages(&case["messages"]);
        let agp = case["add_generation_prompt"].as_bool().unwrap();
        let what = format!("{name} / {} / agp={agp}", case["conversation"]);
        let vars = case["vars"].as_object().expect("vars").clone();
        let what = format!("{what} / vars {vars:?}");
        let rendered = template.render_with_vars(
            &messages,
            agp,
            specials.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            &vars,
        );
        match (case["expected"].as_str(), case["error"].as_str()) {
            (Some(expected), _) => assert_eq!(rendered.unwrap(), expected, "{what}"),
            (None, Some(error)) => {
                let err = rendered.unwrap_err().to_string();
                assert!(err.contains(error), "{what}: {err}");
            }
            _ => panic!("{what}: case has neither expected text nor error"),
        }
    }
}

#[test]
fn checkpoint_templates_render_like_the_processor() {
    let all = common::load_json("chat_cases.json");
    for case in all["checkpoint_cases"].as_array().unwrap() {
        let checkpoint = case["checkpoint"].as_str().unwrap();
        let processor = Processor::from_dir(common::fixture(checkpoint)).unwrap();
        let agp = case["add_generation_prompt"].as_bool().unwrap();
        let rendered = processor
            .render_chat(&common::messages(&case["messages"]), agp)
            .unwrap();
        assert_eq!(
            rendered,
            case["expected"].as_str().unwrap(),
            "{checkpoint} / {} / agp={agp}",
            case["conversation"]
        );
    }
}

#[test]
fn template_file_preference_is_reported() {
    let source = |dir: &str| {
        Processor::from_dir(common::fixture(dir))
            .unwrap()
            .chat_template()
            .map(ChatTemplate::source)
    };
    assert_eq!(
        source("llava_spm"),
        Some(ChatTemplateSource::ChatTemplateJinja)
    );
    assert_eq!(
        source("llava_hub"),
        Some(ChatTemplateSource::ChatTemplateJson)
    );
    assert_eq!(
        source("bytelevel"),
        Some(ChatTemplateSource::TokenizerConfig)
    );
}

#[test]
fn template_syntax_errors_name_the_file() {
    let err = ChatTemplate::new(
        "{% for m in messages %}".into(),
        ChatTemplateSource::ChatTemplateJson,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("chat_template.json"), "{err}");
}

#[test]
fn a_template_that_does_not_compile_fails_only_chats() {
    let dir = std::env::temp_dir().join(format!(
        "xlvlm-processor-badtemplate-{}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    for file in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(
            common::fixture(&format!("llava_spm/{file}")),
            dir.join(file),
        )
        .unwrap();
    }
    std::fs::write(
        dir.join("chat_template.jinja"),
        "{% for m in messages %}{{ m.role }",
    )
    .unwrap();
    let processor = Processor::from_dir(&dir).unwrap();
    let text_ids = processor.tokenizer().encode("no snow", true);
    let err = processor
        .render_chat(&[xlvlm_processor::Message::text("user", "hi")], true)
        .unwrap_err()
        .to_string();
    let reported = processor.chat_template_error();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(text_ids.is_ok());
    assert!(err.contains("chat_template.jinja"), "{err}");
    assert!(reported.is_some_and(|r| r.contains("chat_template.jinja")));
}
