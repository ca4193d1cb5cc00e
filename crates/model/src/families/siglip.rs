//! The SigLIP vision transformer of Idefics2, Idefics3 and SmolVLM (`Idefics3VisionTransformer`):
//! patch convolution with a bias, learned position embeddings looked up through bucketed position
//! ids (so an image of any size, or one padded to a common size, reuses the square grid of
//! positions), no class token, the shared pre-norm encoder, a final layernorm.
//!
//! Tensor names: `{prefix}embeddings.{patch_embedding,position_embedding}.*`,
//! `{prefix}encoder.layers.{i}.*`, `{prefix}post_layernorm.*` with the prefix
//! `model.vision_model.`.

use burn::tensor::{Bool, DType, Tensor, TensorData, backend::Backend};

use crate::config::VisionConfig;
use crate::error::{ModelError, Result};
use crate::nn::{
    LayerNorm, ParamMapper, ParamVisitor, map_tensor, map_transposed, visit_tensor,
    visit_transposed,
};
use crate::vit::{VitEmbeddings, VitEncoder, patchify};
use crate::weights::Checkpoint;

const PREFIXES: [&str; 2] = ["model.vision_model.", "vision_model."];

/// When a patch of a padded image counts as real.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchRule {
    /// At least one real pixel (Idefics3, SmolVLM).
    AnyPixel,
    /// Every pixel real (Idefics2).
    AllPixels,
}

pub struct SiglipVision<B: Backend> {
    pub config: VisionConfig,
    prefix: String,
    /// Patch convolution as a matmul: `[3 * p * p, hidden]`, and its bias.
    patch_weight: Tensor<B, 2>,
    patch_bias: Tensor<B, 1>,
    position_embedding: Tensor<B, 2>,
    encoder: VitEncoder<B>,
    post_layernorm: LayerNorm<B>,
    pub num_params: usize,
}

/// Embedded patches of a batch of images. When some patches are padding: which are real
/// (`[images * patches]`) and the attention mask that hides the others as keys
/// (`[images, heads, patches, patches]`, true = masked).
pub struct Embedded<B: Backend> {
    pub hidden: Tensor<B, 3>,
    pub patch_mask: Option<Vec<bool>>,
    pub key_mask: Option<Tensor<B, 4, Bool>>,
}

impl<B: Backend> SiglipVision<B> {
    pub fn load(
        ckpt: &Checkpoint,
        c: &VisionConfig,
        dtype: DType,
        device: &B::Device,
    ) -> Result<Self> {
        let (h, p) = (c.hidden_size, c.patch_size);
        let positions = c.grid() * c.grid();
        let VitEmbeddings {
            prefix,
            patch_weight,
            position_embedding,
        } = VitEmbeddings::load(ckpt, &PREFIXES, c, positions, dtype, device)?;
        let patch_bias = ckpt.tensor(
            &format!("{prefix}embeddings.patch_embedding.bias"),
            [h],
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
        let num_params =
            h * c.num_channels * p * p + h + positions * h + encoder.num_params + 2 * h;
        Ok(Self {
            config: c.clone(),
            prefix,
            patch_weight,
            patch_bias,
            position_embedding,
            encoder,
            post_layernorm,
            num_params,
        })
    }

    fn patch_shape(&self) -> [usize; 4] {
        let c = &self.config;
        [c.hidden_size, c.num_channels, c.patch_size, c.patch_size]
    }

    /// Every weight in checkpoint order: embeddings, encoder, post-layernorm.
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
    }

