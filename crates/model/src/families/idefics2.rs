//! Idefics2's vision side: the SigLIP encoder ([`super::siglip`]) and the connector: a gated MLP
//! (`modality_projection`: `down(act(gate(x)) * up(x))`, vision width to decoder width) and a
//! perceiver resampler, whose `n_latents` learned latents cross-attend (with grouped key/value
//! heads, no rotary embedding) to the projected patches and to themselves, layer after layer,
//! each layer `l + attn(norm(l), norm(context))` then `l + mlp(norm(l))`, and a final RMSNorm.
//!
//! Tensor names: `model.vision_model.*`, `model.connector.modality_projection.{gate,up,down}_proj`,
//! `model.connector.perceiver_resampler.{latents,layers.{i}.*,norm}`.

use burn::tensor::{
    Bool, DType, Tensor, backend::Backend, module::attention, ops::AttentionModuleOptions,
};

use super::siglip::{Embedded, PatchRule, SiglipVision, padding_key_mask};
use crate::config::{Idefics2Config, PerceiverConfig};
use crate::error::Result;
use crate::nn::{Activation, Linear, ParamMapper, ParamVisitor, RmsNorm, map_tensor, visit_tensor};
use crate::weights::Checkpoint;

const CONNECTOR_PREFIXES: [&str; 2] = ["model.connector.", "connector."];

/// `down_proj(act(gate_proj(x)) * up_proj(x))`, no biases (`Idefics2MLP`).
struct GatedMlp<B: Backend> {
    gate_proj: Linear<B>,
    up_proj: Linear<B>,
    down_proj: Linear<B>,
    activation: Activation,
}

impl<B: Backend> GatedMlp<B> {
    #[allow(clippy::too_many_arguments)]
    fn load(
        ckpt: &Checkpoint,
        prefix: &str,
        input: usize,
        inner: usize,
        output: usize,
        act: &str,
        dtype: DType,
        device: &B::Device,
    ) -> Result<Self> {
        let linear = |name: &str, i: usize, o: usize| {
            Linear::load(ckpt, &format!("{prefix}{name}"), i, o, false, dtype, device)
        };
        Ok(Self {
            gate_proj: linear("gate_proj", input, inner)?,
            up_proj: linear("up_proj", input, inner)?,
            down_proj: linear("down_proj", inner, output)?,
            activation: Activation::parse(act, prefix)?,
        })
    }

    fn linears(&self) -> [&Linear<B>; 3] {
        [&self.gate_proj, &self.up_proj, &self.down_proj]
    }

    fn num_params(&self) -> usize {
        self.linears().iter().map(|l| l.num_params()).sum()
    }

    fn visit(&self, f: &mut ParamVisitor<'_, B>) {
        for l in self.linears() {
            l.visit(f);
        }
    }

    fn map(self, f: &mut ParamMapper<'_, B>) -> Result<Self> {
        Ok(Self {
            gate_proj: self.gate_proj.map(f)?,
            up_proj: self.up_proj.map(f)?,
            down_proj: self.down_proj.map(f)?,
            activation: self.activation,
        })
    }

    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let gate = self.activation.apply(self.gate_proj.forward(x.clone()));
        self.down_proj.forward(gate * self.up_proj.forward(x))
    }
}

struct PerceiverLayer<B: Backend> {
    input_latents_norm: RmsNorm<B>,
    input_context_norm: RmsNorm<B>,
    q_proj: Linear<B>,
    k_proj: Linear<B>,
    v_proj: Linear<B>,
    o_proj: Linear<B>,
    post_attention_layernorm: RmsNorm<B>,
    mlp: GatedMlp<B>,
}

/// SigLIP encoder + gated MLP + perceiver resampler.
pub struct Idefics2Vision<B: Backend> {
    pub config: Idefics2Config,
    siglip: SiglipVision<B>,
    modality_projection: GatedMlp<B>,
    latents_name: String,
    /// `[n_latents, text hidden]`.
    latents: Tensor<B, 2>,
    layers: Vec<PerceiverLayer<B>>,
    norm: RmsNorm<B>,
    pub num_params: usize,
}

