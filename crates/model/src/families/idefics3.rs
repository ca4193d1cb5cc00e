//! Idefics3 / SmolVLM's vision side: the SigLIP encoder ([`super::siglip`]) and the connector
//! (pixel shuffle, then a linear `modality_projection` without bias).
//!
//! Tensor names: `model.vision_model.*`, `model.connector.modality_projection.proj.weight`.

use burn::tensor::{Bool, DType, Tensor, backend::Backend};

use super::siglip::{Embedded, PatchRule, SiglipVision};
use crate::config::Idefics3Config;
use crate::error::{ModelError, Result};
use crate::nn::{Linear, ParamMapper, ParamVisitor};
use crate::weights::Checkpoint;

const CONNECTOR_PREFIXES: [&str; 2] = ["model.connector.", "connector."];

/// SigLIP encoder + pixel-shuffle connector.
pub struct Idefics3Vision<B: Backend> {
    pub config: Idefics3Config,
    siglip: SiglipVision<B>,
    /// `modality_projection.proj`: `[hidden * scale², text hidden]`, no bias.
    projection: Linear<B>,
    pub num_params: usize,
}

impl<B: Backend> Idefics3Vision<B> {
    pub fn load(
        ckpt: &Checkpoint,
        ic: &Idefics3Config,
        text_hidden: usize,
        dtype: DType,
        device: &B::Device,
    ) -> Result<Self> {
        let siglip = SiglipVision::load(ckpt, &ic.vision, dtype, device)?;
        let probe = "modality_projection.proj.weight";
        let names: Vec<String> = CONNECTOR_PREFIXES
            .iter()
            .map(|p| format!("{p}{probe}"))
            .collect();
        let h = ic.vision.hidden_size;
        let projection = Linear::load(
            ckpt,
            ckpt.first_of(&names)?.trim_end_matches(".weight"),
            h * ic.scale_factor * ic.scale_factor,
            text_hidden,
            false,
            dtype,
            device,
        )?;
        let num_params = siglip.num_params + projection.num_params();
        Ok(Self {
            config: ic.clone(),
            siglip,
            projection,
            num_params,
        })
    }

    /// Every weight in checkpoint order: the SigLIP encoder, then the connector.
    pub fn visit(&self, f: &mut ParamVisitor<'_, B>) {
        self.siglip.visit(f);
        self.projection.visit(f);
    }

    /// Replaces every weight (same order as [`Idefics3Vision::visit`]).
    pub fn map(self, f: &mut ParamMapper<'_, B>) -> Result<Self> {
        Ok(Self {
            siglip: self.siglip.map(f)?,
            projection: self.projection.map(f)?,
            ..self
        })
    }

    /// SigLIP embeddings; a patch with any real pixel is real.
    pub fn embed(
        &self,
        pixel_values: Tensor<B, 4>,
        pixel_attention_mask: Option<&[bool]>,
    ) -> Result<Embedded<B>> {
        self.siglip
            .embed(pixel_values, pixel_attention_mask, PatchRule::AnyPixel)
    }

    pub fn layer(
        &self,
        i: usize,
        x: Tensor<B, 3>,
        key_mask: Option<&Tensor<B, 4, Bool>>,
    ) -> Tensor<B, 3> {
        self.siglip.layer(i, x, key_mask)
    }

    /// Post-layernorm, pixel shuffle and projection of the last encoder layer's output
    /// `[images, patches, hidden]`: the image features `[images, patches / scale², text hidden]`.
    pub fn connect(&self, hidden: Tensor<B, 3>) -> Result<Tensor<B, 3>> {
        let normed = self.siglip.post_layernorm(hidden);
        Ok(self
            .projection
            .forward(pixel_shuffle(normed, self.config.scale_factor)?))
    }
}

/// Idefics3's pixel shuffle: the square patch grid `[n, h * w, d]` becomes `[n, (h/s) * (w/s),
/// d * s²]`, each new position holding an `s × s` block of patches (the order of
/// transformers' `Idefics3Connector.pixel_shuffle`: two transposed reshapes).
pub fn pixel_shuffle<B: Backend>(x: Tensor<B, 3>, scale: usize) -> Result<Tensor<B, 3>> {
    let [n, seq, d] = x.dims();
    let side = (seq as f64).sqrt().round() as usize;
    if side * side != seq || !side.is_multiple_of(scale) {
        return Err(ModelError::Input(format!(
            "pixel shuffle needs a square patch grid whose side is a multiple of {scale}; got {seq} patches (the Idefics3 connector takes square images)"
        )));
    }
    let s = scale;
    Ok(x.reshape([n, side, side / s, d * s])
        .permute([0, 2, 1, 3])
        .reshape([n, side / s, side / s, d * s * s])
        .permute([0, 2, 1, 3])
        .reshape([n, seq / (s * s), d * s * s]))
}
