//! Opt-in real-weight check on SmolLM2-135M-Instruct: set `XLVLM_SMOLLM2_DIR` to the folder
//! written by `tools/refgen/model_smollm2_from_gguf.py`. Hidden states within 1e-3 relative
//! and the same greedy continuation as transformers. Skips (with a message) when not set.

mod common;

use std::path::PathBuf;

use common::{B, assert_close, device};
use safetensors::{Dtype, SafeTensors};
use xlvlm_model::{
    Batch, CaptureSpec, GenerateOptions, HookPoint, Logits, Positions, Vlm, WeightDType,
};

#[test]
fn smollm2_hidden_states_and_greedy_continuation() {
    let Some(dir) = std::env::var_os("XLVLM_SMOLLM2_DIR").map(PathBuf::from) else {
        eprintln!(
            "skipped: set XLVLM_SMOLLM2_DIR to the output of tools/refgen/model_smollm2_from_gguf.py"
        );
        return;
    };
    let bytes = std::fs::read(dir.join("golden.safetensors")).expect("golden.safetensors");
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let floats = |name: &str| -> Vec<f32> {
        let v = st.tensor(name).unwrap();
        assert_eq!(v.dtype(), Dtype::F32);
        v.data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    };
    let ints = |name: &str| -> Vec<u32> {
        let v = st.tensor(name).unwrap();
        v.data()
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as u32)
            .collect()
    };
    let model = Vlm::<B>::load_dir(&dir, WeightDType::F32, &device()).unwrap();
    let layers = model.config().text.num_layers;
    let batch = Batch::left_padded(vec![ints("input.input_ids")], 0);
    let mut captures = vec![CaptureSpec {
        hook: HookPoint::Embed,
        positions: Positions::All,
    }];
    captures.extend((0..layers).map(|i| CaptureSpec {
        hook: HookPoint::Layer(i),
        positions: Positions::All,
    }));
    captures.push(CaptureSpec {
        hook: HookPoint::Norm,
        positions: Positions::All,
    });
    let out = model.forward(&batch, &captures, &[], Logits::None).unwrap();
    for (i, capture) in out.captures.iter().enumerate() {
        // captures are Embed, Layer(0..L-1), Norm; hidden_states[L] is the norm output
        let want = if i == layers + 1 { layers } else { i };
        if i == layers {
            continue; // raw output of the last layer has no hidden_states entry
        }
        assert_close(
            &format!("hidden_states.{want}"),
            &capture.rows[0].to_f32(),
            &floats(&format!("text.hidden_states.{want}")),
            1e-3,
        );
    }
    let want = ints("generate.output_ids");
    let options = GenerateOptions {
        max_new_tokens: want.len(),
        ..Default::default()
    };
    let generation = model.generate(&batch, &options, &[], &[]).unwrap();
    let eos = &model.config().eos_token_ids;
    let end = want
        .iter()
        .position(|t| eos.contains(t))
        .map_or(want.len(), |p| p + 1);
    assert_eq!(generation.ids[0], want[..end]);
}
