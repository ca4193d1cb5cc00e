//! Qwen2-VL's vision side: the ViT with 2D rotary embeddings over (height, width) patch
//! coordinates, blocks with a fused `qkv` projection, the patch merger (2x2 neighbouring patches
//! concatenated, then an MLP into the decoder's width), and the 3D (temporal, height, width)
//! positions that the decoder's M-RoPE reads (`get_rope_index` in transformers).
//!
//! Images of different sizes run together as one padded batch `[images, longest, width]` with the
//! padding keys masked, which gives what transformers' per-image attention gives.

use burn::tensor::{Bool, DType, Int, Tensor, TensorData, backend::Backend};
use serde_json::{Map, Value};
use std::path::Path;

use crate::config::{f64_field, str_field, usize_field};
use crate::error::{ModelError, Result};
use crate::nn::{
    Activation, LayerNorm, Linear, ParamMapper, ParamVisitor, apply_rotary, attention,
    map_transposed, rotary_tables, visit_transposed,
};
use crate::weights::Checkpoint;

use super::VisionInput;

/// `vision_config` of a Qwen2-VL checkpoint (Qwen2VLVisionConfig defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct Qwen2VlVisionConfig {
    pub depth: usize,
    pub embed_dim: usize,
    /// Output width of the merger (the decoder's hidden size).
    pub hidden_size: usize,
    pub num_heads: usize,
    pub mlp_ratio: f64,
    pub in_channels: usize,
    pub patch_size: usize,
    pub temporal_patch_size: usize,
    pub spatial_merge_size: usize,
    pub hidden_act: String,
    pub rope_theta: f32,
}

impl Qwen2VlVisionConfig {
    pub fn head_dim(&self) -> usize {
        self.embed_dim / self.num_heads
    }

    /// Values in one flattened patch: `channels * temporal_patch * patch * patch`.
    pub fn patch_dim(&self) -> usize {
        self.in_channels * self.temporal_patch_size * self.patch_size * self.patch_size
    }

    pub fn mlp_hidden(&self) -> usize {
        (self.embed_dim as f64 * self.mlp_ratio) as usize
    }
}

/// Qwen2-VL specifics of `config.json` (either dialect).
#[derive(Debug, Clone, PartialEq)]
pub struct Qwen2VlConfig {
    pub vision: Qwen2VlVisionConfig,
    pub image_token_id: u32,
    pub video_token_id: u32,
    pub vision_start_token_id: u32,
    pub vision_end_token_id: u32,
}

impl Qwen2VlConfig {
    pub(crate) fn from_json(obj: &Map<String, Value>, path: &Path) -> Result<Self> {
        let empty = Map::new();
        let v = obj
            .get("vision_config")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let rope_theta = v
            .get("rope_parameters")
            .and_then(Value::as_object)
            .and_then(|p| p.get("rope_theta"))
            .or_else(|| v.get("rope_theta"))
            .and_then(Value::as_f64)
            .unwrap_or(10000.0) as f32;
        let in_channels = match v.get("in_channels") {
            Some(_) => usize_field(v, "in_channels", 3, path)?,
            // the Hub's Qwen2-VL configs spell it `in_chans`
            None => usize_field(v, "in_chans", 3, path)?,
        };
        let vision = Qwen2VlVisionConfig {
            depth: usize_field(v, "depth", 32, path)?,
            embed_dim: usize_field(v, "embed_dim", 1280, path)?,
            hidden_size: usize_field(v, "hidden_size", 3584, path)?,
            num_heads: usize_field(v, "num_heads", 16, path)?,
            mlp_ratio: f64_field(v, "mlp_ratio", 4.0, path)?,
            in_channels,
            patch_size: usize_field(v, "patch_size", 14, path)?,
            temporal_patch_size: usize_field(v, "temporal_patch_size", 2, path)?,
            spatial_merge_size: usize_field(v, "spatial_merge_size", 2, path)?,
            hidden_act: str_field(v, "hidden_act").unwrap_or_else(|| "quick_gelu".into()),
            rope_theta,
        };
        if vision.num_heads == 0
            || !vision.embed_dim.is_multiple_of(vision.num_heads)
            || !vision.head_dim().is_multiple_of(4)
        {
            return Err(ModelError::config(
                path,
                "vision_config: embed_dim must be num_heads times a head size divisible by 4 (2D rotary embedding)",
            ));
        }
        if vision.spatial_merge_size == 0 || vision.patch_size == 0 {
            return Err(ModelError::config(
                path,
                "vision_config: patch_size and spatial_merge_size must be positive",
            ));
        }
        let id = |key: &str, default: u64| -> Result<u32> {
            match obj.get(key) {
                None | Some(Value::Null) => Ok(default as u32),
                Some(v) => v.as_u64().map(|n| n as u32).ok_or_else(|| {
                    ModelError::config(path, format!("{key:?} must be a token id, got {v}"))
                }),
            }
        };
        Ok(Self {
            vision,
            image_token_id: id("image_token_id", 151655)?,
            video_token_id: id("video_token_id", 151656)?,
            vision_start_token_id: id("vision_start_token_id", 151652)?,
            vision_end_token_id: id("vision_end_token_id", 151653)?,
        })
    }

