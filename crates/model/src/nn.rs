//! Building blocks shared by the decoder and the vision tower, as plain tensors loaded from the
//! checkpoint (no training state).

use std::any::Any;

use burn::tensor::{Bool, DType, Tensor, TensorPrimitive, activation, backend::Backend};
use burn_flex::FlexTensor;

use crate::backend::CpuBackend;

use crate::error::{ModelError, Result};
use crate::weights::Checkpoint;

/// Callback that sees one weight: checkpoint name, checkpoint shape, values flattened row-major.
pub type ParamVisitor<'a, B> = dyn FnMut(&str, &[usize], Tensor<B, 1>) + 'a;
/// Callback that replaces one weight (same arguments; returns the new flattened values).
pub type ParamMapper<'a, B> = dyn FnMut(&str, &[usize], Tensor<B, 1>) -> Tensor<B, 1> + 'a;

/// Visits a tensor stored as in the checkpoint.
pub fn visit_tensor<B: Backend, const D: usize>(
    f: &mut ParamVisitor<'_, B>,
    name: &str,
    t: &Tensor<B, D>,
) {
    let dims = t.dims();
    f(
        name,
        &dims,
        t.clone().reshape([dims.iter().product::<usize>()]),
    );
}

/// Replaces a tensor stored as in the checkpoint.
pub fn map_tensor<B: Backend, const D: usize>(
    f: &mut ParamMapper<'_, B>,
    name: &str,
    t: Tensor<B, D>,
) -> Result<Tensor<B, D>> {
    let dims = t.dims();
    let n = dims.iter().product::<usize>();
    let out = checked(name, &dims, f(name, &dims, t.reshape([n])))?;
    Ok(out.reshape(dims))
}

/// Visits a weight held transposed (`[in, out]`) whose checkpoint shape is `[out, ...in]`.
pub fn visit_transposed<B: Backend>(
    f: &mut ParamVisitor<'_, B>,
    name: &str,
    t: &Tensor<B, 2>,
    shape: &[usize],
) {
    let n = shape.iter().product::<usize>();
    f(name, shape, t.clone().transpose().reshape([n]));
}

/// Replaces a weight held transposed (`[in, out]`) whose checkpoint shape is `[out, ...in]`.
pub fn map_transposed<B: Backend>(
    f: &mut ParamMapper<'_, B>,
    name: &str,
    t: Tensor<B, 2>,
    shape: &[usize],
) -> Result<Tensor<B, 2>> {
    let [in_features, out_features] = t.dims();
    let n = in_features * out_features;
    let out = checked(name, shape, f(name, shape, t.transpose().reshape([n])))?;
    Ok(out.reshape([out_features, in_features]).transpose())
}

fn checked<B: Backend>(name: &str, shape: &[usize], t: Tensor<B, 1>) -> Result<Tensor<B, 1>> {
    let n = shape.iter().product::<usize>();
    if t.dims() != [n] {
        return Err(ModelError::Input(format!(
            "replacement for weight {name} has {} values, its shape {shape:?} needs {n}",
            t.dims()[0]
        )));
    }
    Ok(t)
}

