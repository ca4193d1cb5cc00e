//! `config.json` in both dialects: the Hub / transformers-4 one (`rope_theta`, `rope_scaling`,
//! `torch_dtype`) and the transformers-5 one (`rope_parameters`, `dtype`). Fields a Hub config
//! leaves out take the defaults of the transformers config class of its `model_type`
//! (llava-1.5's `text_config`, for one, lists only a handful of fields).

use std::fmt;
use std::path::Path;

use serde_json::{Map, Value};

use crate::error::{ModelError, Result};
pub use crate::families::qwen2_vl::Qwen2VlConfig;

/// Storage dtype of checkpoint weights and of the model at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WeightDType {
    F32,
    F16,
    BF16,
}

impl WeightDType {
    /// Parses `float32`/`f32`, `float16`/`f16`/`half`, `bfloat16`/`bf16`.
    pub fn parse(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "float32" | "f32" | "fp32" | "float" => Some(Self::F32),
            "float16" | "f16" | "fp16" | "half" => Some(Self::F16),
            "bfloat16" | "bf16" => Some(Self::BF16),
            _ => None,
        }
    }

    pub fn to_burn(self) -> burn::tensor::DType {
        match self {
            Self::F32 => burn::tensor::DType::F32,
            Self::F16 => burn::tensor::DType::F16,
            Self::BF16 => burn::tensor::DType::BF16,
        }
    }
}

impl fmt::Display for WeightDType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::F32 => "float32",
            Self::F16 => "float16",
            Self::BF16 => "bfloat16",
        })
    }
}

/// Rotary embedding frequency scaling (`rope_scaling` / `rope_parameters.rope_type`).
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    /// Plain `1 / theta^(2i/d)` frequencies.
    Default,
    /// Positions divided by `factor`.
    Linear { factor: f32 },
    /// Llama-3.1 frequency-dependent scaling.
    Llama3 {
        factor: f32,
        low_freq_factor: f32,
        high_freq_factor: f32,
        original_max_position_embeddings: f32,
    },
}

/// Which decoder the text model is (all served by one implementation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextFamily {
    Llama,
    Mistral,
    Qwen2,
}

/// RMSNorm of queries and keys before the rotary embedding (Molmo2's `qk_norm_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QkNorm {
    /// One norm of width `head_dim` applied to every head (`qwen3`).
    PerHead,
    /// One norm over the whole projection, `heads * head_dim` wide (`olmo`).
    Full,
}

/// Decoder (language model) hyper-parameters.
#[derive(Debug, Clone)]
pub struct TextConfig {
    pub family: TextFamily,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f32,
    pub rope_scaling: RopeScaling,
    /// Bias on q/k/v projections (Qwen2 always; Llama when `attention_bias`).
    pub qkv_bias: bool,
    /// Bias on the output projection (Llama `attention_bias`).
    pub o_bias: bool,
    pub mlp_bias: bool,
    pub tie_word_embeddings: bool,
    /// Keys further back than this are masked (Mistral; Qwen2 with `use_sliding_window`).
    pub sliding_window: Option<usize>,
    pub hidden_act: String,
    /// Multimodal RoPE (Qwen2-VL): how many rotary frequencies each of the temporal, height and
    /// width position rows drives; `None` = one position row for all frequencies.
    pub mrope_section: Option<Vec<usize>>,
    /// Rows of the input embedding after the `vocab_size` the LM head predicts (Molmo's
    /// `additional_vocab_size`: image special tokens that are read but never predicted).
    pub extra_vocab: usize,
    pub qk_norm: Option<QkNorm>,
}

impl TextConfig {
    /// Rows of the input embedding: every token id below this can be fed to the model.
    pub fn embedding_rows(&self) -> usize {
        self.vocab_size + self.extra_vocab
    }
}

/// Vision transformer hyper-parameters (CLIP for LLaVA, SigLIP for Idefics3/SmolVLM).
#[derive(Debug, Clone)]
pub struct VisionConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub image_size: usize,
    pub patch_size: usize,
    pub num_channels: usize,
    pub layer_norm_eps: f64,
    pub hidden_act: String,
}

impl VisionConfig {
    /// Patches per side of the (square) input image.
    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }
}

