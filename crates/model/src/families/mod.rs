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
//! 3. [`VisionSide::connect`]: the states of [`VisionSide::feature_states`] (usually the last
//!    needed layer's) to image features `[images, tokens, text hidden]` (hook `projector`); the
//!    decoder's embeddings at the image token positions are replaced by these features (or, where
//!    [`VisionSide::adds_features`], have them added), image after image, in order.
//!
//! Families: `llava.rs` (CLIP + MLP projector), `idefics2.rs` (SigLIP + perceiver resampler),
//! `idefics3.rs` (SigLIP + pixel shuffle; also SmolVLM), `qwen2_vl.rs` (ViT with 2D RoPE +
//! patch merger, any image size), `molmo.rs` (Molmo2 and Molmo: ViT, multi-layer attention
//! pooling, SwiGLU projector); `siglip.rs` is the SigLIP encoder the Idefics share, `crate::vit`
//! the encoder layers CLIP, SigLIP and Molmo share.
//!
//! To add a family:
//! * `config.rs`: a config struct, a [`crate::VisionFamily`] variant (and its arms in the
//!   `VisionFamily` accessors), and the `model_type`(s) in `ModelConfig::from_json` (plus
//!   `SUPPORTED_MODEL_TYPES`);
//! * a file here with the encoder and connector (weights loaded from the checkpoint's names,
//!   `visit`/`map` over every weight in checkpoint order, and the three steps above), and a
//!   variant of [`VisionSide`] dispatching to it;
//! * its description in `inspect.rs`; the family's Hugging Face module names as hook aliases in
//!   `hooks.rs`, and where its language model's weights live in `weights.rs` (`LM_PREFIXES`); a
//!   checkpoint whose decoder names or fusions differ is presented under the standard names with
//!   `Checkpoint::add_view` (as `molmo::present_standard_names` does);
//! * the image side of its processor in `crates/processor` (an `ImagePipeline` and a row of that
//!   crate's family table);
//! * parity tests against a transformers fixture (`tools/refgen/make_tiny_refs.py`).
//!
//! Image inputs are `[images, channels, height, width]` ([`crate::PixelValues`]), or Qwen2-VL's
//! flattened patches with their `image_grid_thw` ([`crate::ImagePatches`], `Batch::image_patches`);
//! Idefics' `pixel_attention_mask` for padded images enters through [`VisionSide::embed`]
//! (reachable today through [`crate::Vlm::image_features`]; `Batch` does not carry it yet).
//! Molmo's patch pooling (`Batch::patch_pooling`) reaches [`VisionSide::connect`].

pub mod idefics2;
pub mod idefics3;
pub mod llava;
pub mod molmo;
pub mod qwen2_vl;
pub mod siglip;

use burn::tensor::{Bool, DType, Tensor, TensorData, backend::Backend};

use crate::config::{TextConfig, VisionFamily};
use crate::error::{ModelError, Result};
use crate::nn::{ParamMapper, ParamVisitor};
use crate::weights::Checkpoint;

use idefics2::Idefics2Vision;
use idefics3::Idefics3Vision;
use llava::LlavaVision;
use molmo::{MolmoVision, PatchPooling};
use qwen2_vl::{ImagePatches, Qwen2VlVision};

/// A loaded vision side.
pub enum VisionSide<B: Backend> {
    Llava(LlavaVision<B>),
    Idefics2(Idefics2Vision<B>),
    Idefics3(Idefics3Vision<B>),
    Qwen2Vl(Qwen2VlVision<B>),
    Molmo(MolmoVision<B>),
}

/// The encoder's input sequence of a batch of images.
pub struct VisionInput<B: Backend> {
    /// `[images, seq, width]`.
    pub hidden: Tensor<B, 3>,
    /// `[images, heads, seq, seq]`, true where a key is padding; `None` when nothing is padded.
    pub key_mask: Option<Tensor<B, 4, Bool>>,
    /// Which positions are real (`[images * seq]`), for a connector that attends over them;
    /// `None` when all are.
    pub real: Option<Vec<bool>>,
    /// Qwen2-VL: cos and signed sin of each position's 2D rotary angles for every query and key
    /// head, `[images, seq, 2 * heads, head_dim]`.
    pub rotary: Option<(Tensor<B, 4>, Tensor<B, 4>)>,
    /// Images of different sizes: each image's positions are the first `lengths[i]` of `seq`
    /// (the rest pads it to the longest, and is no position). `None` when all `seq` are.
    pub lengths: Option<Vec<usize>>,
}