/// `y = x W^T + b`, with `W` stored transposed (`[in, out]`).
pub struct Linear<B: Backend> {
    /// Checkpoint prefix (`{prefix}.weight`, `{prefix}.bias`).
    prefix: String,
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
        Ok(Self {
            prefix: prefix.to_string(),
            weight,
            bias,
        })
    }

    pub fn visit(&self, f: &mut ParamVisitor<'_, B>) {
        let [in_features, out_features] = self.weight.dims();
        visit_transposed(
            f,
            &format!("{}.weight", self.prefix),
            &self.weight,
            &[out_features, in_features],
        );
        if let Some(bias) = &self.bias {
            visit_tensor(f, &format!("{}.bias", self.prefix), bias);
        }
    }

    pub fn map(self, f: &mut ParamMapper<'_, B>) -> Result<Self> {
        let [in_features, out_features] = self.weight.dims();
        let weight = map_transposed(
            f,
            &format!("{}.weight", self.prefix),
            self.weight,
            &[out_features, in_features],
        )?;
        let bias = match self.bias {
            Some(bias) => Some(map_tensor(f, &format!("{}.bias", self.prefix), bias)?),
            None => None,
        };
        Ok(Self {
            prefix: self.prefix,
            weight,
            bias,
        })
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
    name: String,
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
            name: name.to_string(),
            weight: ckpt.tensor(name, [size], dtype, device)?,
            eps,
        })
    }

    pub fn visit(&self, f: &mut ParamVisitor<'_, B>) {
        visit_tensor(f, &self.name, &self.weight);
    }

    pub fn map(self, f: &mut ParamMapper<'_, B>) -> Result<Self> {
        Ok(Self {
            weight: map_tensor(f, &self.name, self.weight)?,
            ..self
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
    prefix: String,
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
            prefix: prefix.to_string(),
            weight: ckpt.tensor(&format!("{prefix}.weight"), [size], dtype, device)?,
            bias: ckpt.tensor(&format!("{prefix}.bias"), [size], dtype, device)?,
            eps,
        })
    }

    pub fn visit(&self, f: &mut ParamVisitor<'_, B>) {
        visit_tensor(f, &format!("{}.weight", self.prefix), &self.weight);
        visit_tensor(f, &format!("{}.bias", self.prefix), &self.bias);
    }

    pub fn map(self, f: &mut ParamMapper<'_, B>) -> Result<Self> {
        Ok(Self {
            weight: map_tensor(f, &format!("{}.weight", self.prefix), self.weight)?,
            bias: map_tensor(f, &format!("{}.bias", self.prefix), self.bias)?,
            ..self
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
            Self::Silu => sigmoid_gated(x, 1.0),
            Self::Gelu => gelu(x),
            Self::QuickGelu => sigmoid_gated(x, 1.702),
            Self::GeluTanh => activation::gelu_approximate(x),
        }
    }
}

/// Rotary tables laid out like the rows they rotate: `cos` `[.., rows, head_dim]` holds each
/// row's cosines (both halves of a head share the angles) and `sin` holds `[-sin | sin]`, so
/// that `rotate_half(x) * sin` is `swap_halves(x) * signed_sin`.
pub fn rotary_tables(angles: &[f32], rows: usize, cos: &mut Vec<f32>, sin: &mut Vec<f32>) {
    let row_cos: Vec<f32> = angles.iter().chain(angles).map(|a| a.cos()).collect();
    let row_sin: Vec<f32> = angles
        .iter()
        .map(|a| -a.sin())
        .chain(angles.iter().map(|a| a.sin()))
        .collect();
    for _ in 0..rows {
        cos.extend_from_slice(&row_cos);
        sin.extend_from_slice(&row_sin);
    }
}

/// `x * cos + rotate_half(x) * sin` with `rotate_half(x) = cat(-x[.., d/2..], x[.., ..d/2])`, on
/// `x` `[a, b, rows, head_dim]` and the full-size tables of [`rotary_tables`] (same shape).
/// Per half this is `first * cos - second * sin` and `second * cos + first * sin`: the float
/// operations of transformers' `apply_rotary_pos_emb`. The work is whole-tensor elementwise on
/// contiguous data (broadcast tables and per-head views take a slow strided path on the CPU
/// backend).
pub fn apply_rotary<B: Backend>(
    x: Tensor<B, 4>,
    cos: &Tensor<B, 4>,
    sin: &Tensor<B, 4>,
) -> Tensor<B, 4> {
    let dims = x.dims();
    let [rows, head_dim] = [dims[0] * dims[1] * dims[2], dims[3]];
    let half = head_dim / 2;
    // one copy at most: the elementwise work below then runs in place
    let x = x.reshape([rows, head_dim]);
    let swapped = Tensor::cat(
        vec![
            x.clone().narrow(1, half, half),
            x.clone().narrow(1, 0, half),
        ],
        1,
    );
    let table = |t: &Tensor<B, 4>| t.clone().reshape([rows, head_dim]);
    (x * table(cos) + swapped * table(sin)).reshape(dims)
}

