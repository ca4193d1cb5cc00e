//! Molmo's vision side (Molmo2, native in transformers 5, and the original Molmo such as
//! `allenai/Molmo-7B-D-0924`, remote code): a pre-norm ViT over patchified crops, the outputs of
//! several ViT layers concatenated per patch, an attention pooling (`image_pooling_2d`: the mean
//! of a window of patches queries the patches of that window) and a SwiGLU projector
//! (`image_projector.w1/w2/w3`). The pooled features are *added* to the embeddings of the image
//! patch tokens. `crates/model/MOLMO.md` lists what differs between the two generations.
//!
//! Checkpoints keep the original Molmo names. [`present_standard_names`] adds views (no copies)
//! under the names the shared loaders read, so the decoder is the shared [`crate::text`] one and
//! the ViT layers are the shared [`crate::vit`] ones:
//! * `model.transformer.wte.embedding` ‖ `wte.new_embedding` → `model.embed_tokens.weight`;
//! * `blocks.N.(self_attn.)att_proj` (q ‖ k ‖ v rows) → `layers.N.self_attn.{q,k,v}_proj`;
//! * `blocks.N.(mlp.)ff_proj` ([up; gate] rows) → `layers.N.mlp.{up,gate}_proj`;
//! * `attn_out`, `ff_out`, `attn_norm`, `ff_norm`, `ln_f`, (Molmo) `transformer.ff_out` → the
//!   Llama names;
//! * `image_vit.transformer.resblocks.N.{attention.w{q,k,v,o},attention_norm,ffn_norm,
//!   feed_forward.w{1,2}}` → `image_vit.encoder.layers.N.{self_attn.*_proj,layer_norm{1,2},mlp.fc{1,2}}`.

use std::ops::Range;
use std::path::Path;

use burn::tensor::{
    Bool, DType, Int, Tensor, TensorData, backend::Backend, module::attention,
    ops::AttentionModuleOptions,
};
use serde_json::{Map, Value};

use crate::config::{
    ModelConfig, QkNorm, TextConfig, VisionConfig, VisionFamily, bool_field, f64_field, str_field,
    text_config, token_ids, usize_field,
};
use crate::error::{ModelError, Result};
use crate::nn::{
    Activation, LayerNorm, Linear, ParamMapper, ParamVisitor, map_tensor, map_transposed,
    visit_tensor, visit_transposed,
};
use crate::vit::VitEncoder;
use crate::weights::Checkpoint;

/// Where the vision weights sit.
const VIT: &str = "model.vision_backbone.image_vit.";
const BACKBONE: &str = "model.vision_backbone.";
/// Where the decoder weights sit.
const TRANSFORMER: &str = "model.transformer.";

/// Molmo / Molmo2 vision-side hyper-parameters.
#[derive(Debug, Clone)]
pub struct MolmoConfig {
    /// The ViT; `image_size` is the side of one (square) crop.
    pub vision: VisionConfig,
    /// Molmo's CLIP ViT has a class token (dropped before pooling); Molmo2's has none.
    pub class_token: bool,
    /// Molmo's CLIP ViT normalises the embeddings (`pre_ln`) before the first layer.
    pub pre_layernorm: bool,
    /// Whether the patch embedding has a bias (Molmo2: yes; Molmo's CLIP: no).
    pub patch_bias: bool,
    /// ViT hidden states whose concatenation is pooled, as in the config (negative from the end;
    /// `i >= 0` is the output of layer `i`).
    pub feature_layers: Vec<i64>,
    pub pool_heads: usize,
    pub pool_kv_heads: usize,
    pub pool_head_dim: usize,
    /// Width of the pooling attention's output (the projector's input).
    pub pool_out: usize,
    pub pool_bias: bool,
    pub projector_intermediate: usize,
    pub projector_act: String,
    /// The `<im_patch>` token whose embedding each pooled feature is added to.
    pub image_patch_id: u32,
    /// Start and end tokens of an image block. Molmo2 lets every token of the blocks of a row
    /// attend to every other one (transformers' `mm_token_type_ids` block mask); empty for Molmo,
    /// whose attention is causal everywhere.
    pub block_start_ids: Vec<u32>,
    pub block_end_ids: Vec<u32>,
    /// Pooling window (rows, cols) of the processor, which decides how many tokens a crop gives.
    pub pooling_size: [usize; 2],
}

impl MolmoConfig {
    /// Image tokens of one crop's pooled grid (the high-resolution view may pool a stitched grid
    /// of several crops, so an image's token count comes from the processor's layout).
    pub fn image_tokens_per_crop(&self) -> usize {
        let grid = self.vision.grid();
        grid.div_ceil(self.pooling_size[0]) * grid.div_ceil(self.pooling_size[1])
    }

    /// ViT hidden-state indices (0 = embeddings, `i` = output of layer `i - 1`) the pooling reads.
    fn feature_states(&self) -> Vec<usize> {
        let n = self.vision.num_layers as i64;
        self.feature_layers
            .iter()
            .map(|&l| if l < 0 { n + 1 + l } else { l + 1 } as usize)
            .collect()
    }
}

