//! CLIP vision tower (pre-layernorm ViT with class token and learned position embeddings) and
//! the LLaVA-1.5 two-layer MLP projector.

use burn::tensor::{
    DType, Tensor, TensorData, backend::Backend, module::attention, ops::AttentionModuleOptions,
};

use crate::config::{FeatureSelect, LlavaConfig, VisionConfig};
use crate::error::{ModelError, Result};
use crate::nn::{
    Activation, LayerNorm, Linear, ParamMapper, ParamVisitor, map_tensor, map_transposed,
    visit_tensor, visit_transposed,
};
use crate::weights::Checkpoint;

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

pub struct VisionTower<B: Backend> {
    pub config: VisionConfig,
    /// Checkpoint prefix (`vision_tower.vision_model.`, ...).
    prefix: String,
    /// Patch convolution as a matmul: `[3 * p * p, hidden]`.
    patch_weight: Tensor<B, 2>,
    class_embedding: Tensor<B, 1>,
    position_embedding: Tensor<B, 2>,
    pre_layernorm: LayerNorm<B>,
    layers: Vec<EncoderLayer<B>>,
    /// CLIP's final norm: LLaVA never uses it (it reads hidden states, not the pooled output),
    /// but it is part of the checkpoint, so it is kept to be saved again.
    post_layernorm: Option<LayerNorm<B>>,
    activation: Activation,
    /// Parameters the forward pass uses (`post_layernorm` excluded).
    pub num_params: usize,
}

pub struct Projector<B: Backend> {
    linear_1: Linear<B>,
    linear_2: Linear<B>,
    activation: Activation,
    pub num_params: usize,
}

