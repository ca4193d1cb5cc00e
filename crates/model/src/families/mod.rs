//! The vision side of each model family: its image encoder and the connector that turns encoder
//! states into the features that replace the image tokens. The decoder, hooks, generation and
//! loading are shared; a family only adds what happens to the pixels.
//!
//! Every family runs the same steps, which [`crate::Vlm`] drives (hooks fire between them):
//! 1. [`VisionSide::embed`]: pixel values to the encoder's input sequence `[images, seq, width]`
//!    (plus a key mask when some patches are padding); Qwen2-VL, whose images keep their own
//!    size, starts from flattened patches instead ([`VisionSide::embed_patches`]): its images
//!    are padded to the longest, and the input carries their lengths and 2D rotary tables;
//! 2. [`VisionSide::layer`] `i` for `i < layers_needed()` (hook `vision.layers.{i}`);
//! 3. [`VisionSide::connect`]: the state after the last needed layer to image features
//!    `[images, tokens, text hidden]` (hook `projector`); the decoder's embeddings at the image
//!    token positions are replaced by these features, image after image, in order.
//!
//! To add a family:
//! * `config.rs`: a config struct, a [`crate::VisionFamily`] variant, and the `model_type`(s)
//!   in `ModelConfig::from_json` (plus `SUPPORTED_MODEL_TYPES`);
//! * a file here with the encoder and connector (weights loaded from the checkpoint's names,
//!   `visit`/`map` over every weight in checkpoint order, and the three steps above), and a
//!   variant of [`VisionSide`] dispatching to it;
//! * the family's Hugging Face module names as hook aliases in `hooks.rs`, and where its language
//!   model's weights live in `weights.rs` (`LM_PREFIXES`);
//! * parity tests against a transformers fixture (`tools/refgen/make_tiny_refs.py`).

pub mod idefics3;
pub mod llava;
pub mod qwen2_vl;

use burn::tensor::{Bool, DType, Tensor, TensorData, backend::Backend};

use crate::config::VisionFamily;
use crate::error::{ModelError, Result};
use crate::nn::{ParamMapper, ParamVisitor};
use crate::weights::Checkpoint;

use idefics3::Idefics3Vision;
use llava::LlavaVision;
use qwen2_vl::{ImagePatches, Qwen2VlVision};

/// A loaded vision side.
pub enum VisionSide<B: Backend> {
    Llava(LlavaVision<B>),
    Idefics3(Idefics3Vision<B>),
    Qwen2Vl(Qwen2VlVision<B>),
}

/// The encoder's input sequence of a batch of images.
pub struct VisionInput<B: Backend> {
    /// `[images, seq, width]`.
    pub hidden: Tensor<B, 3>,
    /// `[images, heads, seq, seq]`, true where a key is padding; `None` when nothing is padded.
    pub key_mask: Option<Tensor<B, 4, Bool>>,
    /// Qwen2-VL: cos and sin of each position's 2D rotary angles, `[images, 1, seq, head_dim]`.
    pub rotary: Option<(Tensor<B, 4>, Tensor<B, 4>)>,
    /// Images of different sizes: each image's real positions (the first `lengths[i]` of
    /// `seq`; the rest pads it to the longest). `None` when every position is real.
    pub lengths: Option<Vec<usize>>,
}

impl<B: Backend> VisionSide<B> {
    pub fn load(
        ckpt: &Checkpoint,
        family: &VisionFamily,
        text_hidden: usize,
        dtype: DType,
        device: &B::Device,
    ) -> Result<Self> {
        Ok(match family {
            VisionFamily::Llava(c) => {
                Self::Llava(LlavaVision::load(ckpt, c, text_hidden, dtype, device)?)
            }
            VisionFamily::Idefics3(c) => {
                Self::Idefics3(Idefics3Vision::load(ckpt, c, text_hidden, dtype, device)?)
            }
            VisionFamily::Qwen2Vl(c) => {
                Self::Qwen2Vl(Qwen2VlVision::load(ckpt, c, text_hidden, dtype, device)?)
            }
        })
    }

    /// Parameters the forward pass uses.
    pub fn num_params(&self) -> usize {
        match self {
            Self::Llava(v) => v.num_params,
            Self::Idefics3(v) => v.num_params,
            Self::Qwen2Vl(v) => v.num_params,
        }
    }

    pub fn visit(&self, f: &mut ParamVisitor<'_, B>) {
        match self {
            Self::Llava(v) => v.visit(f),
            Self::Idefics3(v) => v.visit(f),
            Self::Qwen2Vl(v) => v.visit(f),
        }
    }

