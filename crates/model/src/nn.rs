//! Building blocks shared by the decoder and the vision tower, as plain tensors loaded from the
//! checkpoint (no training state).

use burn::tensor::{DType, Tensor, activation, backend::Backend};

use crate::error::{ModelError, Result};
use crate::weights::Checkpoint;

/// `y = x W^T + b`, with `W` stored transposed (`[in, out]`).
pub struct Linear<B: Backend> {
    weight: Tensor<B, 2>,
    bias: Option<Tensor<B, 1>>,
}

impl<B: Backend> Linear<B> {
    /// Loads `{prefix}.weight` (`[out, in]`) and, when `bias`, `{prefix}.bias`.
    pub fn load(
        ckpt: &Checkpoint,
        prefix: &str,
        in_features: usize,
        out_features: usize,
        bias: bool,
        dtype: DType,
        device: &B::Device,
    ) -> Result<Self> {
        let weight = ckpt.linear_weight(
            &format!("{prefix}.weight"),
            &[out_features, in_features],
            dtype,
            device,
        )?;
        let bias = if bias {
            Some(ckpt.tensor(&format!("{prefix}.bias"), [out_features], dtype, device)?)
        } else {
            None
        };
        Ok(Self { weight, bias })
    }

    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [batch, seq, in_features] = x.dims();
        let out_features = self.weight.dims()[1];
        let y = x
            .reshape([batch * seq, in_features])
            .matmul(self.weight.clone());
        let y = match &self.bias {
            Some(b) => y + b.clone().unsqueeze_dim::<2>(0),
            None => y,
        };
        y.reshape([batch, seq, out_features])
    }

    pub fn num_params(&self) -> usize {
        self.weight.shape().num_elements()
            + self.bias.as_ref().map_or(0, |b| b.shape().num_elements())
    }
}

/// Llama RMSNorm: computed in f32, `weight * (x / sqrt(mean(x^2) + eps))`.
pub struct RmsNorm<B: Backend> {
    weight: Tensor<B, 1>,
    eps: f64,
}

impl<B: Backend> RmsNorm<B> {
    pub fn load(
        ckpt: &Checkpoint,
        name: &str,
        size: usize,
        eps: f64,
        dtype: DType,
        device: &B::Device,
    ) -> Result<Self> {
        Ok(Self {
            weight: ckpt.tensor(name, [size], dtype, device)?,
            eps,
        })
    }

    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let dtype = x.dtype();
        let xf = x.cast(DType::F32);
        let variance = xf.clone().powi_scalar(2).mean_dim(2);
        let normed = xf * variance.add_scalar(self.eps).sqrt().recip();
        normed.cast(dtype) * self.weight.clone().unsqueeze_dims::<3>(&[0, 1])
    }
}

/// LayerNorm with affine weight and bias, computed in f32.
pub struct LayerNorm<B: Backend> {
    weight: Tensor<B, 1>,
    bias: Tensor<B, 1>,
    eps: f64,
}

impl<B: Backend> LayerNorm<B> {
    pub fn load(
        ckpt: &Checkpoint,
        prefix: &str,
        size: usize,
        eps: f64,
        dtype: DType,
        device: &B::Device,
    ) -> Result<Self> {
        Ok(Self {
            weight: ckpt.tensor(&format!("{prefix}.weight"), [size], dtype, device)?,
            bias: ckpt.tensor(&format!("{prefix}.bias"), [size], dtype, device)?,
            eps,
        })
    }

    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let dtype = x.dtype();
        let xf = x.cast(DType::F32);
        let mean = xf.clone().mean_dim(2);
        let centered = xf - mean;
        let variance = centered.clone().powi_scalar(2).mean_dim(2);
        let normed = (centered * variance.add_scalar(self.eps).sqrt().recip()).cast(dtype);
        normed * self.weight.clone().unsqueeze_dims::<3>(&[0, 1])
            + self.bias.clone().unsqueeze_dims::<3>(&[0, 1])
    }
}

/// The activation functions named by HF configs that these models use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Silu,
    /// Exact (erf) GELU.
    Gelu,
    /// `x * sigmoid(1.702 x)` (CLIP).
    QuickGelu,
    /// tanh-approximated GELU.
    GeluTanh,
}

impl Activation {
    pub fn parse(name: &str, what: &str) -> Result<Self> {
        match name {
            "silu" | "swish" => Ok(Self::Silu),
            "gelu" => Ok(Self::Gelu),
            "quick_gelu" => Ok(Self::QuickGelu),
            "gelu_pytorch_tanh" | "gelu_new" => Ok(Self::GeluTanh),
            other => Err(ModelError::Input(format!(
                "{what}: activation {other:?} is not supported (silu, gelu, quick_gelu, gelu_pytorch_tanh)"
            ))),
        }
    }

    pub fn apply<B: Backend, const D: usize>(self, x: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            Self::Silu => activation::silu(x),
            Self::Gelu => activation::gelu(x),
            Self::QuickGelu => x.clone() * activation::sigmoid(x.mul_scalar(1.702)),
            Self::GeluTanh => activation::gelu_approximate(x),
        }
    }
}
