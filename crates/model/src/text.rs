//! One decoder for Llama, Mistral and Qwen2: RMSNorm, rotate_half RoPE, grouped-query attention
//! (key/value heads repeated as transformers' `repeat_kv` does), SiLU-gated MLP, KV cache.
//! Qwen2-VL's multimodal RoPE is the same rotation with three position rows (temporal, height,
//! width), each driving its `mrope_section` share of the frequencies; a text token has the same
//! position on all three rows, which is plain RoPE.

use burn::tensor::{Bool, DType, Int, Tensor, TensorData, backend::Backend};

use crate::config::{QkNorm, RopeScaling, TextConfig};
use crate::error::{ModelError, Result};
use crate::nn::{
    Activation, Linear, ParamMapper, ParamVisitor, RmsNorm, apply_rotary, attention, map_tensor,
    map_transposed, rotary_tables, visit_tensor, visit_transposed,
};
use crate::weights::Checkpoint;

pub struct DecoderLayer<B: Backend> {
    input_norm: RmsNorm<B>,
    q_proj: Linear<B>,
    k_proj: Linear<B>,
    v_proj: Linear<B>,
    o_proj: Linear<B>,
    /// Query/key RMSNorms (`self_attn.{q,k}_norm`), when the config has them.
    qk_norms: Option<(RmsNorm<B>, RmsNorm<B>)>,
    post_attention_norm: RmsNorm<B>,
    gate_proj: Linear<B>,
    up_proj: Linear<B>,
    down_proj: Linear<B>,
}

/// The language model: embeddings, decoder layers, final norm and LM head.
pub struct TextModel<B: Backend> {
    pub config: TextConfig,
    embed_name: String,
    embed: Tensor<B, 2>,
    pub layers: Vec<DecoderLayer<B>>,
    pub norm: RmsNorm<B>,
    /// `[hidden, vocab]`; the transposed embedding when tied.
    lm_head: Tensor<B, 2>,
    /// Checkpoint name of the LM head; `None` when it is tied to the embedding.
    lm_head_name: Option<String>,
    inv_freq: Vec<f32>,
    /// For each rotary frequency, which position row (0 temporal, 1 height, 2 width) drives it.
    freq_row: Vec<usize>,
    activation: Activation,
    num_params: usize,
}

/// Keys and values of every layer for the tokens seen so far: `[batch, kv_heads, seq, head_dim]`.
pub struct KvCache<B: Backend> {
    layers: Vec<Option<(Tensor<B, 4>, Tensor<B, 4>)>>,
}

impl<B: Backend> KvCache<B> {
    pub fn new(num_layers: usize) -> Self {
        Self {
            layers: (0..num_layers).map(|_| None).collect(),
        }
    }
}

/// Rotary cos and signed sin for one chunk, one row per query and key head as
/// [`crate::nn::rotary_tables`] lays them out (`[batch, seq, heads + kv_heads, head_dim]`), and
/// the attention mask (`[batch, heads, seq, past + seq]`, true = masked).
pub struct ChunkTensors<B: Backend> {
    pub cos: Tensor<B, 4>,
    pub sin: Tensor<B, 4>,
    pub mask: Tensor<B, 4, Bool>,
}

