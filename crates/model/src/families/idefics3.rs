//! Idefics3 / SmolVLM's vision side: a SigLIP vision transformer (patch convolution with a bias,
//! learned position embeddings looked up through bucketed position ids so that padded images of
//! any size reuse the square grid, no class token, a final layernorm) and the connector (pixel
//! shuffle, then a linear `modality_projection` without bias).
//!
//! Tensor names: `model.vision_model.{embeddings,encoder,post_layernorm}.*`,
//! `model.connector.modality_projection.proj.weight`.

use burn::tensor::{Bool, DType, Tensor, TensorData, backend::Backend};

use crate::config::{Idefics3Config, VisionConfig};
use crate::error::{ModelError, Result};
use crate::nn::{
    LayerNorm, Linear, ParamMapper, ParamVisitor, map_tensor, map_transposed, visit_tensor,
    visit_transposed,
};
use crate::vit::{VitEncoder, patchify};
use crate::weights::Checkpoint;

const VISION_PREFIXES: [&str; 2] = ["model.vision_model.", "vision_model."];
const CONNECTOR_PREFIXES: [&str; 2] = ["model.connector.", "connector."];

/// SigLIP encoder + pixel-shuffle connector.
pub struct Idefics3Vision<B: Backend> {
    pub config: Idefics3Config,
    prefix: String,
    /// Patch convolution as a matmul: `[3 * p * p, hidden]`, and its bias.
    patch_weight: Tensor<B, 2>,
    patch_bias: Tensor<B, 1>,
    position_embedding: Tensor<B, 2>,
    encoder: VitEncoder<B>,
    post_layernorm: LayerNorm<B>,
    /// `modality_projection.proj`: `[hidden * scale², text hidden]`, no bias.
    projection: Linear<B>,
    pub num_params: usize,
}

/// Embedded patches of a batch of images and, when some patches are padding, the attention mask
/// that hides them as keys (`[images, heads, seq, seq]`, true = masked).
pub struct Embedded<B: Backend> {
    pub hidden: Tensor<B, 3>,
    pub key_mask: Option<Tensor<B, 4, Bool>>,
}

impl<B: Backend> Idefics3Vision<B> {
    pub fn load(
        ckpt: &Checkpoint,
        ic: &Idefics3Config,
        text_hidden: usize,
        dtype: DType,
        device: &B::Device,
    ) -> Result<Self> {
        let probe = "embeddings.patch_embedding.weight";
        let names: Vec<String> = VISION_PREFIXES
            .iter()
            .map(|p| format!("{p}{probe}"))
            .collect();
        let prefix = ckpt.first_of(&names)?.trim_end_matches(probe).to_string();
        let c = &ic.vision;
        let (h, p) = (c.hidden_size, c.patch_size);
        let positions = c.grid() * c.grid();
        let patch_weight = ckpt.linear_weight(
            &format!("{prefix}embeddings.patch_embedding.weight"),
            &[h, c.num_channels, p, p],
            dtype,
            device,
        )?;
        let patch_bias = ckpt.tensor(
            &format!("{prefix}embeddings.patch_embedding.bias"),
            [h],
            dtype,
            device,
        )?;
        let position_embedding = ckpt.tensor(
            &format!("{prefix}embeddings.position_embedding.weight"),
            [positions, h],
            dtype,
            device,
        )?;
        let encoder = VitEncoder::load(ckpt, c, &prefix, dtype, device)?;
        let post_layernorm = LayerNorm::load(
            ckpt,
            &format!("{prefix}post_layernorm"),
            h,
            c.layer_norm_eps,
            dtype,
            device,
        )?;
        let probe = "modality_projection.proj.weight";
        let names: Vec<String> = CONNECTOR_PREFIXES
            .iter()
            .map(|p| format!("{p}{probe}"))
            .collect();
        let projection = Linear::load(
            ckpt,
            ckpt.first_of(&names)?.trim_end_matches(".weight"),
            h * ic.scale_factor * ic.scale_factor,
            text_hidden,
            false,
            dtype,
            device,
        )?;
        let num_params = h * c.num_channels * p * p
            + h
            + positions * h
            + encoder.num_params
            + 2 * h
            + projection.num_params();
        Ok(Self {
            config: ic.clone(),
            prefix,
            patch_weight,
            patch_bias,
            position_embedding,
            encoder,
            post_layernorm,
            projection,
            num_params,
        })
    }

    fn vision(&self) -> &VisionConfig {
        &self.config.vision
    }

    fn patch_shape(&self) -> [usize; 4] {
        let c = self.vision();
        [c.hidden_size, c.num_channels, c.patch_size, c.patch_size]
    }

