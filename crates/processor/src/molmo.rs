//! The original Molmo's processor (`MolmoImageProcessor` and `MolmoProcessor` of
//! allenai/Molmo-7B-D-0924, which ship as remote code with the checkpoint): a global view of the
//! whole image plus overlapping crops of a canvas whose tiling fits the image, and the
//! image-token layout that says which pooled crop patch lands on which `<im_patch>` token.
//!
//! * Both views keep the aspect ratio: the image is resized with TensorFlow's antialiased
//!   bilinear filter on `[0, 1]` floats (what the remote code calls) and centred on a zero
//!   canvas; the canvas is then normalised, so padding becomes `-mean / std`.
//! * The canvas is `tiling × window + margins`; crop `(i, j)` starts at `(i, j) × window`. Of the
//!   patches where neighbouring crops overlap, only the inner ones (outside `overlap_margins`)
//!   get a token, so the crops' 2 × 2 pooled patches stitch into one grid of tokens.
//! * `image_input_idx` maps every pooled slot of every crop to the `<im_patch>` token it is added
//!   to (global view first, then the stitched grid in reading order), `-1` for slots that fall in
//!   a margin; xlvlm turns that map around into the window each token pools.
//! * `image_masks` is the share of each patch that shows the image. The remote processor appends
//!   the global view's row (all `-1`) *after* the crops' rows although the global view is the
//!   first crop, so row `i` describes crop `i + 1`; the released model was run that way and xlvlm
//!   keeps it (`crates/model/MOLMO.md`).

use image::{DynamicImage, RgbImage};

use crate::error::{ProcessorError, Result};
use crate::image::{OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, Settings};
use crate::processor::{CheckpointFiles, ImagePipeline, ProcessedImage};

/// Settings of `MolmoImageProcessor` (`preprocessor_config.json`).
#[derive(Debug, Clone, PartialEq)]
pub struct MolmoImageConfig {
    /// `base_image_input_size` (square): the side of every crop and of the global view.
    pub crop_size: usize,
    /// `image_patch_size`.
    pub patch_size: usize,
    pub max_crops: usize,
    /// Patches at the left/top and right/bottom edge of a crop that it shares with its
    /// neighbours.
    pub overlap_margins: [usize; 2],
    /// `image_token_length_h`, `image_token_length_w`: pooled tokens per crop side.
    pub tokens_per_side: [usize; 2],
    /// `image_padding_mask`: whether `image_masks` is produced (Molmo-7B-D's model needs it).
    pub padding_mask: bool,
    pub do_normalize: bool,
    pub image_mean: [f32; 3],
    pub image_std: [f32; 3],
}

impl Default for MolmoImageConfig {
    /// `MolmoImageProcessor()` defaults, which are also Molmo-7B-D-0924's settings.
    fn default() -> Self {
        Self {
            crop_size: 336,
            patch_size: 14,
            max_crops: 12,
            overlap_margins: [4, 4],
            tokens_per_side: [12, 12],
            padding_mask: true,
            do_normalize: true,
            image_mean: OPENAI_CLIP_MEAN,
            image_std: OPENAI_CLIP_STD,
        }
    }
}

/// One preprocessed image.
#[derive(Debug, Clone, PartialEq)]
pub struct MolmoImage {
    /// `[crops, 3, crop_size, crop_size]`: the global view, then the crops row by row.
    pub pixel_values: Vec<f32>,
    pub shape: [usize; 4],
    /// `[crops, tokens per crop]`: for each pooled slot of each crop, the number of the
    /// `<im_patch>` token (counted from the image's first) it is added to, `-1` for none.
    pub image_input_idx: Vec<i64>,
    /// `[crops, patches per crop]`: the share of each patch that shows the image, in the remote
    /// processor's row order (see the module docs); empty without `padding_mask`.
    pub image_masks: Vec<f32>,
    /// Token rows and columns of the stitched high-resolution grid.
    pub grid: [usize; 2],
}

