//! Shared helpers of the integration tests: fixture paths and JSON loading.
#![allow(dead_code)]

use std::path::PathBuf;

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
}

pub fn fixture(rel: &str) -> PathBuf {
    fixtures().join(rel)
}

pub fn load_json(rel: &str) -> serde_json::Value {
    let path = fixture(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn ids(value: &serde_json::Value) -> Vec<u32> {
    value
        .as_array()
        .expect("an array of ids")
        .iter()
        .map(|v| v.as_u64().expect("an id") as u32)
        .collect()
}

/// Messages in the JSON form transformers takes, converted to the crate's types.
pub fn messages(value: &serde_json::Value) -> Vec<xlvlm_processor::Message> {
    use xlvlm_processor::{ContentPart, Message};
    value
        .as_array()
        .expect("a message list")
        .iter()
        .map(|m| {
            let role = m["role"].as_str().expect("role");
            match &m["content"] {
                serde_json::Value::String(s) => Message::text(role, s.clone()),
                serde_json::Value::Array(parts) => Message::new(
                    role,
                    parts
                        .iter()
                        .map(|p| match p["type"].as_str() {
                            Some("image") => ContentPart::Image,
                            Some("text") => ContentPart::Text {
                                text: p["text"].as_str().expect("text").to_owned(),
                            },
                            other => panic!("unknown part type {other:?}"),
                        })
                        .collect(),
                ),
                other => panic!("unknown content {other}"),
            }
        })
        .collect()
}

/// An integer tensor of a safetensors golden (I64 or I32) with its shape.
pub fn golden_ints(golden: &safetensors::SafeTensors, key: &str) -> (Vec<usize>, Vec<i64>) {
    use safetensors::Dtype;
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

/// An F32 tensor of a safetensors golden with its shape.
pub fn golden_floats(golden: &safetensors::SafeTensors, key: &str) -> (Vec<usize>, Vec<f32>) {
    let view = golden.tensor(key).unwrap_or_else(|e| panic!("{key}: {e}"));
    assert_eq!(view.dtype(), safetensors::Dtype::F32, "{key}");
    let values = view
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    (view.shape().to_vec(), values)
}
