//! Molmo2's image processor (transformers' `Molmo2ImageProcessor`, torchvision backend) and image
//! token layout (`Molmo2Processor`): a low-resolution view of the whole image plus overlapping
//! high-resolution crops of a canvas whose tiling fits the image, the patch pooling that turns
//! them into image tokens, and the `<|image|>` expansion.
//!
//! * Resizing is PyTorch's bilinear interpolation without antialiasing on float pixels, rounded
//!   back to 8 bits, as transformers does (`resize_and_normalize_image`).
//! * The canvas is `tiling × window + margins`; crop `(i, j)` starts at `(i, j) × window`. Of the
//!   patches where neighbouring crops overlap, the inner ones (outside the `overlap_margins`) are
//!   kept, which stitches the crops into one `canvas / patch` grid of patch indices.
//! * Each image token pools a `pooling_size` window of that grid (`-1` pads a ragged edge, half
//!   before and half after); the low-resolution view's tokens come first.

use image::{DynamicImage, RgbImage};

use crate::error::Result;
use crate::image::{Settings, to_rgb_on_white};
use crate::molmo::{
    IMAGE_TOKEN, TokenPooling, image_block, prompt_start, tiled_canvas, with_start,
};
use crate::processor::{CheckpointFiles, ImagePipeline, ProcessedImage};

/// Settings of `Molmo2ImageProcessor` and the token layout of `Molmo2Processor`.
#[derive(Debug, Clone, PartialEq)]
pub struct Molmo2ImageConfig {
    /// `size` (square): the side of every crop.
    pub crop_size: usize,
    pub patch_size: usize,
    pub max_crops: usize,
    /// Patches at the left/top and right/bottom edge of a crop that it shares with its
    /// neighbours.
    pub overlap_margins: [usize; 2],
    /// Pooling window (rows, cols).
    pub pooling_size: [usize; 2],
    pub do_convert_rgb: bool,
    pub do_rescale: bool,
    pub rescale_factor: f64,
    pub do_normalize: bool,
    pub image_mean: [f32; 3],
    pub image_std: [f32; 3],
    /// `image_use_col_tokens`: an `<im_col>` after each token row of the high-resolution grid.
    pub col_tokens: bool,
    /// `use_single_crop_col_tokens` (`None` in the file: as `col_tokens`) for the low-res view.
    pub low_res_col_tokens: bool,
    /// `use_single_crop_start_token`: the low-res view starts with `<low_res_im_start>`.
    pub low_res_start_token: bool,
}

impl Default for Molmo2ImageConfig {
    /// `Molmo2ImageProcessor()` and `Molmo2Processor()` defaults.
    fn default() -> Self {
        Self {
            crop_size: 378,
            patch_size: 14,
            max_crops: 8,
            overlap_margins: [4, 4],
            pooling_size: [2, 2],
            do_convert_rgb: true,
            do_rescale: true,
            rescale_factor: 1.0 / 255.0,
            do_normalize: true,
            image_mean: [0.5; 3],
            image_std: [0.5; 3],
            col_tokens: true,
            low_res_col_tokens: true,
            low_res_start_token: true,
        }
    }
}

/// One preprocessed image.
#[derive(Debug, Clone, PartialEq)]
pub struct Molmo2Image {
    /// `[crops, 3, crop_size, crop_size]`: the low-resolution view, then the crops row by row.
    pub pixel_values: Vec<f32>,
    pub shape: [usize; 4],
    /// `[tokens, pool_h * pool_w]` row-major: the patches (index into this image's crops,
    /// crop-major) each image token pools, `-1` for an empty slot (`image_token_pooling`).
    pub token_pooling: Vec<i64>,
    pub pooling_shape: [usize; 2],
    /// `[low-res rows, low-res cols, high-res rows, high-res cols]` of image tokens
    /// (`image_grids`).
    pub grid: [usize; 4],
}