impl<B: Backend> VisionSide<B> {
    pub fn load(
        ckpt: &Checkpoint,
        family: &VisionFamily,
        text: &TextConfig,
        dtype: DType,
        device: &B::Device,
    ) -> Result<Self> {
        let text_hidden = text.hidden_size;
        Ok(match family {
            VisionFamily::Llava(c) => {
                Self::Llava(LlavaVision::load(ckpt, c, text_hidden, dtype, device)?)
            }
            VisionFamily::Idefics2(c) => {
                Self::Idefics2(Idefics2Vision::load(ckpt, c, text, dtype, device)?)
            }
            VisionFamily::Idefics3(c) => {
                Self::Idefics3(Idefics3Vision::load(ckpt, c, text_hidden, dtype, device)?)
            }
            VisionFamily::Qwen2Vl(c) => {
                Self::Qwen2Vl(Qwen2VlVision::load(ckpt, c, text_hidden, dtype, device)?)
            }
            VisionFamily::Molmo(c) => {
                Self::Molmo(MolmoVision::load(ckpt, c, text_hidden, dtype, device)?)
            }
        })
    }

    /// Parameters the forward pass uses.
    pub fn num_params(&self) -> usize {
        match self {
            Self::Llava(v) => v.num_params,
            Self::Idefics2(v) => v.num_params,
            Self::Idefics3(v) => v.num_params,
            Self::Qwen2Vl(v) => v.num_params,
            Self::Molmo(v) => v.num_params,
        }
    }

    pub fn visit(&self, f: &mut ParamVisitor<'_, B>) {
        match self {
            Self::Llava(v) => v.visit(f),
            Self::Idefics2(v) => v.visit(f),
            Self::Idefics3(v) => v.visit(f),
            Self::Qwen2Vl(v) => v.visit(f),
            Self::Molmo(v) => v.visit(f),
        }
    }

    pub fn map(self, f: &mut ParamMapper<'_, B>) -> Result<Self> {
        Ok(match self {
            Self::Llava(v) => Self::Llava(v.map(f)?),
            Self::Idefics2(v) => Self::Idefics2(v.map(f)?),
            Self::Idefics3(v) => Self::Idefics3(v.map(f)?),
            Self::Qwen2Vl(v) => Self::Qwen2Vl(v.map(f)?),
            Self::Molmo(v) => Self::Molmo(v.map(f)?),
        })
    }

    /// How many encoder layers produce the states the connector reads (LLaVA reads
    /// `vision_feature_layer`, Idefics2/3 and Qwen2-VL the last layer, Molmo several layers).
    pub fn layers_needed(&self) -> usize {
        match self {
            Self::Llava(v) => v.config.vision_layers_needed(),
            Self::Idefics2(v) => v.config.vision.num_layers,
            Self::Idefics3(v) => v.config.vision.num_layers,
            Self::Qwen2Vl(v) => v.num_layers(),
            Self::Molmo(v) => v.feature_states().into_iter().max().unwrap_or(0),
        }
    }

    /// The encoder states the connector reads, in its order: 0 is the embeddings, `i` the
    /// output of layer `i - 1`.
    pub fn feature_states(&self) -> Vec<usize> {
        match self {
            Self::Molmo(v) => v.feature_states(),
            _ => vec![self.layers_needed()],
        }
    }

    /// Whether image features are added to the image tokens' embeddings (Molmo) rather than
    /// replacing them.
    pub fn adds_features(&self) -> bool {
        matches!(self, Self::Molmo(_))
    }

    /// Whether the connector needs the processor's patch pooling (Molmo), which also decides how
    /// many image tokens each image has.
    pub fn needs_pooling(&self) -> bool {
        matches!(self, Self::Molmo(_))
    }

