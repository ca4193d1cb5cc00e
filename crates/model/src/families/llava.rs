//! LLaVA-1.5's vision side: the CLIP vision tower (pre-layernorm ViT with a class token and
//! learned position embeddings) and the two-layer MLP projector.

use burn::tensor::{Bool, DType, Tensor, backend::Backend};

use crate::config::{FeatureSelect, LlavaConfig, VisionConfig};
use crate::error::{ModelError, Result};
use crate::nn::{
    Activation, LayerNorm, Linear, ParamMapper, ParamVisitor, map_tensor, map_transposed,
    visit_tensor, visit_transposed,
};
use crate::vit::{VitEmbeddings, VitEncoder, patchify};
use crate::weights::Checkpoint;

/// Where the CLIP tower sits in the key layouts the loader reads (llava-hf on the Hub, a model
/// saved by transformers 5, newer `model.*` uploads).
const TOWER_PREFIXES: [&str; 4] = [
    "vision_tower.vision_model.",
    "vision_tower.",
    "model.vision_tower.vision_model.",
    "model.vision_tower.",
];
const PROJECTOR_PREFIXES: [&str; 2] = ["multi_modal_projector.", "model.multi_modal_projector."];

/// CLIP tower + projector.
pub struct LlavaVision<B: Backend> {
    pub config: LlavaConfig,
    /// Checkpoint prefix (`vision_tower.vision_model.`, ...).
    prefix: String,
    /// Patch convolution as a matmul: `[3 * p * p, hidden]`.
    patch_weight: Tensor<B, 2>,
    class_embedding: Tensor<B, 1>,
    position_embedding: Tensor<B, 2>,
    pre_layernorm: LayerNorm<B>,
    encoder: VitEncoder<B>,
    /// CLIP's final norm: LLaVA never uses it (it reads hidden states, not the pooled output),
    /// but it is part of the checkpoint, so it is kept to be saved again.
    post_layernorm: Option<LayerNorm<B>>,
    projector: Projector<B>,
    /// Parameters the forward pass uses (`post_layernorm` excluded).
    pub num_params: usize,
}

struct Projector<B: Backend> {
    linear_1: Linear<B>,
    linear_2: Linear<B>,
    activation: Activation,
}

impl<B: Backend> LlavaVision<B> {
    pub fn load(
        ckpt: &Checkpoint,
        lc: &LlavaConfig,
        text_hidden: usize,
        dtype: DType,
        device: &B::Device,
    ) -> Result<Self> {
        let c = &lc.vision;
        let h = c.hidden_size;
        let p = c.patch_size;
        let positions = c.grid() * c.grid() + 1;
        let VitEmbeddings {
            prefix,
            patch_weight,
            position_embedding,
        } = VitEmbeddings::load(ckpt, &TOWER_PREFIXES, c, positions, dtype, device)?;
        let class_embedding = ckpt.tensor(
            &format!("{prefix}embeddings.class_embedding"),
            [h],
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
        let encoder = VitEncoder::load(ckpt, c, &prefix, dtype, device)?;
        let post_name = format!("{prefix}post_layernorm");
        let post_layernorm = if ckpt.contains(&format!("{post_name}.weight")) {
            Some(LayerNorm::load(ckpt, &post_name, h, eps, dtype, device)?)
        } else {
            None
        };
        let projector_names: Vec<String> = PROJECTOR_PREFIXES
            .iter()
            .map(|p| format!("{p}linear_1.weight"))
            .collect();
        let projector_prefix = ckpt
            .first_of(&projector_names)?
            .trim_end_matches("linear_1.weight")
            .to_string();
        let projector = Projector::load(ckpt, lc, &projector_prefix, text_hidden, dtype, device)?;
        let num_params = h * c.num_channels * p * p
            + h
            + positions * h
            + 2 * h
            + encoder.num_params
            + projector.linear_1.num_params()
            + projector.linear_2.num_params();
        Ok(Self {
            config: lc.clone(),
            prefix,
            patch_weight,
            class_embedding,
            position_embedding,
            pre_layernorm,
            encoder,
            post_layernorm,
            projector,
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

    /// Every weight in checkpoint order: tower, then projector.
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
        self.encoder.visit(f);
        if let Some(norm) = &self.post_layernorm {
            norm.visit(f);
        }
        self.projector.linear_1.visit(f);
        self.projector.linear_2.visit(f);
    }

    /// Replaces every weight (same order as [`LlavaVision::visit`]).
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
        let encoder = self.encoder.map(f)?;
        let post_layernorm = match self.post_layernorm {
            Some(norm) => Some(norm.map(f)?),
            None => None,
        };
        let projector = Projector {
            linear_1: self.projector.linear_1.map(f)?,
            linear_2: self.projector.linear_2.map(f)?,
            activation: self.projector.activation,
        };
        Ok(Self {
            class_embedding,
            patch_weight,
            position_embedding,
            pre_layernorm,
            encoder,
            post_layernorm,
            projector,
            ..self
        })
    }

    /// Patch + class + position embeddings after the pre-layernorm: `[images, 1 + patches, hidden]`.
    pub fn embed(&self, pixel_values: Tensor<B, 4>) -> Result<Tensor<B, 3>> {
        let c = self.vision();
        let [n, channels, height, width] = pixel_values.dims();
        if channels != c.num_channels || height != c.image_size || width != c.image_size {
            return Err(ModelError::Input(format!(
                "pixel_values have shape [{n}, {channels}, {height}, {width}], the vision tower expects [N, {}, {}, {}]",
                c.num_channels, c.image_size, c.image_size
            )));
        }
        let g = c.grid();
        let embedded = patchify(pixel_values, c.patch_size)
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

    pub fn layer(
        &self,
        i: usize,
        x: Tensor<B, 3>,
        key_mask: Option<&Tensor<B, 4, Bool>>,
    ) -> Tensor<B, 3> {
        self.encoder.layer(i, x, key_mask)
    }

    /// Projector on the selected hidden state: the image features `[images, tokens, text hidden]`.
    pub fn connect(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        let selected = match self.config.feature_select {
            FeatureSelect::Default => {
                let seq = hidden.dims()[1];
                hidden.narrow(1, 1, seq - 1)
            }
            FeatureSelect::Full => hidden,
        };
        let p = &self.projector;
        p.linear_2
            .forward(p.activation.apply(p.linear_1.forward(selected)))
    }
}

impl<B: Backend> Projector<B> {
    fn load(
        ckpt: &Checkpoint,
        c: &LlavaConfig,
        prefix: &str,
        text_hidden: usize,
        dtype: DType,
        device: &B::Device,
    ) -> Result<Self> {
        let vh = c.vision.hidden_size;
        Ok(Self {
            linear_1: Linear::load(
                ckpt,
                &format!("{prefix}linear_1"),
                vh,
                text_hidden,
                c.projector_bias,
                dtype,
                device,
            )?,
            linear_2: Linear::load(
                ckpt,
                &format!("{prefix}linear_2"),
                text_hidden,
                text_hidden,
                c.projector_bias,
                dtype,
                device,
            )?,
            activation: Activation::parse(&c.projector_hidden_act, "projector_hidden_act")?,
        })
    }
}