impl Molmo2ImageConfig {
    /// Reads a transformers-5 `processor_config.json`: the `image_processor` entry and the
    /// token-layout keys at the top level. Missing keys take the defaults; `path` names the file
    /// in errors.
    pub fn from_processor_config(
        value: &serde_json::Value,
        path: &std::path::Path,
    ) -> Result<Self> {
        let top = Settings::new(value, path)?;
        let image = match top.get("image_processor") {
            Some(v) => v,
            None => value,
        };
        let s = Settings::new(image, path)?;
        let mut cfg = Self::default();
        let square = |key: &str, default: usize| -> Result<usize> {
            match s.get(key) {
                None => Ok(default),
                Some(v) => {
                    let side = |k: &str| v.get(k).map(|n| s.uint(n, &format!("{key}.{k}")));
                    match (side("height"), side("width")) {
                        (Some(h), Some(w)) => {
                            let (h, w) = (h?, w?);
                            if h == w {
                                Ok(h as usize)
                            } else {
                                Err(s.bad(format!("{key} must be square, got {h} x {w}")))
                            }
                        }
                        _ => Err(s.bad(format!(
                            "{key} must be {{\"height\": n, \"width\": n}}, got {v}"
                        ))),
                    }
                }
            }
        };
        let pair = |key: &str, default: [usize; 2], zero_ok: bool| -> Result<[usize; 2]> {
            match s.get(key) {
                None => Ok(default),
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
        cfg.crop_size = square("size", cfg.crop_size)?;
        if let Some(v) = s.get("patch_size") {
            cfg.patch_size = s.uint(v, "patch_size")? as usize;
        }
        if let Some(v) = s.get("max_crops") {
            cfg.max_crops = s.uint(v, "max_crops")? as usize;
        }
        cfg.overlap_margins = pair("overlap_margins", cfg.overlap_margins, true)?;
        cfg.pooling_size = pair("pooling_size", cfg.pooling_size, false)?;
        if s.resample(2)? != 2 {
            return Err(s.bad("resample: Molmo2 resizes bilinearly (2)".into()));
        }
        cfg.do_convert_rgb = s.flag("do_convert_rgb", cfg.do_convert_rgb)?;
        cfg.do_rescale = s.flag("do_rescale", cfg.do_rescale)?;
        cfg.rescale_factor = s.number("rescale_factor", cfg.rescale_factor)?;
        cfg.do_normalize = s.flag("do_normalize", cfg.do_normalize)?;
        cfg.image_mean = s.triple("image_mean", cfg.image_mean)?;
        cfg.image_std = s.std(cfg.image_std)?;
        if !s.flag("do_resize", true)? {
            return Err(s.bad("do_resize = false is not supported: crops must be resized".into()));
        }
        cfg.col_tokens = top.flag("image_use_col_tokens", cfg.col_tokens)?;
        cfg.low_res_col_tokens = top.flag("use_single_crop_col_tokens", cfg.col_tokens)?;
        cfg.low_res_start_token =
            top.flag("use_single_crop_start_token", cfg.low_res_start_token)?;
        let p = cfg.patch_size;
        let margins = cfg.overlap_margins[0] + cfg.overlap_margins[1];
        if !cfg.crop_size.is_multiple_of(p) || cfg.crop_size / p <= margins {
            return Err(s.bad(format!(
                "size {} must be a multiple of patch_size {p} with more patches than the overlap margins {:?}",
                cfg.crop_size, cfg.overlap_margins
            )));
        }
        Ok(cfg)
    }

    /// Tiling `(rows, cols)` of crops and the canvas `(height, width)` in pixels for an image
    /// of `height × width` (`compute_crop_geometry`).
    pub fn crop_geometry(&self, height: usize, width: usize) -> ([usize; 2], [usize; 2]) {
        tiled_canvas(
            self.crop_size,
            self.patch_size,
            self.overlap_margins,
            self.max_crops,
            [height, width],
        )
    }

    /// Crops, pooling and token grid of one image.
    pub fn preprocess(&self, image: &DynamicImage) -> Result<Molmo2Image> {
        let rgb: RgbImage = if self.do_convert_rgb {
            to_rgb_on_white(image)
        } else {
            image.to_rgb8()
        };
        let (w, h) = (rgb.width() as usize, rgb.height() as usize);
        let s = self.crop_size;
        let p = self.patch_size;
        let cp = s / p;
        let [left, right] = self.overlap_margins;
        let window = (cp - left - right) * p;
        let ([th, tw], [canvas_h, canvas_w]) = self.crop_geometry(h, w);
        let canvas = resize_bilinear(rgb.as_raw(), [h, w], [canvas_h, canvas_w]);
        let low_res = resize_bilinear(rgb.as_raw(), [h, w], [s, s]);
        let crops = 1 + th * tw;
        let mut pixel_values = Vec::with_capacity(crops * 3 * s * s);
        self.push_crop(&mut pixel_values, &low_res, s, 0, 0);
        for i in 0..th {
            for j in 0..tw {
                self.push_crop(&mut pixel_values, &canvas, canvas_w, i * window, j * window);
            }
        }
        // the stitched grid of high-res patches: (crop row, patch row, crop col, patch col) order,
        // dropping the margins a crop shares with its neighbours
        let mut stitched = Vec::with_capacity((canvas_h / p) * (canvas_w / p));
        for i in 0..th {
            for y in 0..cp {
                for j in 0..tw {
                    for x in 0..cp {
                        let hidden = (i > 0 && y < left)
                            || (j > 0 && x < left)
                            || (i + 1 < th && y >= cp - right)
                            || (j + 1 < tw && x >= cp - right);
                        if !hidden {
                            stitched.push((((i * tw + j) * cp + y) * cp + x) as i64);
                        }
                    }
                }
            }
        }
        let [ph, pw] = self.pooling_size;
        let low_res_grid: Vec<i64> = (0..(cp * cp) as i64).collect();
        let (mut token_pooling, low_rows, low_cols) =
            pool_windows(&low_res_grid, [cp, cp], [ph, pw]);
        let (high, rows, cols) = pool_windows(&stitched, [canvas_h / p, canvas_w / p], [ph, pw]);
        let offset = (cp * cp) as i64;
        token_pooling.extend(high.iter().map(|&i| if i >= 0 { i + offset } else { i }));
        let tokens = token_pooling.len() / (ph * pw);
        Ok(Molmo2Image {
            pixel_values,
            shape: [crops, 3, s, s],
            token_pooling,
            pooling_shape: [tokens, ph * pw],
            grid: [low_rows, low_cols, rows, cols],
        })
    }

    /// Appends the `crop_size` square at `(top, left)` of an RGB `f32` image `width` wide,
    /// rounded to 8 bits, rescaled and normalised, channels first.
    fn push_crop(&self, out: &mut Vec<f32>, pixels: &[f32], width: usize, top: usize, left: usize) {
        let s = self.crop_size;
        for c in 0..3 {
            for y in 0..s {
                for x in 0..s {
                    let v = pixels[((top + y) * width + left + x) * 3 + c];
                    // transformers rounds the float resize back to 8 bits before rescaling
                    let mut v = v.round_ties_even().clamp(0.0, 255.0);
                    if self.do_rescale {
                        v = (f64::from(v) * self.rescale_factor) as f32;
                    }
                    if self.do_normalize {
                        v = (v - self.image_mean[c]) / self.image_std[c];
                    }
                    out.push(v);
                }
            }
        }
    }

    /// What `<|image|>` becomes for an image with token grid `grid`: the low-res view
    /// (`<low_res_im_start>`, rows of `<im_patch>` each closed by `<im_col>`, `<im_end>`), then
    /// the high-res grid between `<im_start>` and `<im_end>`.
    pub fn placeholder(&self, grid: [usize; 4]) -> String {
        let [low_rows, low_cols, rows, cols] = grid;
        let start = if self.low_res_start_token {
            "<low_res_im_start>"
        } else {
            "<im_start>"
        };
        image_block(start, low_rows, low_cols, self.low_res_col_tokens)
            + &image_block("<im_start>", rows, cols, self.col_tokens)
    }
}

/// Molmo2's image side of [`crate::Processor`]: [`Molmo2ImageConfig`] plus the BOS text that
/// `Molmo2Processor` puts in front of every prompt.
#[derive(Debug, Clone)]
pub struct Molmo2Images {
    pub image: Molmo2ImageConfig,
    /// The tokenizer's BOS, or its EOS when it has none.
    pub bos: String,
}

impl Molmo2Images {
    /// Reads `processor_config.json` (transformers 5 keeps the image settings and the token
    /// layout there).
    pub fn from_checkpoint(files: &CheckpointFiles<'_>) -> Result<Self> {
        let (config, path) = match files.processor_config {
            Some(c) => (c, files.processor_config_path),
            None => (files.image_settings, files.image_settings_path),
        };
        Ok(Self {
            image: Molmo2ImageConfig::from_processor_config(config, path)?,
            bos: prompt_start(files, "Molmo2")?,
        })
    }
}

impl ImagePipeline for Molmo2Images {
    fn family(&self) -> &'static str {
        "molmo2"
    }

    fn image_token(&self) -> &str {
        IMAGE_TOKEN
    }

    fn feature_token(&self) -> &str {
        "<im_patch>"
    }

    fn preprocess(&self, image: &DynamicImage) -> Result<ProcessedImage> {
        let out = self.image.preprocess(image)?;
        let side = out.shape[2];
        let p = self.image.patch_size;
        Ok(ProcessedImage {
            pixel_values: out.pixel_values,
            shape: out.shape.to_vec(),
            placeholder: self.image.placeholder(out.grid),
            image_grid_thw: None,
            pixel_mask: None,
            token_pooling: Some(TokenPooling {
                index: out.token_pooling,
                window: out.pooling_shape[1],
                patches_per_entry: (side / p) * (side / p),
                patch_masks: None,
            }),
        })
    }

    fn finish_prompt(&self, text: String) -> String {
        with_start(&self.bos, text)
    }
}

/// Groups a `[rows, cols]` grid of patch indices into pooling windows, padding a ragged edge
/// with `-1` (half before, the rest after): `([windows * pool_h * pool_w], rows, cols)` of the
/// pooled grid (`arange_for_pooling`).
fn pool_windows(
    grid: &[i64],
    [rows, cols]: [usize; 2],
    [ph, pw]: [usize; 2],
) -> (Vec<i64>, usize, usize) {
    let (pad_h, pad_w) = (rows.div_ceil(ph) * ph - rows, cols.div_ceil(pw) * pw - cols);
    let (top, left) = (pad_h / 2, pad_w / 2);
    let (out_rows, out_cols) = (rows.div_ceil(ph), cols.div_ceil(pw));
    let at = |y: usize, x: usize| -> i64 {
        match (y.checked_sub(top), x.checked_sub(left)) {
            (Some(y), Some(x)) if y < rows && x < cols => grid[y * cols + x],
            _ => -1,
        }
    };
    let mut out = Vec::with_capacity(out_rows * out_cols * ph * pw);
    for r in 0..out_rows {
        for c in 0..out_cols {
            for dy in 0..ph {
                for dx in 0..pw {
                    out.push(at(r * ph + dy, c * pw + dx));
                }
            }
        }
    }
    (out, out_rows, out_cols)
}

/// PyTorch's `interpolate(mode="bilinear", align_corners=False, antialias=False)` on 8-bit RGB
/// (row-major, interleaved) as f32: source coordinates `(dst + 0.5) * in / out - 0.5` clamped at
/// 0, the row weights applied to the two column-interpolated rows, all in f32.
fn resize_bilinear(rgb: &[u8], [h, w]: [usize; 2], [oh, ow]: [usize; 2]) -> Vec<f32> {
    let taps = |input: usize, output: usize| -> Vec<(usize, usize, f32, f32)> {
        let scale = input as f32 / output as f32;
        (0..output)
            .map(|d| {
                let src = (scale * (d as f32 + 0.5) - 0.5).max(0.0);
                let i0 = (src.floor() as usize).min(input - 1);
                let lambda = (src - i0 as f32).clamp(0.0, 1.0);
                let i1 = if i0 + 1 < input { i0 + 1 } else { i0 };
                (i0, i1, 1.0 - lambda, lambda)
            })
            .collect()
    };
    let (rows, cols) = (taps(h, oh), taps(w, ow));
    let mut out = Vec::with_capacity(oh * ow * 3);
    let px = |y: usize, x: usize, c: usize| f32::from(rgb[(y * w + x) * 3 + c]);
    for &(y0, y1, wy0, wy1) in &rows {
        for &(x0, x1, wx0, wx1) in &cols {
            for c in 0..3 {
                let top = wx0 * px(y0, x0, c) + wx1 * px(y0, x1, c);
                let bottom = wx0 * px(y1, x0, c) + wx1 * px(y1, x1, c);
                out.push(wy0 * top + wy1 * bottom);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ragged_grids_pad_half_before_and_half_after() {
        // 3 x 1 grid, 2 x 2 windows: one column of padding goes after (1 // 2 = 0 before),
        // one row of padding after
        let (pooled, rows, cols) = pool_windows(&[0, 1, 2], [3, 1], [2, 2]);
        assert_eq!((rows, cols), (2, 1));
        assert_eq!(pooled, vec![0, -1, 1, -1, 2, -1, -1, -1]);
    }

    #[test]
    fn resizing_to_the_same_size_keeps_the_pixels() {
        let rgb: Vec<u8> = (0..2 * 3 * 3).map(|v| (v * 13) as u8).collect();
        let out = resize_bilinear(&rgb, [2, 3], [2, 3]);
        assert_eq!(out, rgb.iter().map(|&v| f32::from(v)).collect::<Vec<_>>());
    }
}