/// Which vision-tower positions feed the projector (`vision_feature_select_strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeatureSelect {
    /// Drop the class token.
    Default,
    /// Keep the class token.
    Full,
}

/// LLaVA-1.5 specifics.
#[derive(Debug, Clone)]
pub struct LlavaConfig {
    pub vision: VisionConfig,
    pub image_token_id: u32,
    /// Index into the vision tower's hidden states (0 = embeddings, negative from the end).
    pub vision_feature_layer: i64,
    pub feature_select: FeatureSelect,
    pub projector_hidden_act: String,
    pub projector_bias: bool,
}

impl LlavaConfig {
    /// Number of image tokens one image expands to.
    pub fn image_tokens_per_image(&self) -> usize {
        let grid = self.vision.grid();
        match self.feature_select {
            FeatureSelect::Default => grid * grid,
            FeatureSelect::Full => grid * grid + 1,
        }
    }

    /// How many vision encoder layers must run to produce the selected hidden state.
    pub fn vision_layers_needed(&self) -> usize {
        let n = self.vision.num_layers as i64;
        let index = if self.vision_feature_layer < 0 {
            n + 1 + self.vision_feature_layer
        } else {
            self.vision_feature_layer
        };
        index.clamp(0, n) as usize
    }
}

/// Idefics3 / SmolVLM specifics: SigLIP encoder, pixel-shuffle connector.
#[derive(Debug, Clone)]
pub struct Idefics3Config {
    pub vision: VisionConfig,
    pub image_token_id: u32,
    /// Pixel-shuffle factor: `scale_factor²` neighbouring patches become one image token.
    pub scale_factor: usize,
}

impl Idefics3Config {
    /// Number of image tokens one image (one tile) expands to.
    pub fn image_tokens_per_image(&self) -> usize {
        let grid = self.vision.grid();
        grid * grid / (self.scale_factor * self.scale_factor)
    }
}

/// Idefics2's perceiver resampler (`perceiver_config`).
#[derive(Debug, Clone)]
pub struct PerceiverConfig {
    /// Latents, i.e. image tokens per image (`resampler_n_latents`).
    pub n_latents: usize,
    pub depth: usize,
    pub num_heads: usize,
    pub head_dim: usize,
    pub num_kv_heads: usize,
    pub rms_norm_eps: f64,
    pub hidden_act: String,
}

/// Idefics2 specifics: SigLIP encoder, gated-MLP projection, perceiver resampler.
#[derive(Debug, Clone)]
pub struct Idefics2Config {
    pub vision: VisionConfig,
    pub perceiver: PerceiverConfig,
    pub image_token_id: u32,
}

/// The vision side of a VLM, by family. See `families` for how to add one.
#[derive(Debug, Clone)]
pub enum VisionFamily {
    /// LLaVA-1.5: CLIP ViT + two-layer MLP projector.
    Llava(LlavaConfig),
    /// Idefics2: SigLIP ViT + gated MLP + perceiver resampler.
    Idefics2(Idefics2Config),
    /// Idefics3 and SmolVLM: SigLIP ViT + pixel shuffle + linear projection.
    Idefics3(Idefics3Config),
    /// Qwen2-VL: ViT with 2D rotary embeddings over any image size + patch merger; the decoder
    /// uses M-RoPE.
    Qwen2Vl(Qwen2VlConfig),
    /// Molmo and Molmo2: ViT, features of several layers, attention pooling, SwiGLU projector.
    Molmo(crate::families::molmo::MolmoConfig),
}

impl VisionFamily {
    /// Hyper-parameters of a fixed-resolution (CLIP / SigLIP) vision transformer; `None` for
    /// Qwen2-VL, whose images keep their own size ([`Qwen2VlConfig::vision`]).
    pub fn vision(&self) -> Option<&VisionConfig> {
        match self {
            Self::Llava(c) => Some(&c.vision),
            Self::Idefics2(c) => Some(&c.vision),
            Self::Idefics3(c) => Some(&c.vision),
            Self::Qwen2Vl(_) => None,
            Self::Molmo(c) => Some(&c.vision),
        }
    }