impl<B: Backend> Idefics2Vision<B> {
    /// The decoder's config sizes the projection (intermediate size, activation) and the
    /// resampler (width), as in transformers.
    pub fn load(
        ckpt: &Checkpoint,
        ic: &Idefics2Config,
        text: &crate::config::TextConfig,
        dtype: DType,
        device: &B::Device,
    ) -> Result<Self> {
        let siglip = SiglipVision::load(ckpt, &ic.vision, dtype, device)?;
        let probe = "perceiver_resampler.latents";
        let names: Vec<String> = CONNECTOR_PREFIXES
            .iter()
            .map(|p| format!("{p}{probe}"))
            .collect();
        let latents_name = ckpt.first_of(&names)?.to_string();
        let prefix = latents_name.trim_end_matches(probe).to_string();
        let hidden = text.hidden_size;
        let modality_projection = GatedMlp::load(
            ckpt,
            &format!("{prefix}modality_projection."),
            ic.vision.hidden_size,
            text.intermediate_size,
            hidden,
            &text.hidden_act,
            dtype,
            device,
        )?;
        let p: &PerceiverConfig = &ic.perceiver;
        let latents = ckpt.tensor(&latents_name, [p.n_latents, hidden], dtype, device)?;
        let (q_out, kv_out) = (p.num_heads * p.head_dim, p.num_kv_heads * p.head_dim);
        let mut num_params = siglip.num_params
            + modality_projection.num_params()
            + latents.shape().num_elements()
            + hidden;
        let mut layers = Vec::with_capacity(p.depth);
        for i in 0..p.depth {
            let lp = format!("{prefix}perceiver_resampler.layers.{i}.");
            let norm = |name: &str| {
                RmsNorm::load(
                    ckpt,
                    &format!("{lp}{name}.weight"),
                    hidden,
                    p.rms_norm_eps,
                    dtype,
                    device,
                )
            };
            let linear = |name: &str, i: usize, o: usize| {
                Linear::load(
                    ckpt,
                    &format!("{lp}self_attn.{name}"),
                    i,
                    o,
                    false,
                    dtype,
                    device,
                )
            };
            let layer = PerceiverLayer {
                input_latents_norm: norm("input_latents_norm")?,
                input_context_norm: norm("input_context_norm")?,
                q_proj: linear("q_proj", hidden, q_out)?,
                k_proj: linear("k_proj", hidden, kv_out)?,
                v_proj: linear("v_proj", hidden, kv_out)?,
                o_proj: linear("o_proj", q_out, hidden)?,
                post_attention_layernorm: norm("post_attention_layernorm")?,
                mlp: GatedMlp::load(
                    ckpt,
                    &format!("{lp}mlp."),
                    hidden,
                    4 * hidden,
                    hidden,
                    &p.hidden_act,
                    dtype,
                    device,
                )?,
            };
            num_params += 3 * hidden
                + [&layer.q_proj, &layer.k_proj, &layer.v_proj, &layer.o_proj]
                    .iter()
                    .map(|l| l.num_params())
                    .sum::<usize>()
                + layer.mlp.num_params();
            layers.push(layer);
        }
        let norm = RmsNorm::load(
            ckpt,
            &format!("{prefix}perceiver_resampler.norm.weight"),
            hidden,
            p.rms_norm_eps,
            dtype,
            device,
        )?;
        Ok(Self {
            config: ic.clone(),
            siglip,
            modality_projection,
            latents_name,
            latents,
            layers,
            norm,
            num_params,
        })
    }

    /// Every weight in checkpoint order: the SigLIP encoder, the projection, the resampler.
    pub fn visit(&self, f: &mut ParamVisitor<'_, B>) {
        self.siglip.visit(f);
        self.modality_projection.visit(f);
        visit_tensor(f, &self.latents_name, &self.latents);
        for l in &self.layers {
            l.input_latents_norm.visit(f);
            l.input_context_norm.visit(f);
            for linear in [&l.q_proj, &l.k_proj, &l.v_proj, &l.o_proj] {
                linear.visit(f);
            }
            l.post_attention_layernorm.visit(f);
            l.mlp.visit(f);
        }
        self.norm.visit(f);
    }