impl MolmoImageConfig {
    /// Reads `preprocessor_config.json`; missing keys take the defaults, `path` names the file
    /// in errors.
    pub fn from_json(value: &serde_json::Value, path: &std::path::Path) -> Result<Self> {
        let s = Settings::new(value, path)?;
        let mut cfg = Self::default();
        let pair = |key: &str, default: [usize; 2], zero_ok: bool| -> Result<[usize; 2]> {
            match s.get(key) {
                None => Ok(default),
                Some(serde_json::Value::Number(n)) if n.as_u64().is_some_and(|n| n > 0) => {
                    Ok([n.as_u64().unwrap_or(0) as usize; 2])
                }
                Some(serde_json::Value::Array(a)) if a.len() == 2 => {
                    let mut out = [0; 2];
                    for (o, v) in out.iter_mut().zip(a) {
                        *o = v.as_u64().filter(|&n| zero_ok || n > 0).ok_or_else(|| {
                            s.bad(format!("{key} must hold two integers, got {v}"))
                        })? as usize;
                    }
                    Ok(out)
                }
                Some(v) => Err(s.bad(format!("{key} must be two integers, got {v}"))),
            }
        };
        let [h, w] = pair("base_image_input_size", [cfg.crop_size; 2], false)?;
        if h != w {
            return Err(s.bad(format!(
                "base_image_input_size must be square, got [{h}, {w}]"
            )));
        }
        cfg.crop_size = h;
        if let Some(v) = s.get("image_patch_size") {
            cfg.patch_size = s.uint(v, "image_patch_size")? as usize;
        }
        if let Some(v) = s.get("max_crops") {
            cfg.max_crops = s.uint(v, "max_crops")? as usize;
        }
        cfg.overlap_margins = pair("overlap_margins", cfg.overlap_margins, true)?;
        for (side, key) in ["image_token_length_h", "image_token_length_w"]
            .iter()
            .enumerate()
        {
            if let Some(v) = s.get(key) {
                cfg.tokens_per_side[side] = s.uint(v, key)? as usize;
            }
        }
        cfg.padding_mask = s.flag("image_padding_mask", cfg.padding_mask)?;
        cfg.do_normalize = s.flag("do_normalize", cfg.do_normalize)?;
        cfg.image_mean = s.triple("image_mean", cfg.image_mean)?;
        cfg.image_std = s.std(cfg.image_std)?;

        let p = cfg.patch_size;
        let [left, right] = cfg.overlap_margins;
        if !cfg.crop_size.is_multiple_of(p) || cfg.crop_size / p <= left + right {
            return Err(s.bad(format!(
                "base_image_input_size {} must be a multiple of image_patch_size {p} with more patches than the overlap margins {:?}",
                cfg.crop_size, cfg.overlap_margins
            )));
        }
        let patches = cfg.crop_size / p;
        if !left.is_multiple_of(2) || !patches.is_multiple_of(2) {
            return Err(s.bad(format!(
                "2 x 2 pooling needs an even left overlap margin and an even number of patches per crop side, got margins {:?} and {patches} patches",
                cfg.overlap_margins
            )));
        }
        if cfg.tokens_per_side != [patches / 2; 2] {
            return Err(s.bad(format!(
                "image_token_length_h/w {:?} must be half the {patches} patches per crop side (2 x 2 pooling)",
                cfg.tokens_per_side
            )));
        }
        Ok(cfg)
    }

    /// Tiling `(rows, cols)` of crops and the canvas `(height, width)` in pixels for an image
    /// of `height × width`.
    pub fn crop_geometry(&self, height: usize, width: usize) -> ([usize; 2], [usize; 2]) {
        tiled_canvas(
            self.crop_size,
            self.patch_size,
            self.overlap_margins,
            self.max_crops,
            [height, width],
        )
    }

