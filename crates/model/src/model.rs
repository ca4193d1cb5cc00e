//! The runtime model: loading, forward with captures/interventions, greedy generation.

use std::path::{Path, PathBuf};

use burn::tensor::{Bool, DType, Int, Tensor, TensorData, backend::Backend};

use crate::config::VisionFamily;
use crate::config::{ModelConfig, WeightDType};
use crate::error::{ModelError, Result};
use crate::families::molmo::{PatchPooling, present_standard_names};
use crate::families::qwen2_vl::{ImagePatches, rope_index};
use crate::families::{VisionInput, VisionSide, pixel_tensor};
use crate::hooks::{
    CaptureSpec, HookPoint, Intervention, InterventionMode, PositionMeta, Positions, TokenRole,
    hook_points, parse_hook,
};
use crate::source;
use crate::text::{KvCache, TextModel};
use crate::weights::{Checkpoint, LM_HEAD_NAMES};

/// Preprocessed images, `[images, channels, height, width]` row-major: what an HF image
/// processor returns as `pixel_values`, with the batch and per-sample image axes flattened. For
/// Idefics3/SmolVLM each tile (and the global image) of a split image is one entry, in the
/// processor's order; images that only pad a sample's image count are left out.
#[derive(Debug, Clone, PartialEq)]
pub struct PixelValues {
    pub data: Vec<f32>,
    pub shape: [usize; 4],
}

/// A batch of token sequences of equal padded length. Padding may sit on either side (left
/// padding is what generation usually uses); `attention_mask` marks the real tokens. Image
/// tokens are filled with the images of `pixel_values` in order, row after row.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub input_ids: Vec<Vec<u32>>,
    pub attention_mask: Vec<Vec<bool>>,
    pub pixel_values: Option<PixelValues>,
    /// Qwen2-VL images (flattened patches and their grids) for the `<|image_pad|>` tokens.
    pub image_patches: Option<ImagePatches>,
    /// Idefics images padded to a common size: `[entries, height, width]` row-major over the
    /// entries of `pixel_values`, true = real pixel. `None` means no padding.
    pub pixel_attention_mask: Option<Vec<bool>>,
    /// Molmo: which patches of the `pixel_values` crops each image token pools (the
    /// processor's `image_token_pooling`).
    pub patch_pooling: Option<PatchPooling>,
}

impl Batch {
    /// A batch of already padded ids and their mask (true = real token), without images.
    pub fn new(input_ids: Vec<Vec<u32>>, attention_mask: Vec<Vec<bool>>) -> Self {
        Self {
            input_ids,
            attention_mask,
            pixel_values: None,
            image_patches: None,
            pixel_attention_mask: None,
            patch_pooling: None,
        }
    }

    /// Left-pads `rows` to a common length with `pad_id`.
    pub fn left_padded(rows: Vec<Vec<u32>>, pad_id: u32) -> Self {
        let len = rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut input_ids = Vec::with_capacity(rows.len());
        let mut attention_mask = Vec::with_capacity(rows.len());
        for row in rows {
            let pad = len - row.len();
            let mut ids = vec![pad_id; pad];
            ids.extend(row);
            let mut mask = vec![false; pad];
            mask.resize(len, true);
            input_ids.push(ids);
            attention_mask.push(mask);
        }
        Self::new(input_ids, attention_mask)
    }

    /// A batch from already padded ids and a 0/1 mask (as an HF processor returns them).
    pub fn from_padded(input_ids: Vec<Vec<u32>>, attention_mask: Vec<Vec<i64>>) -> Self {
        let attention_mask = attention_mask
            .into_iter()
            .map(|row| row.into_iter().map(|m| m != 0).collect())
            .collect();
        Self::new(input_ids, attention_mask)
    }

    pub fn with_pixel_values(mut self, pixel_values: PixelValues) -> Self {
        self.pixel_values = Some(pixel_values);
        self
    }

    /// The pixel mask (`[entries, height, width]`, true = real pixel) of padded images.
    pub fn with_pixel_attention_mask(mut self, mask: Vec<bool>) -> Self {
        self.pixel_attention_mask = Some(mask);
        self
    }

    pub fn with_image_patches(mut self, patches: ImagePatches) -> Self {
        self.image_patches = Some(patches);
        self
    }

    /// Molmo: the patches each image token pools.
    pub fn with_patch_pooling(mut self, pooling: PatchPooling) -> Self {
        self.patch_pooling = Some(pooling);
        self
    }
}

/// Which logits [`Vlm::forward`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    /// None: the forward stops after the last hooked layer.
    None,
    /// `[batch, 1, vocab]` at each row's last real token.
    LastToken,
    /// `[batch, seq, vocab]` at every (padded) position.
    All,
}

/// Activations captured for one [`CaptureSpec`]: one row per batch row. On vision hooks a row
/// holds the vision positions of that row's images (or tiles, for Idefics3) one image after
/// another, positions counting on across them (image `k` of a row, position `p` of its vision
/// sequence of length `n`: `k * n + p`); a row without images has none.
pub struct Captured<B: Backend> {
    pub spec: CaptureSpec,
    pub rows: Vec<CapturedRow<B>>,
}

/// The selected positions of one sequence: `values` is `[positions.len(), hidden]` in the model
/// dtype, `None` when nothing was selected.
pub struct CapturedRow<B: Backend> {
    pub values: Option<Tensor<B, 2>>,
    pub positions: Vec<PositionMeta>,
}

impl<B: Backend> CapturedRow<B> {
    /// The values as host f32, row-major `[positions, hidden]`.
    pub fn to_f32(&self) -> Vec<f32> {
        match &self.values {
            None => Vec::new(),
            Some(t) => t
                .clone()
                .cast(DType::F32)
                .into_data()
                .into_vec::<f32>()
                .expect("a float tensor cast to f32 holds f32"),
        }
    }
}

pub struct ForwardOutput<B: Backend> {
    pub captures: Vec<Captured<B>>,
    pub logits: Option<Tensor<B, 3>>,
}

/// Why generation of a row ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    Eos,
    Stop,
    Length,
}

/// A caller's stop test on a row's generated ids (e.g. stop strings after detokenising).
pub type StopPredicate<'a> = &'a dyn Fn(&[u32]) -> bool;

/// Greedy decoding settings.
pub struct GenerateOptions<'a> {
    pub max_new_tokens: usize,
    /// EOS ids; `None` = those of the checkpoint (`generation_config.json`, else `config.json`).
    pub eos_token_ids: Option<Vec<u32>>,
    /// Called with a row's generated ids after each new token; `true` ends that row (stop strings).
    pub stop: Option<StopPredicate<'a>>,
    /// Keep the logits of every step in [`Generation::step_logits`].
    pub keep_logits: bool,
}