    pub fn map(self, f: &mut ParamMapper<'_, B>) -> Result<Self> {
        Ok(match self {
            Self::Llava(v) => Self::Llava(v.map(f)?),
            Self::Idefics3(v) => Self::Idefics3(v.map(f)?),
            Self::Qwen2Vl(v) => Self::Qwen2Vl(v.map(f)?),
        })
    }

    /// How many encoder layers produce the state the connector reads (LLaVA reads
    /// `vision_feature_layer`, Idefics3 and Qwen2-VL the last layer).
    pub fn layers_needed(&self) -> usize {
        match self {
            Self::Llava(v) => v.config.vision_layers_needed(),
            Self::Idefics3(v) => v.config.vision.num_layers,
            Self::Qwen2Vl(v) => v.num_layers(),
        }
    }

    /// Step 1 for Qwen2-VL: flattened patches and their grids to the encoder input.
    pub fn embed_patches(
        &self,
        patches: &ImagePatches,
        dtype: DType,
        device: &B::Device,
    ) -> Result<VisionInput<B>> {
        match self {
            Self::Qwen2Vl(v) => v.embed(patches, dtype, device),
            Self::Llava(_) | Self::Idefics3(_) => Err(ModelError::Input(
                "image patches with grids (Qwen2-VL input) given to a model that takes pixel_values"
                    .into(),
            )),
        }
    }

    /// Step 1: pixel values `[images, channels, height, width]` to the encoder input.
    /// `pixel_attention_mask` (`[images, height, width]`, true = real pixel) is for families
    /// whose processor pads images (Idefics); LLaVA's images are never padded.
    pub fn embed(
        &self,
        pixel_values: Tensor<B, 4>,
        pixel_attention_mask: Option<&[bool]>,
    ) -> Result<VisionInput<B>> {
        match self {
            Self::Llava(v) => {
                if pixel_attention_mask.is_some() {
                    return Err(ModelError::Input(
                        "a pixel attention mask was given to LLaVA, whose images are never padded"
                            .into(),
                    ));
                }
                Ok(VisionInput {
                    hidden: v.embed(pixel_values)?,
                    key_mask: None,
                    rotary: None,
                    lengths: None,
                })
            }
            Self::Idefics3(v) => {
                let embedded = v.embed(pixel_values, pixel_attention_mask)?;
                Ok(VisionInput {
                    hidden: embedded.hidden,
                    key_mask: embedded.key_mask,
                    rotary: None,
                    lengths: None,
                })
            }
            Self::Qwen2Vl(_) => Err(ModelError::Input(
                "pixel_values given to Qwen2-VL, which takes image patches with their grids (image_grid_thw)"
                    .into(),
            )),
        }
    }

    /// Step 2: encoder layer `i` (reading the key mask and rotary tables of `input`).
    pub fn layer(&self, i: usize, x: Tensor<B, 3>, input: &VisionInput<B>) -> Tensor<B, 3> {
        match self {
            Self::Llava(v) => v.layer(i, x, input.key_mask.as_ref()),
            Self::Idefics3(v) => v.layer(i, x, input.key_mask.as_ref()),
            Self::Qwen2Vl(v) => v.block(i, x, input),
        }
    }

    /// Step 3: the state after layer `layers_needed() - 1` (or the embeddings when no layer is
    /// needed) to image features `[images, tokens, text hidden]`.
    pub fn connect(&self, hidden: Tensor<B, 3>) -> Result<Tensor<B, 3>> {
        match self {
            Self::Llava(v) => Ok(v.connect(hidden)),
            Self::Idefics3(v) => v.connect(hidden),
            Self::Qwen2Vl(v) => Ok(v.merge(hidden)),
        }
    }
}

/// `pixel_values` (`[images, channels, height, width]`, row-major f32) as a tensor.
pub fn pixel_tensor<B: Backend>(
    data: &[f32],
    shape: [usize; 4],
    dtype: DType,
    device: &B::Device,
) -> Result<Tensor<B, 4>> {
    if data.len() != shape.iter().product::<usize>() {
        return Err(ModelError::Input(format!(
            "pixel_values hold {} values, shape {shape:?} needs {}",
            data.len(),
            shape.iter().product::<usize>()
        )));
    }
    Ok(Tensor::from_data(
        TensorData::new(data.to_vec(), shape),
        (device, dtype),
    ))
}