    /// Global view, crops, token map and padding masks of one image.
    pub fn preprocess(&self, image: &DynamicImage) -> Result<MolmoImage> {
        // the remote processor takes `np.array(image)` of an RGB image
        let rgb = image.to_rgb8();
        let (h, w) = (rgb.height() as usize, rgb.width() as usize);
        let s = self.crop_size;
        let p = self.patch_size;
        let cp = s / p;
        let [left, right] = self.overlap_margins;
        let window = (cp - left - right) * p;
        let ([th, tw], [canvas_h, canvas_w]) = self.crop_geometry(h, w);
        let (canvas, canvas_mask) = self.resize_and_pad(&rgb, [canvas_h, canvas_w])?;
        let (global, _) = self.resize_and_pad(&rgb, [s, s])?;

        let crops = 1 + th * tw;
        let mut pixel_values = Vec::with_capacity(crops * 3 * s * s);
        push_crop(&mut pixel_values, &global, s, s, 0, 0);
        let mut image_masks = Vec::new();
        for i in 0..th {
            for j in 0..tw {
                let (top, left_px) = (i * window, j * window);
                push_crop(&mut pixel_values, &canvas, canvas_w, s, top, left_px);
                if self.padding_mask {
                    for py in 0..cp {
                        for px in 0..cp {
                            let mut shown = 0u32;
                            for y in 0..p {
                                let row = (top + py * p + y) * canvas_w + left_px + px * p;
                                shown +=
                                    canvas_mask[row..row + p].iter().filter(|&&m| m).count() as u32;
                            }
                            image_masks.push(shown as f32 / (p * p) as f32);
                        }
                    }
                }
            }
        }
        if self.padding_mask {
            image_masks.extend(std::iter::repeat_n(-1.0, cp * cp));
        }

        // token map: the global view's slots are its tokens in order; a crop's slots inside its
        // kept window map to the stitched grid, whose tokens follow the global view's
        let [tok_h, tok_w] = self.tokens_per_side;
        let per_crop = tok_h * tok_w;
        let mut image_input_idx: Vec<i64> = (0..per_crop as i64).collect();
        let extent = |index: usize, count: usize| -> (usize, usize) {
            // (first kept slot, kept slots) of crop `index` of `count` along one side
            let mut patches = cp - left - right;
            if index == 0 {
                patches += left;
            }
            if index + 1 == count {
                patches += right;
            }
            (if index == 0 { 0 } else { left / 2 }, patches.div_ceil(2))
        };
        let rows: Vec<(usize, usize)> = (0..th).map(|i| extent(i, th)).collect();
        let cols: Vec<(usize, usize)> = (0..tw).map(|j| extent(j, tw)).collect();
        let grid = [
            rows.iter().map(|r| r.1).sum::<usize>(),
            cols.iter().map(|c| c.1).sum::<usize>(),
        ];
        let mut row_offset = 0;
        for &(y0, kept_h) in &rows {
            let mut col_offset = 0;
            for &(x0, kept_w) in &cols {
                for r in 0..tok_h {
                    for c in 0..tok_w {
                        let inside =
                            (y0..y0 + kept_h).contains(&r) && (x0..x0 + kept_w).contains(&c);
                        image_input_idx.push(if inside {
                            let token = (row_offset + r - y0) * grid[1] + col_offset + c - x0;
                            (per_crop + token) as i64
                        } else {
                            -1
                        });
                    }
                }
                col_offset += kept_w;
            }
            row_offset += kept_h;
        }
        Ok(MolmoImage {
            pixel_values,
            shape: [crops, 3, s, s],
            image_input_idx,
            image_masks,
            grid,
        })
    }