impl Default for GenerateOptions<'_> {
    fn default() -> Self {
        Self {
            max_new_tokens: 20,
            eos_token_ids: None,
            stop: None,
            keep_logits: false,
        }
    }
}

pub struct Generation<B: Backend> {
    /// Generated ids per row, including the EOS token when one ended the row.
    pub ids: Vec<Vec<u32>>,
    pub finish: Vec<FinishReason>,
    pub captures: Vec<Captured<B>>,
    /// With [`GenerateOptions::keep_logits`]: `[rows, vocab]` f32 logits that chose each step's
    /// token (rows that had already finished included).
    pub step_logits: Vec<Tensor<B, 2>>,
}

/// A vision-language model (LLaVA-1.5, Idefics2, Idefics3, SmolVLM, Qwen2-VL) or a Llama-family text LM
/// (a VLM without images). The vision side is the family's ([`crate::VisionFamily`]); the decoder,
/// hooks and generation are shared.
pub struct Vlm<B: Backend> {
    config: ModelConfig,
    dir: PathBuf,
    dtype: WeightDType,
    device: B::Device,
    text: TextModel<B>,
    vision: Option<VisionSide<B>>,
}

/// Qwen2-VL's rotary positions of a batch: (temporal, height, width) per padded slot, and per
/// row the offset that generated tokens add to their index.
struct MropePositions {
    positions: Vec<Vec<[usize; 3]>>,
    deltas: Vec<i64>,
}

/// The images of one forward, in the form the family takes.
#[derive(Clone, Copy)]
enum Images<'a> {
    /// `[images, channels, height, width]`, with Idefics' optional pixel attention mask.
    Pixels(&'a PixelValues, Option<&'a [bool]>),
    /// Qwen2-VL: flattened patches and their grids.
    Patches(&'a ImagePatches),
}

impl Images<'_> {
    fn count(&self) -> usize {
        match self {
            Self::Pixels(pixels, _) => pixels.shape[0],
            Self::Patches(patches) => patches.num_images(),
        }
    }
}

/// Image features `[images, tokens, hidden]`; with `lengths`, image `i` has only its first
/// `lengths[i]` tokens (images of different sizes padded to the longest).
struct VisionOutput<B: Backend> {
    features: Tensor<B, 3>,
    lengths: Option<Vec<usize>>,
}

/// The batch row of each crop of a Molmo batch: the row of the image tokens that pool its
/// patches (a crop no token pools belongs with the crop before it). A crop pooled from two rows
/// is an error.
fn crop_rows<B: Backend>(
    pooling: &PatchPooling,
    token_rows: &[usize],
    crops: usize,
    vision: &VisionSide<B>,
) -> Result<Vec<usize>> {
    let per_crop = vision.patches_per_crop().ok_or_else(|| {
        ModelError::Input("a patch pooling was given to a family that does not pool patches".into())
    })?;
    let window = pooling.shape[1];
    if pooling.index.len() != token_rows.len() * window {
        return Err(ModelError::Input(format!(
            "the patch pooling holds {} indices, not {} tokens x {window}",
            pooling.index.len(),
            token_rows.len()
        )));
    }
    let mut rows: Vec<Option<usize>> = vec![None; crops];
    for (token, &row) in token_rows.iter().enumerate() {
        for &patch in &pooling.index[token * window..(token + 1) * window] {
            if patch < 0 {
                continue;
            }
            let crop = patch as usize / per_crop;
            match rows.get_mut(crop) {
                None => {
                    return Err(ModelError::Input(format!(
                        "the patch pooling points at patch {patch}, beyond the {crops} crops of {per_crop} patches"
                    )));
                }
                Some(Some(r)) if *r != row => {
                    return Err(ModelError::Input(format!(
                        "crop {crop} is pooled by image tokens of batch rows {r} and {row}"
                    )));
                }
                Some(slot) => *slot = Some(row),
            }
        }
    }
    let mut last = 0;
    Ok(rows
        .into_iter()
        .map(|r| {
            last = r.unwrap_or(last);
            last
        })
        .collect())
}

/// Molmo's pooled tokens `[1, tokens, hidden]` (row after row, `token_rows` saying whose)
/// regrouped as `[rows, longest, hidden]` with zero padding: the features, each row's length,
/// and the batch rows they belong to.
fn split_by_row<B: Backend>(
    features: Tensor<B, 3>,
    token_rows: &[usize],
) -> (Tensor<B, 3>, Vec<usize>, Vec<usize>) {
    let [_, tokens, hidden] = features.dims();
    let mut rows: Vec<usize> = Vec::new();
    let mut lengths: Vec<usize> = Vec::new();
    for &row in token_rows {
        if rows.last() == Some(&row) {
            *lengths.last_mut().expect("a row was opened") += 1;
        } else {
            rows.push(row);
            lengths.push(1);
        }
    }
    if rows.len() <= 1 {
        let row = rows.first().copied().unwrap_or(0);
        return (features, vec![tokens], vec![row]);
    }
    let longest = lengths.iter().copied().max().unwrap_or(0);
    let device = features.device();
    // index into [tokens; one zero row]: each row's tokens, then the zero row as padding
    let mut index = Vec::with_capacity(rows.len() * longest);
    let mut start = 0;
    for &len in &lengths {
        index.extend((start..start + len).map(|t| t as i64));
        index.extend(std::iter::repeat_n(tokens as i64, longest - len));
        start += len;
    }
    let flat = features.reshape([tokens, hidden]);
    let zero_row = flat.clone().narrow(0, 0, 1).zeros_like();
    let table = Tensor::cat(vec![flat, zero_row], 0);
    let index =
        Tensor::<B, 1, Int>::from_data(TensorData::new(index, [rows.len() * longest]), &device);
    let grouped = table
        .select(0, index)
        .reshape([rows.len(), longest, hidden]);
    (grouped, lengths, rows)
}

/// Per-position bookkeeping of the tensor a hook sees.
struct Chunk {
    /// `[rows][seq]`, `None` for padding.
    metas: Vec<Vec<Option<PositionMeta>>>,
    prompt_lens: Vec<usize>,
    /// The batch row each row of the tensor belongs to, when they differ (vision hooks: one
    /// tensor row per image); `None`: row `r` is batch row `r`.
    owners: Option<Vec<usize>>,
}

impl Chunk {
    fn selected(&self, positions: &Positions, row: usize) -> Vec<usize> {
        self.metas[row]
            .iter()
            .enumerate()
            .filter_map(|(s, m)| {
                m.filter(|m| positions.selects(m, self.prompt_lens[row]))
                    .map(|_| s)
            })
            .collect()
    }
}

struct PreparedIntervention<B: Backend> {
    hook: HookPoint,
    positions: Positions,
    mode: InterventionMode,
    alpha: f32,
    /// `v` for `Add`, `v / |v|` for `Projected`; `[hidden]`.
    vector: Tensor<B, 1>,
}

