//! xlvlm-model: vision-language models (LLaVA-1.5, Idefics2, Idefics3, SmolVLM, Qwen2-VL, Molmo2,
//! Molmo) and Llama-family language models (Llama, Mistral, Qwen2) in burn, loaded from Hugging
//! Face checkpoints, with hooks to capture and change activations.
//!
//! ```no_run
//! use burn::backend::Flex;
//! use xlvlm_model::{Batch, CaptureSpec, GenerateOptions, HookPoint, Logits, Positions, Vlm, WeightDType};
//!
//! let device = Default::default();
//! let model = Vlm::<Flex>::load("hf:llava-hf/llava-1.5-7b-hf", WeightDType::F32, &device)?;
//! let batch = Batch::left_padded(vec![vec![1, 3148, 1001]], 0);
//! let capture = CaptureSpec { hook: model.parse_hook("lm.layers.31")?, positions: Positions::LastPromptToken };
//! let out = model.forward(&batch, &[capture.clone()], &[], Logits::None)?;
//! let generation = model.generate(&batch, &GenerateOptions::default(), &[capture], &[])?;
//! # Ok::<(), xlvlm_model::ModelError>(())
//! ```
//!
//! * [`Vlm::load`] / [`Vlm::load_dir`]: `config.json` in both dialects, single or sharded
//!   safetensors, both key layouts, tied embeddings, f32/f16/bf16 stored weights converted to the
//!   requested [`WeightDType`].
//! * [`Vlm::forward`]: a [`Batch`] (padded, attention mask, optional `pixel_values`, or for
//!   Qwen2-VL [`ImagePatches`] with their grids; 3D M-RoPE positions follow), captures
//!   ([`CaptureSpec`]) and interventions ([`Intervention`]) at [`HookPoint`]s; returns the
//!   captured rows with per-position [`PositionMeta`] and optionally logits.
//! * [`Vlm::generate`]: greedy decoding with a KV cache (EOS, max new tokens, a stop predicate).
//! * [`parse_hook`]: hook names (`lm.layers.{i}`, ... and HF module-name aliases).
//! * [`Vlm::init`] / [`Vlm::visit_params`] / [`Vlm::map_params`] / [`Vlm::save_checkpoint`]:
//!   a freshly initialised model, every weight by its checkpoint name (training runs the same
//!   forward on burn's `Autodiff` backend), and saving in the checkpoint's key layout.
//! * Molmo's images also need the processor's [`PatchPooling`] ([`Batch::with_patch_pooling`],
//!   [`Vlm::image_features_pooled`]; see `MOLMO.md`).
//! * [`Vlm::image_features`]: the connector output for images alone (`get_image_features`),
//!   with an optional `pixel_attention_mask` for padded Idefics images.
//!   [`Vlm::image_patch_features`]: the same for Qwen2-VL's patches (`[tokens, hidden]`).
//! * [`inspect`]: a checkpoint summary without loading weights.
//! * [`run_on`] + [`DeviceSpec`]: pick `cpu` (flex) or `cuda:N` (feature `cuda`) at run time.
//!
//! One decoder serves every family; a family adds its vision side (encoder + connector) in
//! `src/families/` (that module's documentation says how to add one) and is picked by
//! `config.json`'s `model_type` ([`SUPPORTED_MODEL_TYPES`], [`VisionFamily`]).
//!
//! Numerics follow transformers: `hidden_states[0]` is [`HookPoint::Embed`] (after the image
//! features are scattered in), `hidden_states[i]` is [`HookPoint::Layer`]`(i-1)`, and the last
//! entry, `hidden_states[L]`, is [`HookPoint::Norm`] (the final norm output).

mod backend;
mod config;
mod error;
mod families;
mod hooks;
mod inspect;
mod model;
mod nn;
mod source;
mod text;
mod vit;
mod weights;

#[cfg(feature = "cuda")]
pub use backend::CudaBackend;
pub use backend::{BackendTask, CpuBackend, DeviceSpec, keep_freed_memory, run_on};
pub use config::{
    FeatureSelect, Idefics2Config, Idefics3Config, LlavaConfig, ModelConfig, PerceiverConfig,
    QkNorm, Qwen2VlConfig, RopeScaling, SUPPORTED_MODEL_TYPES, TextConfig, TextFamily,
    VisionConfig, VisionFamily, WeightDType,
};
pub use error::{ModelError, Result};
pub use families::molmo::{MolmoConfig, PatchPooling};
pub use families::qwen2_vl::{ImagePatches, Qwen2VlVisionConfig, rope_index};
pub use hooks::{
    CaptureSpec, HookPoint, Intervention, InterventionMode, PositionMeta, Positions, TokenRole,
    hook_points, parse_hook,
};
pub use inspect::{ModelInfo, inspect};
pub use model::{
    Batch, Captured, CapturedRow, FinishReason, ForwardOutput, GenerateOptions, Generation, Logits,
    PixelValues, StopPredicate, Vlm,
};
pub use nn::{ParamMapper, ParamVisitor};
pub use source::{default_cache_dir, resolve, resolve_with_cache};
pub use weights::{Checkpoint, LM_HEAD_NAMES, LM_PREFIXES};