    /// `resize_and_pad`: the image scaled to fit `[height, width]` with its aspect ratio kept
    /// (TensorFlow's antialiased bilinear resize on `[0, 1]` floats, clipped), centred on zeros,
    /// then normalised; with the mask of pixels that show the image.
    fn resize_and_pad(
        &self,
        rgb: &RgbImage,
        [out_h, out_w]: [usize; 2],
    ) -> Result<(Vec<f32>, Vec<bool>)> {
        let (h, w) = (rgb.height() as usize, rgb.width() as usize);
        // the remote code computes the scale in float32
        let scale = (out_h as f32 / h as f32).min(out_w as f32 / w as f32);
        let (scaled_h, scaled_w) = ((h as f32 * scale) as usize, (w as f32 * scale) as usize);
        if scaled_h == 0 || scaled_w == 0 {
            return Err(ProcessorError::Input(format!(
                "a {w} x {h} image scales to nothing in a {out_w} x {out_h} Molmo view; its aspect ratio is too extreme"
            )));
        }
        let to_unit = 1.0f32 / 255.0;
        let unit: Vec<f32> = rgb
            .as_raw()
            .iter()
            .map(|&v| f32::from(v) * to_unit)
            .collect();
        let resized = resize_antialiased(&unit, [h, w], [scaled_h, scaled_w]);
        let (top, left) = ((out_h - scaled_h) / 2, (out_w - scaled_w) / 2);
        let mut out = vec![0f32; out_h * out_w * 3];
        let mut mask = vec![false; out_h * out_w];
        for y in 0..scaled_h {
            for x in 0..scaled_w {
                let at = (top + y) * out_w + left + x;
                mask[at] = true;
                for c in 0..3 {
                    out[at * 3 + c] = resized[(y * scaled_w + x) * 3 + c].clamp(0.0, 1.0);
                }
            }
        }
        if self.do_normalize {
            for px in out.chunks_exact_mut(3) {
                for ((v, mean), std) in px.iter_mut().zip(self.image_mean).zip(self.image_std) {
                    *v = (*v - mean) / std;
                }
            }
        }
        Ok((out, mask))
    }

    /// What `<|image|>` becomes for an image whose stitched grid is `grid` tokens: the global
    /// view's rows of `<im_patch>`, each closed by `<im_col>`, between `<im_start>` and
    /// `<im_end>`, then the stitched grid the same way.
    pub fn placeholder(&self, grid: [usize; 2]) -> String {
        let [tok_h, tok_w] = self.tokens_per_side;
        image_block("<im_start>", tok_h, tok_w, true)
            + &image_block("<im_start>", grid[0], grid[1], true)
    }
}

/// One block of image tokens: `start`, then `rows` rows of `cols` `<im_patch>` (each closed by
/// `<im_col>` with `col_token`), then `<im_end>`. Molmo and Molmo2 lay out their views so.
pub(crate) fn image_block(start: &str, rows: usize, cols: usize, col_token: bool) -> String {
    let mut row = "<im_patch>".repeat(cols);
    if col_token {
        row.push_str("<im_col>");
    }
    format!("{start}{}<im_end>", row.repeat(rows))
}

/// Appends the `side` square at `(top, left)` of an RGB `f32` image `width` wide, channels
/// first.
fn push_crop(
    out: &mut Vec<f32>,
    pixels: &[f32],
    width: usize,
    side: usize,
    top: usize,
    left: usize,
) {
    for c in 0..3 {
        for y in 0..side {
            let row = (top + y) * width + left;
            out.extend((row..row + side).map(|at| pixels[at * 3 + c]));
        }
    }
}

/// The tiling `(rows, cols)` and the canvas `(height, width)` in pixels for an image of
/// `height × width` cut into `crop_size` crops that overlap by `overlap_margins` patches: the
/// tiling is chosen as if the image and the crops had no margins, and the canvas is the tiling's
/// windows plus one set of margins. Molmo and Molmo2 share it.
pub(crate) fn tiled_canvas(
    crop_size: usize,
    patch_size: usize,
    [left, right]: [usize; 2],
    max_crops: usize,
    [height, width]: [usize; 2],
) -> ([usize; 2], [usize; 2]) {
    let window = (crop_size / patch_size - left - right) * patch_size;
    let margin = (left + right) * patch_size;
    let tiling = select_tiling(
        height as f32 - margin as f32,
        width as f32 - margin as f32,
        window,
        max_crops,
    );
    (
        tiling,
        [tiling[0] * window + margin, tiling[1] * window + margin],
    )
}