/// `config.json` of `model_type` `molmo2` (nested `text_config` / `vision_config` /
/// `adapter_config`) or `molmo` (flat; the ViT and connector fixed by the remote code unless the
/// xlvlm extension `vision_backbone` / `vit_layers` describes them, see [`molmo_vision`]).
pub(crate) fn parse_config(
    obj: &Map<String, Value>,
    model_type: &str,
    path: &Path,
) -> Result<(TextConfig, MolmoConfig)> {
    let sub = |key: &str| {
        obj.get(key)
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    if model_type == "molmo2" {
        let t = sub("text_config");
        let text = molmo2_text(&t, path)?;
        let v = sub("vision_config");
        let a = sub("adapter_config");
        let image_size = match v.get("image_size") {
            Some(Value::Array(sides)) => {
                let sides: Vec<u64> = sides.iter().filter_map(Value::as_u64).collect();
                match sides.as_slice() {
                    [h, w] if h == w => *h as usize,
                    _ => {
                        return Err(ModelError::config(
                            path,
                            "vision_config.image_size must be a square [side, side]",
                        ));
                    }
                }
            }
            _ => usize_field(&v, "image_size", 378, path)?,
        };
        let hidden = usize_field(&v, "hidden_size", 1152, path)?;
        let heads = usize_field(&v, "num_attention_heads", 16, path)?;
        let head_dim = usize_field(&v, "head_dim", hidden / heads.max(1), path)?;
        if heads * head_dim != hidden
            || usize_field(&v, "num_key_value_heads", heads, path)? != heads
        {
            return Err(ModelError::config(
                path,
                "vision_config: the ViT needs num_key_value_heads == num_attention_heads and head_dim * heads == hidden_size",
            ));
        }
        let vision = checked_vision(
            VisionConfig {
                hidden_size: hidden,
                intermediate_size: usize_field(&v, "intermediate_size", 4304, path)?,
                num_layers: usize_field(&v, "num_hidden_layers", 25, path)?,
                num_heads: heads,
                image_size,
                patch_size: usize_field(&v, "patch_size", 14, path)?,
                num_channels: usize_field(&v, "num_channels", 3, path)?,
                layer_norm_eps: f64_field(&v, "layer_norm_eps", 1e-6, path)?,
                hidden_act: str_field(&v, "hidden_act")
                    .unwrap_or_else(|| "gelu_pytorch_tanh".into()),
            },
            path,
        )?;
        let feature_layers = int_list(&a, "vision_feature_layer", path)?.unwrap_or(vec![24, 18]);
        let id = |key: &str, default: u32| -> Result<u32> {
            Ok(token_ids(obj, key, path)?
                .first()
                .copied()
                .unwrap_or(default))
        };
        let config = MolmoConfig {
            vision,
            class_token: false,
            pre_layernorm: false,
            patch_bias: true,
            feature_layers,
            pool_heads: usize_field(&a, "num_attention_heads", 16, path)?,
            pool_kv_heads: usize_field(&a, "num_key_value_heads", 16, path)?,
            pool_head_dim: usize_field(&a, "head_dim", 72, path)?,
            pool_out: usize_field(&a, "hidden_size", 1152, path)?,
            pool_bias: bool_field(&a, "attention_bias", true),
            projector_intermediate: usize_field(&a, "intermediate_size", 18944, path)?,
            projector_act: str_field(&a, "hidden_act").unwrap_or_else(|| "silu".into()),
            image_patch_id: id("image_patch_id", 151938)?,
            block_start_ids: vec![
                id("image_start_token_id", 151936)?,
                id("low_res_image_start_token_id", 151940)?,
                id("frame_start_token_id", 151943)?,
            ],
            block_end_ids: vec![
                id("image_end_token_id", 151937)?,
                id("frame_end_token_id", 151944)?,
            ],
            pooling_size: [2, 2],
        };
        check_layers(&config, path)?;
        let text_hidden = usize_field(&a, "text_hidden_size", text.hidden_size, path)?;
        if text_hidden != text.hidden_size {
            return Err(ModelError::config(
                path,
                format!(
                    "adapter_config.text_hidden_size {text_hidden} differs from text_config.hidden_size {}",
                    text.hidden_size
                ),
            ));
        }
        Ok((text, config))
    } else {
        let text = molmo_text(obj, path)?;
        let (vision, feature_layers, pool) = molmo_vision(obj, path)?;
        let config = MolmoConfig {
            vision,
            class_token: true,
            pre_layernorm: true,
            patch_bias: false,
            feature_layers,
            pool_heads: pool.heads,
            pool_kv_heads: pool.kv_heads,
            pool_head_dim: pool.head_dim,
            pool_out: pool.out,
            pool_bias: true,
            projector_intermediate: text.intermediate_size,
            projector_act: "silu".into(),
            // Molmo's tokenizer appends its image tokens after the base vocabulary:
            // <im_start>, <im_end>, <im_patch>, <im_col>, <|image|> at vocab_size + 0..4
            image_patch_id: (text.vocab_size + 2) as u32,
            block_start_ids: Vec::new(),
            block_end_ids: Vec::new(),
            pooling_size: [2, 2],
        };
        check_layers(&config, path)?;
        Ok((text, config))
    }
}

/// The pooling attention's shape (Molmo: the ViT's heads, head width and hidden size).
struct PoolShape {
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    out: usize,
}

/// The original Molmo's ViT and connector. The remote `MolmoForCausalLM.__init__` fixes them
/// (a `VisionBackboneConfig` of the OpenAI CLIP ViT-L/14 at 336 px, 23 layers, `vit_layers`
/// [-2, -9]) and `config.json` has no vision keys. xlvlm extension: a `"vision_backbone"` object
/// with `VisionBackboneConfig`'s field names and a top-level `"vit_layers"` describe another ViT
/// (the tiny test checkpoint); absent keys take the fixed Molmo-7B-D-0924 values.
fn molmo_vision(
    obj: &Map<String, Value>,
    path: &Path,
) -> Result<(VisionConfig, Vec<i64>, PoolShape)> {
    let v = match obj.get("vision_backbone") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(v)) => v.clone(),
        Some(other) => {
            return Err(ModelError::config(
                path,
                format!("vision_backbone must be an object, got {other}"),
            ));
        }
    };
    let image_size = match v.get("image_default_input_size") {
        None => 336,
        Some(Value::Array(sides)) => {
            match sides.iter().map(Value::as_u64).collect::<Vec<_>>()[..] {
                [Some(h), Some(w)] if h == w => h as usize,
                _ => {
                    return Err(ModelError::config(
                        path,
                        "vision_backbone.image_default_input_size must be a square [side, side]",
                    ));
                }
            }
        }
        Some(other) => {
            return Err(ModelError::config(
                path,
                format!(
                    "vision_backbone.image_default_input_size must be [side, side], got {other}"
                ),
            ));
        }
    };
    let hidden = usize_field(&v, "image_emb_dim", 1024, path)?;
    let heads = usize_field(&v, "image_num_heads", 16, path)?;
    let kv_heads = usize_field(&v, "image_num_key_value_heads", heads, path)?;
    let head_dim = usize_field(&v, "image_head_dim", 64, path)?;
    if kv_heads != heads || heads * head_dim != hidden {
        return Err(ModelError::config(
            path,
            "vision_backbone: the ViT needs image_num_key_value_heads == image_num_heads and image_head_dim * image_num_heads == image_emb_dim",
        ));
    }
    let vision = checked_vision(
        VisionConfig {
            hidden_size: hidden,
            intermediate_size: usize_field(&v, "image_mlp_dim", 4096, path)?,
            num_layers: usize_field(&v, "image_num_layers", 23, path)?,
            num_heads: heads,
            image_size,
            patch_size: usize_field(&v, "image_patch_size", 14, path)?,
            num_channels: 3,
            layer_norm_eps: f64_field(&v, "image_norm_eps", 1e-5, path)?,
            hidden_act: str_field(&v, "image_mlp_activations")
                .unwrap_or_else(|| "quick_gelu".into()),
        },
        path,
    )?;
    let grid = vision.grid();
    // the remote code pads an odd patch grid with zero features before its 2x2 pooling, which
    // the pooling windows here cannot express
    if grid % 2 == 1 {
        return Err(ModelError::config(
            path,
            format!(
                "vision_backbone: a {grid} x {grid} patch grid is odd; 2 x 2 pooling needs an even one"
            ),
        ));
    }
    let positions = usize_field(&v, "image_num_pos", grid * grid + 1, path)?;
    if positions != grid * grid + 1 {
        return Err(ModelError::config(
            path,
            format!(
                "vision_backbone.image_num_pos {positions} is not the {grid} x {grid} patches plus the class token (the remote code would interpolate the position table)"
            ),
        ));
    }
    let feature_layers = int_list(obj, "vit_layers", path)?.unwrap_or(vec![-2, -9]);
    let pool = PoolShape {
        heads,
        kv_heads,
        head_dim,
        out: hidden,
    };
    Ok((vision, feature_layers, pool))
}