    /// Patches per crop that a patch pooling counts (class tokens aside); `None` for families
    /// that do not pool.
    pub fn patches_per_crop(&self) -> Option<usize> {
        match self {
            Self::Molmo(v) => Some(v.config.vision.grid().pow(2)),
            _ => None,
        }
    }

    /// Per row, the positions that attend to each other bidirectionally (Molmo2's image
    /// blocks); `None` when attention is causal everywhere.
    pub fn image_blocks(&self, input_ids: &[Vec<u32>]) -> Option<Vec<Vec<bool>>> {
        match self {
            Self::Molmo(v) => v.image_blocks(input_ids),
            _ => None,
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
            Self::Llava(_) | Self::Idefics2(_) | Self::Idefics3(_) | Self::Molmo(_) => {
                Err(ModelError::Input(
                    "image patches with grids (Qwen2-VL input) given to a model that takes pixel_values"
                        .into(),
                ))
            }
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
                    real: None,
                    rotary: None,
                    lengths: None,
                })
            }
            Self::Idefics2(v) => Ok(v.embed(pixel_values, pixel_attention_mask)?.into()),
            Self::Idefics3(v) => Ok(v.embed(pixel_values, pixel_attention_mask)?.into()),
            Self::Qwen2Vl(_) => Err(ModelError::Input(
                "pixel_values given to Qwen2-VL, which takes image patches with their grids (image_grid_thw)"
                    .into(),
            )),
            Self::Molmo(v) => {
                if pixel_attention_mask.is_some() {
                    return Err(ModelError::Input(
                        "a pixel attention mask was given to Molmo, whose crops are never padded"
                            .into(),
                    ));
                }
                Ok(VisionInput {
                    hidden: v.embed(pixel_values)?,
                    key_mask: None,
                    real: None,
                    rotary: None,
                    lengths: None,
                })
            }
        }
    }

    /// Step 2: encoder layer `i` (reading the key mask and rotary tables of `input`).
    pub fn layer(&self, i: usize, x: Tensor<B, 3>, input: &VisionInput<B>) -> Tensor<B, 3> {
        let key_mask = input.key_mask.as_ref();
        match self {
            Self::Llava(v) => v.layer(i, x, key_mask),
            Self::Idefics2(v) => v.layer(i, x, key_mask),
            Self::Idefics3(v) => v.layer(i, x, key_mask),
            Self::Qwen2Vl(v) => v.block(i, x, input),
            Self::Molmo(v) => v.layer(i, x),
        }
    }

    /// Step 3: the states of [`VisionSide::feature_states`] to image features
    /// `[images, tokens, text hidden]` (Molmo: `[1, tokens, text hidden]`, the tokens of every
    /// image in order, pooled as `pooling` says); `real` is [`VisionInput::real`].
    pub fn connect(
        &self,
        mut states: Vec<Tensor<B, 3>>,
        real: Option<&[bool]>,
        pooling: Option<&PatchPooling>,
    ) -> Result<Tensor<B, 3>> {
        match (self, pooling) {
            (Self::Molmo(v), Some(pooling)) => v.connect(states, pooling),
            (Self::Molmo(_), None) => Err(ModelError::Input(
                "Molmo images need the processor's patch pooling (image_token_pooling)".into(),
            )),
            (_, Some(_)) => Err(ModelError::Input(
                "a patch pooling was given to a family that does not pool patches".into(),
            )),
            (Self::Llava(v), None) => Ok(v.connect(states.remove(0))),
            (Self::Idefics2(v), None) => Ok(v.connect(states.remove(0), real)),
            (Self::Idefics3(v), None) => v.connect(states.remove(0)),
            (Self::Qwen2Vl(v), None) => Ok(v.merge(states.remove(0))),
        }
    }
}

impl<B: Backend> From<siglip::Embedded<B>> for VisionInput<B> {
    fn from(e: siglip::Embedded<B>) -> Self {
        Self {
            hidden: e.hidden,
            key_mask: e.key_mask,
            real: e.patch_mask,
            rotary: None,
            lengths: None,
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