    /// Image tokens (`<|image_pad|>`) one image of patch grid `[t, h, w]` expands to.
    pub fn tokens_for_grid(&self, grid_thw: [usize; 3]) -> usize {
        let m = self.vision.spatial_merge_size;
        grid_thw[0] * grid_thw[1] * grid_thw[2] / (m * m)
    }
}

/// Qwen2-VL image input as its processor returns it: every image's patches flattened in the
/// merger's block order, one row of [`Qwen2VlVisionConfig::patch_dim`] values per patch, and the
/// patch grid `[t, h, w]` of each image (`image_grid_thw`).
#[derive(Debug, Clone, PartialEq)]
pub struct ImagePatches {
    /// `[patches, patch_dim]` row-major.
    pub data: Vec<f32>,
    pub patch_dim: usize,
    pub grid_thw: Vec<[usize; 3]>,
}

impl ImagePatches {
    pub fn num_images(&self) -> usize {
        self.grid_thw.len()
    }

    /// Patches per image.
    pub fn lengths(&self) -> Vec<usize> {
        self.grid_thw.iter().map(|g| g[0] * g[1] * g[2]).collect()
    }
}

struct Block<B: Backend> {
    norm1: LayerNorm<B>,
    qkv: Linear<B>,
    proj: Linear<B>,
    norm2: LayerNorm<B>,
    fc1: Linear<B>,
    fc2: Linear<B>,
}

/// The Qwen2-VL vision transformer and patch merger.
pub struct Qwen2VlVision<B: Backend> {
    pub config: Qwen2VlConfig,
    patch_name: String,
    /// Conv3d patch embedding as a matmul: `[patch_dim, embed_dim]` (no bias).
    patch_weight: Tensor<B, 2>,
    blocks: Vec<Block<B>>,
    merger_norm: LayerNorm<B>,
    merger_fc1: Linear<B>,
    merger_fc2: Linear<B>,
    activation: Activation,
    /// `1 / theta^(2i / (head_dim/2))`: the frequencies shared by the height and width halves.
    inv_freq: Vec<f32>,
    pub num_params: usize,
}

/// Where the vision weights sit: the Hub layout and transformers 5's nested one.
const VISUAL_PREFIXES: [&str; 2] = ["visual.", "model.visual."];