/// The tiling `(rows, cols)` with at most `max_crops` crops of `window` pixels that needs the
/// least upscaling to cover `height × width`, or, when every tiling must shrink the image, the
/// one that shrinks it least (`select_tiling`: candidates ordered by crop count then rows; f32
/// arithmetic; the first best wins).
fn select_tiling(height: f32, width: f32, window: usize, max_crops: usize) -> [usize; 2] {
    let mut tilings: Vec<[usize; 2]> = (1..=max_crops)
        .flat_map(|r| (1..=max_crops).map(move |c| [r, c]))
        .filter(|[r, c]| r * c <= max_crops)
        .collect();
    tilings.sort_by_key(|&[r, c]| (r * c, r));
    let scales: Vec<f32> = tilings
        .iter()
        .map(|&[r, c]| ((r * window) as f32 / height).min((c * window) as f32 / width))
        .collect();
    let pick = |better: &dyn Fn(f32, f32) -> bool, values: &[f32]| {
        let mut best = 0;
        for (i, &v) in values.iter().enumerate() {
            if better(v, values[best]) {
                best = i;
            }
        }
        tilings[best]
    };
    if scales.iter().all(|&s| s < 1.0) {
        pick(&|a, b| a > b, &scales)
    } else {
        let upscales: Vec<f32> = scales
            .iter()
            .map(|&s| if s < 1.0 { 10e9 } else { s })
            .collect();
        pick(&|a, b| a < b, &upscales)
    }
}

/// TensorFlow's `resize(method=BILINEAR, antialias=True)` (`scale_and_translate` with a triangle
/// kernel) on interleaved RGB floats: the kernel is widened by the shrink factor, each output
/// pixel's weights are normalised to sum to one, and rows are resized before columns, all in
/// f32 as TensorFlow's CPU kernel does.
fn resize_antialiased(rgb: &[f32], [h, w]: [usize; 2], [oh, ow]: [usize; 2]) -> Vec<f32> {
    let spans = |input: usize, output: usize| -> Vec<(usize, Vec<f32>)> {
        let scale = output as f32 / input as f32;
        let inv_scale = (1.0 / f64::from(scale)) as f32;
        let kernel_scale = inv_scale.max(1.0);
        let radius = kernel_scale;
        (0..output)
            .map(|x| {
                let sample = (x as f32 + 0.5) * inv_scale;
                let last = input as i64 - 1;
                let start = ((sample - radius - 0.5).ceil() as i64).clamp(0, last);
                let end = ((sample + radius - 0.5).floor() as i64).clamp(0, last) + 1;
                let weights: Vec<f32> = (start..end)
                    .map(|src| {
                        let pos = (src as f32 + 0.5 - sample) / kernel_scale;
                        (1.0 - pos.abs()).max(0.0)
                    })
                    .collect();
                let total: f32 = weights.iter().sum();
                let weights = if total.abs() >= 1000.0 * f32::MIN_POSITIVE {
                    let inv = 1.0 / total;
                    weights.iter().map(|v| v * inv).collect()
                } else {
                    vec![0.0; weights.len()]
                };
                (start as usize, weights)
            })
            .collect()
    };
    // rows first: [oh, w] intermediate, then columns
    let mut rows_done = vec![0f32; oh * w * 3];
    for (y, (start, weights)) in spans(h, oh).iter().enumerate() {
        let out = &mut rows_done[y * w * 3..(y + 1) * w * 3];
        for (k, &weight) in weights.iter().enumerate() {
            let src = &rgb[(start + k) * w * 3..(start + k + 1) * w * 3];
            for (o, &v) in out.iter_mut().zip(src) {
                *o += weight * v;
            }
        }
    }
    let cols = spans(w, ow);
    let mut out = vec![0f32; oh * ow * 3];
    for y in 0..oh {
        for (x, (start, weights)) in cols.iter().enumerate() {
            for c in 0..3 {
                let mut sum = 0f32;
                for (k, &weight) in weights.iter().enumerate() {
                    sum += weight * rows_done[(y * w + start + k) * 3 + c];
                }
                out[(y * ow + x) * 3 + c] = sum;
            }
        }
    }
    out
}