    /// Number of vision encoder layers (hooks `vision.layers.{i}`).
    pub fn num_layers(&self) -> usize {
        match self {
            Self::Llava(c) => c.vision.num_layers,
            Self::Idefics2(c) => c.vision.num_layers,
            Self::Idefics3(c) => c.vision.num_layers,
            Self::Qwen2Vl(c) => c.vision.depth,
            Self::Molmo(c) => c.vision.num_layers,
        }
    }

    /// Width of the vision encoder's hidden states.
    pub fn width(&self) -> usize {
        match self {
            Self::Llava(c) => c.vision.hidden_size,
            Self::Idefics2(c) => c.vision.hidden_size,
            Self::Idefics3(c) => c.vision.hidden_size,
            Self::Qwen2Vl(c) => c.vision.embed_dim,
            Self::Molmo(c) => c.vision.hidden_size,
        }
    }

    /// The placeholder token that image features replace.
    pub fn image_token_id(&self) -> u32 {
        match self {
            Self::Llava(c) => c.image_token_id,
            Self::Idefics2(c) => c.image_token_id,
            Self::Idefics3(c) => c.image_token_id,
            Self::Qwen2Vl(c) => c.image_token_id,
            Self::Molmo(c) => c.image_patch_id,
        }
    }

    /// Image tokens per image (LLaVA) or per tile (Idefics3: the processor's `image_seq_len`);
    /// `None` for Qwen2-VL, where it depends on the image's size
    /// ([`Qwen2VlConfig::tokens_for_grid`]).
    pub fn image_tokens_per_image(&self) -> Option<usize> {
        match self {
            Self::Llava(c) => Some(c.image_tokens_per_image()),
            Self::Idefics2(c) => Some(c.perceiver.n_latents),
            Self::Idefics3(c) => Some(c.image_tokens_per_image()),
            Self::Qwen2Vl(_) => None,
            // an image's token count follows the processor's crop layout
            Self::Molmo(_) => None,
        }
    }

    /// A short description of the architecture (`xlvlm model inspect`).
    pub fn describe(&self) -> &'static str {
        match self {
            Self::Llava(_) => "LLaVA-1.5 (CLIP ViT + MLP projector + decoder)",
            Self::Idefics2(_) => "Idefics2 (SigLIP ViT + perceiver resampler + decoder)",
            Self::Idefics3(_) => {
                "Idefics3/SmolVLM (SigLIP ViT + pixel-shuffle connector + decoder)"
            }
            Self::Qwen2Vl(_) => "Qwen2-VL (ViT with 2D RoPE + patch merger + decoder with M-RoPE)",
            Self::Molmo(_) => {
                "Molmo (ViT + multi-layer features + attention pooling + SwiGLU projector + decoder)"
            }
        }
    }
}

/// The whole model: a text LM, optionally with a vision side.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    pub model_type: String,
    pub text: TextConfig,
    /// `None` for a text-only LM.
    pub vision: Option<VisionFamily>,
    /// `dtype` / `torch_dtype` of the checkpoint, when given.
    pub dtype: Option<WeightDType>,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
    pub pad_token_id: Option<u32>,
}