fn checked_vision(v: VisionConfig, path: &Path) -> Result<VisionConfig> {
    if v.patch_size == 0 || !v.image_size.is_multiple_of(v.patch_size) || v.num_heads == 0 {
        return Err(ModelError::config(
            path,
            "vision: image_size must be a multiple of patch_size, with at least one head",
        ));
    }
    Ok(v)
}

fn check_layers(c: &MolmoConfig, path: &Path) -> Result<()> {
    let n = c.vision.num_layers as i64;
    if c.feature_layers.is_empty() || c.feature_layers.iter().any(|&l| l < -n || l >= n) {
        return Err(ModelError::config(
            path,
            format!(
                "vision feature layers {:?} must index the {n} ViT layers",
                c.feature_layers
            ),
        ));
    }
    Ok(())
}

fn int_list(obj: &Map<String, Value>, key: &str, path: &Path) -> Result<Option<Vec<i64>>> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_i64().ok_or_else(|| {
                    ModelError::config(path, format!("{key:?} must be a list of integers"))
                })
            })
            .collect::<Result<Vec<_>>>()
            .map(Some),
        Some(v) => Err(ModelError::config(
            path,
            format!("{key:?} must be a list of integers, got {v}"),
        )),
    }
}

/// Molmo2's `text_config` (`molmo2_text`): a Qwen3-style decoder with q/k norms and an input
/// embedding `additional_vocab_size` rows longer than the LM head.
fn molmo2_text(t: &Map<String, Value>, path: &Path) -> Result<TextConfig> {
    if bool_field(t, "norm_after", false) {
        return Err(ModelError::config(
            path,
            "text_config.norm_after = true (post-norm blocks) is not supported",
        ));
    }
    let layers = usize_field(t, "num_hidden_layers", 36, path)?;
    if let Some(scaled) = int_list(t, "rope_scaling_layers", path)?
        && scaled != (0..layers as i64).collect::<Vec<_>>()
        && rope_type(t) != "default"
    {
        return Err(ModelError::config(
            path,
            "text_config.rope_scaling_layers: scaling only some layers is not supported",
        ));
    }
    let mut obj = t.clone();
    // q/k/v biases follow attention_bias and the output projection never has one: the Qwen2
    // layout when biased, the Llama one otherwise
    let biased = bool_field(t, "attention_bias", false);
    obj.insert(
        "model_type".into(),
        Value::from(if biased { "qwen2" } else { "llama" }),
    );
    obj.insert("attention_bias".into(), Value::from(false));
    for (key, default) in [
        ("vocab_size", Value::from(151936)),
        ("num_attention_heads", Value::from(32)),
        ("num_key_value_heads", Value::from(8)),
        ("head_dim", Value::from(128)),
        ("intermediate_size", Value::from(12288)),
        ("num_hidden_layers", Value::from(36)),
    ] {
        obj.entry(key).or_insert(default);
    }
    let mut text = text_config(&obj, path)?;
    text.extra_vocab = usize_field(t, "additional_vocab_size", 128, path)?;
    text.qk_norm = Some(match str_field(t, "qk_norm_type").as_deref() {
        None | Some("qwen3") => QkNorm::PerHead,
        Some("olmo") => QkNorm::Full,
        Some(other) => {
            return Err(ModelError::config(
                path,
                format!("text_config.qk_norm_type {other:?} is not one of qwen3, olmo"),
            ));
        }
    });
    Ok(text)
}

fn rope_type(t: &Map<String, Value>) -> String {
    t.get("rope_parameters")
        .or_else(|| t.get("rope_scaling"))
        .and_then(Value::as_object)
        .and_then(|p| str_field(p, "rope_type").or_else(|| str_field(p, "type")))
        .unwrap_or_else(|| "default".into())
}