/// `softmax(q k^T / sqrt(d)) v` with `mask` (true = masked), heads merged: `[n, seq_q, heads *
/// head_dim]`. On the CPU backend the chunked multi-threaded [`eager_attention`] (burn's fused
/// CPU attention runs on one thread); on other backends burn's fused attention, one kernel on a
/// GPU.
pub fn attention<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    mask: Option<&Tensor<B, 4, Bool>>,
) -> Tensor<B, 3> {
    if std::any::TypeId::of::<B>() == std::any::TypeId::of::<CpuBackend>() {
        return eager_attention(q, k, v, mask, SCORE_BUDGET);
    }
    let [n, heads, seq, head_dim] = q.dims();
    let options = burn::tensor::ops::AttentionModuleOptions {
        scale: None,
        softcap: None,
        is_causal: false,
    };
    burn::tensor::module::attention(q, k, v, mask.cloned(), None, options)
        .swap_dims(1, 2)
        .reshape([n, seq, heads * head_dim])
}

/// Scores [`eager_attention`] computes at once: 4 MiB of f32, which stays in cache (one
/// `[heads, 1024, 1024]` block of scores is far slower to write and read back) and keeps memory
/// bounded for long sequences.
pub const SCORE_BUDGET: usize = 1 << 20;

/// Query rows [`eager_attention`] takes at least per chunk, whatever the budget: every chunk
/// packs the keys for its matmul again, which a handful of rows would not pay back.
const MIN_CHUNK_ROWS: usize = 64;

/// `softmax(q k^T / sqrt(d)) v` over queries `[n, heads, seq_q, head_dim]` and keys and values
/// `[n, heads, seq_k, head_dim]` (any strides: views of a projection need no copy), as
/// transformers' eager attention computes it, in chunks of query rows with at most
/// `score_budget` scores each but at least [`MIN_CHUNK_ROWS`] rows (burn's fused CPU attention
/// runs on one thread; these matmuls and the softmax use all). `mask` (`[n, heads, seq_q, seq_k]`, true = masked) removes keys; every
/// query must keep at least one. Returns the heads merged, `[n, seq_q, heads * head_dim]`.
pub fn eager_attention<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    mask: Option<&Tensor<B, 4, Bool>>,
    score_budget: usize,
) -> Tensor<B, 3> {
    let [n, heads, seq, head_dim] = q.dims();
    let seq_k = k.dims()[2];
    let scale = 1.0 / (head_dim as f64).sqrt();
    let k_t = k.swap_dims(2, 3);
    let rows = (score_budget / (n * heads * seq_k).max(1)).max(MIN_CHUNK_ROWS);
    let chunk = |q: Tensor<B, 4>, mask: Option<Tensor<B, 4, Bool>>| {
        let scores = q.matmul(k_t.clone()) * scale;
        let scores = match mask {
            Some(mask) => scores.mask_fill(mask, f32::NEG_INFINITY),
            None => scores,
        };
        // as transformers: the softmax in f32
        let dtype = scores.dtype();
        softmax_last(scores.cast(DType::F32))
            .cast(dtype)
            .matmul(v.clone())
    };
    let chunks = if rows >= seq {
        vec![chunk(q, mask.cloned())]
    } else {
        (0..seq)
            .step_by(rows)
            .map(|start| {
                let len = rows.min(seq - start);
                chunk(
                    q.clone().narrow(2, start, len),
                    mask.map(|m| m.clone().narrow(2, start, len)),
                )
            })
            .collect()
    };
    merge_heads(chunks)
}