impl<B: Backend> Qwen2VlVision<B> {
    pub fn load(
        ckpt: &Checkpoint,
        config: &Qwen2VlConfig,
        text_hidden: usize,
        dtype: DType,
        device: &B::Device,
    ) -> Result<Self> {
        let c = &config.vision;
        if c.hidden_size != text_hidden {
            return Err(ModelError::config(
                ckpt.dir().join("config.json"),
                format!(
                    "vision_config.hidden_size ({}) must equal the decoder's hidden_size ({text_hidden})",
                    c.hidden_size
                ),
            ));
        }
        let probe: Vec<String> = VISUAL_PREFIXES
            .iter()
            .map(|p| format!("{p}patch_embed.proj.weight"))
            .collect();
        let patch_name = ckpt.first_of(&probe)?.to_string();
        let prefix = patch_name.trim_end_matches("patch_embed.proj.weight");
        let e = c.embed_dim;
        let patch_weight = ckpt.linear_weight(
            &patch_name,
            &[
                e,
                c.in_channels,
                c.temporal_patch_size,
                c.patch_size,
                c.patch_size,
            ],
            dtype,
            device,
        )?;
        let norm = |name: &str, size: usize| {
            // Qwen2-VL's vision LayerNorms all use eps 1e-6
            LayerNorm::load(ckpt, &format!("{prefix}{name}"), size, 1e-6, dtype, device)
        };
        let linear = |name: &str, inp: usize, out: usize| {
            Linear::load(
                ckpt,
                &format!("{prefix}{name}"),
                inp,
                out,
                true,
                dtype,
                device,
            )
        };
        let mut num_params = c.patch_dim() * e;
        let mut blocks = Vec::with_capacity(c.depth);
        for i in 0..c.depth {
            let b = format!("blocks.{i}.");
            let block = Block {
                norm1: norm(&format!("{b}norm1"), e)?,
                qkv: linear(&format!("{b}attn.qkv"), e, 3 * e)?,
                proj: linear(&format!("{b}attn.proj"), e, e)?,
                norm2: norm(&format!("{b}norm2"), e)?,
                fc1: linear(&format!("{b}mlp.fc1"), e, c.mlp_hidden())?,
                fc2: linear(&format!("{b}mlp.fc2"), c.mlp_hidden(), e)?,
            };
            num_params += 4 * e
                + [&block.qkv, &block.proj, &block.fc1, &block.fc2]
                    .iter()
                    .map(|l| l.num_params())
                    .sum::<usize>();
            blocks.push(block);
        }
        let m2 = c.spatial_merge_size * c.spatial_merge_size;
        let merged = e * m2;
        let merger_norm = norm("merger.ln_q", e)?;
        let merger_fc1 = linear("merger.mlp.0", merged, merged)?;
        let merger_fc2 = linear("merger.mlp.2", merged, c.hidden_size)?;
        num_params += 2 * e + merger_fc1.num_params() + merger_fc2.num_params();
        let spatial_dim = c.head_dim() / 2;
        let inv_freq = (0..spatial_dim)
            .step_by(2)
            .map(|i| 1.0 / c.rope_theta.powf(i as f32 / spatial_dim as f32))
            .collect();
        Ok(Self {
            config: config.clone(),
            patch_name,
            patch_weight,
            blocks,
            merger_norm,
            merger_fc1,
            merger_fc2,
            activation: Activation::parse(&c.hidden_act, "vision_config.hidden_act")?,
            inv_freq,
            num_params,
        })
    }

    pub fn num_layers(&self) -> usize {
        self.blocks.len()
    }

    fn patch_shape(&self) -> [usize; 5] {
        let c = &self.config.vision;
        [
            c.embed_dim,
            c.in_channels,
            c.temporal_patch_size,
            c.patch_size,
            c.patch_size,
        ]
    }

    /// Every weight in checkpoint order.
    pub fn visit(&self, f: &mut ParamVisitor<'_, B>) {
        visit_transposed(f, &self.patch_name, &self.patch_weight, &self.patch_shape());
        for b in &self.blocks {
            b.norm1.visit(f);
            b.qkv.visit(f);
            b.proj.visit(f);
            b.norm2.visit(f);
            b.fc1.visit(f);
            b.fc2.visit(f);
        }
        self.merger_norm.visit(f);
        self.merger_fc1.visit(f);
        self.merger_fc2.visit(f);
    }