/// The original Molmo's flat config (`MolmoConfig` of the remote code): `intermediate_size` is
/// the width of the fused `ff_proj` (twice the MLP width), `embedding_size` / `vocab_size` the
/// LM head's vocabulary, `additional_vocab_size` the extra input rows, `qkv_bias`,
/// `layer_norm_eps`, `weight_tying`.
fn molmo_text(obj: &Map<String, Value>, path: &Path) -> Result<TextConfig> {
    if bool_field(obj, "norm_after", false) {
        return Err(ModelError::config(
            path,
            "norm_after = true (post-norm blocks) is not supported",
        ));
    }
    if let Some(kind) = str_field(obj, "layer_norm_type")
        && kind != "rms"
    {
        return Err(ModelError::config(
            path,
            format!("layer_norm_type {kind:?} is not supported (rms)"),
        ));
    }
    let fused = usize_field(obj, "intermediate_size", 37888, path)?;
    let vocab = usize_field(
        obj,
        "embedding_size",
        usize_field(obj, "vocab_size", 152064, path)?,
        path,
    )?;
    let biased = bool_field(obj, "qkv_bias", false);
    let mut t = obj.clone();
    t.insert(
        "model_type".into(),
        Value::from(if biased { "qwen2" } else { "llama" }),
    );
    t.insert("intermediate_size".into(), Value::from(fused / 2));
    t.insert("vocab_size".into(), Value::from(vocab));
    t.insert(
        "rms_norm_eps".into(),
        Value::from(f64_field(obj, "layer_norm_eps", 1e-6, path)?),
    );
    t.insert(
        "tie_word_embeddings".into(),
        Value::from(bool_field(obj, "weight_tying", false)),
    );
    t.remove("sliding_window");
    let mut text = text_config(&t, path)?;
    text.extra_vocab = usize_field(obj, "additional_vocab_size", 128, path)?;
    // `attention_layer_norm`: RMSNorms over the whole query and key projections
    text.qk_norm = bool_field(obj, "attention_layer_norm", false).then_some(QkNorm::Full);
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pad_embedding_rows_follow_the_padded_fraction() {
        assert_eq!(
            pad_weights(&[0.0, 0.25, 1.0, 0.999]),
            vec![1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        );
    }

    #[test]
    fn molmo_module_names_map_to_hook_names() {
        for (name, want) in [
            ("model.transformer.blocks.27", Some("lm.layers.27")),
            (
                "model.transformer.blocks.3.attn_out",
                Some("lm.layers.3.attn"),
            ),
            ("model.transformer.blocks.3.ff_out", Some("lm.layers.3.mlp")),
            (
                "model.transformer.blocks.3.self_attn",
                Some("lm.layers.3.self_attn"),
            ),
            ("model.transformer.ln_f", Some("lm.norm")),
            ("model.transformer.ln_fx", None),
            ("model.vision_backbone.image_projector", Some("projector")),
            ("model.layers.3", None),
        ] {
            assert_eq!(hook_alias(name).as_deref(), want, "{name}");
        }
    }
}

/// Adds views under the standard names (see the module documentation) to a checkpoint in the
/// Molmo layout; does nothing for other families or when the standard names are already there
/// (a checkpoint saved by xlvlm).
pub fn present_standard_names(ckpt: &mut Checkpoint, config: &ModelConfig) -> Result<()> {
    let Some(VisionFamily::Molmo(vision)) = &config.vision else {
        return Ok(());
    };
    if ckpt.is_generated() || ckpt.contains("model.embed_tokens.weight") {
        return Ok(());
    }
    let c = &config.text;
    let t = TRANSFORMER;
    let whole = |ckpt: &Checkpoint, name: &str| -> Option<Range<usize>> {
        ckpt.shape_of(name).map(|s| 0..s[0])
    };
    // the embedding: the base table, then the additional rows
    let base = format!("{t}wte.embedding");
    let extra = format!("{t}wte.new_embedding");
    let mut parts = Vec::new();
    for name in [&base, &extra] {
        if let Some(rows) = whole(ckpt, name) {
            parts.push((name.clone(), rows));
        }
    }
    if parts.is_empty() {
        return Err(ModelError::MissingTensor {
            dir: ckpt.dir().to_path_buf(),
            name: base.clone(),
            tried: vec![base, extra],
        });
    }
    view(ckpt, "model.embed_tokens.weight", &parts)?;
    rename(ckpt, &format!("{t}ln_f.weight"), "model.norm.weight")?;
    if !ckpt.contains("lm_head.weight") {
        rename(ckpt, &format!("{t}ff_out.weight"), "lm_head.weight")?;
    }
    let (q, kv) = (c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim);
    for i in 0..c.num_layers {
        let b = format!("{t}blocks.{i}.");
        let l = format!("model.layers.{i}.");
        // Molmo2 nests the names under self_attn./mlp.; the original Molmo does not
        let pick = |ckpt: &Checkpoint, nested: &str, flat: &str| {
            let nested = format!("{b}{nested}");
            if ckpt.contains(&format!("{nested}.weight")) {
                nested
            } else {
                format!("{b}{flat}")
            }
        };
        let att = pick(ckpt, "self_attn.att_proj", "att_proj");
        for suffix in ["weight", "bias"] {
            let fused = format!("{att}.{suffix}");
            if !ckpt.contains(&fused) && suffix == "bias" {
                continue;
            }
            for (proj, rows) in [
                ("q_proj", 0..q),
                ("k_proj", q..q + kv),
                ("v_proj", q + kv..q + 2 * kv),
            ] {
                view(
                    ckpt,
                    &format!("{l}self_attn.{proj}.{suffix}"),
                    &[(fused.clone(), rows)],
                )?;
            }
        }
        let ff = pick(ckpt, "mlp.ff_proj", "ff_proj");
        let m = c.intermediate_size;
        for (proj, rows) in [("up_proj", 0..m), ("gate_proj", m..2 * m)] {
            view(
                ckpt,
                &format!("{l}mlp.{proj}.weight"),
                &[(format!("{ff}.weight"), rows)],
            )?;
        }
        let out = pick(ckpt, "self_attn.attn_out", "attn_out");
        rename(
            ckpt,
            &format!("{out}.weight"),
            &format!("{l}self_attn.o_proj.weight"),
        )?;
        let down = pick(ckpt, "mlp.ff_out", "ff_out");
        rename(
            ckpt,
            &format!("{down}.weight"),
            &format!("{l}mlp.down_proj.weight"),
        )?;
        rename(
            ckpt,
            &format!("{b}attn_norm.weight"),
            &format!("{l}input_layernorm.weight"),
        )?;
        rename(
            ckpt,
            &format!("{b}ff_norm.weight"),
            &format!("{l}post_attention_layernorm.weight"),
        )?;
        if c.qk_norm.is_some() {
            for norm in ["q_norm", "k_norm"] {
                let name = pick(ckpt, &format!("self_attn.{norm}"), norm);
                rename(
                    ckpt,
                    &format!("{name}.weight"),
                    &format!("{l}self_attn.{norm}.weight"),
                )?;
            }
        }
    }
    for i in 0..vision.vision.num_layers {
        let r = format!("{VIT}transformer.resblocks.{i}.");
        let e = format!("{VIT}encoder.layers.{i}.");
        for (from, to) in [
            ("attention_norm", "layer_norm1"),
            ("ffn_norm", "layer_norm2"),
            ("attention.wq", "self_attn.q_proj"),
            ("attention.wk", "self_attn.k_proj"),
            ("attention.wv", "self_attn.v_proj"),
            ("attention.wo", "self_attn.out_proj"),
            ("feed_forward.w1", "mlp.fc1"),
            ("feed_forward.w2", "mlp.fc2"),
        ] {
            for suffix in ["weight", "bias"] {
                rename(
                    ckpt,
                    &format!("{r}{from}.{suffix}"),
                    &format!("{e}{to}.{suffix}"),
                )?;
            }
        }
    }
    Ok(())
}

/// Per patch, how much of each `pad_embed` row it gets: `[1, 0]` when it is all padding
/// (mask 0), `[0, 1]` when it is partly padding (mask strictly between 0 and 1), else nothing.
fn pad_weights(masks: &[f32]) -> Vec<f32> {
    masks
        .iter()
        .flat_map(|&m| {
            if m == 0.0 {
                [1.0, 0.0]
            } else if m < 1.0 {
                [0.0, 1.0]
            } else {
                [0.0, 0.0]
            }
        })
        .collect()
}

/// Molmo's module names (the original ones, which Molmo2 checkpoints keep, and transformers'
/// Molmo2 ones that the shared aliases do not cover) as stable hook names.
pub(crate) fn hook_alias(name: &str) -> Option<String> {
    const RENAMES: [(&str, &str); 6] = [
        ("model.transformer.blocks.", "lm.layers."),
        (
            "model.vision_backbone.image_vit.transformer.resblocks.",
            "vision.layers.",
        ),
        ("model.vision_tower.layers.", "vision.layers."),
        ("model.transformer.ln_f", "lm.norm"),
        ("model.transformer.wte", "lm.embed"),
        ("model.vision_backbone.image_projector", "projector"),
    ];
    RENAMES.iter().find_map(|(from, to)| {
        let rest = name.strip_prefix(from)?;
        // the original Molmo's blocks have no self_attn/mlp modules: their outputs are those
        // of `attn_out` and `ff_out`
        let rest = if let Some(i) = rest.strip_suffix(".attn_out") {
            format!("{i}.attn")
        } else if let Some(i) = rest.strip_suffix(".ff_out") {
            format!("{i}.mlp")
        } else {
            rest.to_string()
        };
        (from.ends_with('.') || rest.is_empty()).then(|| format!("{to}{rest}"))
    })
}

/// The vision and connector lines of `xlvlm model inspect`.
pub(crate) fn describe(
    f: &mut std::fmt::Formatter<'_>,
    m: &MolmoConfig,
    t: &TextConfig,
) -> std::fmt::Result {
    let v = &m.vision;
    writeln!(
        f,
        "vision:       ViT {} layers, hidden {}, heads {}, crop {}px, patch {}{}; image patch token id {}",
        v.num_layers,
        v.hidden_size,
        v.num_heads,
        v.image_size,
        v.patch_size,
        if m.class_token { ", class token" } else { "" },
        m.image_patch_id
    )?;
    writeln!(
        f,
        "connector:    layers {:?} concatenated ({} wide) -> attention pooling {}x{} -> SwiGLU {} -> {} -> {}, added to the patch tokens",
        m.feature_layers,
        v.hidden_size * m.feature_layers.len(),
        m.pooling_size[0],
        m.pooling_size[1],
        m.pool_out,
        m.projector_intermediate,
        t.hidden_size
    )?;
    writeln!(
        f,
        "text extras:  {} input-only embedding rows; q/k norm {:?}; image blocks attend {}",
        t.extra_vocab,
        t.qk_norm,
        if m.block_start_ids.is_empty() {
            "causally"
        } else {
            "bidirectionally"
        }
    )
}

fn view(ckpt: &mut Checkpoint, target: &str, parts: &[(String, Range<usize>)]) -> Result<()> {
    let parts: Vec<(&str, Range<usize>)> =
        parts.iter().map(|(n, r)| (n.as_str(), r.clone())).collect();
    ckpt.add_view(target, &parts)
}

/// A view of the whole of `source` under `target` (an error names `source` when it is missing).
fn rename(ckpt: &mut Checkpoint, source: &str, target: &str) -> Result<()> {
    let rows = ckpt
        .shape_of(source)
        .map(|s| 0..s.first().copied().unwrap_or(0))
        .ok_or_else(|| ModelError::MissingTensor {
            dir: ckpt.dir().to_path_buf(),
            name: source.to_string(),
            tried: vec![source.to_string()],
        })?;
    ckpt.add_view(target, &[(source, rows)])
}

/// Which patches each image token pools: `index` is `[tokens, window]` row-major, an index into
/// the patches of all crops of the batch (crop-major, then the crop's patches row-major), `-1`
/// for an empty slot. What transformers' Molmo2 processor returns as `image_token_pooling`; for
/// the original Molmo, whose processor returns `image_input_idx`, the 2x2 windows of each crop
/// whose token is used, in the order of the image tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchPooling {
    pub index: Vec<i64>,
    pub shape: [usize; 2],
    /// The original Molmo's `image_masks`: per patch of every crop (crop-major), the fraction of
    /// it that shows the image rather than padding. Its checkpoints add a learned `pad_embed`
    /// row to patches that are all padding (0) or partly padding (between 0 and 1); Molmo2 has
    /// no such embedding and takes `None`.
    pub image_masks: Option<Vec<f32>>,
}

