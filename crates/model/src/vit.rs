//! The pre-layernorm ViT encoder layers that CLIP (LLaVA) and SigLIP (Idefics2, Idefics3,
//! SmolVLM) share: `x + out_proj(attn(ln1(x)))`, then `x + fc2(act(fc1(ln2(x))))`, every linear
//! with a bias.

use burn::tensor::{Bool, DType, Tensor, backend::Backend};

use crate::config::VisionConfig;
use crate::error::Result;
use crate::nn::{Activation, LayerNorm, Linear, ParamMapper, ParamVisitor, attention};
use crate::weights::Checkpoint;

/// The patch and position embedding tables of a CLIP- or SigLIP-style ViT, found under the first
/// of `prefixes` whose `embeddings.patch_embedding.weight` the checkpoint holds.
pub struct VitEmbeddings<B: Backend> {
    /// Where the tower's weights live (`vision_tower.vision_model.`, ...).
    pub prefix: String,
    /// `[channels * p * p, hidden]`: the patch convolution as a linear map.
    pub patch_weight: Tensor<B, 2>,
    /// `[positions, hidden]`.
    pub position_embedding: Tensor<B, 2>,
}

impl<B: Backend> VitEmbeddings<B> {
    pub fn load(
        ckpt: &Checkpoint,
        prefixes: &[&str],
        c: &VisionConfig,
        positions: usize,
        dtype: DType,
        device: &B::Device,
    ) -> Result<Self> {
        let probe = "embeddings.patch_embedding.weight";
        let names: Vec<String> = prefixes.iter().map(|p| format!("{p}{probe}")).collect();
        let prefix = ckpt.first_of(&names)?.trim_end_matches(probe).to_string();
        let (h, p) = (c.hidden_size, c.patch_size);
        let patch_weight = ckpt.linear_weight(
            &format!("{prefix}{probe}"),
            &[h, c.num_channels, p, p],
            dtype,
            device,
        )?;
        let position_embedding = ckpt.tensor(
            &format!("{prefix}embeddings.position_embedding.weight"),
            [positions, h],
            dtype,
            device,
        )?;
        Ok(Self {
            prefix,
            patch_weight,
            position_embedding,
        })
    }
}

struct EncoderLayer<B: Backend> {
    layer_norm1: LayerNorm<B>,
    q_proj: Linear<B>,
    k_proj: Linear<B>,
    v_proj: Linear<B>,
    out_proj: Linear<B>,
    layer_norm2: LayerNorm<B>,
    fc1: Linear<B>,
    fc2: Linear<B>,
}

/// The encoder layers `{prefix}encoder.layers.{i}.*` of a vision transformer.
pub struct VitEncoder<B: Backend> {
    layers: Vec<EncoderLayer<B>>,
    num_heads: usize,
    activation: Activation,
    pub num_params: usize,
}

impl<B: Backend> VitEncoder<B> {
    pub fn load(
        ckpt: &Checkpoint,
        c: &VisionConfig,
        prefix: &str,
        dtype: DType,
        device: &B::Device,
    ) -> Result<Self> {
        let h = c.hidden_size;
        let eps = c.layer_norm_eps;
        let mut num_params = 0;
        let mut layers = Vec::with_capacity(c.num_layers);
        for i in 0..c.num_layers {
            let lp = format!("{prefix}encoder.layers.{i}");
            let linear = |name: &str, inp: usize, out: usize| {
                Linear::load(ckpt, &format!("{lp}.{name}"), inp, out, true, dtype, device)
            };
            let norm =
                |name: &str| LayerNorm::load(ckpt, &format!("{lp}.{name}"), h, eps, dtype, device);
            let layer = EncoderLayer {
                layer_norm1: norm("layer_norm1")?,
                q_proj: linear("self_attn.q_proj", h, h)?,
                k_proj: linear("self_attn.k_proj", h, h)?,
                v_proj: linear("self_attn.v_proj", h, h)?,
                out_proj: linear("self_attn.out_proj", h, h)?,
                layer_norm2: norm("layer_norm2")?,
                fc1: linear("mlp.fc1", h, c.intermediate_size)?,
                fc2: linear("mlp.fc2", c.intermediate_size, h)?,
            };
            num_params += 4 * h
                + [
                    &layer.q_proj,
                    &layer.k_proj,
                    &layer.v_proj,
                    &layer.out_proj,
                    &layer.fc1,
                    &layer.fc2,
                ]
                .iter()
                .map(|l| l.num_params())
                .sum::<usize>();
            layers.push(layer);
        }
        Ok(Self {
            layers,
            num_heads: c.num_heads,
            activation: Activation::parse(&c.hidden_act, "vision_config.hidden_act")?,
            num_params,
        })
    }