/// Query-row chunks `[n, heads, rows_i, head_dim]` of one attention output to `[n, sum rows_i,
/// heads * head_dim]`. On the CPU backend one copy of `head_dim`-long runs (burn-flex copies
/// this permutation element by element); elsewhere `cat`, `swap_dims` and `reshape`.
fn merge_heads<B: Backend>(chunks: Vec<Tensor<B, 4>>) -> Tensor<B, 3> {
    let [n, heads, _, head_dim] = chunks[0].dims();
    let seq: usize = chunks.iter().map(|c| c.dims()[2]).sum();
    let dtype = chunks[0].dtype();
    let boxed: Box<dyn Any> = Box::new(chunks);
    let chunks = match boxed.downcast::<Vec<Tensor<CpuBackend, 4>>>() {
        Ok(cpu) if dtype == DType::F32 => *cpu,
        other => {
            let boxed: Box<dyn Any> = match other {
                Ok(cpu) => cpu,
                Err(boxed) => boxed,
            };
            let chunks = *boxed
                .downcast::<Vec<Tensor<B, 4>>>()
                .expect("the box holds the chunks");
            return Tensor::cat(chunks, 2)
                .swap_dims(1, 2)
                .reshape([n, seq, heads * head_dim]);
        }
    };
    let width = heads * head_dim;
    let mut merged = vec![0f32; n * seq * width];
    let mut first_row = 0;
    for chunk in chunks {
        let rows = chunk.dims()[2];
        let t = chunk.into_primitive().tensor().to_contiguous();
        let src: &[f32] = t.storage();
        for (i, head, row) in
            (0..n).flat_map(|i| (0..heads).flat_map(move |h| (0..rows).map(move |r| (i, h, r))))
        {
            let from = ((i * heads + head) * rows + row) * head_dim;
            let to = (i * seq + first_row + row) * width + head * head_dim;
            merged[to..to + head_dim].copy_from_slice(&src[from..from + head_dim]);
        }
        first_row += rows;
    }
    let merged = Tensor::<CpuBackend, 3>::from_primitive(TensorPrimitive::Float(
        FlexTensor::from_data(burn::tensor::TensorData::new(merged, [n, seq, width])),
    ));
    let out: Box<dyn Any> = Box::new(merged);
    *out.downcast::<Tensor<B, 3>>()
        .expect("B is the CPU backend here")
}

/// Softmax over the last dimension. On the CPU backend it runs in place on all cores with a
/// vectorisable `exp` ([`softmax_row`]): burn-flex's softmax calls the scalar libm `expf` per
/// score, which made it the largest cost of attention after the matmuls. Other backends use
/// burn's softmax.
fn softmax_last<B: Backend>(scores: Tensor<B, 4>) -> Tensor<B, 4> {
    let row_len = scores.dims()[3];
    match on_cpu_f32(scores, |data| {
        if row_len > 0 {
            for_each_part_parallel(data, row_len, |part| {
                part.chunks_exact_mut(row_len).for_each(softmax_row)
            })
        }
    }) {
        Ok(probs) => probs,
        Err(scores) => activation::softmax(scores, 3),
    }
}

/// Values below which [`for_each_part_parallel`] stays on the calling thread (handing work to
/// the pool costs more).
const PARALLEL_MIN: usize = 1 << 15;

/// `f` on consecutive parts of `data`, one per thread of rayon's pool (the one burn's CPU
/// backend runs on), each a whole number of `align`-long pieces (`data.len()` is a multiple of
/// `align`).
fn for_each_part_parallel(data: &mut [f32], align: usize, f: impl Fn(&mut [f32]) + Sync) {
    use rayon::prelude::*;
    let pieces = data.len() / align.max(1);
    let threads = rayon::current_num_threads().min(pieces);
    if data.len() < PARALLEL_MIN || threads <= 1 {
        f(data);
        return;
    }
    let per_thread = pieces.div_ceil(threads) * align;
    data.par_chunks_mut(per_thread).for_each(&f);
}

/// Runs `f` in place on a uniquely owned contiguous f32 copy of `x` (no copy for a fresh
/// result) when `B` is the CPU backend; gives `x` back otherwise.
fn on_cpu_f32<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    f: impl FnOnce(&mut [f32]),
) -> std::result::Result<Tensor<B, D>, Tensor<B, D>> {
    if x.dtype() != DType::F32 {
        return Err(x);
    }
    let boxed: Box<dyn Any> = Box::new(x);
    let cpu = match boxed.downcast::<Tensor<CpuBackend, D>>() {
        Ok(cpu) => *cpu,
        Err(other) => {
            return Err(*other
                .downcast::<Tensor<B, D>>()
                .expect("the box holds a Tensor<B, D>"));
        }
    };
    let mut t = cpu.into_primitive().tensor().to_contiguous();
    if !t.is_unique() {
        t = FlexTensor::from_data(t.into_data());
    }
    f(t.try_storage_mut::<f32>()
        .expect("a uniquely owned f32 buffer"));
    let out: Box<dyn Any> = Box::new(Tensor::<CpuBackend, D>::from_primitive(
        TensorPrimitive::Float(t),
    ));
    Ok(*out
        .downcast::<Tensor<B, D>>()
        .expect("B is the CPU backend here"))
}