/// The ViT, the pooling attention and the projector.
pub struct MolmoVision<B: Backend> {
    pub config: MolmoConfig,
    /// `[p * p * channels, hidden]`: the patch embedding over `(y, x, channel)`-ordered patches.
    patch_weight: Tensor<B, 2>,
    patch_bias: Option<Tensor<B, 1>>,
    class_embedding: Option<Tensor<B, 1>>,
    position_embedding: Tensor<B, 2>,
    pre_layernorm: Option<LayerNorm<B>>,
    encoder: VitEncoder<B>,
    /// The original Molmo's `pad_embed`: `[2, pooled width]`, rows for all- and part-padding.
    pad_embed: Option<Tensor<B, 2>>,
    pool_q: Linear<B>,
    pool_k: Linear<B>,
    pool_v: Linear<B>,
    pool_o: Linear<B>,
    /// SwiGLU: `w2(act(w1 x) * w3 x)`.
    proj_w1: Linear<B>,
    proj_w2: Linear<B>,
    proj_w3: Linear<B>,
    activation: Activation,
    pub num_params: usize,
}

impl<B: Backend> MolmoVision<B> {
    pub fn load(
        ckpt: &Checkpoint,
        mc: &MolmoConfig,
        text_hidden: usize,
        dtype: DType,
        device: &B::Device,
    ) -> Result<Self> {
        let c = &mc.vision;
        let (h, p) = (c.hidden_size, c.patch_size);
        let patch_in = p * p * c.num_channels;
        let patch_weight = ckpt.linear_weight(
            &format!("{VIT}patch_embedding.weight"),
            &[h, patch_in],
            dtype,
            device,
        )?;
        let patch_bias = if mc.patch_bias {
            Some(ckpt.tensor(&format!("{VIT}patch_embedding.bias"), [h], dtype, device)?)
        } else {
            None
        };
        let class_embedding = if mc.class_token {
            Some(ckpt.tensor(&format!("{VIT}class_embedding"), [h], dtype, device)?)
        } else {
            None
        };
        let positions = c.grid() * c.grid() + usize::from(mc.class_token);
        let position_embedding = ckpt.tensor(
            &format!("{VIT}positional_embedding"),
            [positions, h],
            dtype,
            device,
        )?;
        let pre_layernorm = if mc.pre_layernorm {
            Some(LayerNorm::load(
                ckpt,
                &format!("{VIT}pre_ln"),
                h,
                c.layer_norm_eps,
                dtype,
                device,
            )?)
        } else {
            None
        };
        let encoder = VitEncoder::load(ckpt, c, VIT, dtype, device)?;
        let pool_in = h * mc.feature_layers.len();
        // the original Molmo marks padded patches with learned embeddings; Molmo2 has none
        let pad_name = format!("{BACKBONE}pad_embed");
        let pad_embed = if mc.class_token || ckpt.shape_of(&pad_name).is_some() {
            Some(ckpt.tensor(&pad_name, [2, pool_in], dtype, device)?)
        } else {
            None
        };
        let pooling = format!("{BACKBONE}image_pooling_2d.");
        let linear = |name: &str, inp: usize, out: usize, bias: bool| {
            Linear::load(ckpt, name, inp, out, bias, dtype, device)
        };
        let (q_out, kv_out) = (
            mc.pool_heads * mc.pool_head_dim,
            mc.pool_kv_heads * mc.pool_head_dim,
        );
        let pool_q = linear(&format!("{pooling}wq"), pool_in, q_out, mc.pool_bias)?;
        let pool_k = linear(&format!("{pooling}wk"), pool_in, kv_out, mc.pool_bias)?;
        let pool_v = linear(&format!("{pooling}wv"), pool_in, kv_out, mc.pool_bias)?;
        let pool_o = linear(&format!("{pooling}wo"), q_out, mc.pool_out, mc.pool_bias)?;
        let projector = format!("{BACKBONE}image_projector.");
        let m = mc.projector_intermediate;
        let proj_w1 = linear(&format!("{projector}w1"), mc.pool_out, m, false)?;
        let proj_w2 = linear(&format!("{projector}w2"), m, text_hidden, false)?;
        let proj_w3 = linear(&format!("{projector}w3"), mc.pool_out, m, false)?;
        let num_params = patch_in * h
            + patch_bias.as_ref().map_or(0, |_| h)
            + class_embedding.as_ref().map_or(0, |_| h)
            + positions * h
            + pre_layernorm.as_ref().map_or(0, |_| 2 * h)
            + encoder.num_params
            + pad_embed.as_ref().map_or(0, |_| 2 * pool_in)
            + [
                &pool_q, &pool_k, &pool_v, &pool_o, &proj_w1, &proj_w2, &proj_w3,
            ]
            .iter()
            .map(|l| l.num_params())
            .sum::<usize>();
        Ok(Self {
            config: mc.clone(),
            patch_weight,
            patch_bias,
            class_embedding,
            position_embedding,
            pre_layernorm,
            encoder,
            pad_embed,
            pool_q,
            pool_k,
            pool_v,
            pool_o,
            proj_w1,
            proj_w2,
            proj_w3,
            activation: Activation::parse(&mc.projector_act, "adapter_config.hidden_act")?,
            num_params,
        })
    }