impl ModelConfig {
    /// Reads `config.json` (and `generation_config.json` for EOS ids, when present) from `dir`.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let path = dir.join("config.json");
        let root = read_json(&path)?;
        let mut cfg = Self::from_json(&root, &path)?;
        let gen_path = dir.join("generation_config.json");
        if gen_path.is_file() {
            let generation = read_json(&gen_path)?;
            let empty = Map::new();
            let eos = token_ids(
                generation.as_object().unwrap_or(&empty),
                "eos_token_id",
                &gen_path,
            )?;
            if !eos.is_empty() {
                cfg.eos_token_ids = eos;
            }
        }
        Ok(cfg)
    }

    /// Parses a config object; `path` only names the file in errors.
    pub fn from_json(root: &Value, path: &Path) -> Result<Self> {
        let obj = root
            .as_object()
            .ok_or_else(|| ModelError::config(path, "expected a JSON object"))?;
        let model_type = str_field(obj, "model_type").unwrap_or_default();
        let dtype = dtype_of(obj, path)?;
        let sub = |key: &str| {
            obj.get(key)
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default()
        };
        // Molmo's decoder config is read by its family module (names and fusions differ)
        let mut molmo_text = None;
        let (text_obj, vision) = match model_type.as_str() {
            "llava" => (
                sub("text_config"),
                Some(VisionFamily::Llava(llava_config(
                    obj,
                    &sub("vision_config"),
                    path,
                )?)),
            ),
            "idefics2" => {
                let mut text_obj = sub("text_config");
                // Idefics2Config's default text config is Mistral's
                text_obj
                    .entry("model_type")
                    .or_insert(Value::from("mistral"));
                (
                    text_obj,
                    Some(VisionFamily::Idefics2(idefics2_config(
                        obj,
                        &sub("vision_config"),
                        &sub("perceiver_config"),
                        path,
                    )?)),
                )
            }
            "idefics3" | "smolvlm" => {
                let mut text_obj = sub("text_config");
                // Idefics3Config builds its default text config with rms_norm_eps 1e-5
                text_obj.entry("rms_norm_eps").or_insert(Value::from(1e-5));
                (
                    text_obj,
                    Some(VisionFamily::Idefics3(idefics3_config(
                        obj,
                        &sub("vision_config"),
                        path,
                    )?)),
                )
            }
            "qwen2_vl" => {
                // transformers 5 nests the decoder under `text_config`; Hub files keep it flat
                let text_obj = match obj.get("text_config").and_then(Value::as_object) {
                    Some(nested) => nested.clone(),
                    None => obj.clone(),
                };
                let family = VisionFamily::Qwen2Vl(Qwen2VlConfig::from_json(obj, path)?);
                (text_obj, Some(family))
            }
            "molmo2" | "molmo" => {
                let (text, vision) = crate::families::molmo::parse_config(obj, &model_type, path)?;
                molmo_text = Some(text);
                // the original Molmo's config is flat
                let text_obj = if model_type == "molmo" {
                    obj.clone()
                } else {
                    sub("text_config")
                };
                (text_obj, Some(VisionFamily::Molmo(vision)))
            }
            "llama" | "mistral" | "qwen2" => (obj.clone(), None),
            "" => {
                return Err(ModelError::config(path, "missing \"model_type\""));
            }
            other => {
                return Err(ModelError::config(
                    path,
                    format!(
                        "unsupported model_type {other:?}; supported: {}",
                        SUPPORTED_MODEL_TYPES.join(", ")
                    ),
                ));
            }
        };
        let mut text = match molmo_text {
            Some(text) => text,
            None => text_config(&text_obj, path)?,
        };
        let mut vision = vision;
        // Idefics2Config sizes the perceiver to the decoder, taking the decoder's norm epsilon
        // when the perceiver config named another width
        if let Some(VisionFamily::Idefics2(c)) = &mut vision
            && usize_field(&sub("perceiver_config"), "hidden_size", 4096, path)? != text.hidden_size
        {
            c.perceiver.rms_norm_eps = text.rms_norm_eps;
        }
        // tie_word_embeddings may sit at the top level of a multimodal config
        if vision.is_some()
            && let Some(tied) = obj.get("tie_word_embeddings").and_then(Value::as_bool)
            && !text_obj.contains_key("tie_word_embeddings")
        {
            text.tie_word_embeddings = tied;
        }
        // Qwen2-VL (transformers 5) ties when either the outer or the text config says so
        if matches!(vision, Some(VisionFamily::Qwen2Vl(_)))
            && bool_field(obj, "tie_word_embeddings", false)
        {
            text.tie_word_embeddings = true;
        }
        let pick = |key: &str| -> Result<Vec<u32>> {
            let own = token_ids(&text_obj, key, path)?;
            if own.is_empty() {
                token_ids(obj, key, path)
            } else {
                Ok(own)
            }
        };
        Ok(Self {
            model_type,
            text,
            vision,
            dtype: dtype.or(dtype_of(&text_obj, path)?),
            bos_token_id: pick("bos_token_id")?.first().copied(),
            eos_token_ids: pick("eos_token_id")?,
            pad_token_id: pick("pad_token_id")?.first().copied(),
        })
    }
}