    /// Every weight in checkpoint order: embeddings, encoder, post-layernorm, connector.
    pub fn visit(&self, f: &mut ParamVisitor<'_, B>) {
        let p = &self.prefix;
        visit_transposed(
            f,
            &format!("{p}embeddings.patch_embedding.weight"),
            &self.patch_weight,
            &self.patch_shape(),
        );
        visit_tensor(
            f,
            &format!("{p}embeddings.patch_embedding.bias"),
            &self.patch_bias,
        );
        visit_tensor(
            f,
            &format!("{p}embeddings.position_embedding.weight"),
            &self.position_embedding,
        );
        self.encoder.visit(f);
        self.post_layernorm.visit(f);
        self.projection.visit(f);
    }

    /// Replaces every weight (same order as [`Idefics3Vision::visit`]).
    pub fn map(self, f: &mut ParamMapper<'_, B>) -> Result<Self> {
        let p = self.prefix.clone();
        let patch_shape = self.patch_shape();
        let patch_weight = map_transposed(
            f,
            &format!("{p}embeddings.patch_embedding.weight"),
            self.patch_weight,
            &patch_shape,
        )?;
        let patch_bias = map_tensor(
            f,
            &format!("{p}embeddings.patch_embedding.bias"),
            self.patch_bias,
        )?;
        let position_embedding = map_tensor(
            f,
            &format!("{p}embeddings.position_embedding.weight"),
            self.position_embedding,
        )?;
        Ok(Self {
            patch_weight,
            patch_bias,
            position_embedding,
            encoder: self.encoder.map(f)?,
            post_layernorm: self.post_layernorm.map(f)?,
            projection: self.projection.map(f)?,
            ..self
        })
    }

    /// Patch embeddings plus position embeddings, `[images, patches, hidden]`.
    /// `pixel_attention_mask` (`[images, height, width]`, row-major, true = real pixel) marks the
    /// padding of images padded to a common size; `None` means every pixel is real.
    pub fn embed(
        &self,
        pixel_values: Tensor<B, 4>,
        pixel_attention_mask: Option<&[bool]>,
    ) -> Result<Embedded<B>> {
        let c = self.vision();
        let p = c.patch_size;
        let [n, channels, height, width] = pixel_values.dims();
        if channels != c.num_channels
            || height == 0
            || width == 0
            || !height.is_multiple_of(p)
            || !width.is_multiple_of(p)
        {
            return Err(ModelError::Input(format!(
                "pixel_values have shape [{n}, {channels}, {height}, {width}], the SigLIP encoder expects [N, {}, H, W] with H and W multiples of the patch size {p}",
                c.num_channels
            )));
        }
        let (gh, gw) = (height / p, width / p);
        let device = pixel_values.device();
        let patch_mask = match pixel_attention_mask {
            None => None,
            Some(mask) => Some(patch_mask(mask, [n, height, width], p)?),
        };
        let position_ids = position_ids(patch_mask.as_deref(), n, gh, gw, c.grid());
        let hidden = patchify(pixel_values, p).matmul(self.patch_weight.clone())
            + self.patch_bias.clone().unsqueeze_dim::<2>(0);
        let index = Tensor::from_data(TensorData::new(position_ids, [n * gh * gw]), &device);
        let hidden = (hidden + self.position_embedding.clone().select(0, index)).reshape([
            n,
            gh * gw,
            c.hidden_size,
        ]);
        let key_mask = patch_mask.filter(|m| m.iter().any(|&real| !real)).map(|m| {
            let seq = gh * gw;
            let padding: Vec<bool> = m.iter().map(|&real| !real).collect();
            Tensor::<B, 3, Bool>::from_bool(TensorData::new(padding, [n, 1, seq]), &device)
                .unsqueeze_dim::<4>(1)
                .expand([n, c.num_heads, seq, seq])
        });
        Ok(Embedded { hidden, key_mask })
    }

    pub fn layer(
        &self,
        i: usize,
        x: Tensor<B, 3>,
        key_mask: Option<&Tensor<B, 4, Bool>>,
    ) -> Tensor<B, 3> {
        self.encoder.layer(i, x, key_mask)
    }