/// Captured pieces per capture, per row, in the order they were produced.
struct Recorder<B: Backend> {
    specs: Vec<CaptureSpec>,
    pieces: Vec<Vec<Vec<Tensor<B, 2>>>>,
    metas: Vec<Vec<Vec<PositionMeta>>>,
}

impl<B: Backend> Recorder<B> {
    fn new(specs: &[CaptureSpec], rows: usize) -> Self {
        Self {
            specs: specs.to_vec(),
            pieces: specs
                .iter()
                .map(|_| (0..rows).map(|_| Vec::new()).collect())
                .collect(),
            metas: specs.iter().map(|_| vec![Vec::new(); rows]).collect(),
        }
    }

    fn finish(self) -> Vec<Captured<B>> {
        self.specs
            .into_iter()
            .zip(self.pieces)
            .zip(self.metas)
            .map(|((spec, pieces), metas)| Captured {
                spec,
                rows: pieces
                    .into_iter()
                    .zip(metas)
                    .map(|(p, positions)| CapturedRow {
                        values: (!p.is_empty()).then(|| Tensor::cat(p, 0)),
                        positions,
                    })
                    .collect(),
            })
            .collect()
    }
}

impl<B: Backend> Vlm<B> {
    /// Loads a checkpoint from a local folder or `hf:org/name[@revision]` into `dtype` on `device`.
    pub fn load(source: &str, dtype: WeightDType, device: &B::Device) -> Result<Self> {
        let dir = source::resolve(source)?;
        Self::load_dir(&dir, dtype, device)
    }

    /// Loads the checkpoint folder `dir`.
    pub fn load_dir(dir: &Path, dtype: WeightDType, device: &B::Device) -> Result<Self> {
        let config = ModelConfig::from_dir(dir)?;
        let mut ckpt = Checkpoint::open(dir)?;
        present_standard_names(&mut ckpt, &config)?;
        Self::from_checkpoint(config, &ckpt, dtype, device)
    }

    /// A freshly initialised model of `config` (the one `config.json` in `dir` would give):
    /// `init(name, shape)` returns the row-major values of each weight, named and shaped as in a
    /// Hub checkpoint (`language_model.model.layers.0.self_attn.q_proj.weight`, `[out, in]`).
    pub fn init(
        config: ModelConfig,
        dir: &Path,
        dtype: WeightDType,
        device: &B::Device,
        init: impl FnMut(&str, &[usize]) -> Vec<f32> + 'static,
    ) -> Result<Self> {
        let ckpt = Checkpoint::generated(dir, Box::new(init));
        Self::from_checkpoint(config, &ckpt, dtype, device)
    }