impl<B: Backend> VisionTower<B> {
    pub fn load(
        ckpt: &Checkpoint,
        c: &VisionConfig,
        prefix: &str,
        dtype: DType,
        device: &B::Device,
    ) -> Result<Self> {
        let h = c.hidden_size;
        let p = c.patch_size;
        let positions = c.grid() * c.grid() + 1;
        let patch_weight = ckpt.linear_weight(
            &format!("{prefix}embeddings.patch_embedding.weight"),
            &[h, c.num_channels, p, p],
            dtype,
            device,
        )?;
        let class_embedding = ckpt.tensor(
            &format!("{prefix}embeddings.class_embedding"),
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
        let eps = c.layer_norm_eps;
        let pre_layernorm = LayerNorm::load(
            ckpt,
            &format!("{prefix}pre_layrnorm"),
            h,
            eps,
            dtype,
            device,
        )?;
        let mut num_params = h * c.num_channels * p * p + h + positions * h + 2 * h;
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
        let post_name = format!("{prefix}post_layernorm");
        let post_layernorm = if ckpt.contains(&format!("{post_name}.weight")) {
            Some(LayerNorm::load(ckpt, &post_name, h, eps, dtype, device)?)
        } else {
            None
        };
        Ok(Self {
            config: c.clone(),
            prefix: prefix.to_string(),
            patch_weight,
            class_embedding,
            position_embedding,
            pre_layernorm,
            layers,
            post_layernorm,
            activation: Activation::parse(&c.hidden_act, "vision_config.hidden_act")?,
            num_params,
        })
    }

    fn patch_shape(&self) -> [usize; 4] {
        let c = &self.config;
        [c.hidden_size, c.num_channels, c.patch_size, c.patch_size]
    }

    /// Every weight in checkpoint order.
    pub fn visit(&self, f: &mut ParamVisitor<'_, B>) {
        let p = &self.prefix;
        visit_tensor(
            f,
            &format!("{p}embeddings.class_embedding"),
            &self.class_embedding,
        );
        visit_transposed(
            f,
            &format!("{p}embeddings.patch_embedding.weight"),
            &self.patch_weight,
            &self.patch_shape(),
        );
        visit_tensor(
            f,
            &format!("{p}embeddings.position_embedding.weight"),
            &self.position_embedding,
        );
        self.pre_layernorm.visit(f);
        for layer in &self.layers {
            layer.layer_norm1.visit(f);
            for linear in [&layer.q_proj, &layer.k_proj, &layer.v_proj, &layer.out_proj] {
                linear.visit(f);
            }
            layer.layer_norm2.visit(f);
            layer.fc1.visit(f);
            layer.fc2.visit(f);
        }
        if let Some(norm) = &self.post_layernorm {
            norm.visit(f);
        }
    }

    /// Replaces every weight (same order as [`VisionTower::visit`]).
    pub fn map(self, f: &mut ParamMapper<'_, B>) -> Result<Self> {
        let p = self.prefix.clone();
        let patch_shape = self.patch_shape();
        let class_embedding = map_tensor(
            f,
            &format!("{p}embeddings.class_embedding"),
            self.class_embedding,
        )?;
        let patch_weight = map_transposed(
            f,
            &format!("{p}embeddings.patch_embedding.weight"),
            self.patch_weight,
            &patch_shape,
        )?;
        let position_embedding = map_tensor(
            f,
            &format!("{p}embeddings.position_embedding.weight"),
            self.position_embedding,
        )?;
        let pre_layernorm = self.pre_layernorm.map(f)?;
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
        let post_layernorm = match self.post_layernorm {
            Some(norm) => Some(norm.map(f)?),
            None => None,
        };
        Ok(Self {
            class_embedding,
            patch_weight,
            position_embedding,
            pre_layernorm,
            layers,
            post_layernorm,
            ..self
        })
    }

    /// Patch + class + position embeddings after the pre-layernorm: `[images, 1 + patches, hidden]`.
    pub fn embed(&self, pixel_values: Tensor<B, 4>) -> Result<Tensor<B, 3>> {
        let c = &self.config;
        let [n, channels, height, width] = pixel_values.dims();
        if channels != c.num_channels || height != c.image_size || width != c.image_size {
            return Err(ModelError::Input(format!(
                "pixel_values have shape [{n}, {channels}, {height}, {width}], the vision tower expects [N, {}, {}, {}]",
                c.num_channels, c.image_size, c.image_size
            )));
        }
        let (g, p) = (c.grid(), c.patch_size);
        let patches = pixel_values
            .reshape([n, channels, g, p, g, p])
            .permute([0, 2, 4, 1, 3, 5])
            .reshape([n * g * g, channels * p * p]);
        let embedded = patches
            .matmul(self.patch_weight.clone())
            .reshape([n, g * g, c.hidden_size]);
        let class = self
            .class_embedding
            .clone()
            .unsqueeze_dims::<3>(&[0, 1])
            .expand([n, 1, c.hidden_size]);
        let x = Tensor::cat(vec![class, embedded], 1)
            + self.position_embedding.clone().unsqueeze_dim::<3>(0);
        Ok(self.pre_layernorm.forward(x))
    }

    pub fn layer(&self, i: usize, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let c = &self.config;
        let layer = &self.layers[i];
        let [n, seq, h] = x.dims();
        let head_dim = h / c.num_heads;
        let normed = layer.layer_norm1.forward(x.clone());
        let heads = |t: Tensor<B, 3>| t.reshape([n, seq, c.num_heads, head_dim]).swap_dims(1, 2);
        let q = heads(layer.q_proj.forward(normed.clone()));
        let k = heads(layer.k_proj.forward(normed.clone()));
        let v = heads(layer.v_proj.forward(normed));
        let options = AttentionModuleOptions {
            scale: None,
            softcap: None,
            is_causal: false,
        };
        let attn = attention(q, k, v, None, None, options)
            .swap_dims(1, 2)
            .reshape([n, seq, h]);
        let x = x + layer.out_proj.forward(attn);
        let hidden = self
            .activation
            .apply(layer.fc1.forward(layer.layer_norm2.forward(x.clone())));
        x + layer.fc2.forward(hidden)
    }
}

impl<B: Backend> Projector<B> {
    pub fn load(
        ckpt: &Checkpoint,
        c: &LlavaConfig,
        prefix: &str,
        text_hidden: usize,
        dtype: DType,
        device: &B::Device,
    ) -> Result<Self> {
        let vh = c.vision.hidden_size;
        let linear_1 = Linear::load(
            ckpt,
            &format!("{prefix}linear_1"),
            vh,
            text_hidden,
            c.projector_bias,
            dtype,
            device,
        )?;
        let linear_2 = Linear::load(
            ckpt,
            &format!("{prefix}linear_2"),
            text_hidden,
            text_hidden,
            c.projector_bias,
            dtype,
            device,
        )?;
        let num_params = linear_1.num_params() + linear_2.num_params();
        Ok(Self {
            linear_1,
            linear_2,
            activation: Activation::parse(&c.projector_hidden_act, "projector_hidden_act")?,
            num_params,
        })
    }

    pub fn visit(&self, f: &mut ParamVisitor<'_, B>) {
        self.linear_1.visit(f);
        self.linear_2.visit(f);
    }

    pub fn map(self, f: &mut ParamMapper<'_, B>) -> Result<Self> {
        Ok(Self {
            linear_1: self.linear_1.map(f)?,
            linear_2: self.linear_2.map(f)?,
            ..self
        })
    }

    pub fn forward(&self, features: Tensor<B, 3>) -> Tensor<B, 3> {
        self.linear_2
            .forward(self.activation.apply(self.linear_1.forward(features)))
    }
}

/// The vision positions that feed the projector.
pub fn select_features<B: Backend>(hidden: Tensor<B, 3>, select: FeatureSelect) -> Tensor<B, 3> {
    match select {
        FeatureSelect::Default => {
            let seq = hidden.dims()[1];
            hidden.narrow(1, 1, seq - 1)
        }
        FeatureSelect::Full => hidden,
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