/// Exact GELU, `0.5 x (1 + erf(x / sqrt 2))`: burn-flex's own formula and `erf`, but on all
/// cores in place (burn-flex runs it on one).
fn gelu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    let cpu = on_cpu_f32(x, |data| {
        for_each_part_parallel(data, 1, |part| {
            for v in part {
                *v = 0.5
                    * *v
                    * (1.0 + burn_flex::ops::unary::erf_f32(*v / std::f32::consts::SQRT_2));
            }
        })
    });
    match cpu {
        Ok(y) => y,
        Err(x) => activation::gelu(x),
    }
}

/// `x * sigmoid(a x)` (SiLU for `a = 1`, quick GELU for 1.702). On the CPU backend one pass in
/// place on all cores with the vectorisable [`exp_nonpositive`] (burn-flex's `exp` and `sigmoid`
/// call scalar libm per value on one core); elsewhere `x * (1 / (1 + exp(-a x)))`, the formula
/// of torch's sigmoid.
fn sigmoid_gated<B: Backend, const D: usize>(x: Tensor<B, D>, a: f32) -> Tensor<B, D> {
    let cpu = on_cpu_f32(x, |data| {
        for_each_part_parallel(data, 1, |part| {
            for v in part {
                let z = a * *v;
                // exp of -|z| only: the sigmoid of either sign from a value in (0, 1]
                let e = exp_nonpositive(-z.abs());
                let sigmoid = if z >= 0.0 {
                    1.0 / (1.0 + e)
                } else {
                    e / (1.0 + e)
                };
                *v *= sigmoid;
            }
        })
    });
    match cpu {
        Ok(y) => y,
        Err(x) => x.clone() * x.mul_scalar(-a).exp().add_scalar(1.0).recip(),
    }
}

/// Independent accumulators of the max and sum passes, so that they vectorise.
const LANES: usize = 16;

/// `row = exp(row - max) / sum(exp(row - max))` in place. A row whose scores are all `-inf`
/// (every key masked) gives NaN, as burn's and torch's softmax do.
fn softmax_row(row: &mut [f32]) {
    let mut maxes = [f32::NEG_INFINITY; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (m, &v) in maxes.iter_mut().zip(chunk) {
            *m = if v > *m { v } else { *m };
        }
    }
    let max = chunks
        .remainder()
        .iter()
        .chain(&maxes)
        .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
    let mut sums = [0f32; LANES];
    let mut chunks = row.chunks_exact_mut(LANES);
    for chunk in &mut chunks {
        for (s, v) in sums.iter_mut().zip(chunk) {
            *v = exp_nonpositive(*v - max);
            *s += *v;
        }
    }
    let mut sum: f32 = sums.iter().sum();
    for v in chunks.into_remainder() {
        *v = exp_nonpositive(*v - max);
        sum += *v;
    }
    let inv = 1.0 / sum;
    for v in row.iter_mut() {
        *v *= inv;
    }
}

