//! The toy LLaVA-1.5 checkpoint: sizes, its word-level tokenizer, and the Hub-format files
//! (`config.json`, `tokenizer.json`, chat template, processor configs) that make it load through
//! the same code path as `llava-hf/llava-1.5-7b-hf`.

use std::path::Path;

use serde_json::{Value, json};
use tokenizers::models::TrainerWrapper;
use tokenizers::models::wordlevel::{WordLevel, WordLevelTrainer};
use tokenizers::pre_tokenizers::whitespace::Whitespace;
use tokenizers::{AddedToken, Tokenizer};

use crate::error::{Result, TrainError};

/// The seed's (xl-vlms) captioning instruction and short-answer suffix: the very prompts the
/// `extract` and `steer` stages send by default, so the toy models are trained on them.
pub use xlvlm_spec::{CAPTION_PROMPT as CAPTION_INSTRUCTION, VQA_SUFFIX as VQA_INSTRUCTION};

/// LLaVA-1.5's chat template as published with `llava-hf/llava-1.5-7b-hf`.
pub const LLAVA_CHAT_TEMPLATE: &str = "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}{% endif %}{# Render all images first #}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}{# Render all text next #}{% if message['role'] != 'assistant' %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] + ' '}}{% endfor %}{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{% generation %}{{ content['text'] + ' '}}{% endgeneration %}{% endfor %}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}";

/// Special tokens, in id order (the vocabulary's first ids).
pub const SPECIAL_TOKENS: [&str; 5] = ["<unk>", "<s>", "</s>", "<pad>", "<image>"];
const BOS_ID: u32 = 1;
const EOS_ID: u32 = 2;
const PAD_ID: u32 = 3;
const IMAGE_ID: u32 = 4;

/// Sizes of the toy model. The defaults are what `data/toy-vlm` was trained with.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ToyConfig {
    pub image_size: usize,
    pub patch_size: usize,
    pub vision_hidden: usize,
    pub vision_layers: usize,
    pub vision_heads: usize,
    pub vision_intermediate: usize,
    pub text_hidden: usize,
    pub text_layers: usize,
    pub text_heads: usize,
    pub text_intermediate: usize,
}

impl Default for ToyConfig {
    fn default() -> Self {
        Self {
            // the world's 64-pixel images are downsampled to 48 and cut into 3x3 patches of 16
            // pixels: the patch grid matches the world's regions (left/centre/right by
            // top/centre/bottom), so each shape lies whole inside one patch, and 9 image tokens
            // keep the decoder's sequence short
            image_size: 48,
            patch_size: 16,
            vision_hidden: 64,
            vision_layers: 2,
            vision_heads: 4,
            vision_intermediate: 128,
            text_hidden: 128,
            text_layers: 2,
            text_heads: 4,
            text_intermediate: 256,
        }
    }
}

impl ToyConfig {
    /// A very small model for tests.
    pub fn tiny() -> Self {
        Self {
            image_size: 64,
            patch_size: 16,
            vision_hidden: 16,
            vision_layers: 1,
            vision_heads: 2,
            vision_intermediate: 32,
            text_hidden: 32,
            text_layers: 1,
            text_heads: 2,
            text_intermediate: 64,
        }
    }

    fn validate(&self) -> Result<()> {
        let bad = |option, message: String| Err(TrainError::Option { option, message });
        if self.patch_size == 0 || !self.image_size.is_multiple_of(self.patch_size) {
            return bad(
                "patch_size",
                format!(
                    "{} does not divide the image size {}",
                    self.patch_size, self.image_size
                ),
            );
        }
        if self.vision_heads == 0 || !self.vision_hidden.is_multiple_of(self.vision_heads) {
            return bad(
                "vision_heads",
                format!(
                    "{} does not divide {}",
                    self.vision_heads, self.vision_hidden
                ),
            );
        }
        let text_heads_ok = self.text_heads > 0
            && self.text_hidden.is_multiple_of(self.text_heads)
            && (self.text_hidden / self.text_heads).is_multiple_of(2);
        if !text_heads_ok {
            return bad(
                "text_heads",
                format!(
                    "{} must divide {} into heads of even size",
                    self.text_heads, self.text_hidden
                ),
            );
        }
        Ok(())
    }