/// The placeholder the prompt format (Molmo) or chat template (Molmo2) writes for each image.
pub(crate) const IMAGE_TOKEN: &str = "<|image|>";

/// The prompt `MolmoProcessor.process` builds (`message_format = "role"`,
/// `always_start_with_space`): the images first, then `" User: {text} Assistant:"`; an
/// assistant turn continues as `" Assistant: {text}"`. The checkpoint's `chat_template` (a
/// ChatML one in Molmo-7B-D's tokenizer files) is not what its processor uses.
const PROMPT_FORMAT: &str = "\
{%- for message in messages if message.content is not string -%}
{%- for part in message.content if part.type == 'image' %}<|image|>{% endfor -%}
{%- endfor -%}
{%- for message in messages -%}
{%- if message.role == 'user' %} User: {% elif message.role == 'assistant' %} Assistant: {% else %}{{ raise_exception('Molmo prompts have user and assistant turns, not ' ~ message.role) }}{% endif -%}
{%- if message.content is string %}{{ message.content }}{% else %}{% for part in message.content if part.type == 'text' %}{{ part.text }}{% endfor %}{% endif -%}
{%- endfor -%}
{%- if add_generation_prompt %} Assistant:{% endif -%}";

/// Which patches each image token pools: `index` is `[tokens, window]` row-major, indices into
/// the patches of the pixel entries (entry-major, `patches_per_entry` each), `-1` for an empty
/// slot. Molmo also gives each patch's share of image (`patch_masks`, `[entries, patches]`).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenPooling {
    pub index: Vec<i64>,
    pub window: usize,
    pub patches_per_entry: usize,
    pub patch_masks: Option<Vec<f32>>,
}

/// The original Molmo's image side of [`crate::Processor`]: [`MolmoImageConfig`], the BOS text
/// `MolmoProcessor` puts in front of every prompt, and its prompt format.
#[derive(Debug, Clone)]
pub struct MolmoImages {
    pub image: MolmoImageConfig,
    /// The tokenizer's BOS, or its EOS when it has none (Molmo-7B-D's Qwen2 tokenizer).
    pub bos: String,
}

impl MolmoImages {
    /// Reads `preprocessor_config.json`.
    pub fn from_checkpoint(files: &CheckpointFiles<'_>) -> Result<Self> {
        Ok(Self {
            image: MolmoImageConfig::from_json(files.image_settings, files.image_settings_path)?,
            bos: prompt_start(files, "Molmo")?,
        })
    }
}

impl ImagePipeline for MolmoImages {
    fn family(&self) -> &'static str {
        "molmo"
    }

    fn image_token(&self) -> &str {
        IMAGE_TOKEN
    }

    fn feature_token(&self) -> &str {
        "<im_patch>"
    }

    fn prompt_format(&self) -> Option<&'static str> {
        Some(PROMPT_FORMAT)
    }

    fn preprocess(&self, image: &DynamicImage) -> Result<ProcessedImage> {
        let out = self.image.preprocess(image)?;
        let side = out.shape[2];
        let cp = side / self.image.patch_size;
        let per_crop = self.image.tokens_per_side[0] * self.image.tokens_per_side[1];
        let tokens = per_crop + out.grid[0] * out.grid[1];
        // turn the slot -> token map around: the 2 x 2 window of crop patches each token pools
        let mut index = vec![-1i64; tokens * 4];
        for (slot, &token) in out.image_input_idx.iter().enumerate() {
            if token < 0 {
                continue;
            }
            let (crop, within) = (slot / per_crop, slot % per_crop);
            let (r, c) = (
                within / self.image.tokens_per_side[1],
                within % self.image.tokens_per_side[1],
            );
            for (k, (dy, dx)) in [(0, 0), (0, 1), (1, 0), (1, 1)].into_iter().enumerate() {
                index[token as usize * 4 + k] =
                    (crop * cp * cp + (2 * r + dy) * cp + 2 * c + dx) as i64;
            }
        }
        Ok(ProcessedImage {
            pixel_values: out.pixel_values,
            shape: out.shape.to_vec(),
            placeholder: self.image.placeholder(out.grid),
            image_grid_thw: None,
            pixel_mask: None,
            token_pooling: Some(TokenPooling {
                index,
                window: 4,
                patches_per_entry: cp * cp,
                patch_masks: self.image.padding_mask.then_some(out.image_masks),
            }),
        })
    }

    fn finish_prompt(&self, text: String) -> String {
        with_start(&self.bos, text)
    }
}