    /// Replaces every weight (same order as [`Qwen2VlVision::visit`]).
    pub fn map(self, f: &mut ParamMapper<'_, B>) -> Result<Self> {
        let shape = self.patch_shape();
        let patch_weight = map_transposed(f, &self.patch_name, self.patch_weight, &shape)?;
        let blocks = self
            .blocks
            .into_iter()
            .map(|b| {
                Ok(Block {
                    norm1: b.norm1.map(f)?,
                    qkv: b.qkv.map(f)?,
                    proj: b.proj.map(f)?,
                    norm2: b.norm2.map(f)?,
                    fc1: b.fc1.map(f)?,
                    fc2: b.fc2.map(f)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            patch_weight,
            blocks,
            merger_norm: self.merger_norm.map(f)?,
            merger_fc1: self.merger_fc1.map(f)?,
            merger_fc2: self.merger_fc2.map(f)?,
            ..self
        })
    }

    /// Checks `patches` against the config: patch width, grids divisible by the merge size, and
    /// as many rows as the grids say.
    pub fn validate(&self, patches: &ImagePatches) -> Result<()> {
        let c = &self.config.vision;
        if patches.patch_dim != c.patch_dim() {
            return Err(ModelError::Input(format!(
                "image patches have {} values each, the vision tower expects {} (channels x temporal_patch x patch x patch)",
                patches.patch_dim,
                c.patch_dim()
            )));
        }
        let m = c.spatial_merge_size;
        for (i, g) in patches.grid_thw.iter().enumerate() {
            if g.contains(&0) || !g[1].is_multiple_of(m) || !g[2].is_multiple_of(m) {
                return Err(ModelError::Input(format!(
                    "image {i}: grid_thw {g:?} must be positive with height and width multiples of the merge size {m}"
                )));
            }
        }
        let total: usize = patches.lengths().iter().sum();
        if patches.data.len() != total * patches.patch_dim {
            return Err(ModelError::Input(format!(
                "image patches hold {} values, the grids {:?} need {total} patches of {}",
                patches.data.len(),
                patches.grid_thw,
                patches.patch_dim
            )));
        }
        Ok(())
    }

    /// Patch embeddings as a padded batch `[images, longest, embed_dim]`, with the rotary
    /// tables, key mask and lengths every block uses.
    pub fn embed(
        &self,
        patches: &ImagePatches,
        dtype: DType,
        device: &B::Device,
    ) -> Result<VisionInput<B>> {
        self.validate(patches)?;
        let c = &self.config.vision;
        let lengths = patches.lengths();
        let total: usize = lengths.iter().sum();
        let images = lengths.len();
        let longest = lengths.iter().copied().max().unwrap_or(0);
        let flat = Tensor::<B, 2>::from_data(
            TensorData::new(patches.data.clone(), [total, patches.patch_dim]),
            (device, dtype),
        );
        let embedded = flat.matmul(self.patch_weight.clone());
        // padding slots repeat the image's first patch; their keys are masked
        let mut index = Vec::with_capacity(images * longest);
        let mut offset = 0;
        for &len in &lengths {
            index.extend((0..longest).map(|s| (offset + if s < len { s } else { 0 }) as i64));
            offset += len;
        }
        let index =
            Tensor::<B, 1, Int>::from_data(TensorData::new(index, [images * longest]), device);
        let x = embedded
            .select(0, index)
            .reshape([images, longest, c.embed_dim]);
        let (cos, sin, mask) = self.tables(&patches.grid_thw, &lengths, longest, device);
        // images of one size need no mask (and attention runs faster without one)
        let padded = lengths.iter().any(|&len| len != longest);
        Ok(VisionInput {
            hidden: x,
            key_mask: padded.then_some(mask),
            real: None,
            rotary: Some((cos, sin)),
            lengths: Some(lengths),
        })
    }

    /// Rotary tables and the key mask of a padded batch. The tables ([`rotary_tables`]) are laid
    /// out as the query and key rows of the fused `qkv` projection, `[images, longest, 2 * heads,
    /// head_dim]` (the same angles for every query and key head). The key mask is `[images,
    /// heads, longest, longest]` (true = padding key).
    fn tables(
        &self,
        grids: &[[usize; 3]],
        lengths: &[usize],
        longest: usize,
        device: &B::Device,
    ) -> (Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 4, Bool>) {
        let c = &self.config.vision;
        let head_dim = c.head_dim();
        let rows = 2 * c.num_heads;
        let images = grids.len();
        let m = c.spatial_merge_size;
        let mut cos = Vec::with_capacity(images * longest * rows * head_dim);
        let mut sin = Vec::with_capacity(images * longest * rows * head_dim);
        let mut mask = Vec::with_capacity(images * longest * longest);
        for (&[t, h, w], &len) in grids.iter().zip(lengths) {
            // (row, column) of each patch in the block-major order of the processor's flattening
            let mut coords = Vec::with_capacity(len);
            for _ in 0..t {
                for bh in 0..h / m {
                    for bw in 0..w / m {
                        for ih in 0..m {
                            for iw in 0..m {
                                coords.push((bh * m + ih, bw * m + iw));
                            }
                        }
                    }
                }
            }
            coords.resize(longest, (0, 0));
            for (row, col) in coords {
                // as transformers: f32 angles, [height freqs | width freqs] repeated twice
                let angles: Vec<f32> = self
                    .inv_freq
                    .iter()
                    .map(|f| row as f32 * f)
                    .chain(self.inv_freq.iter().map(|f| col as f32 * f))
                    .collect();
                rotary_tables(&angles, rows, &mut cos, &mut sin);
            }
            for _ in 0..longest {
                mask.extend((0..longest).map(|k| k >= len));
            }
        }
        let table = |v: Vec<f32>| {
            Tensor::<B, 4>::from_data(
                TensorData::new(v, [images, longest, rows, head_dim]),
                (device, DType::F32),
            )
        };
        let mask = Tensor::<B, 4, Bool>::from_bool(
            TensorData::new(mask, [images, 1, longest, longest]),
            device,
        )
        .expand([images, c.num_heads, longest, longest]);
        (table(cos), table(sin), mask)
    }

    /// Vision block `i` on `[images, longest, embed_dim]`, with the tables of `input`.
    ///
    /// Everything stays in the token-major layout of the fused `qkv` projection: queries, keys
    /// and values are strided views of it that the matmuls read directly, and the rotation runs
    /// on contiguous `[rows, head_dim]` tensors, so no per-head copies are made.
    pub fn block(&self, i: usize, x: Tensor<B, 3>, input: &VisionInput<B>) -> Tensor<B, 3> {
        let (cos, sin) = input
            .rotary
            .as_ref()
            .expect("Qwen2-VL's embed makes the rotary tables");
        let c = &self.config.vision;
        let b = &self.blocks[i];
        let [n, seq, _] = x.dims();
        let (heads, head_dim) = (c.num_heads, c.head_dim());
        // [n, seq, (q | k | v) x heads, head_dim]: a free view of the contiguous projection
        let qkv = b
            .qkv
            .forward(b.norm1.forward(x.clone()))
            .reshape([n, seq, 3 * heads, head_dim]);
        // transformers rotates q and k in f32
        let qk = qkv.clone().narrow(2, 0, 2 * heads);
        let dtype = qk.dtype();
        let qk = apply_rotary(qk.cast(DType::F32), cos, sin).cast(dtype);
        let q = qk.clone().narrow(2, 0, heads).swap_dims(1, 2);
        let k = qk.narrow(2, heads, heads).swap_dims(1, 2);
        let v = qkv.narrow(2, 2 * heads, heads).swap_dims(1, 2);
        let attn = attention(q, k, v, input.key_mask.as_ref());
        let x = x + b.proj.forward(attn);
        let hidden = self
            .activation
            .apply(b.fc1.forward(b.norm2.forward(x.clone())));
        x + b.fc2.forward(hidden)
    }

    /// Patch merger: LayerNorm per patch, each run of `merge^2` patches concatenated, then the
    /// MLP: `[images, longest, embed_dim] -> [images, longest / merge^2, hidden]`.
    pub fn merge(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let m = self.config.vision.spatial_merge_size;
        let [n, seq, e] = x.dims();
        let normed = self
            .merger_norm
            .forward(x)
            .reshape([n, seq / (m * m), e * m * m]);
        self.merger_fc2
            .forward(Activation::Gelu.apply(self.merger_fc1.forward(normed)))
    }
}

/// The (temporal, height, width) rotary positions of one unpadded sequence and its rope delta
/// (`max position + 1 - length`, what generated tokens add to their index), as transformers'
/// `get_rope_index` computes them: text tokens count up on all three rows; a run of image tokens
/// takes the next grid from `grids` and gets `start + (t, row, column)` of its merged patches,
/// after which text continues at `start + max(h, w) / merge`.
pub fn rope_index(
    ids: &[u32],
    image_token_id: u32,
    grids: &mut impl Iterator<Item = [usize; 3]>,
    spatial_merge_size: usize,
) -> Result<(Vec<[usize; 3]>, i64)> {
    let m = spatial_merge_size;
    let mut positions = Vec::with_capacity(ids.len());
    let mut current = 0usize;
    let mut s = 0;
    while s < ids.len() {
        if ids[s] != image_token_id {
            positions.push([current; 3]);
            current += 1;
            s += 1;
            continue;
        }
        let run = ids[s..]
            .iter()
            .take_while(|&&id| id == image_token_id)
            .count();
        let [t, h, w] = grids.next().ok_or_else(|| {
            ModelError::Input("the batch has more runs of image tokens than images".into())
        })?;
        let (gh, gw) = (h / m, w / m);
        if run != t * gh * gw {
            return Err(ModelError::Input(format!(
                "a run of {run} image tokens does not match its image's grid [{t}, {h}, {w}] ({} tokens after merging)",
                t * gh * gw
            )));
        }
        for ti in 0..t {
            for hi in 0..gh {
                for wi in 0..gw {
                    positions.push([current + ti, current + hi, current + wi]);
                }
            }
        }
        current += gh.max(gw);
        s += run;
    }
    let max = positions
        .iter()
        .flat_map(|p| p.iter().copied())
        .max()
        .map_or(-1, |v| v as i64);
    Ok((positions, max + 1 - ids.len() as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rope_index_of_text_is_plain_positions() {
        let (pos, delta) = rope_index(&[5, 6, 7], 9, &mut std::iter::empty(), 2).unwrap();
        assert_eq!(pos, vec![[0; 3], [1; 3], [2; 3]]);
        assert_eq!(delta, 0);
    }

    #[test]
    fn rope_index_of_an_image_follows_its_grid() {
        // 2 text tokens, an image of grid [1, 4, 6] (2 x 3 merged tokens), 1 text token
        let ids = [1, 2, 9, 9, 9, 9, 9, 9, 3];
        let (pos, delta) = rope_index(&ids, 9, &mut [[1, 4, 6]].into_iter(), 2).unwrap();
        assert_eq!(
            &pos[2..8],
            &[
                [2, 2, 2],
                [2, 2, 3],
                [2, 2, 4],
                [2, 3, 2],
                [2, 3, 3],
                [2, 3, 4]
            ]
        );
        assert_eq!(pos[8], [5; 3]);
        assert_eq!(delta, 6 - 9);
        let err = rope_index(&ids, 9, &mut [[1, 4, 4]].into_iter(), 2).unwrap_err();
        assert!(err.to_string().contains("does not match"), "{err}");
        let err = rope_index(&ids, 9, &mut std::iter::empty(), 2).unwrap_err();
        assert!(err.to_string().contains("more runs"), "{err}");
    }
}