    /// `config.json` of a LLaVA-1.5 checkpoint of these sizes (the Hub dialect).
    pub fn config_json(&self, vocab_size: usize) -> Value {
        json!({
            "architectures": ["LlavaForConditionalGeneration"],
            "ignore_index": -100,
            "image_token_index": IMAGE_ID,
            "model_type": "llava",
            "pad_token_id": PAD_ID,
            "projector_hidden_act": "gelu",
            "text_config": {
                "architectures": ["LlamaForCausalLM"],
                "model_type": "llama",
                "hidden_size": self.text_hidden,
                "intermediate_size": self.text_intermediate,
                "num_attention_heads": self.text_heads,
                "num_hidden_layers": self.text_layers,
                "num_key_value_heads": self.text_heads,
                "max_position_embeddings": 256,
                "rms_norm_eps": 1e-5,
                "rope_theta": 10000.0,
                "hidden_act": "silu",
                "tie_word_embeddings": false,
                "bos_token_id": BOS_ID,
                "eos_token_id": EOS_ID,
                "pad_token_id": PAD_ID,
                "vocab_size": vocab_size,
                "torch_dtype": "float32"
            },
            "tie_word_embeddings": false,
            "torch_dtype": "float32",
            "vision_config": {
                "model_type": "clip_vision_model",
                "hidden_size": self.vision_hidden,
                "intermediate_size": self.vision_intermediate,
                "num_attention_heads": self.vision_heads,
                "num_hidden_layers": self.vision_layers,
                "image_size": self.image_size,
                "patch_size": self.patch_size,
                "projection_dim": self.vision_hidden,
                "hidden_act": "quick_gelu",
                "layer_norm_eps": 1e-5
            },
            // every vision layer feeds the projector (LLaVA-1.5 itself skips the last, -2)
            "vision_feature_layer": -1,
            "vision_feature_select_strategy": "default",
            "vocab_size": vocab_size
        })
    }

    fn preprocessor_json(&self) -> Value {
        json!({
            "crop_size": {"height": self.image_size, "width": self.image_size},
            "do_center_crop": true,
            "do_convert_rgb": true,
            "do_normalize": true,
            "do_rescale": true,
            "do_resize": true,
            "image_mean": [0.48145466, 0.4578275, 0.40821073],
            "image_processor_type": "CLIPImageProcessor",
            "image_std": [0.26862954, 0.26130258, 0.27577711],
            "processor_class": "LlavaProcessor",
            "resample": 3,
            "rescale_factor": 0.00392156862745098,
            "size": {"shortest_edge": self.image_size}
        })
    }

    fn processor_json(&self) -> Value {
        json!({
            "image_token": "<image>",
            "num_additional_image_tokens": 1,
            "patch_size": self.patch_size,
            "processor_class": "LlavaProcessor",
            "vision_feature_select_strategy": "default"
        })
    }
}

/// A word-level tokenizer (whitespace and punctuation split) whose vocabulary is every word of
/// `texts`, after the special tokens, most frequent first (ties by word, so it is deterministic).
pub fn build_tokenizer<S: AsRef<str> + Send>(
    texts: impl Iterator<Item = S> + Send,
) -> Result<Tokenizer> {
    let tok_err = |e: tokenizers::Error| TrainError::Tokenizer(e.to_string());
    let specials: Vec<AddedToken> = SPECIAL_TOKENS
        .iter()
        .map(|t| AddedToken::from(*t, true))
        .collect();
    let trainer = WordLevelTrainer::builder()
        .show_progress(false)
        .vocab_size(100_000)
        .special_tokens(specials.clone())
        .build()
        .map_err(|e| TrainError::Tokenizer(e.to_string()))?;
    let mut trainer = TrainerWrapper::from(trainer);
    let model = WordLevel::builder()
        .unk_token("<unk>".to_string())
        .build()
        .map_err(tok_err)?;
    let mut tokenizer = Tokenizer::new(model);
    tokenizer.with_pre_tokenizer(Some(Whitespace {}));
    tokenizer.train(&mut trainer, texts).map_err(tok_err)?;
    tokenizer.add_special_tokens(specials).map_err(tok_err)?;
    for (id, token) in SPECIAL_TOKENS.iter().enumerate() {
        if tokenizer.token_to_id(token) != Some(id as u32) {
            return Err(TrainError::Tokenizer(format!(
                "special token {token} did not get id {id}"
            )));
        }
    }
    Ok(tokenizer)
}