/// The `model_type`s [`ModelConfig::from_json`] reads.
pub const SUPPORTED_MODEL_TYPES: [&str; 10] = [
    "llava", "idefics2", "idefics3", "smolvlm", "qwen2_vl", "molmo2", "molmo", "llama", "mistral",
    "qwen2",
];

pub(crate) fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
    serde_json::from_str(&text).map_err(|source| ModelError::Json {
        path: path.to_path_buf(),
        source,
    })
}

pub(crate) fn str_field(obj: &Map<String, Value>, key: &str) -> Option<String> {
    obj.get(key).and_then(Value::as_str).map(str::to_string)
}

pub(crate) fn usize_field(
    obj: &Map<String, Value>,
    key: &str,
    default: usize,
    path: &Path,
) -> Result<usize> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v.as_u64().map(|n| n as usize).ok_or_else(|| {
            ModelError::config(
                path,
                format!("{key:?} must be a non-negative integer, got {v}"),
            )
        }),
    }
}

pub(crate) fn f64_field(
    obj: &Map<String, Value>,
    key: &str,
    default: f64,
    path: &Path,
) -> Result<f64> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v
            .as_f64()
            .ok_or_else(|| ModelError::config(path, format!("{key:?} must be a number, got {v}"))),
    }
}

pub(crate) fn bool_field(obj: &Map<String, Value>, key: &str, default: bool) -> bool {
    obj.get(key).and_then(Value::as_bool).unwrap_or(default)
}

pub(crate) fn token_ids(obj: &Map<String, Value>, key: &str, path: &Path) -> Result<Vec<u32>> {
    let bad = || ModelError::config(path, format!("{key:?} must be a token id or a list of ids"));
    match obj.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_u64().map(|n| n as u32).ok_or_else(bad))
            .collect(),
        Some(v) => v.as_u64().map(|n| vec![n as u32]).ok_or_else(bad),
    }
}

fn dtype_of(obj: &Map<String, Value>, path: &Path) -> Result<Option<WeightDType>> {
    let name = str_field(obj, "dtype").or_else(|| str_field(obj, "torch_dtype"));
    match name {
        None => Ok(None),
        Some(n) => WeightDType::parse(&n).map(Some).ok_or_else(|| {
            ModelError::config(
                path,
                format!("dtype {n:?} is not one of float32, float16, bfloat16"),
            )
        }),
    }
}

/// Rope theta, scaling and the M-RoPE sections from either dialect.
fn rope(obj: &Map<String, Value>, path: &Path) -> Result<(f32, RopeScaling, Option<Vec<usize>>)> {
    let params = obj.get("rope_parameters").and_then(Value::as_object);
    let theta = match params.and_then(|p| p.get("rope_theta")) {
        Some(v) => v.as_f64(),
        None => obj.get("rope_theta").and_then(Value::as_f64),
    }
    .unwrap_or(10000.0) as f32;
    let scaling_obj = obj
        .get("rope_scaling")
        .and_then(Value::as_object)
        .or(params);
    let mrope_section = match scaling_obj.and_then(|s| s.get("mrope_section")) {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .map(|v| v.as_u64().map(|n| n as usize))
                .collect::<Option<Vec<_>>>()
                .filter(|sections| sections.len() == 3)
                .ok_or_else(|| {
                    ModelError::config(path, "mrope_section must be three non-negative integers")
                })?,
        ),
        Some(v) => {
            return Err(ModelError::config(
                path,
                format!("mrope_section must be a list of three integers, got {v}"),
            ));
        }
    };
    let scaling = match scaling_obj {
        None => RopeScaling::Default,
        Some(s) => {
            let kind = str_field(s, "rope_type")
                .or_else(|| str_field(s, "type"))
                .unwrap_or_else(|| "default".into());
            let num = |key: &str, default: f64| f64_field(s, key, default, path).map(|v| v as f32);
            match kind.as_str() {
                // Qwen2-VL Hub configs name M-RoPE as the type; its frequencies are the default ones
                "default" | "mrope" => RopeScaling::Default,
                "linear" => RopeScaling::Linear {
                    factor: num("factor", 1.0)?,
                },
                "llama3" => RopeScaling::Llama3 {
                    factor: num("factor", 8.0)?,
                    low_freq_factor: num("low_freq_factor", 1.0)?,
                    high_freq_factor: num("high_freq_factor", 4.0)?,
                    original_max_position_embeddings: num(
                        "original_max_position_embeddings",
                        8192.0,
                    )?,
                },
                other => {
                    return Err(ModelError::config(
                        path,
                        format!(
                            "rope scaling type {other:?} is not supported (supported: default, linear, llama3)"
                        ),
                    ));
                }
            }
        }
    };
    Ok((theta, scaling, mrope_section))
}