    fn patch_shape(&self) -> [usize; 2] {
        let c = &self.config.vision;
        [c.hidden_size, c.patch_size * c.patch_size * c.num_channels]
    }

    /// Every weight in checkpoint order: embeddings, encoder, pooling, projector.
    pub fn visit(&self, f: &mut ParamVisitor<'_, B>) {
        visit_transposed(
            f,
            &format!("{VIT}patch_embedding.weight"),
            &self.patch_weight,
            &self.patch_shape(),
        );
        if let Some(bias) = &self.patch_bias {
            visit_tensor(f, &format!("{VIT}patch_embedding.bias"), bias);
        }
        if let Some(class) = &self.class_embedding {
            visit_tensor(f, &format!("{VIT}class_embedding"), class);
        }
        visit_tensor(
            f,
            &format!("{VIT}positional_embedding"),
            &self.position_embedding,
        );
        if let Some(norm) = &self.pre_layernorm {
            norm.visit(f);
        }
        self.encoder.visit(f);
        if let Some(pad) = &self.pad_embed {
            visit_tensor(f, &format!("{BACKBONE}pad_embed"), pad);
        }
        for linear in [
            &self.pool_q,
            &self.pool_k,
            &self.pool_v,
            &self.pool_o,
            &self.proj_w1,
            &self.proj_w2,
            &self.proj_w3,
        ] {
            linear.visit(f);
        }
    }