    /// Post-layernorm, pixel shuffle and projection of the last encoder layer's output
    /// `[images, patches, hidden]`: the image features `[images, patches / scale², text hidden]`.
    pub fn connect(&self, hidden: Tensor<B, 3>) -> Result<Tensor<B, 3>> {
        let normed = self.post_layernorm.forward(hidden);
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

/// Per image, which patches hold at least one real pixel (`[n * gh * gw]`, row-major).
fn patch_mask(mask: &[bool], [n, height, width]: [usize; 3], p: usize) -> Result<Vec<bool>> {
    if mask.len() != n * height * width {
        return Err(ModelError::Input(format!(
            "pixel_attention_mask holds {} values, the pixel values need {n} x {height} x {width}",
            mask.len()
        )));
    }
    let (gh, gw) = (height / p, width / p);
    let mut patches = vec![false; n * gh * gw];
    for image in 0..n {
        for y in 0..height {
            let row = &mask[(image * height + y) * width..(image * height + y + 1) * width];
            for (x, &real) in row.iter().enumerate() {
                if real {
                    patches[(image * gh + y / p) * gw + x / p] = true;
                }
            }
        }
        if !patches[image * gh * gw..(image + 1) * gh * gw].contains(&true) {
            return Err(ModelError::Input(format!(
                "pixel_attention_mask of image {image} has no real pixel (drop padding images before the model)"
            )));
        }
    }
    Ok(patches)
}

/// Position ids of every patch, as `Idefics3VisionEmbeddings` computes them: the real
/// `rows × cols` patches of an image are spread over the `grid × grid` table of learned
/// positions by bucketing their fractional coordinates; padding patches get id 0. With no
/// padding and an image of `grid × grid` patches, patch `k` gets id `k`.
fn position_ids(
    patch_mask: Option<&[bool]>,
    n: usize,
    gh: usize,
    gw: usize,
    grid: usize,
) -> Vec<i64> {
    let boundaries = torch_arange_boundaries(grid);
    // torch.bucketize(right=True): the number of boundaries <= x
    let bucket = |x: f32| boundaries.iter().filter(|&&b| b <= x).count() as i64;
    // fractional coordinates in f32, clamped below 1 as transformers does
    let coords = |count: usize, real: usize| -> Vec<i64> {
        let step = 1.0f32 / real as f32;
        (0..count)
            .map(|i| bucket((i as f32 * step).min(1.0f32 - 1e-6)))
            .collect()
    };
    let mut ids = Vec::with_capacity(n * gh * gw);
    for image in 0..n {
        let real = |r: usize, c: usize| patch_mask.is_none_or(|m| m[(image * gh + r) * gw + c]);
        // transformers counts the real patches of the first column and the first row
        let rows = (0..gh).filter(|&r| real(r, 0)).count().max(1);
        let cols = (0..gw).filter(|&c| real(0, c)).count().max(1);
        let (bucket_h, bucket_w) = (coords(gh, rows), coords(gw, cols));
        for (r, &row_bucket) in bucket_h.iter().enumerate() {
            for (c, &col_bucket) in bucket_w.iter().enumerate() {
                ids.push(if real(r, c) {
                    row_bucket * grid as i64 + col_bucket
                } else {
                    0
                });
            }
        }
    }
    ids
}

/// `torch.arange(1/grid, 1.0, 1/grid)` in float32, value for value as PyTorch's CPU kernel makes
/// it: the length is `ceil((end - start) / step)` in f64; blocks of 16 values are written as two
/// 8-lane vectors whose lanes are `f32(start + step * block)` plus `lane * step` (in f64); the
/// remaining values are `start + step * index` in f64, rounded to f32. The rounding decides in
/// which bucket a patch whose coordinate falls on a boundary lands.
fn torch_arange_boundaries(grid: usize) -> Vec<f32> {
    let step = 1.0f64 / grid as f64;
    let start = step;
    let len = ((1.0 - start) / step).ceil().max(0.0) as usize;
    let vectorised = len / 16 * 16;
    (0..len)
        .map(|k| {
            if k < vectorised {
                let lane_base = k / 8 * 8;
                let base = (start + step * lane_base as f64) as f32;
                (f64::from(base) + (k - lane_base) as f64 * step) as f32
            } else {
                (start + step * k as f64) as f32
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_square_images_get_consecutive_position_ids() {
        for grid in [4, 14, 16, 20, 24, 27, 32, 37, 64] {
            let ids = position_ids(None, 2, grid, grid, grid);
            let want: Vec<i64> = (0..2).flat_map(|_| 0..(grid * grid) as i64).collect();
            assert_eq!(ids, want, "grid {grid}");
        }
    }

    #[test]
    fn padded_patches_spread_over_the_grid_and_padding_gets_zero() {
        // 2 x 3 real patches of a 4 x 4 grid: rows at fractions 0, 1/2 -> buckets 0, 2;
        // columns at 0, 1/3, 2/3 -> buckets 0, 1, 2
        let mut mask = vec![false; 16];
        for r in 0..2 {
            for c in 0..3 {
                mask[r * 4 + c] = true;
            }
        }
        let ids = position_ids(Some(&mask), 1, 4, 4, 4);
        assert_eq!(
            ids,
            vec![0, 1, 2, 0, 8, 9, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            "{ids:?}"
        );
    }

    #[test]
    fn pixel_masks_must_match_the_images_and_have_real_pixels() {
        let err = patch_mask(&[true; 10], [1, 4, 4], 2).unwrap_err();
        assert!(err.to_string().contains("1 x 4 x 4"), "{err}");
        let err = patch_mask(&[false; 16], [1, 4, 4], 2).unwrap_err();
        assert!(err.to_string().contains("no real pixel"), "{err}");
        let mut mask = vec![false; 16];
        mask[5] = true; // pixel (1, 1) lies in patch (0, 0)
        assert_eq!(
            patch_mask(&mask, [1, 4, 4], 2).unwrap(),
            vec![true, false, false, false]
        );
    }
}