pub(crate) fn text_config(obj: &Map<String, Value>, path: &Path) -> Result<TextConfig> {
    let model_type = str_field(obj, "model_type").unwrap_or_else(|| "llama".into());
    // defaults of LlamaConfig / MistralConfig / Qwen2Config in transformers
    let (family, d_vocab, d_inter, d_kv, d_eps) = match model_type.as_str() {
        "llama" => (TextFamily::Llama, 32000, 11008, None, 1e-6),
        "mistral" => (TextFamily::Mistral, 32000, 14336, Some(8), 1e-6),
        "qwen2" => (TextFamily::Qwen2, 151936, 22016, None, 1e-6),
        // Qwen2VLTextConfig; a flat Hub config carries the outer model_type
        "qwen2_vl" | "qwen2_vl_text" => (TextFamily::Qwen2, 152064, 29568, Some(8), 1e-5),
        other => {
            return Err(ModelError::config(
                path,
                format!(
                    "unsupported text model_type {other:?}; supported: llama, mistral, qwen2, qwen2_vl_text"
                ),
            ));
        }
    };
    let hidden_size = usize_field(obj, "hidden_size", 4096, path)?;
    let num_heads = usize_field(obj, "num_attention_heads", 32, path)?;
    let num_kv_heads = usize_field(obj, "num_key_value_heads", d_kv.unwrap_or(num_heads), path)?;
    if num_heads == 0 || num_kv_heads == 0 || !num_heads.is_multiple_of(num_kv_heads) {
        return Err(ModelError::config(
            path,
            format!(
                "num_attention_heads ({num_heads}) must be a positive multiple of num_key_value_heads ({num_kv_heads})"
            ),
        ));
    }
    let head_dim = usize_field(obj, "head_dim", hidden_size / num_heads, path)?;
    if !head_dim.is_multiple_of(2) {
        return Err(ModelError::config(
            path,
            "head_dim must be even for rotary embeddings",
        ));
    }
    let (rope_theta, rope_scaling, mrope_section) = rope(obj, path)?;
    if let Some(sections) = &mrope_section
        && sections.iter().sum::<usize>() != head_dim / 2
    {
        return Err(ModelError::config(
            path,
            format!(
                "mrope_section {sections:?} must add up to head_dim / 2 = {}",
                head_dim / 2
            ),
        ));
    }
    let attention_bias = bool_field(obj, "attention_bias", false);
    let sliding_window = match family {
        TextFamily::Mistral => obj.get("sliding_window").and_then(Value::as_u64),
        TextFamily::Qwen2 if bool_field(obj, "use_sliding_window", false) => {
            obj.get("sliding_window").and_then(Value::as_u64)
        }
        _ => None,
    }
    .map(|w| w as usize);
    Ok(TextConfig {
        family,
        vocab_size: usize_field(obj, "vocab_size", d_vocab, path)?,
        hidden_size,
        intermediate_size: usize_field(obj, "intermediate_size", d_inter, path)?,
        num_layers: usize_field(obj, "num_hidden_layers", 32, path)?,
        num_heads,
        num_kv_heads,
        head_dim,
        rms_norm_eps: f64_field(obj, "rms_norm_eps", d_eps, path)?,
        rope_theta,
        rope_scaling,
        qkv_bias: family == TextFamily::Qwen2 || attention_bias,
        o_bias: family != TextFamily::Qwen2 && attention_bias,
        mlp_bias: bool_field(obj, "mlp_bias", false),
        tie_word_embeddings: bool_field(obj, "tie_word_embeddings", false),
        sliding_window,
        hidden_act: str_field(obj, "hidden_act").unwrap_or_else(|| "silu".into()),
        mrope_section,
        extra_vocab: 0,
        qk_norm: None,
    })
}