impl<B: Backend> TextModel<B> {
    pub fn load(
        ckpt: &Checkpoint,
        config: &TextConfig,
        lm_prefix: &str,
        lm_head_names: &[String],
        dtype: DType,
        device: &B::Device,
    ) -> Result<Self> {
        let c = config;
        let activation = Activation::parse(&c.hidden_act, "text_config.hidden_act")?;
        let embed_name = format!("{lm_prefix}embed_tokens.weight");
        let embed = ckpt.tensor(
            &embed_name,
            [c.embedding_rows(), c.hidden_size],
            dtype,
            device,
        )?;
        let q_out = c.num_heads * c.head_dim;
        let kv_out = c.num_kv_heads * c.head_dim;
        let mut layers = Vec::with_capacity(c.num_layers);
        let mut num_params = c.embedding_rows() * c.hidden_size + c.hidden_size;
        let qk_norm_sizes = match c.qk_norm {
            None => None,
            Some(QkNorm::PerHead) => Some((c.head_dim, c.head_dim)),
            Some(QkNorm::Full) => Some((q_out, kv_out)),
        };
        for i in 0..c.num_layers {
            let p = format!("{lm_prefix}layers.{i}");
            let linear = |name: &str, inp: usize, out: usize, bias: bool| {
                Linear::load(ckpt, &format!("{p}.{name}"), inp, out, bias, dtype, device)
            };
            let sized_norm = |name: &str, size: usize| {
                RmsNorm::load(
                    ckpt,
                    &format!("{p}.{name}.weight"),
                    size,
                    c.rms_norm_eps,
                    dtype,
                    device,
                )
            };
            let norm = |name: &str| sized_norm(name, c.hidden_size);
            let qk_norms = match qk_norm_sizes {
                None => None,
                Some((q, k)) => {
                    num_params += q + k;
                    Some((
                        sized_norm("self_attn.q_norm", q)?,
                        sized_norm("self_attn.k_norm", k)?,
                    ))
                }
            };
            let layer = DecoderLayer {
                input_norm: norm("input_layernorm")?,
                q_proj: linear("self_attn.q_proj", c.hidden_size, q_out, c.qkv_bias)?,
                k_proj: linear("self_attn.k_proj", c.hidden_size, kv_out, c.qkv_bias)?,
                v_proj: linear("self_attn.v_proj", c.hidden_size, kv_out, c.qkv_bias)?,
                o_proj: linear("self_attn.o_proj", q_out, c.hidden_size, c.o_bias)?,
                qk_norms,
                post_attention_norm: norm("post_attention_layernorm")?,
                gate_proj: linear(
                    "mlp.gate_proj",
                    c.hidden_size,
                    c.intermediate_size,
                    c.mlp_bias,
                )?,
                up_proj: linear(
                    "mlp.up_proj",
                    c.hidden_size,
                    c.intermediate_size,
                    c.mlp_bias,
                )?,
                down_proj: linear(
                    "mlp.down_proj",
                    c.intermediate_size,
                    c.hidden_size,
                    c.mlp_bias,
                )?,
            };
            num_params += 2 * c.hidden_size
                + [
                    &layer.q_proj,
                    &layer.k_proj,
                    &layer.v_proj,
                    &layer.o_proj,
                    &layer.gate_proj,
                    &layer.up_proj,
                    &layer.down_proj,
                ]
                .iter()
                .map(|l| l.num_params())
                .sum::<usize>();
            layers.push(layer);
        }
        let norm = RmsNorm::load(
            ckpt,
            &format!("{lm_prefix}norm.weight"),
            c.hidden_size,
            c.rms_norm_eps,
            dtype,
            device,
        )?;
        let head_name = if c.tie_word_embeddings {
            // a tied checkpoint on disk may still carry a copy of the head; transformers ties it
            lm_head_names
                .iter()
                .find(|n| ckpt.contains(n) && !ckpt.is_generated())
        } else {
            lm_head_names.iter().find(|n| ckpt.contains(n))
        };
        let lm_head = match head_name {
            Some(name) => {
                num_params += c.vocab_size * c.hidden_size;
                ckpt.linear_weight(name, &[c.vocab_size, c.hidden_size], dtype, device)?
            }
            None if c.tie_word_embeddings => tied_head(&embed, c.vocab_size),
            None => {
                return Err(ModelError::MissingTensor {
                    dir: ckpt.dir().to_path_buf(),
                    name: lm_head_names[0].clone(),
                    tried: lm_head_names.to_vec(),
                });
            }
        };
        Ok(Self {
            config: c.clone(),
            embed_name,
            embed,
            layers,
            norm,
            lm_head,
            lm_head_name: head_name.cloned(),
            inv_freq: inv_freq(c),
            freq_row: freq_rows(c),
            activation,
            num_params,
        })
    }

    pub fn num_params(&self) -> usize {
        self.num_params
    }

    /// Every weight in checkpoint order: embedding, layers, final norm, LM head (unless tied).
    pub fn visit(&self, f: &mut ParamVisitor<'_, B>) {
        visit_tensor(f, &self.embed_name, &self.embed);
        for layer in &self.layers {
            layer.input_norm.visit(f);
            for linear in [&layer.q_proj, &layer.k_proj, &layer.v_proj, &layer.o_proj] {
                linear.visit(f);
            }
            if let Some((q_norm, k_norm)) = &layer.qk_norms {
                q_norm.visit(f);
                k_norm.visit(f);
            }
            layer.post_attention_norm.visit(f);
            for linear in [&layer.gate_proj, &layer.up_proj, &layer.down_proj] {
                linear.visit(f);
            }
        }
        self.norm.visit(f);
        if let Some(name) = &self.lm_head_name {
            let [hidden, vocab] = self.lm_head.dims();
            visit_transposed(f, name, &self.lm_head, &[vocab, hidden]);
        }
    }