    fn from_checkpoint(
        config: ModelConfig,
        ckpt: &Checkpoint,
        dtype: WeightDType,
        device: &B::Device,
    ) -> Result<Self> {
        let dir = ckpt.dir();
        let burn_dtype = dtype.to_burn();
        let lm_prefix = ckpt.lm_prefix()?;
        let lm_head_names: Vec<String> = LM_HEAD_NAMES.map(String::from).to_vec();
        let text = TextModel::load(
            ckpt,
            &config.text,
            lm_prefix,
            &lm_head_names,
            burn_dtype,
            device,
        )?;
        let vision = match &config.vision {
            None => None,
            Some(family) => Some(VisionSide::load(
                ckpt,
                family,
                &config.text,
                burn_dtype,
                device,
            )?),
        };
        Ok(Self {
            config,
            dir: dir.to_path_buf(),
            dtype,
            device: device.clone(),
            text,
            vision,
        })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn dtype(&self) -> WeightDType {
        self.dtype
    }

    pub fn device(&self) -> &B::Device {
        &self.device
    }

    /// Parameters actually loaded (a tied LM head counts once).
    pub fn num_params(&self) -> usize {
        self.text.num_params() + self.vision.as_ref().map_or(0, VisionSide::num_params)
    }

    /// Calls `f(name, shape, values)` for every weight, with its checkpoint name and shape and
    /// its values flattened row-major as the checkpoint stores them (a linear weight is
    /// `[out, in]` here although the model holds it transposed). A tied LM head is not listed.
    pub fn visit_params(&self, mut f: impl FnMut(&str, &[usize], Tensor<B, 1>)) {
        if let Some(vision) = &self.vision {
            vision.visit(&mut f);
        }
        self.text.visit(&mut f);
    }

    /// Replaces every weight by `f(name, shape, values)` (same order and layout as
    /// [`Vlm::visit_params`]); training uses it to mark weights as requiring gradients and to
    /// put updated values in. Returning the wrong number of values is an error.
    pub fn map_params(
        self,
        mut f: impl FnMut(&str, &[usize], Tensor<B, 1>) -> Tensor<B, 1>,
    ) -> Result<Self> {
        let vision = match self.vision {
            Some(v) => Some(v.map(&mut f)?),
            None => None,
        };
        Ok(Self {
            vision,
            text: self.text.map(&mut f)?,
            ..self
        })
    }

    /// Writes every weight to `dir/model.safetensors` under its checkpoint name, in the dtype the
    /// model holds, so that [`Vlm::load_dir`] (with the checkpoint's `config.json`) reads the same
    /// model back. The other checkpoint files (config, tokenizer) are the caller's.
    pub fn save_checkpoint(&self, dir: &Path) -> Result<PathBuf> {
        std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
        let mut tensors: Vec<(String, Vec<usize>, TensorData)> = Vec::new();
        self.visit_params(|name, shape, values| {
            tensors.push((name.to_string(), shape.to_vec(), values.into_data()));
        });
        let path = dir.join("model.safetensors");
        let views = tensors
            .iter()
            .map(|(name, shape, data)| {
                let dtype = match data.dtype {
                    DType::F32 => safetensors::Dtype::F32,
                    DType::F16 => safetensors::Dtype::F16,
                    DType::BF16 => safetensors::Dtype::BF16,
                    other => {
                        return Err(ModelError::Input(format!(
                            "weight {name} has dtype {other:?}, which a checkpoint cannot store"
                        )));
                    }
                };
                let view =
                    safetensors::tensor::TensorView::new(dtype, shape.clone(), data.as_bytes())
                        .map_err(|e| ModelError::Safetensors {
                            path: path.clone(),
                            message: format!("{name}: {e}"),
                        })?;
                Ok((name.clone(), view))
            })
            .collect::<Result<Vec<_>>>()?;
        let metadata = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
        safetensors::serialize_to_file(views, Some(metadata), &path).map_err(|e| {
            ModelError::Safetensors {
                path: path.clone(),
                message: e.to_string(),
            }
        })?;
        Ok(path)
    }

    fn num_vision_layers(&self) -> usize {
        self.config
            .vision
            .as_ref()
            .map_or(0, VisionFamily::num_layers)
    }

    /// Every hook point of this model.
    pub fn hook_points(&self) -> Vec<HookPoint> {
        hook_points(self.config.text.num_layers, self.num_vision_layers())
    }

    /// Parses a hook name (stable or HF alias) against this model's sizes.
    pub fn parse_hook(&self, name: &str) -> Result<HookPoint> {
        parse_hook(name, self.config.text.num_layers, self.num_vision_layers())
    }

    /// Hidden size at a hook point.
    pub fn hook_width(&self, hook: HookPoint) -> usize {
        match (hook, &self.config.vision) {
            (HookPoint::VisionLayer(_), Some(v)) => v.width(),
            _ => self.config.text.hidden_size,
        }
    }

    fn check_hook(&self, hook: HookPoint, positions: &Positions) -> Result<()> {
        if !self.hook_points().contains(&hook) {
            return Err(self
                .parse_hook(&hook.to_string())
                .expect_err("a hook point outside the model does not parse"));
        }
        if hook.is_vision() && !positions.applies_to_vision() {
            return Err(ModelError::Input(format!(
                "positions {positions:?} do not apply to the vision hook {hook} (use All, Image, Index or Range)"
            )));
        }
        Ok(())
    }

    fn prepare(
        &self,
        captures: &[CaptureSpec],
        interventions: &[Intervention],
    ) -> Result<Vec<PreparedIntervention<B>>> {
        for c in captures {
            self.check_hook(c.hook, &c.positions)?;
        }
        interventions
            .iter()
            .map(|iv| {
                self.check_hook(iv.hook, &iv.positions)?;
                let width = self.hook_width(iv.hook);
                if iv.vector.len() != width {
                    return Err(ModelError::Input(format!(
                        "intervention vector at {} has {} values, the hook has width {width}",
                        iv.hook,
                        iv.vector.len()
                    )));
                }
                if !iv.alpha.is_finite() || iv.vector.iter().any(|v| !v.is_finite()) {
                    return Err(ModelError::Input(format!(
                        "intervention at {} has a non-finite alpha or vector",
                        iv.hook
                    )));
                }
                let vector = match iv.mode {
                    InterventionMode::Add => iv.vector.clone(),
                    InterventionMode::Projected => {
                        let norm = iv.vector.iter().map(|v| v * v).sum::<f32>().sqrt();
                        if norm == 0.0 {
                            return Err(ModelError::Input(format!(
                                "projected intervention at {} needs a non-zero vector",
                                iv.hook
                            )));
                        }
                        iv.vector.iter().map(|v| v / norm).collect()
                    }
                };
                Ok(PreparedIntervention {
                    hook: iv.hook,
                    positions: iv.positions.clone(),
                    mode: iv.mode,
                    alpha: iv.alpha,
                    vector: Tensor::from_data(
                        TensorData::new(vector, [width]),
                        (&self.device, self.dtype.to_burn()),
                    ),
                })
            })
            .collect()
    }

    /// Applies interventions then captures at `hook` on `h` (`[rows, seq, width]`).
    fn hook(
        &self,
        hook: HookPoint,
        h: Tensor<B, 3>,
        chunk: &Chunk,
        interventions: &[PreparedIntervention<B>],
        rec: &mut Recorder<B>,
    ) -> Tensor<B, 3> {
        let [rows, seq, width] = h.dims();
        let mut h = h;
        for iv in interventions.iter().filter(|iv| iv.hook == hook) {
            let mut mask = vec![0f32; rows * seq];
            let mut any = false;
            for row in 0..rows {
                for s in chunk.selected(&iv.positions, row) {
                    mask[row * seq + s] = 1.0;
                    any = true;
                }
            }
            if !any {
                continue;
            }
            let mask = Tensor::<B, 3>::from_data(
                TensorData::new(mask, [rows, seq, 1]),
                (&self.device, self.dtype.to_burn()),
            );
            let v = iv.vector.clone().unsqueeze_dims::<3>(&[0, 1]);
            h = match iv.mode {
                InterventionMode::Add => h + mask * v.mul_scalar(iv.alpha),
                InterventionMode::Projected => {
                    let along = h
                        .clone()
                        .reshape([rows * seq, width])
                        .matmul(iv.vector.clone().unsqueeze_dim::<2>(1))
                        .reshape([rows, seq, 1]);
                    h - mask.clone() * along * v.clone() + mask * v.mul_scalar(iv.alpha)
                }
            };
        }
        let Recorder {
            specs,
            pieces,
            metas,
        } = rec;
        for (ci, spec) in specs.iter().enumerate() {
            if spec.hook != hook {
                continue;
            }
            for row in 0..rows {
                let owner = chunk.owners.as_ref().map_or(row, |o| o[row]);
                let picked = chunk.selected(&spec.positions, row);
                if picked.is_empty() {
                    continue;
                }
                let index = Tensor::<B, 1, Int>::from_data(
                    TensorData::new(
                        picked.iter().map(|&s| s as i64).collect::<Vec<_>>(),
                        [picked.len()],
                    ),
                    &self.device,
                );
                let values = h
                    .clone()
                    .narrow(0, row, 1)
                    .reshape([seq, width])
                    .select(0, index);
                pieces[ci][owner].push(values);
                metas[ci][owner].extend(
                    picked
                        .iter()
                        .map(|&s| chunk.metas[row][s].expect("selected positions are real tokens")),
                );
            }
        }
        h
    }

    /// Image features `[images, tokens, text hidden]` of `pixel_values` (the connector output
    /// that replaces the image tokens), as transformers' `get_image_features`.
    /// `pixel_attention_mask` (`[images, height, width]` row-major, true = real pixel) is for
    /// Idefics images padded to a common size; `None` means no padding.
    pub fn image_features(
        &self,
        pixels: &PixelValues,
        pixel_attention_mask: Option<&[bool]>,
    ) -> Result<Tensor<B, 3>> {
        let vision = self
            .vision
            .as_ref()
            .ok_or_else(|| ModelError::Input("pixel_values given to a text-only model".into()))?;
        let mut rec = Recorder::new(&[], 0);
        let images = Images::Pixels(pixels, pixel_attention_mask);
        let owners = vec![0; images.count()];
        let out = self.run_vision(vision, images, &owners, None, &[], &mut rec)?;
        Ok(out.features)
    }

    /// Molmo's image features `[1, tokens, text hidden]`: the crops of every image in
    /// `pixels` (`[crops, 3, side, side]`) pooled as the processor's `pooling` says.
    pub fn image_features_pooled(
        &self,
        pixels: &PixelValues,
        pooling: &PatchPooling,
    ) -> Result<Tensor<B, 3>> {
        let vision = self
            .vision
            .as_ref()
            .ok_or_else(|| ModelError::Input("pixel_values given to a text-only model".into()))?;
        let mut rec = Recorder::new(&[], 0);
        let owners = vec![0; pixels.shape[0]];
        let token_rows = vec![0; pooling.shape[0]];
        let images = Images::Pixels(pixels, None);
        let pooling = Some((pooling, token_rows.as_slice()));
        let out = self.run_vision(vision, images, &owners, pooling, &[], &mut rec)?;
        Ok(out.features)
    }

    /// Qwen2-VL image features `[tokens, text hidden]` of all images in order (the merger
    /// output that replaces the `<|image_pad|>` tokens), as transformers' `get_image_features`.
    pub fn image_patch_features(&self, patches: &ImagePatches) -> Result<Tensor<B, 2>> {
        let vision = self
            .vision
            .as_ref()
            .ok_or_else(|| ModelError::Input("images given to a text-only model".into()))?;
        let mut rec = Recorder::new(&[], 0);
        let owners = vec![0; patches.num_images()];
        let out = self.run_vision(
            vision,
            Images::Patches(patches),
            &owners,
            None,
            &[],
            &mut rec,
        )?;
        Ok(self.packed(out))
    }

    /// Features `[images, tokens, hidden]` (padded or not) as `[real tokens, hidden]`, in order.
    fn packed(&self, out: VisionOutput<B>) -> Tensor<B, 2> {
        let [images, tokens, hidden] = out.features.dims();
        let flat = out.features.reshape([images * tokens, hidden]);
        let Some(lengths) = out.lengths else {
            return flat;
        };
        let index: Vec<i64> = lengths
            .iter()
            .enumerate()
            .flat_map(|(i, &len)| (0..len).map(move |s| (i * tokens + s) as i64))
            .collect();
        let total = index.len();
        let index = Tensor::<B, 1, Int>::from_data(TensorData::new(index, [total]), &self.device);
        flat.select(0, index)
    }

    /// The family's encoder and connector on the images, with vision hooks: image features
    /// `[images, tokens, hidden]`. `owners[k]` is the batch row of image `k`. Molmo's `pooling`
    /// comes with the batch row of each pooled token; its features come out one row per batch
    /// row that has images, `[rows, tokens, hidden]`, padded to the longest.
    #[allow(clippy::too_many_arguments)]
    fn run_vision(
        &self,
        vision: &VisionSide<B>,
        images: Images<'_>,
        owners: &[usize],
        pooling: Option<(&PatchPooling, &[usize])>,
        interventions: &[PreparedIntervention<B>],
        rec: &mut Recorder<B>,
    ) -> Result<VisionOutput<B>> {
        let needed = vision.layers_needed();
        let hooked = rec
            .specs
            .iter()
            .map(|s| s.hook)
            .chain(interventions.iter().map(|iv| iv.hook))
            .filter_map(|h| match h {
                HookPoint::VisionLayer(i) => Some(i + 1),
                _ => None,
            })
            .max()
            .unwrap_or(0);
        let mut input: VisionInput<B> = match images {
            Images::Pixels(pixels, pixel_attention_mask) => {
                let px = pixel_tensor::<B>(
                    &pixels.data,
                    pixels.shape,
                    self.dtype.to_burn(),
                    &self.device,
                )?;
                vision.embed(px, pixel_attention_mask)?
            }
            Images::Patches(patches) => {
                vision.embed_patches(patches, self.dtype.to_burn(), &self.device)?
            }
        };
        let mut x = input.hidden.clone();
        // positions count on across the images of a batch row; padding that evens out image
        // sizes (`lengths`) is no position
        let vision_chunk = |owners: &[usize], seq: usize, lengths: Option<&[usize]>| {
            let len = |k: usize| lengths.map_or(seq, |l| l[k]);
            let mut before = vec![0; owners.iter().max().map_or(0, |&m| m + 1)];
            let mut metas = Vec::with_capacity(owners.len());
            for (k, &row) in owners.iter().enumerate() {
                let first = before[row];
                before[row] += len(k);
                metas.push(
                    (0..seq)
                        .map(|p| {
                            (p < len(k)).then_some(PositionMeta {
                                position: first + p,
                                role: TokenRole::Image,
                                token_id: None,
                            })
                        })
                        .collect(),
                );
            }
            Chunk {
                metas,
                prompt_lens: owners.iter().map(|&row| before[row]).collect(),
                owners: Some(owners.to_vec()),
            }
        };
        let seq = x.dims()[1];
        let chunk = vision_chunk(owners, seq, input.lengths.as_deref());
        let wanted = vision.feature_states();
        let mut states: Vec<Option<Tensor<B, 3>>> = vec![None; wanted.len()];
        let mut keep = |state: usize, x: &Tensor<B, 3>| {
            for (slot, &w) in states.iter_mut().zip(&wanted) {
                if w == state {
                    *slot = Some(x.clone());
                }
            }
        };
        keep(0, &x);
        for i in 0..needed.max(hooked) {
            x = vision.layer(i, x, &input);
            x = self.hook(HookPoint::VisionLayer(i), x, &chunk, interventions, rec);
            keep(i + 1, &x);
        }
        let states = states
            .into_iter()
            .map(|s| s.expect("every state the connector reads ran"))
            .collect();
        let features = vision.connect(states, input.real.as_deref(), pooling.map(|p| p.0))?;
        let (features, lengths, owners) = match pooling {
            // Molmo pools the tokens of every row into one sequence: one row per batch row
            Some((_, token_rows)) => {
                let (features, lengths, rows) = split_by_row(features, token_rows);
                (features, Some(lengths), rows)
            }
            None => {
                let tokens = features.dims()[1];
                // a connector that shrinks the sequence (Qwen2-VL's merger) shrinks every
                // length alike
                let lengths = input
                    .lengths
                    .take()
                    .map(|ls| ls.iter().map(|l| l * tokens / seq).collect::<Vec<_>>());
                (features, lengths, owners.to_vec())
            }
        };
        let chunk = vision_chunk(&owners, features.dims()[1], lengths.as_deref());
        Ok(VisionOutput {
            features: self.hook(HookPoint::Projector, features, &chunk, interventions, rec),
            lengths,
        })
    }

    /// Qwen2-VL: the (temporal, height, width) rotary positions of every padded slot and each
    /// row's rope delta; `None` for models with plain positions.
    fn mrope_positions(&self, batch: &Batch) -> Result<Option<MropePositions>> {
        let Some(VisionFamily::Qwen2Vl(config)) = &self.config.vision else {
            return Ok(None);
        };
        let mut grids = batch
            .image_patches
            .iter()
            .flat_map(|p| p.grid_thw.iter().copied());
        let mut positions = Vec::with_capacity(batch.input_ids.len());
        let mut deltas = Vec::with_capacity(batch.input_ids.len());
        for (ids, mask) in batch.input_ids.iter().zip(&batch.attention_mask) {
            let real: Vec<u32> = ids
                .iter()
                .zip(mask)
                .filter(|(_, m)| **m)
                .map(|(&id, _)| id)
                .collect();
            let (row, delta) = rope_index(
                &real,
                config.image_token_id,
                &mut grids,
                config.vision.spatial_merge_size,
            )?;
            let mut row = row.into_iter();
            // padding gets position 1 as in the text-only path (it is never attended to)
            positions.push(
                mask.iter()
                    .map(|&m| {
                        if m {
                            row.next().expect("one position per real token")
                        } else {
                            [1; 3]
                        }
                    })
                    .collect(),
            );
            deltas.push(delta);
        }
        if grids.next().is_some() {
            return Err(ModelError::Input(
                "the batch has more images than runs of image tokens".into(),
            ));
        }
        Ok(Some(MropePositions { positions, deltas }))
    }

    fn validate(&self, batch: &Batch) -> Result<()> {
        if batch.input_ids.is_empty() {
            return Err(ModelError::Input("the batch has no rows".into()));
        }
        let len = batch.input_ids[0].len();
        for (r, (ids, mask)) in batch
            .input_ids
            .iter()
            .zip(&batch.attention_mask)
            .enumerate()
        {
            if ids.len() != len || mask.len() != len {
                return Err(ModelError::Input(format!(
                    "row {r}: input_ids ({}) and attention_mask ({}) must both have the padded length {len}",
                    ids.len(),
                    mask.len()
                )));
            }
            if !mask.iter().any(|&m| m) {
                return Err(ModelError::Input(format!("row {r} has no real tokens")));
            }
            let vocab = self.config.text.embedding_rows() as u32;
            if let Some(bad) = ids.iter().zip(mask).find(|(id, m)| **m && **id >= vocab) {
                return Err(ModelError::Input(format!(
                    "row {r}: token id {} is outside the vocabulary ({vocab})",
                    bad.0
                )));
            }
        }
        if batch.attention_mask.len() != batch.input_ids.len() {
            return Err(ModelError::Input(format!(
                "{} rows of input_ids but {} rows of attention_mask",
                batch.input_ids.len(),
                batch.attention_mask.len()
            )));
        }
        Ok(())
    }

    /// Embeds the prompt (scattering image features) and runs the decoder over it.
    /// Returns the final-norm output when `need_norm`.
    #[allow(clippy::too_many_arguments)]
    fn prefill(
        &self,
        batch: &Batch,
        pooling: Option<&PatchPooling>,
        interventions: &[PreparedIntervention<B>],
        rec: &mut Recorder<B>,
        cache: &mut KvCache<B>,
        layers_to_run: usize,
        need_norm: bool,
    ) -> Result<Option<Tensor<B, 3>>> {
        self.validate(batch)?;
        let rows = batch.input_ids.len();
        let seq = batch.input_ids[0].len();
        let image_token = self.config.vision.as_ref().map(|v| v.image_token_id());
        let mrope = self.mrope_positions(batch)?;
        let mut metas = Vec::with_capacity(rows);
        let mut positions = Vec::with_capacity(rows);
        let mut prompt_lens = Vec::with_capacity(rows);
        let mut image_slots = Vec::new();
        for (r, (ids, mask)) in batch
            .input_ids
            .iter()
            .zip(&batch.attention_mask)
            .enumerate()
        {
            let mut next = 0;
            let mut row_meta = Vec::with_capacity(seq);
            let mut row_pos = Vec::with_capacity(seq);
            for (s, (&id, &real)) in ids.iter().zip(mask).enumerate() {
                if real {
                    let is_image = Some(id) == image_token;
                    if is_image {
                        image_slots.push(r * seq + s);
                    }
                    row_meta.push(Some(PositionMeta {
                        position: next,
                        role: if is_image {
                            TokenRole::Image
                        } else {
                            TokenRole::Prompt
                        },
                        token_id: Some(id),
                    }));
                    row_pos.push(next);
                    next += 1;
                } else {
                    row_meta.push(None);
                    // as transformers' generate: padding gets position 1 (never attended to)
                    row_pos.push(1);
                }
            }
            metas.push(row_meta);
            positions.push(row_pos);
            prompt_lens.push(next);
        }
        let chunk = Chunk {
            metas,
            prompt_lens,
            owners: None,
        };
        // padding ids are looked up too (their rows are masked out), so keep them in range
        let vocab = self.config.text.embedding_rows() as u32;
        let lookup: Vec<Vec<u32>> = batch
            .input_ids
            .iter()
            .map(|row| {
                row.iter()
                    .map(|&id| if id < vocab { id } else { 0 })
                    .collect()
            })
            .collect();
        let mut embeds = self.text.embed(&lookup, &self.device);
        let images = match (&batch.pixel_values, &batch.image_patches) {
            (Some(_), Some(_)) => {
                return Err(ModelError::Input(
                    "a batch holds either pixel_values or image patches, not both".into(),
                ));
            }
            (Some(pixels), None) => Some(Images::Pixels(
                pixels,
                batch.pixel_attention_mask.as_deref(),
            )),
            (None, Some(patches)) => Some(Images::Patches(patches)),
            (None, None) => None,
        };
        match (&self.vision, images) {
            (Some(vision), Some(images)) => {
                let features = if vision.needs_pooling() {
                    // Molmo: the processor's pooling says which crop patches each image token
                    // pools, in the order of the image tokens, row by row
                    let pooling = pooling.ok_or_else(|| {
                        ModelError::Input(
                            "Molmo images need the processor's patch pooling (image_token_pooling)"
                                .into(),
                        )
                    })?;
                    if image_slots.len() != pooling.shape[0] {
                        return Err(ModelError::Input(format!(
                            "the batch has {} image tokens but the patch pooling gives {} image features",
                            image_slots.len(),
                            pooling.shape[0]
                        )));
                    }
                    let token_rows: Vec<usize> = image_slots.iter().map(|&s| s / seq).collect();
                    let owners = crop_rows(pooling, &token_rows, images.count(), vision)?;
                    let pooling = Some((pooling, token_rows.as_slice()));
                    let out =
                        self.run_vision(vision, images, &owners, pooling, interventions, rec)?;
                    self.packed(out)
                } else {
                    // image tokens of each image: fixed per family, or by grid for Qwen2-VL
                    let counts: Vec<usize> = match (images, &self.config.vision) {
                        (Images::Patches(patches), Some(VisionFamily::Qwen2Vl(c))) => patches
                            .grid_thw
                            .iter()
                            .map(|&g| c.tokens_for_grid(g))
                            .collect(),
                        (Images::Pixels(..), Some(family)) => match family.image_tokens_per_image()
                        {
                            Some(tokens) if tokens > 0 => vec![tokens; images.count()],
                            Some(_) => {
                                return Err(ModelError::Input(
                                    "the vision config gives no image tokens per image".into(),
                                ));
                            }
                            None => {
                                return Err(ModelError::Input(
                                "pixel_values given to Qwen2-VL, which takes image patches with their grids (image_grid_thw)"
                                    .into(),
                            ));
                            }
                        },
                        _ => {
                            return Err(ModelError::Input(
                            "image patches with grids (Qwen2-VL input) given to a model that takes pixel_values"
                                .into(),
                        ));
                        }
                    };
                    let total: usize = counts.iter().sum();
                    if image_slots.len() != total {
                        let n = counts.len();
                        return Err(ModelError::Input(
                            if counts.iter().all(|&c| c == counts[0]) {
                                format!(
                                    "the batch has {} image tokens but {n} image(s) of {} tokens each",
                                    image_slots.len(),
                                    counts[0]
                                )
                            } else {
                                format!(
                                    "the batch has {} image tokens but its {n} images have {counts:?}",
                                    image_slots.len()
                                )
                            },
                        ));
                    }
                    // image k fills the slots after those of images 0..k, which lie in one batch row
                    let owners: Vec<usize> = counts
                        .iter()
                        .scan(0, |first, &c| {
                            let owner = image_slots[*first] / seq;
                            *first += c;
                            Some(owner)
                        })
                        .collect();
                    let out = self.run_vision(vision, images, &owners, None, interventions, rec)?;
                    let features = self.packed(out);
                    debug_assert_eq!(features.dims()[0], total);
                    features
                };
                let [total, hidden] = features.dims();
                // one gather from [text embeddings; image features] puts every feature in its slot
                let mut index: Vec<i64> = (0..(rows * seq) as i64).collect();
                for (k, &slot) in image_slots.iter().enumerate() {
                    index[slot] = (rows * seq + k) as i64;
                }
                let flat = embeds.reshape([rows * seq, hidden]);
                let features = if vision.adds_features() {
                    // Molmo adds each feature to its image token's embedding
                    let slots: Vec<i64> = image_slots.iter().map(|&s| s as i64).collect();
                    let slots = Tensor::<B, 1, Int>::from_data(
                        TensorData::new(slots, [total]),
                        &self.device,
                    );
                    features + flat.clone().select(0, slots)
                } else {
                    features
                };
                let table = Tensor::cat(vec![flat, features], 0);
                let index = Tensor::<B, 1, Int>::from_data(
                    TensorData::new(index, [rows * seq]),
                    &self.device,
                );
                embeds = table.select(0, index).reshape([rows, seq, hidden]);
            }
            (None, Some(_)) => {
                return Err(ModelError::Input(
                    "pixel_values given to a text-only model".into(),
                ));
            }
            (Some(vision), None) if !image_slots.is_empty() => {
                let input = match vision {
                    VisionSide::Qwen2Vl(_) => "image patches",
                    _ => "pixel_values",
                };
                return Err(ModelError::Input(format!(
                    "the batch has {} image tokens but no {input}",
                    image_slots.len()
                )));
            }
            _ => {}
        }
        let mut tensors = match mrope {
            Some(mrope) => self.text.chunk_tensors_mrope(
                &mrope.positions,
                &batch.attention_mask,
                0,
                self.dtype.to_burn(),
                &self.device,
            ),
            None => self.text.chunk_tensors(
                &positions,
                &batch.attention_mask,
                0,
                self.dtype.to_burn(),
                &self.device,
            ),
        };
        let blocks = self
            .vision
            .as_ref()
            .and_then(|v| v.image_blocks(&batch.input_ids));
        if let Some(blocks) = blocks {
            // Molmo2: the real tokens of a row's image blocks all see each other
            let mut open = Vec::with_capacity(rows * seq * seq);
            for (block, mask) in blocks.iter().zip(&batch.attention_mask) {
                for q in 0..seq {
                    for k in 0..seq {
                        open.push(block[q] && block[k] && mask[q] && mask[k]);
                    }
                }
            }
            let open = Tensor::<B, 4, Bool>::from_bool(
                TensorData::new(open, [rows, 1, seq, seq]),
                &self.device,
            )
            .expand(tensors.mask.dims());
            tensors.mask = tensors.mask.bool_and(open.bool_not());
        }
        Ok(self.run_decoder(
            embeds,
            &chunk,
            &tensors,
            cache,
            interventions,
            rec,
            layers_to_run,
            need_norm,
        ))
    }

    #[allow(clippy::too_many_arguments)]
    fn run_decoder(
        &self,
        embeds: Tensor<B, 3>,
        chunk: &Chunk,
        tensors: &crate::text::ChunkTensors<B>,
        cache: &mut KvCache<B>,
        interventions: &[PreparedIntervention<B>],
        rec: &mut Recorder<B>,
        layers_to_run: usize,
        need_norm: bool,
    ) -> Option<Tensor<B, 3>> {
        let mut h = self.hook(HookPoint::Embed, embeds, chunk, interventions, rec);
        for i in 0..layers_to_run {
            let attn = self
                .text
                .attention(i, self.text.input_norm(i, h.clone()), tensors, cache);
            let attn = self.hook(HookPoint::Attn(i), attn, chunk, interventions, rec);
            let h_mid = h + attn;
            let mlp = self
                .text
                .mlp(i, self.text.post_attention_norm(i, h_mid.clone()));
            let mlp = self.hook(HookPoint::Mlp(i), mlp, chunk, interventions, rec);
            h = self.hook(HookPoint::Layer(i), h_mid + mlp, chunk, interventions, rec);
        }
        need_norm.then(|| {
            let normed = self.text.norm.forward(h);
            self.hook(HookPoint::Norm, normed, chunk, interventions, rec)
        })
    }

    /// One forward pass over the batch with captures and interventions (interventions at a hook
    /// act before captures at the same hook read it). With [`Logits::None`] the decoder stops
    /// after the last layer that a capture or intervention touches.
    pub fn forward(
        &self,
        batch: &Batch,
        captures: &[CaptureSpec],
        interventions: &[Intervention],
        logits: Logits,
    ) -> Result<ForwardOutput<B>> {
        let pooling = batch.patch_pooling.as_ref();
        let prepared = self.prepare(captures, interventions)?;
        let mut rec = Recorder::new(captures, batch.input_ids.len());
        let num_layers = self.config.text.num_layers;
        let touches_norm = captures
            .iter()
            .map(|c| c.hook)
            .chain(interventions.iter().map(|i| i.hook))
            .any(|h| h == HookPoint::Norm);
        let (layers_to_run, need_norm) = if logits != Logits::None || touches_norm {
            (num_layers, true)
        } else {
            let last = captures
                .iter()
                .map(|c| c.hook)
                .chain(interventions.iter().map(|i| i.hook))
                .filter_map(|h| match h {
                    HookPoint::Layer(i) | HookPoint::Attn(i) | HookPoint::Mlp(i) => Some(i + 1),
                    _ => None,
                })
                .max()
                .unwrap_or(0);
            (last, false)
        };
        let mut cache = KvCache::new(num_layers);
        let normed = self.prefill(
            batch,
            pooling,
            &prepared,
            &mut rec,
            &mut cache,
            layers_to_run,
            need_norm,
        )?;
        let logits = match (logits, normed) {
            (Logits::All, Some(normed)) => {
                let [rows, seq, hidden] = normed.dims();
                let vocab = self.config.text.vocab_size;
                Some(
                    self.text
                        .logits(normed.reshape([rows * seq, hidden]))
                        .reshape([rows, seq, vocab]),
                )
            }
            (Logits::LastToken, Some(normed)) => {
                let last = self.last_rows(&normed, batch);
                let rows = batch.input_ids.len();
                Some(
                    self.text
                        .logits(last)
                        .reshape([rows, 1, self.config.text.vocab_size]),
                )
            }
            _ => None,
        };
        Ok(ForwardOutput {
            captures: rec.finish(),
            logits,
        })
    }

    /// Hidden state `[rows, hidden]` at each row's last real token.
    fn last_rows(&self, normed: &Tensor<B, 3>, batch: &Batch) -> Tensor<B, 2> {
        let [rows, seq, hidden] = normed.dims();
        let index: Vec<i64> = batch
            .attention_mask
            .iter()
            .enumerate()
            .map(|(r, mask)| {
                let last = mask
                    .iter()
                    .rposition(|&m| m)
                    .expect("validated: every row has a token");
                (r * seq + last) as i64
            })
            .collect();
        let index = Tensor::<B, 1, Int>::from_data(TensorData::new(index, [rows]), &self.device);
        normed
            .clone()
            .reshape([rows * seq, hidden])
            .select(0, index)
    }

    /// Host argmax per row (ties go to the lowest id, as `torch.argmax`).
    fn greedy(&self, normed_rows: Tensor<B, 2>, keep: Option<&mut Vec<Tensor<B, 2>>>) -> Vec<u32> {
        let logits = self.text.logits(normed_rows).cast(DType::F32);
        if let Some(kept) = keep {
            kept.push(logits.clone());
        }
        let [rows, vocab] = logits.dims();
        let values = logits
            .into_data()
            .into_vec::<f32>()
            .expect("a float tensor cast to f32 holds f32");
        (0..rows)
            .map(|r| {
                let row = &values[r * vocab..(r + 1) * vocab];
                let mut best = 0;
                for (i, &v) in row.iter().enumerate() {
                    if v > row[best] {
                        best = i;
                    }
                }
                best as u32
            })
            .collect()
    }

    /// Greedy generation with a KV cache. Rows end at an EOS id, when `options.stop` says so, or
    /// after `max_new_tokens`; captures and interventions apply to the prompt and to every
    /// generated token that is fed back (the last generated token never runs through the model).
    pub fn generate(
        &self,
        batch: &Batch,
        options: &GenerateOptions<'_>,
        captures: &[CaptureSpec],
        interventions: &[Intervention],
    ) -> Result<Generation<B>> {
        let pooling = batch.patch_pooling.as_ref();
        let prepared = self.prepare(captures, interventions)?;
        let rows = batch.input_ids.len();
        let mut rec = Recorder::new(captures, rows);
        let num_layers = self.config.text.num_layers;
        let eos = options
            .eos_token_ids
            .clone()
            .unwrap_or_else(|| self.config.eos_token_ids.clone());
        let mut ids = vec![Vec::new(); rows];
        let mut finish = vec![FinishReason::Length; rows];
        if options.max_new_tokens == 0 {
            self.validate(batch)?;
            return Ok(Generation {
                ids,
                finish,
                captures: rec.finish(),
                step_logits: Vec::new(),
            });
        }
        let mut cache = KvCache::new(num_layers);
        let normed = self
            .prefill(
                batch, pooling, &prepared, &mut rec, &mut cache, num_layers, true,
            )?
            .expect("prefill with need_norm returns the norm output");
        let mut step_logits = Vec::new();
        let keep = options.keep_logits;
        let mut next = self.greedy(
            self.last_rows(&normed, batch),
            keep.then_some(&mut step_logits),
        );
        let mut key_valid = batch.attention_mask.clone();
        let mut lengths: Vec<usize> = key_valid
            .iter()
            .map(|m| m.iter().filter(|&&v| v).count())
            .collect();
        let prompt_lens = lengths.clone();
        let mut done = vec![false; rows];
        // Qwen2-VL: generated tokens sit at their index plus the row's rope delta
        let deltas = match self.mrope_positions(batch)? {
            Some(mrope) => mrope.deltas,
            None => vec![0; rows],
        };
        let pad = self
            .config
            .pad_token_id
            .unwrap_or(0)
            .min(self.config.text.vocab_size as u32 - 1);
        for step in 0..options.max_new_tokens {
            for r in 0..rows {
                if done[r] {
                    continue;
                }
                ids[r].push(next[r]);
                if eos.contains(&next[r]) {
                    done[r] = true;
                    finish[r] = FinishReason::Eos;
                } else if options.stop.is_some_and(|stop| stop(&ids[r])) {
                    done[r] = true;
                    finish[r] = FinishReason::Stop;
                }
            }
            if step + 1 == options.max_new_tokens || done.iter().all(|&d| d) {
                break;
            }
            let past = key_valid[0].len();
            let mut step_ids = Vec::with_capacity(rows);
            let mut metas = Vec::with_capacity(rows);
            let mut positions = Vec::with_capacity(rows);
            for r in 0..rows {
                if done[r] {
                    step_ids.push(vec![pad]);
                    metas.push(vec![None]);
                    positions.push(vec![[1; 3]]);
                    key_valid[r].push(false);
                } else {
                    step_ids.push(vec![next[r]]);
                    metas.push(vec![Some(PositionMeta {
                        position: lengths[r],
                        role: TokenRole::Generated,
                        token_id: Some(next[r]),
                    })]);
                    let position = (lengths[r] as i64 + deltas[r]).max(0) as usize;
                    positions.push(vec![[position; 3]]);
                    lengths[r] += 1;
                    key_valid[r].push(true);
                }
            }
            let chunk = Chunk {
                metas,
                prompt_lens: prompt_lens.clone(),
                owners: None,
            };
            let tensors = self.text.chunk_tensors_mrope(
                &positions,
                &key_valid,
                past,
                self.dtype.to_burn(),
                &self.device,
            );
            let embeds = self.text.embed(&step_ids, &self.device);
            let normed = self
                .run_decoder(
                    embeds, &chunk, &tensors, &mut cache, &prepared, &mut rec, num_layers, true,
                )
                .expect("need_norm returns the norm output");
            next = self.greedy(
                normed.reshape([rows, self.config.text.hidden_size]),
                keep.then_some(&mut step_logits),
            );
        }
        Ok(Generation {
            ids,
            finish,
            captures: rec.finish(),
            step_logits,
        })
    }
}