    /// Every weight in checkpoint order.
    pub fn visit(&self, f: &mut ParamVisitor<'_, B>) {
        for layer in &self.layers {
            layer.layer_norm1.visit(f);
            for linear in [&layer.q_proj, &layer.k_proj, &layer.v_proj, &layer.out_proj] {
                linear.visit(f);
            }
            layer.layer_norm2.visit(f);
            layer.fc1.visit(f);
            layer.fc2.visit(f);
        }
    }

    /// Replaces every weight (same order as [`VitEncoder::visit`]).
    pub fn map(self, f: &mut ParamMapper<'_, B>) -> Result<Self> {
        let layers = self
            .layers
            .into_iter()
            .map(|l| {
                Ok(EncoderLayer {
                    layer_norm1: l.layer_norm1.map(f)?,
                    q_proj: l.q_proj.map(f)?,
                    k_proj: l.k_proj.map(f)?,
                    v_proj: l.v_proj.map(f)?,
                    out_proj: l.out_proj.map(f)?,
                    layer_norm2: l.layer_norm2.map(f)?,
                    fc1: l.fc1.map(f)?,
                    fc2: l.fc2.map(f)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { layers, ..self })
    }

    /// Layer `i` on `[images, seq, hidden]`. `key_mask` (`[images, heads, seq, seq]`, true =
    /// masked) hides padding patches from every query.
    pub fn layer(
        &self,
        i: usize,
        x: Tensor<B, 3>,
        key_mask: Option<&Tensor<B, 4, Bool>>,
    ) -> Tensor<B, 3> {
        let layer = &self.layers[i];
        let [n, seq, h] = x.dims();
        let head_dim = h / self.num_heads;
        let normed = layer.layer_norm1.forward(x.clone());
        let heads = |t: Tensor<B, 3>| {
            t.reshape([n, seq, self.num_heads, head_dim])
                .swap_dims(1, 2)
        };
        let q = heads(layer.q_proj.forward(normed.clone()));
        let k = heads(layer.k_proj.forward(normed.clone()));
        let v = heads(layer.v_proj.forward(normed));
        let attn = attention(q, k, v, key_mask);
        let x = x + layer.out_proj.forward(attn);
        let hidden = self
            .activation
            .apply(layer.fc1.forward(layer.layer_norm2.forward(x.clone())));
        x + layer.fc2.forward(hidden)
    }
}

/// Cuts `[images, channels, height, width]` into `patch`-sized squares, row-major over the patch
/// grid: `[images * (height / patch) * (width / patch), channels * patch * patch]`, each row in
/// the `(channel, y, x)` order of a convolution kernel, so that a matmul with the kernel reshaped
/// to `[channels * patch * patch, hidden]` is the stride-`patch` convolution.
pub fn patchify<B: Backend>(pixel_values: Tensor<B, 4>, patch: usize) -> Tensor<B, 2> {
    let [n, channels, height, width] = pixel_values.dims();
    let (gh, gw) = (height / patch, width / patch);
    pixel_values
        .reshape([n, channels, gh, patch, gw, patch])
        .permute([0, 2, 4, 1, 3, 5])
        .reshape([n * gh * gw, channels * patch * patch])
}
