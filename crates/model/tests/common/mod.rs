//! Reading the transformers goldens (`tests/fixtures/hf/<model>/golden.safetensors`, written by
//! `tools/refgen/make_tiny_refs.py`) and comparing against them.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use burn::tensor::{DType, Tensor};
use safetensors::{Dtype, SafeTensors};

pub type B = burn::backend::Flex;

pub fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/hf")
        .join(rel)
}

pub struct Golden {
    floats: HashMap<String, (Vec<usize>, Vec<f32>)>,
    ints: HashMap<String, (Vec<usize>, Vec<i64>)>,
}

impl Golden {
    pub fn open(model: &str) -> Self {
        Self::open_file(model, "golden.safetensors")
    }

    /// Another golden file of the fixture (`golden_split.safetensors`).
    pub fn open_file(model: &str, file: &str) -> Self {
        let path = fixture(model).join(file);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let st = SafeTensors::deserialize(&bytes).expect("golden.safetensors parses");
        let mut floats = HashMap::new();
        let mut ints = HashMap::new();
        for (name, view) in st.tensors() {
            let shape = view.shape().to_vec();
            let data = view.data();
            match view.dtype() {
                Dtype::F32 => {
                    let v = data
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                        .collect();
                    floats.insert(name, (shape, v));
                }
                Dtype::I64 => {
                    let v = data
                        .chunks_exact(8)
                        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                        .collect();
                    ints.insert(name, (shape, v));
                }
                Dtype::I32 => {
                    let v = data
                        .chunks_exact(4)
                        .map(|c| i64::from(i32::from_le_bytes(c.try_into().unwrap())))
                        .collect();
                    ints.insert(name, (shape, v));
                }
                other => panic!("unexpected golden dtype {other:?} for {name}"),
            }
        }
        Self { floats, ints }
    }

    pub fn f32(&self, name: &str) -> &(Vec<usize>, Vec<f32>) {
        self.floats
            .get(name)
            .unwrap_or_else(|| panic!("golden has no float tensor {name}"))
    }

    pub fn i64(&self, name: &str) -> &(Vec<usize>, Vec<i64>) {
        self.ints
            .get(name)
            .unwrap_or_else(|| panic!("golden has no int tensor {name}"))
    }

    pub fn has(&self, name: &str) -> bool {
        self.floats.contains_key(name) || self.ints.contains_key(name)
    }

    /// Rows of a `[rows, seq]` integer golden as token ids.
    pub fn rows_u32(&self, name: &str) -> Vec<Vec<u32>> {
        let (shape, v) = self.i64(name);
        v.chunks(shape[1])
            .map(|r| r.iter().map(|&x| x as u32).collect())
            .collect()
    }

    pub fn rows_i64(&self, name: &str) -> Vec<Vec<i64>> {
        let (shape, v) = self.i64(name);
        v.chunks(shape[1]).map(<[i64]>::to_vec).collect()
    }
}

pub fn to_f32<const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.cast(DType::F32).into_data().into_vec::<f32>().unwrap()
}

/// `max |a - b| / max |b|`: error relative to the reference's scale.
pub fn rel_err(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len(), "length mismatch");
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    let diff = got
        .iter()
        .zip(want)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    diff / scale
}

#[track_caller]
pub fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    assert!(
        got.iter().all(|v| v.is_finite()),
        "{what}: non-finite values"
    );
    let err = rel_err(got, want);
    assert!(err <= tol, "{what}: relative error {err:e} > {tol:e}");
}

/// Every vision layer, the connector output, the embeddings after the image merge and every
/// decoder layer's attention, MLP and block output, each against its transformers golden.
#[track_caller]
pub fn assert_hooks_match(
    rel: &str,
    get: impl Fn(xlvlm_model::HookPoint) -> Vec<f32>,
    g: &Golden,
    vision_layers: usize,
    text_layers: usize,
    tol: f32,
) {
    use xlvlm_model::HookPoint;
    for i in 0..vision_layers {
        let key = format!("vision.layer_output.{i}");
        assert_close(
            &format!("{rel} {key}"),
            &get(HookPoint::VisionLayer(i)),
            &g.f32(&key).1,
            tol,
        );
    }
    let connector = &g.f32("image_features").1;
    assert_close(
        &format!("{rel} connector"),
        &get(HookPoint::Projector),
        connector,
        tol,
    );
    let embed = &g.f32("text.hidden_states.0").1;
    assert_close(
        &format!("{rel} hidden_states.0"),
        &get(HookPoint::Embed),
        embed,
        tol,
    );
    for i in 0..text_layers {
        for (hook, key) in [
            (HookPoint::Attn(i), format!("text.attn_output.{i}")),
            (HookPoint::Mlp(i), format!("text.mlp_output.{i}")),
            (HookPoint::Layer(i), format!("text.layer_output.{i}")),
        ] {
            assert_close(&format!("{rel} {hook}"), &get(hook), &g.f32(&key).1, tol);
        }
    }
}

pub fn device() -> burn::backend::flex::FlexDevice {
    Default::default()
}