    /// Replaces every weight (same order as [`SiglipVision::visit`]).
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
            ..self
        })
    }

    /// Patch embeddings plus position embeddings, `[images, patches, hidden]`. Like the
    /// stride-`patch` convolution, pixels beyond the last whole patch are not read.
    /// `pixel_attention_mask` (`[images, height, width]`, row-major, true = real pixel) marks the
    /// padding of images padded to a common size; `None` means every pixel is real.
    pub fn embed(
        &self,
        pixel_values: Tensor<B, 4>,
        pixel_attention_mask: Option<&[bool]>,
        rule: PatchRule,
    ) -> Result<Embedded<B>> {
        let c = &self.config;
        let p = c.patch_size;
        let [n, channels, height, width] = pixel_values.dims();
        if channels != c.num_channels || height < p || width < p {
            return Err(ModelError::Input(format!(
                "pixel_values have shape [{n}, {channels}, {height}, {width}], the SigLIP encoder expects [N, {}, H, W] with H and W at least the patch size {p}",
                c.num_channels
            )));
        }
        let (gh, gw) = (height / p, width / p);
        let device = pixel_values.device();
        let patch_mask = match pixel_attention_mask {
            None => None,
            Some(mask) => Some(patch_mask(mask, [n, height, width], p, rule)?),
        };
        let position_ids = position_ids(patch_mask.as_deref(), n, gh, gw, c.grid());
        let whole = pixel_values.narrow(2, 0, gh * p).narrow(3, 0, gw * p);
        let hidden = patchify(whole, p).matmul(self.patch_weight.clone())
            + self.patch_bias.clone().unsqueeze_dim::<2>(0);
        let index = Tensor::from_data(TensorData::new(position_ids, [n * gh * gw]), &device);
        let hidden = (hidden + self.position_embedding.clone().select(0, index)).reshape([
            n,
            gh * gw,
            c.hidden_size,
        ]);
        let key_mask = patch_mask
            .as_ref()
            .filter(|m| m.iter().any(|&real| !real))
            .map(|m| padding_key_mask(m, n, gh * gw, 0, c.num_heads, &device));
        Ok(Embedded {
            hidden,
            patch_mask,
            key_mask,
        })
    }

    pub fn layer(
        &self,
        i: usize,
        x: Tensor<B, 3>,
        key_mask: Option<&Tensor<B, 4, Bool>>,
    ) -> Tensor<B, 3> {
        self.encoder.layer(i, x, key_mask)
    }

    pub fn post_layernorm(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.post_layernorm.forward(x)
    }
}

/// `[n, heads, queries, keys + extra]` (true = masked) hiding the keys whose `real` entry
/// (`[n * keys]`) is false; `extra` keys after them (Idefics2's latents) are always visible.
pub fn padding_key_mask<B: Backend>(
    real: &[bool],
    n: usize,
    queries: usize,
    extra: usize,
    heads: usize,
    device: &B::Device,
) -> Tensor<B, 4, Bool> {
    let keys = real.len() / n;
    let mut padding = Vec::with_capacity(n * (keys + extra));
    for image in real.chunks(keys) {
        padding.extend(image.iter().map(|&r| !r));
        padding.extend(std::iter::repeat_n(false, extra));
    }
    Tensor::<B, 3, Bool>::from_bool(TensorData::new(padding, [n, 1, keys + extra]), device)
        .unsqueeze_dim::<4>(1)
        .expand([n, heads, queries, keys + extra])
}

/// Per image, which patches are real under `rule` (`[n * gh * gw]`, row-major).
fn patch_mask(
    mask: &[bool],
    [n, height, width]: [usize; 3],
    p: usize,
    rule: PatchRule,
) -> Result<Vec<bool>> {
    if mask.len() != n * height * width {
        return Err(ModelError::Input(format!(
            "pixel_attention_mask holds {} values, the pixel values need {n} x {height} x {width}",
            mask.len()
        )));
    }
    let (gh, gw) = (height / p, width / p);
    // real pixels per whole patch (transformers unfolds the mask: a partial patch is dropped)
    let mut counts = vec![0usize; n * gh * gw];
    for image in 0..n {
        for y in 0..gh * p {
            let row = &mask[(image * height + y) * width..][..gw * p];
            for (x, &real) in row.iter().enumerate() {
                counts[(image * gh + y / p) * gw + x / p] += usize::from(real);
            }
        }
    }
    let patches: Vec<bool> = counts
        .iter()
        .map(|&c| match rule {
            PatchRule::AnyPixel => c > 0,
            PatchRule::AllPixels => c == p * p,
        })
        .collect();
    for (image, real) in patches.chunks(gh * gw).enumerate() {
        if !real.contains(&true) {
            return Err(ModelError::Input(format!(
                "pixel_attention_mask of image {image} has no real patch (drop padding images before the model)"
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
        let any = PatchRule::AnyPixel;
        let err = patch_mask(&[true; 10], [1, 4, 4], 2, any).unwrap_err();
        assert!(err.to_string().contains("1 x 4 x 4"), "{err}");
        let err = patch_mask(&[false; 16], [1, 4, 4], 2, any).unwrap_err();
        assert!(err.to_string().contains("no real patch"), "{err}");
        let mut mask = vec![false; 16];
        mask[5] = true; // pixel (1, 1) lies in patch (0, 0)
        assert_eq!(
            patch_mask(&mask, [1, 4, 4], 2, any).unwrap(),
            vec![true, false, false, false]
        );
        // Idefics2 wants every pixel of a patch; a 5 x 5 image has 2 x 2 whole patches
        let mut mask = vec![true; 25];
        mask[0] = false;
        assert_eq!(
            patch_mask(&mask, [1, 5, 5], 2, PatchRule::AllPixels).unwrap(),
            vec![false, true, true, true]
        );
    }
}