fn llava_config(
    obj: &Map<String, Value>,
    vision: &Map<String, Value>,
    path: &Path,
) -> Result<LlavaConfig> {
    if let Some(model_type) = str_field(vision, "model_type")
        && model_type != "clip_vision_model"
    {
        return Err(ModelError::config(
            path,
            format!(
                "vision_config.model_type {model_type:?} is not supported (expected clip_vision_model)"
            ),
        ));
    }
    let vision = vision_config(vision, &CLIP_VISION_DEFAULTS, path)?;
    let image_token_id = image_token_id(obj, 32000, path)?;
    let vision_feature_layer = match obj.get("vision_feature_layer") {
        None => -2,
        Some(v) => v.as_i64().ok_or_else(|| {
            ModelError::config(
                path,
                "vision_feature_layer must be one integer (lists of layers are not supported)",
            )
        })?,
    };
    let feature_select = match str_field(obj, "vision_feature_select_strategy").as_deref() {
        None | Some("default") => FeatureSelect::Default,
        Some("full") => FeatureSelect::Full,
        Some(other) => {
            return Err(ModelError::config(
                path,
                format!("vision_feature_select_strategy {other:?} is not one of default, full"),
            ));
        }
    };
    Ok(LlavaConfig {
        vision,
        image_token_id,
        vision_feature_layer,
        feature_select,
        projector_hidden_act: str_field(obj, "projector_hidden_act")
            .unwrap_or_else(|| "gelu".into()),
        projector_bias: bool_field(obj, "multimodal_projector_bias", true),
    })
}

/// Defaults of a vision config class for the keys a config file may leave out.
struct VisionDefaults {
    hidden_size: usize,
    intermediate_size: usize,
    num_layers: usize,
    num_heads: usize,
    image_size: usize,
    patch_size: usize,
    layer_norm_eps: f64,
    hidden_act: &'static str,
}

/// `CLIPVisionConfig`'s defaults.
const CLIP_VISION_DEFAULTS: VisionDefaults = VisionDefaults {
    hidden_size: 768,
    intermediate_size: 3072,
    num_layers: 12,
    num_heads: 12,
    image_size: 224,
    patch_size: 32,
    layer_norm_eps: 1e-5,
    hidden_act: "quick_gelu",
};

/// `Idefics3VisionConfig`'s (and `SmolVLMVisionConfig`'s) defaults.
const IDEFICS3_VISION_DEFAULTS: VisionDefaults = VisionDefaults {
    hidden_size: 1152,
    intermediate_size: 3072,
    num_layers: 12,
    num_heads: 16,
    image_size: 224,
    patch_size: 32,
    layer_norm_eps: 1e-6,
    hidden_act: "gelu_pytorch_tanh",
};

fn vision_config(
    vision: &Map<String, Value>,
    d: &VisionDefaults,
    path: &Path,
) -> Result<VisionConfig> {
    let vision = VisionConfig {
        hidden_size: usize_field(vision, "hidden_size", d.hidden_size, path)?,
        intermediate_size: usize_field(vision, "intermediate_size", d.intermediate_size, path)?,
        num_layers: usize_field(vision, "num_hidden_layers", d.num_layers, path)?,
        num_heads: usize_field(vision, "num_attention_heads", d.num_heads, path)?,
        image_size: usize_field(vision, "image_size", d.image_size, path)?,
        patch_size: usize_field(vision, "patch_size", d.patch_size, path)?,
        num_channels: usize_field(vision, "num_channels", 3, path)?,
        layer_norm_eps: f64_field(vision, "layer_norm_eps", d.layer_norm_eps, path)?,
        hidden_act: str_field(vision, "hidden_act").unwrap_or_else(|| d.hidden_act.into()),
    };
    if vision.num_heads == 0 || !vision.hidden_size.is_multiple_of(vision.num_heads) {
        return Err(ModelError::config(
            path,
            "vision_config.hidden_size must be a multiple of num_attention_heads",
        ));
    }
    if vision.patch_size == 0 || !vision.image_size.is_multiple_of(vision.patch_size) {
        return Err(ModelError::config(
            path,
            "vision_config.image_size must be a multiple of patch_size",
        ));
    }
    Ok(vision)
}