    /// Replaces every weight (same order as [`MolmoVision::visit`]).
    pub fn map(self, f: &mut ParamMapper<'_, B>) -> Result<Self> {
        let patch_shape = self.patch_shape();
        let patch_weight = map_transposed(
            f,
            &format!("{VIT}patch_embedding.weight"),
            self.patch_weight,
            &patch_shape,
        )?;
        let patch_bias = match self.patch_bias {
            Some(b) => Some(map_tensor(f, &format!("{VIT}patch_embedding.bias"), b)?),
            None => None,
        };
        let class_embedding = match self.class_embedding {
            Some(c) => Some(map_tensor(f, &format!("{VIT}class_embedding"), c)?),
            None => None,
        };
        let position_embedding = map_tensor(
            f,
            &format!("{VIT}positional_embedding"),
            self.position_embedding,
        )?;
        let pre_layernorm = match self.pre_layernorm {
            Some(n) => Some(n.map(f)?),
            None => None,
        };
        let encoder = self.encoder.map(f)?;
        let pad_embed = match self.pad_embed {
            Some(p) => Some(map_tensor(f, &format!("{BACKBONE}pad_embed"), p)?),
            None => None,
        };
        Ok(Self {
            patch_weight,
            patch_bias,
            class_embedding,
            position_embedding,
            pre_layernorm,
            encoder,
            pad_embed,
            pool_q: self.pool_q.map(f)?,
            pool_k: self.pool_k.map(f)?,
            pool_v: self.pool_v.map(f)?,
            pool_o: self.pool_o.map(f)?,
            proj_w1: self.proj_w1.map(f)?,
            proj_w2: self.proj_w2.map(f)?,
            proj_w3: self.proj_w3.map(f)?,
            ..self
        })
    }

    /// Crops `[crops, channels, side, side]` to the ViT input `[crops, seq, hidden]`.
    pub fn embed(&self, pixel_values: Tensor<B, 4>) -> Result<Tensor<B, 3>> {
        let c = &self.config.vision;
        let p = c.patch_size;
        let [n, channels, height, width] = pixel_values.dims();
        if channels != c.num_channels || height != c.image_size || width != c.image_size {
            return Err(ModelError::Input(format!(
                "pixel_values have shape [{n}, {channels}, {height}, {width}], the Molmo ViT takes crops [N, {}, {side}, {side}]",
                c.num_channels,
                side = c.image_size
            )));
        }
        let g = c.grid();
        // Molmo flattens a patch as (y, x, channel), not in a convolution's (channel, y, x)
        let patches = pixel_values
            .reshape([n, channels, g, p, g, p])
            .permute([0, 2, 4, 3, 5, 1])
            .reshape([n * g * g, p * p * channels]);
        let mut x = patches.matmul(self.patch_weight.clone());
        if let Some(bias) = &self.patch_bias {
            x = x + bias.clone().unsqueeze_dim::<2>(0);
        }
        let h = c.hidden_size;
        let mut x = x.reshape([n, g * g, h]);
        if let Some(class) = &self.class_embedding {
            let class = class.clone().reshape([1, 1, h]).expand([n, 1, h]);
            x = Tensor::cat(vec![class, x], 1);
        }
        let x = x + self.position_embedding.clone().unsqueeze_dim::<3>(0);
        Ok(match &self.pre_layernorm {
            Some(norm) => norm.forward(x),
            None => x,
        })
    }

    pub fn layer(&self, i: usize, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.encoder.layer(i, x, None)
    }

    /// ViT hidden-state indices (0 = embeddings) the connector reads, in its order.
    pub fn feature_states(&self) -> Vec<usize> {
        self.config.feature_states()
    }