/// Writes every file of a checkpoint except the weights: `config.json`,
/// `generation_config.json`, `tokenizer.json`, `tokenizer_config.json`, `chat_template.json`,
/// `preprocessor_config.json`, `processor_config.json`.
pub fn write_checkpoint_files(dir: &Path, config: &ToyConfig, tokenizer: &Tokenizer) -> Result<()> {
    config.validate()?;
    std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
    let vocab_size = tokenizer.get_vocab_size(true);
    let tokenizer_json = tokenizer
        .to_string(true)
        .map_err(|e| TrainError::Tokenizer(e.to_string()))?;
    let files: [(&str, Value); 6] = [
        ("config.json", config.config_json(vocab_size)),
        (
            "generation_config.json",
            json!({"bos_token_id": BOS_ID, "eos_token_id": EOS_ID, "pad_token_id": PAD_ID}),
        ),
        (
            "tokenizer_config.json",
            json!({
                "add_bos_token": true,
                "add_eos_token": false,
                "bos_token": "<s>",
                "eos_token": "</s>",
                "unk_token": "<unk>",
                "pad_token": "<pad>",
                "padding_side": "left",
                "clean_up_tokenization_spaces": false,
                "model_max_length": 256,
                "processor_class": "LlavaProcessor",
                "tokenizer_class": "PreTrainedTokenizerFast"
            }),
        ),
        (
            "chat_template.json",
            json!({"chat_template": LLAVA_CHAT_TEMPLATE}),
        ),
        ("preprocessor_config.json", config.preprocessor_json()),
        ("processor_config.json", config.processor_json()),
    ];
    for (name, value) in files {
        write_text(&dir.join(name), &pretty(&value))?;
    }
    write_text(&dir.join("tokenizer.json"), &tokenizer_json)?;
    Ok(())
}

fn pretty(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(value).expect("a JSON value serialises");
    text.push('\n');
    text
}

pub(crate) fn write_text(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| TrainError::io(path, e))
}

/// Copies the non-weight files of checkpoint `from` into `to` (a fine-tune keeps them).
pub fn copy_checkpoint_files(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).map_err(|e| TrainError::io(to, e))?;
    for name in [
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "chat_template.json",
        "preprocessor_config.json",
        "processor_config.json",
    ] {
        let src = from.join(name);
        std::fs::copy(&src, to.join(name)).map_err(|e| TrainError::io(&src, e))?;
    }
    Ok(())
}

/// HF-style initialisation by weight name: norms' weights 1, biases 0, everything else
/// `N(0, 0.02)`; deterministic from `seed`.
pub fn init_weights(seed: u64) -> impl FnMut(&str, &[usize]) -> Vec<f32> + 'static {
    use rand::{RngExt, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    move |name: &str, shape: &[usize]| {
        let n: usize = shape.iter().product();
        let is_norm = name.contains("norm") || name.contains("layrnorm");
        if is_norm && name.ends_with(".weight") {
            vec![1.0; n]
        } else if name.ends_with(".bias") {
            vec![0.0; n]
        } else {
            // Box-Muller: two uniforms give two standard normals
            let mut values = Vec::with_capacity(n + 1);
            while values.len() < n {
                let u1: f32 = rng.random_range(f32::EPSILON..1.0);
                let u2: f32 = rng.random_range(0.0..1.0);
                let r = (-2.0 * u1.ln()).sqrt() * 0.02;
                let theta = std::f32::consts::TAU * u2;
                values.push(r * theta.cos());
                values.push(r * theta.sin());
            }
            values.truncate(n);
            values
        }
    }
}