    /// Replaces every weight (same order as [`Idefics2Vision::visit`]).
    pub fn map(self, f: &mut ParamMapper<'_, B>) -> Result<Self> {
        let siglip = self.siglip.map(f)?;
        let modality_projection = self.modality_projection.map(f)?;
        let latents = map_tensor(f, &self.latents_name, self.latents)?;
        let layers = self
            .layers
            .into_iter()
            .map(|l| {
                Ok(PerceiverLayer {
                    input_latents_norm: l.input_latents_norm.map(f)?,
                    input_context_norm: l.input_context_norm.map(f)?,
                    q_proj: l.q_proj.map(f)?,
                    k_proj: l.k_proj.map(f)?,
                    v_proj: l.v_proj.map(f)?,
                    o_proj: l.o_proj.map(f)?,
                    post_attention_layernorm: l.post_attention_layernorm.map(f)?,
                    mlp: l.mlp.map(f)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            siglip,
            modality_projection,
            latents,
            layers,
            norm: self.norm.map(f)?,
            ..self
        })
    }

    /// SigLIP embeddings; a patch is real only when all its pixels are.
    pub fn embed(
        &self,
        pixel_values: Tensor<B, 4>,
        pixel_attention_mask: Option<&[bool]>,
    ) -> Result<Embedded<B>> {
        self.siglip
            .embed(pixel_values, pixel_attention_mask, PatchRule::AllPixels)
    }

    pub fn layer(
        &self,
        i: usize,
        x: Tensor<B, 3>,
        key_mask: Option<&Tensor<B, 4, Bool>>,
    ) -> Tensor<B, 3> {
        self.siglip.layer(i, x, key_mask)
    }

    /// Post-layernorm, projection and resampler on the last encoder layer's output
    /// `[images, patches, hidden]`: the image features `[images, n_latents, text hidden]`.
    /// `real` (`[images * patches]`) hides padding patches from the latents.
    pub fn connect(&self, hidden: Tensor<B, 3>, real: Option<&[bool]>) -> Tensor<B, 3> {
        let p = &self.config.perceiver;
        let context = self
            .modality_projection
            .forward(self.siglip.post_layernorm(hidden));
        let [n, _, width] = context.dims();
        let mask = real.map(|r| {
            padding_key_mask::<B>(
                r,
                n,
                p.n_latents,
                p.n_latents,
                p.num_heads,
                &context.device(),
            )
        });
        let mut latents =
            self.latents
                .clone()
                .unsqueeze_dim::<3>(0)
                .expand([n, p.n_latents, width]);
        let group = p.num_heads / p.num_kv_heads;
        let heads = |t: Tensor<B, 3>, count: usize| {
            let seq = t.dims()[1];
            t.reshape([n, seq, count, p.head_dim]).swap_dims(1, 2)
        };
        // key/value head h serves query heads h * group .. (h + 1) * group
        let repeat = |t: Tensor<B, 4>| {
            let [_, kv, seq, d] = t.dims();
            t.unsqueeze_dim::<5>(2)
                .expand([n, kv, group, seq, d])
                .reshape([n, kv * group, seq, d])
        };
        for l in &self.layers {
            let normed = l.input_latents_norm.forward(latents.clone());
            let both = Tensor::cat(
                vec![
                    l.input_context_norm.forward(context.clone()),
                    normed.clone(),
                ],
                1,
            );
            let q = heads(l.q_proj.forward(normed), p.num_heads);
            let k = repeat(heads(l.k_proj.forward(both.clone()), p.num_kv_heads));
            let v = repeat(heads(l.v_proj.forward(both), p.num_kv_heads));
            let options = AttentionModuleOptions {
                scale: None,
                softcap: None,
                is_causal: false,
            };
            let attn = attention(q, k, v, mask.clone(), None, options)
                .swap_dims(1, 2)
                .reshape([n, p.n_latents, p.num_heads * p.head_dim]);
            latents = latents + l.o_proj.forward(attn);
            latents = latents.clone() + l.mlp.forward(l.post_attention_layernorm.forward(latents));
        }
        self.norm.forward(latents)
    }
}