/// What both Molmo processors put in front of every prompt: the tokenizer's BOS, or its EOS
/// when it has none (Qwen2 tokenizers), as text.
pub(crate) fn prompt_start(files: &CheckpointFiles<'_>, family: &str) -> Result<String> {
    files
        .tokenizer
        .bos()
        .or(files.tokenizer.eos())
        .map(|t| t.text.clone())
        .ok_or_else(|| ProcessorError::BadFile {
            path: files.dir.join("tokenizer_config.json"),
            detail: format!("{family} needs a BOS or EOS token to start its prompts"),
        })
}

/// `text` with `start` in front, unless it already starts with it.
pub(crate) fn with_start(start: &str, text: String) -> String {
    if text.starts_with(start) {
        text
    } else {
        format!("{start}{text}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> MolmoImageConfig {
        MolmoImageConfig {
            crop_size: 112,
            patch_size: 14,
            max_crops: 4,
            overlap_margins: [2, 2],
            tokens_per_side: [4, 4],
            ..Default::default()
        }
    }

    #[test]
    fn every_token_gets_exactly_one_slot() {
        // 2 x 2 crops: the stitched grid is (4 + 4) / 2 = ... tokens per side; each token is
        // fed by one crop slot and the global view's tokens come first
        let img = DynamicImage::ImageRgb8(RgbImage::from_fn(150, 120, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 7])
        }));
        let out = tiny().preprocess(&img).unwrap();
        let tokens = 16 + out.grid[0] * out.grid[1];
        let mut seen = vec![0; tokens];
        for &t in out.image_input_idx.iter().filter(|&&t| t >= 0) {
            seen[t as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n == 1), "{seen:?}");
        assert_eq!(out.image_masks.len(), out.shape[0] * 64);
    }

    #[test]
    fn resizing_to_the_same_size_keeps_the_pixels() {
        let rgb: Vec<f32> = (0..2 * 3 * 3).map(|v| v as f32 / 17.0).collect();
        assert_eq!(resize_antialiased(&rgb, [2, 3], [2, 3]), rgb);
    }

    #[test]
    fn tiling_prefers_the_least_upscaling() {
        // a 32 x 62 image with 28 px windows: no tiling of at most 4 crops covers it (3 columns
        // are needed); 2 x 2 shrinks it least
        assert_eq!(select_tiling(32.0, 62.0, 28, 4), [2, 2]);
        assert_eq!(select_tiling(20.0, 20.0, 28, 4), [1, 1]);
        // too big for any tiling: the largest scale wins
        assert_eq!(select_tiling(1000.0, 100.0, 28, 4), [4, 1]);
    }

    #[test]
    fn odd_patch_grids_are_rejected() {
        let json = serde_json::json!({"base_image_input_size": [98, 98], "image_token_length_w": 4, "image_token_length_h": 4, "overlap_margins": [2, 2]});
        let err = MolmoImageConfig::from_json(&json, std::path::Path::new("p.json")).unwrap_err();
        assert!(err.to_string().contains("even number of patches"), "{err}");
    }
}