fn idefics3_config(
    obj: &Map<String, Value>,
    vision: &Map<String, Value>,
    path: &Path,
) -> Result<Idefics3Config> {
    if let Some(model_type) = str_field(vision, "model_type")
        && !matches!(
            model_type.as_str(),
            "idefics3_vision" | "smolvlm_vision" | "idefics3" | "siglip_vision_model"
        )
    {
        return Err(ModelError::config(
            path,
            format!(
                "vision_config.model_type {model_type:?} is not supported (expected idefics3_vision or smolvlm_vision)"
            ),
        ));
    }
    let vision = vision_config(vision, &IDEFICS3_VISION_DEFAULTS, path)?;
    let scale_factor = usize_field(obj, "scale_factor", 2, path)?;
    let grid = vision.grid();
    if scale_factor == 0 || !grid.is_multiple_of(scale_factor) {
        return Err(ModelError::config(
            path,
            format!(
                "scale_factor {scale_factor} must divide the vision grid (image_size / patch_size = {grid})"
            ),
        ));
    }
    let image_token_id = image_token_id(obj, 128257, path)?;
    Ok(Idefics3Config {
        vision,
        image_token_id,
        scale_factor,
    })
}

/// The image placeholder's id: `image_token_id` (transformers 5) or `image_token_index` (older
/// configs), else the family's `default`.
fn image_token_id(obj: &Map<String, Value>, default: u32, path: &Path) -> Result<u32> {
    match obj
        .get("image_token_id")
        .or_else(|| obj.get("image_token_index"))
    {
        None => Ok(default),
        Some(v) => v
            .as_u64()
            .and_then(|id| u32::try_from(id).ok())
            .ok_or_else(|| {
                ModelError::config(path, format!("image_token_id must be a token id, got {v}"))
            }),
    }
}

/// `Idefics2VisionConfig`'s defaults.
const IDEFICS2_VISION_DEFAULTS: VisionDefaults = VisionDefaults {
    hidden_size: 768,
    intermediate_size: 3072,
    num_layers: 12,
    num_heads: 12,
    image_size: 224,
    patch_size: 32,
    layer_norm_eps: 1e-6,
    hidden_act: "gelu_pytorch_tanh",
};

fn idefics2_config(
    obj: &Map<String, Value>,
    vision: &Map<String, Value>,
    perceiver: &Map<String, Value>,
    path: &Path,
) -> Result<Idefics2Config> {
    if let Some(model_type) = str_field(vision, "model_type")
        && !matches!(model_type.as_str(), "idefics2_vision" | "idefics2")
    {
        return Err(ModelError::config(
            path,
            format!(
                "vision_config.model_type {model_type:?} is not supported (expected idefics2_vision)"
            ),
        ));
    }
    let vision = vision_config(vision, &IDEFICS2_VISION_DEFAULTS, path)?;
    // Idefics2PerceiverConfig's defaults
    let perceiver = PerceiverConfig {
        n_latents: usize_field(perceiver, "resampler_n_latents", 64, path)?,
        depth: usize_field(perceiver, "resampler_depth", 3, path)?,
        num_heads: usize_field(perceiver, "resampler_n_heads", 16, path)?,
        head_dim: usize_field(perceiver, "resampler_head_dim", 96, path)?,
        num_kv_heads: usize_field(perceiver, "num_key_value_heads", 4, path)?,
        rms_norm_eps: f64_field(perceiver, "rms_norm_eps", 1e-6, path)?,
        hidden_act: str_field(perceiver, "hidden_act").unwrap_or_else(|| "silu".into()),
    };
    if perceiver.n_latents == 0
        || perceiver.num_kv_heads == 0
        || !perceiver.num_heads.is_multiple_of(perceiver.num_kv_heads)
    {
        return Err(ModelError::config(
            path,
            "perceiver_config: resampler_n_latents must be positive and resampler_n_heads a multiple of num_key_value_heads",
        ));
    }
    let image_token_id = image_token_id(obj, 32001, path)?;
    Ok(Idefics2Config {
        vision,
        perceiver,
        image_token_id,
    })
}