    /// Replaces every weight (same order as [`TextModel::visit`]); a tied head follows the embedding.
    pub fn map(self, f: &mut ParamMapper<'_, B>) -> Result<Self> {
        let embed = map_tensor(f, &self.embed_name, self.embed)?;
        let layers = self
            .layers
            .into_iter()
            .map(|l| {
                Ok(DecoderLayer {
                    input_norm: l.input_norm.map(f)?,
                    q_proj: l.q_proj.map(f)?,
                    k_proj: l.k_proj.map(f)?,
                    v_proj: l.v_proj.map(f)?,
                    o_proj: l.o_proj.map(f)?,
                    qk_norms: match l.qk_norms {
                        Some((q, k)) => Some((q.map(f)?, k.map(f)?)),
                        None => None,
                    },
                    post_attention_norm: l.post_attention_norm.map(f)?,
                    gate_proj: l.gate_proj.map(f)?,
                    up_proj: l.up_proj.map(f)?,
                    down_proj: l.down_proj.map(f)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let norm = self.norm.map(f)?;
        let lm_head = match &self.lm_head_name {
            Some(name) => {
                let [hidden, vocab] = self.lm_head.dims();
                map_transposed(f, name, self.lm_head, &[vocab, hidden])?
            }
            None => tied_head(&embed, self.config.vocab_size),
        };
        Ok(Self {
            embed,
            layers,
            norm,
            lm_head,
            ..self
        })
    }

    /// Token embeddings `[batch, seq, hidden]` for `ids` (`[batch][seq]`).
    pub fn embed(&self, ids: &[Vec<u32>], device: &B::Device) -> Tensor<B, 3> {
        let batch = ids.len();
        let seq = ids.first().map_or(0, Vec::len);
        let flat: Vec<i64> = ids.iter().flatten().map(|&t| t as i64).collect();
        let index = Tensor::<B, 1, Int>::from_data(TensorData::new(flat, [batch * seq]), device);
        self.embed
            .clone()
            .select(0, index)
            .reshape([batch, seq, self.config.hidden_size])
    }

    /// Rotary tables and the attention mask for a chunk. `positions[b][s]` are rotary positions
    /// of the chunk's tokens; `key_valid[b][k]` says whether key `k` (cache + chunk) is a real token.
    pub fn chunk_tensors(
        &self,
        positions: &[Vec<usize>],
        key_valid: &[Vec<bool>],
        past: usize,
        dtype: DType,
        device: &B::Device,
    ) -> ChunkTensors<B> {
        let positions: Vec<Vec<[usize; 3]>> = positions
            .iter()
            .map(|row| row.iter().map(|&p| [p; 3]).collect())
            .collect();
        self.chunk_tensors_mrope(&positions, key_valid, past, dtype, device)
    }

    /// [`TextModel::chunk_tensors`] with a (temporal, height, width) position per token, as
    /// Qwen2-VL's `get_rope_index` gives them; without `mrope_section` only the first row counts.
    pub fn chunk_tensors_mrope(
        &self,
        positions: &[Vec<[usize; 3]>],
        key_valid: &[Vec<bool>],
        past: usize,
        dtype: DType,
        device: &B::Device,
    ) -> ChunkTensors<B> {
        let batch = positions.len();
        let seq = positions.first().map_or(0, Vec::len);
        let head_dim = self.config.head_dim;
        let rows = self.config.num_heads + self.config.num_kv_heads;
        let mut cos = Vec::with_capacity(batch * seq * rows * head_dim);
        let mut sin = Vec::with_capacity(batch * seq * rows * head_dim);
        for row in positions {
            for pos in row {
                let angles = rope_angles(&self.inv_freq, &self.freq_row, pos);
                rotary_tables(&angles, rows, &mut cos, &mut sin);
            }
        }
        debug_assert_eq!(cos.len(), batch * seq * rows * head_dim);
        let total = past + seq;
        let window = self.config.sliding_window;
        let mut mask = Vec::with_capacity(batch * seq * total);
        for valid in key_valid {
            for q in 0..seq {
                let query = past + q;
                for (key, &ok) in valid.iter().enumerate().take(total) {
                    let future = key > query;
                    let outside_window = window.is_some_and(|w| query - key.min(query) >= w);
                    // a padding query attends to itself so that no softmax row is empty
                    let masked = future || outside_window || (!ok && key != query);
                    mask.push(masked);
                }
            }
        }
        let heads = self.config.num_heads;
        let to4 = |v: Vec<f32>| {
            Tensor::<B, 4>::from_data(
                TensorData::new(v, [batch, seq, rows, head_dim]),
                (device, dtype),
            )
        };
        let mask =
            Tensor::<B, 4, Bool>::from_bool(TensorData::new(mask, [batch, 1, seq, total]), device)
                .expand([batch, heads, seq, total]);
        ChunkTensors {
            cos: to4(cos),
            sin: to4(sin),
            mask,
        }
    }

    /// Self-attention of layer `i` on the normed input; updates the cache.
    pub fn attention(
        &self,
        i: usize,
        x: Tensor<B, 3>,
        chunk: &ChunkTensors<B>,
        cache: &mut KvCache<B>,
    ) -> Tensor<B, 3> {
        let c = &self.config;
        let layer = &self.layers[i];
        let [batch, seq, _] = x.dims();
        let heads =
            |t: Tensor<B, 3>, n: usize| t.reshape([batch, seq, n, c.head_dim]).swap_dims(1, 2);
        let (q, k) = (
            layer.q_proj.forward(x.clone()),
            layer.k_proj.forward(x.clone()),
        );
        let (q, k) = match (&layer.qk_norms, c.qk_norm) {
            (Some((q_norm, k_norm)), Some(QkNorm::Full)) => (q_norm.forward(q), k_norm.forward(k)),
            (Some((q_norm, k_norm)), _) => {
                // per head: the norm runs over head_dim of `[batch * seq, heads, head_dim]`
                let per_head = |t: Tensor<B, 3>, norm: &RmsNorm<B>, n: usize| {
                    norm.forward(t.reshape([batch * seq, n, c.head_dim]))
                        .reshape([batch, seq, n * c.head_dim])
                };
                (
                    per_head(q, q_norm, c.num_heads),
                    per_head(k, k_norm, c.num_kv_heads),
                )
            }
            (None, _) => (q, k),
        };
        // queries and keys side by side, `[batch, seq, heads + kv_heads, head_dim]`, rotated in
        // one pass; the heads are then views of it
        let rows = c.num_heads + c.num_kv_heads;
        let qk = apply_rotary(
            Tensor::cat(vec![q, k], 2).reshape([batch, seq, rows, c.head_dim]),
            &chunk.cos,
            &chunk.sin,
        );
        let q = qk.clone().narrow(2, 0, c.num_heads).swap_dims(1, 2);
        let k = qk.narrow(2, c.num_heads, c.num_kv_heads).swap_dims(1, 2);
        let v = heads(layer.v_proj.forward(x), c.num_kv_heads);
        let (k, v) = match cache.layers[i].take() {
            Some((pk, pv)) => (Tensor::cat(vec![pk, k], 2), Tensor::cat(vec![pv, v], 2)),
            // a copy of the keys alone: the view would keep the queries alive in the cache
            None => (
                k.reshape([batch, c.num_kv_heads * seq, c.head_dim])
                    .reshape([batch, c.num_kv_heads, seq, c.head_dim]),
                v,
            ),
        };
        cache.layers[i] = Some((k.clone(), v.clone()));
        let k = repeat_kv(k, c.num_heads / c.num_kv_heads);
        let v = repeat_kv(v, c.num_heads / c.num_kv_heads);
        let out = attention(q, k, v, Some(&chunk.mask));
        layer.o_proj.forward(out)
    }

    pub fn input_norm(&self, i: usize, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.layers[i].input_norm.forward(x)
    }

    pub fn post_attention_norm(&self, i: usize, x: Tensor<B, 3>) -> Tensor<B, 3> {
        self.layers[i].post_attention_norm.forward(x)
    }

    pub fn mlp(&self, i: usize, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let layer = &self.layers[i];
        let gate = self.activation.apply(layer.gate_proj.forward(x.clone()));
        layer.down_proj.forward(gate * layer.up_proj.forward(x))
    }

    /// Logits `[rows, vocab]` of normed hidden states `[rows, hidden]`.
    pub fn logits(&self, normed: Tensor<B, 2>) -> Tensor<B, 2> {
        normed.matmul(self.lm_head.clone())
    }
}

/// The LM head of a tied model: the embedding's first `vocab` rows (the rows after them are
/// input-only tokens), transposed to `[hidden, vocab]`.
fn tied_head<B: Backend>(embed: &Tensor<B, 2>, vocab: usize) -> Tensor<B, 2> {
    embed.clone().narrow(0, 0, vocab).transpose()
}

/// `[b, kv, s, d] -> [b, kv * n_rep, s, d]`, query head `h` reading key/value head `h / n_rep`.
fn repeat_kv<B: Backend>(x: Tensor<B, 4>, n_rep: usize) -> Tensor<B, 4> {
    if n_rep == 1 {
        return x;
    }
    let [b, kv, s, d] = x.dims();
    // repeat_dim copies whole [s, d] blocks; a reshape of an expanded view copies element by
    // element on the CPU backend
    x.unsqueeze_dim::<5>(2)
        .repeat_dim(2, n_rep)
        .reshape([b, kv * n_rep, s, d])
}

/// Rotary angles of one token (`head_dim / 2` values; both halves of a head share them): as
/// transformers, the f32 product of the frequency's position row and its inverse frequency.
fn rope_angles(inv_freq: &[f32], freq_row: &[usize], position: &[usize; 3]) -> Vec<f32> {
    inv_freq
        .iter()
        .zip(freq_row)
        .map(|(f, &row)| position[row] as f32 * f)
        .collect()
}

/// The position row of each rotary frequency: `mrope_section = [t, h, w]` gives the first `t`
/// frequencies to the temporal row, the next `h` to the height row and the last `w` to the width
/// row (transformers' `recomposition_frequencies`).
fn freq_rows(c: &TextConfig) -> Vec<usize> {
    let half = c.head_dim / 2;
    match &c.mrope_section {
        None => vec![0; half],
        Some(sections) => sections
            .iter()
            .enumerate()
            .flat_map(|(row, &n)| std::iter::repeat_n(row, n))
            .chain(std::iter::repeat(2))
            .take(half)
            .collect(),
    }
}

/// Inverse rotary frequencies as transformers computes them (f32), with the configured scaling.
fn inv_freq(c: &TextConfig) -> Vec<f32> {
    let dim = c.head_dim;
    let base: Vec<f32> = (0..dim)
        .step_by(2)
        .map(|i| 1.0 / c.rope_theta.powf(i as f32 / dim as f32))
        .collect();
    match c.rope_scaling {
        RopeScaling::Default => base,
        RopeScaling::Linear { factor } => base.iter().map(|f| f / factor).collect(),
        RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings: old_len,
        } => {
            let low_freq_wavelen = old_len / low_freq_factor;
            let high_freq_wavelen = old_len / high_freq_factor;
            base.iter()
                .map(|&f| {
                    let wavelen = 2.0 * std::f32::consts::PI / f;
                    let scaled = if wavelen > low_freq_wavelen {
                        f / factor
                    } else {
                        f
                    };
                    let medium = wavelen >= high_freq_wavelen && wavelen <= low_freq_wavelen;
                    if medium {
                        let smooth = (old_len / wavelen - low_freq_factor)
                            / (high_freq_factor - low_freq_factor);
                        (1.0 - smooth) * scaled / factor + smooth * scaled
                    } else {
                        scaled
                    }
                })
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ModelConfig;

    /// The decoder's cos/sin tables for Qwen2-VL's 3D positions equal transformers'
    /// `Qwen2VLRotaryEmbedding` output on the fixture prompt (image tokens included).
    #[test]
    fn mrope_tables_match_transformers() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/hf/qwen2_vl");
        let config = ModelConfig::from_dir(&dir).unwrap().text;
        let bytes = std::fs::read(dir.join("golden.safetensors")).unwrap();
        let golden = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let ints = |name: &str| -> (Vec<usize>, Vec<i64>) {
            let t = golden.tensor(name).unwrap();
            let v = t
                .data()
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                .collect();
            (t.shape().to_vec(), v)
        };
        let floats = |name: &str| -> Vec<f32> {
            golden
                .tensor(name)
                .unwrap()
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect()
        };
        let (shape, ids) = ints("rope.position_ids");
        let seq = shape[2];
        let (want_cos, want_sin) = (floats("rope.cos"), floats("rope.sin"));
        let inv = inv_freq(&config);
        let rows = freq_rows(&config);
        let head_dim = config.head_dim;
        let mut distinct_rows = false;
        for s in 0..seq {
            let pos = [0, 1, 2].map(|r| ids[r * seq + s] as usize);
            distinct_rows |= pos[0] != pos[1] || pos[1] != pos[2];
            let angles = rope_angles(&inv, &rows, &pos);
            for (d, a) in angles.iter().chain(&angles).enumerate() {
                let (c, sn) = (want_cos[s * head_dim + d], want_sin[s * head_dim + d]);
                assert!((a.cos() - c).abs() < 1e-6, "cos at token {s}, dim {d}");
                assert!((a.sin() - sn).abs() < 1e-6, "sin at token {s}, dim {d}");
            }
        }
        assert!(
            distinct_rows,
            "the prompt has image tokens with 3D positions"
        );
    }
}