/// `exp(x)` for `x <= 0` within 1e-7 relative error, written so that it vectorises: Cephes'
/// `expf` (Cody-Waite reduction by ln 2, degree-6 polynomial) with `2^n` built from the bits of
/// the rounding sum. Below -87.33 (where `exp` leaves the normal range, under 1.2e-38) and at
/// `-inf` it gives 0; NaN stays NaN.
#[inline(always)]
fn exp_nonpositive(x: f32) -> f32 {
    // 1.5 * 2^23 + 127: adding it rounds x / ln 2 to an integer n and leaves n + 127, the
    // exponent bits of 2^n, in the low bits
    const ROUND: f32 = 12_583_039.0;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // just above ln(2^-126): exp stays a normal float, and 2^n with n >= -126 too
    const MIN_NORMAL_LN: f32 = -87.33;
    let clamped = if x < MIN_NORMAL_LN { MIN_NORMAL_LN } else { x };
    let t = clamped * std::f32::consts::LOG2_E + ROUND;
    let n = t - ROUND;
    let r = clamped - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let exp_r = p * r * r + r + 1.0;
    let two_to_n = f32::from_bits(t.to_bits() << 23);
    if x < MIN_NORMAL_LN {
        0.0
    } else {
        exp_r * two_to_n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::CpuBackend;
    use burn::tensor::{Distribution, TensorData, module::attention, ops::AttentionModuleOptions};

    #[test]
    fn chunked_attention_matches_burns_fused_attention() {
        let device = Default::default();
        let (n, heads, seq, head_dim) = (2, 3, 150, 16);
        let qkv = Tensor::<CpuBackend, 4>::random(
            [n, seq, 3 * heads, head_dim],
            Distribution::Normal(0.0, 1.0),
            &device,
        );
        // strided views of one projection, as the vision blocks pass them
        let part = |i: usize| qkv.clone().narrow(2, i * heads, heads).swap_dims(1, 2);
        // the second image has 129 real keys, the rest is padding; query q also does not see
        // keys past q + 20 (a mask that differs from row to row)
        let lengths = [seq, 129];
        let mask: Vec<bool> = lengths
            .iter()
            .flat_map(|&len| (0..seq * seq).map(move |i| i % seq >= len || i % seq > i / seq + 20))
            .collect();
        let mask = Tensor::<CpuBackend, 4, Bool>::from_bool(
            TensorData::new(mask, [n, 1, seq, seq]),
            &device,
        )
        .expand([n, heads, seq, seq]);
        let options = AttentionModuleOptions {
            scale: None,
            softcap: None,
            is_causal: false,
        };
        let expected = attention(part(0), part(1), part(2), Some(mask.clone()), None, options)
            .swap_dims(1, 2)
            .reshape([n, seq, heads * head_dim]);
        // one chunk, chunks of 100 + 50 rows, and of the least rows (64 + 64 + 22)
        for budget in [usize::MAX / 2, 100 * n * heads * seq, 1] {
            let got = eager_attention(part(0), part(1), part(2), Some(&mask), budget);
            let diff = (got - expected.clone()).abs().max().into_scalar();
            assert!(diff < 1e-5, "budget {budget}: max difference {diff}");
        }
    }

    /// Relative differences, with values under 1e-20 (where [`exp_nonpositive`] flushes what
    /// would be denormal to 0) compared absolutely.
    #[test]
    fn cpu_activations_match_burns() {
        let device = Default::default();
        let x =
            Tensor::<CpuBackend, 3>::random([3, 211, 97], Distribution::Normal(0.0, 30.0), &device);
        let gelu = Activation::Gelu.apply(x.clone());
        let diff = (gelu - activation::gelu(x.clone()))
            .abs()
            .max()
            .into_scalar();
        assert_eq!(diff, 0.0, "GELU: the same formula and erf as burn's");
        for (activation, a) in [(Activation::Silu, 1.0), (Activation::QuickGelu, 1.702)] {
            let want = x.clone() * activation::sigmoid(x.clone().mul_scalar(a));
            let got = activation.apply(x.clone());
            let diff = ((got - want.clone()).abs() / (want.abs() + 1e-20))
                .max()
                .into_scalar();
            assert!(
                diff < 1e-6,
                "{activation:?}: max relative difference {diff}"
            );
        }
    }

    #[test]
    fn exp_nonpositive_is_accurate() {
        // every 4099th float from -87.33 up to 0
        let mut x = -87.33f32;
        while x < 0.0 {
            let got = exp_nonpositive(x) as f64;
            let want = (x as f64).exp();
            assert!(
                ((got - want) / want).abs() < 2e-7,
                "exp({x}) = {got}, want {want}"
            );
            x = f32::from_bits(x.to_bits() - 4099);
        }
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert_eq!(exp_nonpositive(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_nonpositive(-100.0), 0.0);
        assert!(exp_nonpositive(f32::NAN).is_nan());
    }

    #[test]
    fn cpu_softmax_matches_burns() {
        let device = Default::default();
        // rows of 37 (not a multiple of the lanes), enough of them for several threads, and
        // masked scores
        let scores = Tensor::<CpuBackend, 4>::random(
            [2, 3, 700, 37],
            Distribution::Normal(0.0, 5.0),
            &device,
        );
        let mask = Tensor::<CpuBackend, 4>::random([2, 3, 700, 37], Distribution::Default, &device)
            .lower_elem(0.3);
        let scores = scores.mask_fill(mask, f32::NEG_INFINITY);
        let want = activation::softmax(scores.clone(), 3);
        let got = softmax_last(scores);
        let diff = (got - want).abs().max().into_scalar();
        assert!(diff < 1e-6, "max difference {diff}");
    }
}
