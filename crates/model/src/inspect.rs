//! `xlvlm model inspect`: what a checkpoint is, read from its config and safetensors headers
//! without loading any weights.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use crate::config::{ModelConfig, TextFamily, VisionFamily};
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
    let vision_layers = config.vision.as_ref().map_or(0, VisionFamily::num_layers);
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
        let family = c.vision.as_ref().map_or("text LM", VisionFamily::describe);
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
        match &c.vision {
            Some(VisionFamily::Llava(l)) => {
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
            Some(VisionFamily::Idefics3(i)) => {
                let v = &i.vision;
                writeln!(
                    f,
                    "vision:       SigLIP {} layers, hidden {}, heads {}, tile {}px, patch {}, {} image tokens per tile",
                    v.num_layers,
                    v.hidden_size,
                    v.num_heads,
                    v.image_size,
                    v.patch_size,
                    i.image_tokens_per_image()
                )?;
                writeln!(
                    f,
                    "connector:    pixel shuffle x{} ({} -> {}) -> linear {}; image token id {}",
                    i.scale_factor,
                    v.hidden_size,
                    v.hidden_size * i.scale_factor * i.scale_factor,
                    t.hidden_size,
                    i.image_token_id
                )?;
            }
            Some(VisionFamily::Idefics2(i)) => {
                let (v, p) = (&i.vision, &i.perceiver);
                writeln!(
                    f,
                    "vision:       SigLIP {} layers, hidden {}, heads {}, image {}px, patch {}, {} image tokens per image",
                    v.num_layers,
                    v.hidden_size,
                    v.num_heads,
                    v.image_size,
                    v.patch_size,
                    p.n_latents
                )?;
                writeln!(
                    f,
                    "connector:    gated MLP {} -> {} -> {}; perceiver {} latents, {} layers, heads {} (kv {}) of {}; image token id {}",
                    v.hidden_size,
                    t.intermediate_size,
                    t.hidden_size,
                    p.n_latents,
                    p.depth,
                    p.num_heads,
                    p.num_kv_heads,
                    p.head_dim,
                    i.image_token_id
                )?;
            }
            Some(VisionFamily::Qwen2Vl(q)) => {
                let v = &q.vision;
                writeln!(
                    f,
                    "vision:       ViT {} blocks, width {}, heads {}, patch {}x{} over {} frames, any image size (multiples of {} px)",
                    v.depth,
                    v.embed_dim,
                    v.num_heads,
                    v.patch_size,
                    v.patch_size,
                    v.temporal_patch_size,
                    v.patch_size * v.spatial_merge_size
                )?;
                writeln!(
                    f,
                    "merger:       {}x{} patches ({} -> {}) -> MLP {}; M-RoPE sections {:?}; image token id {}",
                    v.spatial_merge_size,
                    v.spatial_merge_size,
                    v.embed_dim,
                    v.embed_dim * v.spatial_merge_size * v.spatial_merge_size,
                    v.hidden_size,
                    t.mrope_section.as_deref().unwrap_or_default(),
                    q.image_token_id
                )?;
            }
            Some(VisionFamily::Molmo(m)) => crate::families::molmo::describe(f, m, t)?,
            None => {}
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