    /// The connector: the chosen ViT states (in [`MolmoVision::feature_states`] order, each
    /// `[crops, seq, hidden]`) concatenated per patch, pooled by `pooling` and projected:
    /// `[1, tokens, text hidden]` for the tokens that pool at least one patch, in order.
    pub fn connect(
        &self,
        states: Vec<Tensor<B, 3>>,
        pooling: &PatchPooling,
    ) -> Result<Tensor<B, 3>> {
        let states: Vec<Tensor<B, 3>> = if self.config.class_token {
            states
                .into_iter()
                .map(|s| {
                    let seq = s.dims()[1];
                    s.narrow(1, 1, seq - 1)
                })
                .collect()
        } else {
            states
        };
        let features = Tensor::cat(states, 2);
        let [crops, patches, width] = features.dims();
        let mut flat = features.reshape([crops * patches, width]);
        match (&self.pad_embed, &pooling.image_masks) {
            (Some(pad), Some(masks)) => {
                if masks.len() != crops * patches {
                    return Err(ModelError::Input(format!(
                        "image_masks hold {} values, the {crops} crops have {} patches",
                        masks.len(),
                        crops * patches
                    )));
                }
                let weights = pad_weights(masks);
                let device = flat.device();
                let weights = Tensor::<B, 2>::from_data(
                    TensorData::new(weights, [crops * patches, 2]),
                    (&device, flat.dtype()),
                );
                flat = flat + weights.matmul(pad.clone());
            }
            (Some(_), None) => {
                return Err(ModelError::Input(
                    "this Molmo checkpoint has pad embeddings: its images need the processor's image_masks".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(ModelError::Input(
                    "image_masks were given to a Molmo checkpoint without pad embeddings (Molmo2)"
                        .into(),
                ));
            }
            (None, None) => {}
        }
        let [tokens, window] = pooling.shape;
        if pooling.index.len() != tokens * window {
            return Err(ModelError::Input(format!(
                "the patch pooling holds {} indices, its shape {:?} needs {}",
                pooling.index.len(),
                pooling.shape,
                tokens * window
            )));
        }
        let total = (crops * patches) as i64;
        if let Some(bad) = pooling.index.iter().find(|&&i| i >= total || i < -1) {
            return Err(ModelError::Input(format!(
                "patch pooling index {bad} is outside the {total} patches of the {crops} crops"
            )));
        }
        // tokens that pool nothing are dropped, as transformers does
        let kept: Vec<&[i64]> = pooling
            .index
            .chunks(window)
            .filter(|row| row.iter().any(|&i| i >= 0))
            .collect();
        let kept_tokens = kept.len();
        let device = flat.device();
        let gather: Vec<i64> = kept
            .iter()
            .flat_map(|row| row.iter().map(|&i| i.max(0)))
            .collect();
        let valid: Vec<bool> = kept
            .iter()
            .flat_map(|row| row.iter().map(|&i| i >= 0))
            .collect();
        let counts: Vec<f32> = kept
            .iter()
            .map(|row| row.iter().filter(|&&i| i >= 0).count() as f32)
            .collect();
        let index = Tensor::<B, 1, Int>::from_data(
            TensorData::new(gather, [kept_tokens * window]),
            &device,
        );
        let dtype = flat.dtype();
        let valid_f = Tensor::<B, 1>::from_data(
            TensorData::new(
                valid
                    .iter()
                    .map(|&v| f32::from(u8::from(v)))
                    .collect::<Vec<f32>>(),
                [kept_tokens * window],
            ),
            (&device, dtype),
        );
        let to_pool = flat.select(0, index) * valid_f.unsqueeze_dim::<2>(1);
        let to_pool = to_pool.reshape([kept_tokens, window, width]);
        let counts =
            Tensor::<B, 1>::from_data(TensorData::new(counts, [kept_tokens]), (&device, dtype));
        let query = to_pool.clone().sum_dim(1) / counts.reshape([kept_tokens, 1, 1]);
        let mc = &self.config;
        let (heads, kv_heads, hd) = (mc.pool_heads, mc.pool_kv_heads, mc.pool_head_dim);
        let q = self
            .pool_q
            .forward(query)
            .reshape([kept_tokens, 1, heads, hd])
            .swap_dims(1, 2);
        let split = |t: Tensor<B, 3>| {
            let t = t
                .reshape([kept_tokens, window, kv_heads, hd])
                .swap_dims(1, 2);
            // key/value heads repeated for grouped queries
            let rep = heads / kv_heads;
            if rep == 1 {
                t
            } else {
                t.unsqueeze_dim::<5>(2)
                    .expand([kept_tokens, kv_heads, rep, window, hd])
                    .reshape([kept_tokens, heads, window, hd])
            }
        };
        let k = split(self.pool_k.forward(to_pool.clone()));
        let v = split(self.pool_v.forward(to_pool));
        let empty: Vec<bool> = valid.iter().map(|&v| !v).collect();
        let mask = Tensor::<B, 3, Bool>::from_bool(
            TensorData::new(empty, [kept_tokens, 1, window]),
            &device,
        )
        .unsqueeze_dim::<4>(1)
        .expand([kept_tokens, heads, 1, window]);
        let options = AttentionModuleOptions {
            scale: None,
            softcap: None,
            is_causal: false,
        };
        let pooled = attention(q, k, v, Some(mask), None, options)
            .swap_dims(1, 2)
            .reshape([kept_tokens, 1, heads * hd]);
        let pooled = self.pool_o.forward(pooled);
        let gate = self.activation.apply(self.proj_w1.forward(pooled.clone()));
        let projected = self.proj_w2.forward(gate * self.proj_w3.forward(pooled));
        let hidden = projected.dims()[2];
        Ok(projected.reshape([1, kept_tokens, hidden]))
    }

    /// Per row, which positions lie in an image block (from a block start token to its end
    /// token, both included); `None` when the family attends causally everywhere.
    pub fn image_blocks(&self, input_ids: &[Vec<u32>]) -> Option<Vec<Vec<bool>>> {
        let c = &self.config;
        if c.block_start_ids.is_empty() {
            return None;
        }
        Some(
            input_ids
                .iter()
                .map(|row| {
                    let mut inside = false;
                    row.iter()
                        .map(|id| {
                            if c.block_start_ids.contains(id) {
                                inside = true;
                            }
                            let here = inside;
                            if c.block_end_ids.contains(id) {
                                inside = false;
                            }
                            here
                        })
                        .collect()
                })
                .collect(),
        )
    }
}
