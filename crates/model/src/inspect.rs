//! `xlvlm model inspect`: what a checkpoint is, read from its config and safetensors headers
//! without loading any weights.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use crate::config::{ModelConfig, TextFamily};
use crate::error::Result;
use crate::hooks::{HookPoint, hook_points};
use crate::source;
use crate::weights::Checkpoint;

/// Summary of a checkpoint.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub dir: PathBuf,
    pub config: ModelConfig,
    pub hook_points: Vec<HookPoint>,
    /// Scalars stored in the checkpoint's tensors.
    pub num_params: usize,
    /// Tensors per stored dtype.
    pub stored_dtypes: BTreeMap<String, usize>,
}

/// Reads config and tensor headers of a local folder or `hf:org/name[@revision]`.
pub fn inspect(source: &str) -> Result<ModelInfo> {
    let dir = source::resolve(source)?;
    let config = ModelConfig::from_dir(&dir)?;
    let ckpt = Checkpoint::open(&dir)?;
    let vision_layers = match (&config.llava, &config.qwen2_vl) {
        (Some(l), _) => l.vision.num_layers,
        (None, Some(q)) => q.vision.depth,
        (None, None) => 0,
    };
    Ok(ModelInfo {
        hook_points: hook_points(config.text.num_layers, vision_layers),
        num_params: ckpt.num_scalars(),
        stored_dtypes: ckpt.dtype_counts(),
        dir,
        config,
    })
}

impl fmt::Display for ModelInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        let t = &c.text;
        let decoder = match t.family {
            TextFamily::Llama => "Llama",
            TextFamily::Mistral => "Mistral",
            TextFamily::Qwen2 => "Qwen2",
        };
        let family = if c.llava.is_some() {
            "LLaVA-1.5 (CLIP ViT + MLP projector + decoder)"
        } else if c.qwen2_vl.is_some() {
            "Qwen2-VL (ViT with 2D RoPE + patch merger + decoder with M-RoPE)"
        } else {
            "text LM"
        };
        writeln!(f, "checkpoint:   {}", self.dir.display())?;
        writeln!(
            f,
            "family:       {family}; model_type {}; decoder {decoder}",
            c.model_type
        )?;
        writeln!(
            f,
            "decoder:      {} layers, hidden {}, intermediate {}, heads {} (kv {}), head_dim {}, vocab {}",
            t.num_layers,
            t.hidden_size,
            t.intermediate_size,
            t.num_heads,
            t.num_kv_heads,
            t.head_dim,
            t.vocab_size
        )?;
        writeln!(
            f,
            "rope:         theta {}, scaling {:?}; tied embeddings: {}",
            t.rope_theta, t.rope_scaling, t.tie_word_embeddings
        )?;
        if let Some(l) = &c.llava {
            let v = &l.vision;
            writeln!(
                f,
                "vision:       CLIP {} layers, hidden {}, heads {}, image {}px, patch {}, {} image tokens per image",
                v.num_layers,
                v.hidden_size,
                v.num_heads,
                v.image_size,
                v.patch_size,
                l.image_tokens_per_image()
            )?;
            writeln!(
                f,
                "projector:    {} -> {} -> {} ({}); feature layer {}, image token id {}",
                v.hidden_size,
                t.hidden_size,
                t.hidden_size,
                l.projector_hidden_act,
                l.vision_feature_layer,
                l.image_token_id
            )?;
        }
        if let Some(q) = &c.qwen2_vl {
            let v = &q.vision;
            writeln!(
                f,
                "vision:       ViT {} blocks, width {}, heads {}, patch {}x{} over {} frames, merge {}x{} -> {}; image token id {}",
                v.depth,
                v.embed_dim,
                v.num_heads,
                v.patch_size,
                v.patch_size,
                v.temporal_patch_size,
                v.spatial_merge_size,
                v.spatial_merge_size,
                v.hidden_size,
                q.image_token_id
            )?;
        }
        let dtype = c
            .dtype
            .map_or_else(|| "unspecified".to_string(), |d| d.to_string());
        let stored: Vec<String> = self
            .stored_dtypes
            .iter()
            .map(|(k, v)| format!("{k} x{v}"))
            .collect();
        writeln!(
            f,
            "dtype:        {dtype} (stored tensors: {})",
            stored.join(", ")
        )?;
        writeln!(f, "parameters:   {}", self.num_params)?;
        let names: Vec<String> = self.hook_points.iter().map(ToString::to_string).collect();
        write!(f, "hook points:  {}", names.join(", "))
    }
}
