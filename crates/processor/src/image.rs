//! CLIP-style image preprocessing (LLaVA-1.5's `CLIPImageProcessor`): RGB conversion, resize of
//! the shortest edge, centre crop, rescale, normalise, channels-first `f32`.
//!
//! It follows transformers' PIL backend step by step (same output size rounding, same crop
//! offsets and zero padding, rescale in f64 then normalise in f32). The resize is PIL's: a
//! horizontal convolution pass rounded and clipped to 8 bits, then a vertical one. The order and
//! the clipping matter: near sharp edges, doing the vertical pass first (what a one-call u8
//! resize does) or keeping the intermediate in f32 moves pixels by 20+ steps. Each pass runs
//! as its own `fast_image_resize` call; its fixed-point coefficients differ from PIL's by at
//! most a rounding step.

use std::path::Path;

use fast_image_resize::images::Image as FirImage;
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::{DynamicImage, RgbImage};

use crate::error::{ProcessorError, Result};

/// Target size of the resize step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResizeTo {
    /// Scale so the shorter side has this length (aspect ratio kept).
    ShortestEdge(u32),
    /// Exactly this height and width.
    Exact { height: u32, width: u32 },
}

/// Settings of a CLIP-style image processor, as in `preprocessor_config.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipImageConfig {
    pub do_convert_rgb: bool,
    pub do_resize: bool,
    pub size: ResizeTo,
    /// PIL resampling code: 0 nearest, 1 lanczos, 2 bilinear, 3 bicubic.
    pub resample: u8,
    pub do_center_crop: bool,
    /// Crop (height, width).
    pub crop_size: (u32, u32),
    pub do_rescale: bool,
    pub rescale_factor: f64,
    pub do_normalize: bool,
    pub image_mean: [f32; 3],
    pub image_std: [f32; 3],
}

/// transformers' `OPENAI_CLIP_MEAN` / `OPENAI_CLIP_STD`, the defaults of `CLIPImageProcessor`
/// (digits as transformers writes them).
#[allow(clippy::excessive_precision)]
pub const OPENAI_CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
#[allow(clippy::excessive_precision)]
pub const OPENAI_CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];

impl Default for ClipImageConfig {
    /// `CLIPImageProcessor()`'s defaults.
    fn default() -> Self {
        Self {
            do_convert_rgb: true,
            do_resize: true,
            size: ResizeTo::ShortestEdge(224),
            resample: 3,
            do_center_crop: true,
            crop_size: (224, 224),
            do_rescale: true,
            rescale_factor: 1.0 / 255.0,
            do_normalize: true,
            image_mean: OPENAI_CLIP_MEAN,
            image_std: OPENAI_CLIP_STD,
        }
    }
}

/// A preprocessed image: channels-first `f32` values.
#[derive(Debug, Clone, PartialEq)]
pub struct PixelValues {
    pub data: Vec<f32>,
    /// `[channels, height, width]`.
    pub shape: [usize; 3],
}

impl ClipImageConfig {
    /// Reads the settings from an image-processor JSON object (`preprocessor_config.json`, or the
    /// `image_processor` entry of a transformers-5 `processor_config.json`); missing keys take
    /// `CLIPImageProcessor`'s defaults. `path` is only used in messages.
    pub fn from_json(value: &serde_json::Value, path: &Path) -> Result<Self> {
        let settings = Settings::new(value, path)?;
        let mut cfg = Self::default();
        cfg.do_convert_rgb = settings.flag("do_convert_rgb", cfg.do_convert_rgb)?;
        cfg.do_resize = settings.flag("do_resize", cfg.do_resize)?;
        cfg.do_center_crop = settings.flag("do_center_crop", cfg.do_center_crop)?;
        cfg.do_rescale = settings.flag("do_rescale", cfg.do_rescale)?;
        cfg.do_normalize = settings.flag("do_normalize", cfg.do_normalize)?;
        if let Some(size) = settings.get("size") {
            cfg.size = if size.is_number() {
                // Old configs: an int means the shortest edge for CLIP (default_to_square=False).
                ResizeTo::ShortestEdge(settings.uint(size, "size")?)
            } else if let Some(edge) = size.get("shortest_edge") {
                ResizeTo::ShortestEdge(settings.uint(edge, "size.shortest_edge")?)
            } else if let (Some(h), Some(w)) = (size.get("height"), size.get("width")) {
                ResizeTo::Exact {
                    height: settings.uint(h, "size.height")?,
                    width: settings.uint(w, "size.width")?,
                }
            } else {
                return Err(settings.bad(format!(
                    "size must be an integer, {{\"shortest_edge\": n}} or {{\"height\": h, \"width\": w}}, got {size}"
                )));
            };
        }
        if let Some(crop) = settings.get("crop_size") {
            cfg.crop_size = if crop.is_number() {
                let n = settings.uint(crop, "crop_size")?;
                (n, n)
            } else if let (Some(h), Some(w)) = (crop.get("height"), crop.get("width")) {
                (
                    settings.uint(h, "crop_size.height")?,
                    settings.uint(w, "crop_size.width")?,
                )
            } else {
                return Err(settings.bad(format!(
                    "crop_size must be an integer or {{\"height\": h, \"width\": w}}, got {crop}"
                )));
            };
        }
        cfg.resample = settings.resample(cfg.resample)?;
        cfg.rescale_factor = settings.number("rescale_factor", cfg.rescale_factor)?;
        cfg.image_mean = settings.triple("image_mean", cfg.image_mean)?;
        cfg.image_std = settings.std(cfg.image_std)?;
        Ok(cfg)
    }

    /// Output (height, width) of the resize step for an input of (height, width), as
    /// transformers' `get_resize_output_image_size(default_to_square=False)` computes it.
    pub fn resized_size(&self, height: u32, width: u32) -> (u32, u32) {
        match self.size {
            ResizeTo::Exact { height, width } => (height, width),
            ResizeTo::ShortestEdge(edge) => {
                let (short, long) = if width <= height {
                    (width, height)
                } else {
                    (height, width)
                };
                // Python: int(size * long / short), a float division truncated.
                let new_long = ((edge as u64 * long as u64) as f64 / short as f64) as u32;
                if width <= height {
                    (new_long, edge)
                } else {
                    (edge, new_long)
                }
            }
        }
    }

    /// Runs the whole pipeline on one image.
    pub fn preprocess(&self, image: &DynamicImage) -> Result<PixelValues> {
        if image.width() == 0 || image.height() == 0 {
            return Err(ProcessorError::Image {
                origin: "input".into(),
                detail: format!("empty image ({}x{})", image.width(), image.height()),
            });
        }
        let rgb = if self.do_convert_rgb {
            to_rgb_on_white(image)
        } else {
            image.to_rgb8()
        };
        let resized = if self.do_resize {
            let (h, w) = self.resized_size(rgb.height(), rgb.width());
            resize_like_pil(rgb, w, h, self.resample)?
        } else {
            rgb
        };
        let (height, width, pixels) = if self.do_center_crop {
            let (ch, cw) = self.crop_size;
            (ch, cw, center_crop(&resized, ch, cw))
        } else {
            (resized.height(), resized.width(), resized.into_raw())
        };
        let (h, w) = (height as usize, width as usize);
        Ok(PixelValues {
            data: to_channels_first(
                &pixels,
                self.do_rescale.then_some(self.rescale_factor),
                self.do_normalize
                    .then_some((self.image_mean, self.image_std)),
            ),
            shape: [3, h, w],
        })
    }
}

/// RGB bytes (row-major, interleaved) to channels-first `f32`: rescaled in f64 and cast to f32,
/// then normalised in f32, as transformers' PIL backend does.
pub(crate) fn to_channels_first(
    rgb: &[u8],
    rescale: Option<f64>,
    normalize: Option<([f32; 3], [f32; 3])>,
) -> Vec<f32> {
    let plane = rgb.len() / 3;
    let mut data = vec![0f32; rgb.len()];
    for c in 0..3 {
        let out = &mut data[c * plane..(c + 1) * plane];
        for (i, o) in out.iter_mut().enumerate() {
            let raw = rgb[i * 3 + c];
            let mut v = match rescale {
                Some(factor) => (raw as f64 * factor) as f32,
                None => raw as f32,
            };
            if let Some((mean, std)) = normalize {
                v = (v - mean[c]) / std[c];
            }
            *o = v;
        }
    }
    data
}

/// Typed reads from an image-processor JSON object, with errors naming the file and key.
pub(crate) struct Settings<'a> {
    obj: &'a serde_json::Map<String, serde_json::Value>,
    path: &'a Path,
}

impl<'a> Settings<'a> {
    pub(crate) fn new(value: &'a serde_json::Value, path: &'a Path) -> Result<Self> {
        match value.as_object() {
            Some(obj) => Ok(Self { obj, path }),
            None => Err(ProcessorError::BadFile {
                path: path.to_path_buf(),
                detail: "image processor settings must be a JSON object".into(),
            }),
        }
    }

    pub(crate) fn bad(&self, detail: String) -> ProcessorError {
        ProcessorError::BadFile {
            path: self.path.to_path_buf(),
            detail,
        }
    }

    /// The value of `key`, `None` when absent or null.
    pub(crate) fn get(&self, key: &str) -> Option<&'a serde_json::Value> {
        self.obj.get(key).filter(|v| !v.is_null())
    }

    pub(crate) fn flag(&self, key: &str, default: bool) -> Result<bool> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_bool()
                .ok_or_else(|| self.bad(format!("{key} must be true or false"))),
        }
    }

    pub(crate) fn uint(&self, v: &serde_json::Value, key: &str) -> Result<u32> {
        v.as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .filter(|&n| n > 0)
            .ok_or_else(|| self.bad(format!("{key} must be a positive integer, got {v}")))
    }

    pub(crate) fn number(&self, key: &str, default: f64) -> Result<f64> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_f64()
                .ok_or_else(|| self.bad(format!("{key} must be a number, got {v}"))),
        }
    }

    /// A PIL resampling code (0 nearest, 1 lanczos, 2 bilinear, 3 bicubic).
    pub(crate) fn resample(&self, default: u8) -> Result<u8> {
        let Some(r) = self.get("resample") else {
            return Ok(default);
        };
        let code = r
            .as_u64()
            .ok_or_else(|| self.bad(format!("resample must be a PIL resampling code, got {r}")))?;
        if code > 3 {
            return Err(self.bad(format!(
                "resample {code} is not supported (0 nearest, 1 lanczos, 2 bilinear, 3 bicubic)"
            )));
        }
        Ok(code as u8)
    }

    /// A per-channel value given as one number or three.
    pub(crate) fn triple(&self, key: &str, default: [f32; 3]) -> Result<[f32; 3]> {
        match self.get(key) {
            None => Ok(default),
            Some(serde_json::Value::Number(n)) => Ok([n.as_f64().unwrap_or(0.0) as f32; 3]),
            Some(serde_json::Value::Array(a)) if a.len() == 3 => {
                let mut out = [0f32; 3];
                for (o, v) in out.iter_mut().zip(a) {
                    *o = v
                        .as_f64()
                        .ok_or_else(|| self.bad(format!("{key} must hold numbers, got {v}")))?
                        as f32;
                }
                Ok(out)
            }
            Some(v) => Err(self.bad(format!("{key} must be a number or 3 numbers, got {v}"))),
        }
    }

    /// `image_std`, which must not contain 0.
    pub(crate) fn std(&self, default: [f32; 3]) -> Result<[f32; 3]> {
        let std = self.triple("image_std", default)?;
        if std.contains(&0.0) {
            return Err(self.bad("image_std must not contain 0".into()));
        }
        Ok(std)
    }
}

fn algorithm_of(resample: u8) -> ResizeAlg {
    match resample {
        0 => ResizeAlg::Nearest,
        1 => ResizeAlg::Convolution(FilterType::Lanczos3),
        2 => ResizeAlg::Convolution(FilterType::Bilinear),
        // PIL's bicubic is the Keys cubic with a = -0.5, i.e. Catmull-Rom.
        _ => ResizeAlg::Convolution(FilterType::CatmullRom),
    }
}

/// Resizes to `width` x `height` as PIL does: horizontal pass to 8 bits, then vertical pass.
pub(crate) fn resize_like_pil(
    rgb: RgbImage,
    width: u32,
    height: u32,
    resample: u8,
) -> Result<RgbImage> {
    let fail = |e: &dyn std::fmt::Display| ProcessorError::Image {
        origin: "resize".into(),
        detail: e.to_string(),
    };
    if width == 0 || height == 0 {
        return Err(fail(&format!("target size {width}x{height} is empty")));
    }
    let (src_w, src_h) = rgb.dimensions();
    if (src_w, src_h) == (width, height) {
        return Ok(rgb);
    }
    let options = ResizeOptions::new().resize_alg(algorithm_of(resample));
    let mut resizer = Resizer::new();
    let mut current = FirImage::from_vec_u8(src_w, src_h, rgb.into_raw(), PixelType::U8x3)
        .map_err(|e| fail(&e))?;
    // One axis per call: a call that changes a single dimension runs a single pass.
    for (w, h) in [(width, src_h), (width, height)] {
        if (current.width(), current.height()) == (w, h) {
            continue;
        }
        let mut next = FirImage::new(w, h, PixelType::U8x3);
        resizer
            .resize(&current, &mut next, &options)
            .map_err(|e| fail(&e))?;
        current = next;
    }
    RgbImage::from_raw(width, height, current.into_vec())
        .ok_or_else(|| fail(&"resized buffer has the wrong size"))
}

/// RGB conversion as transformers does it: transparency is composited onto white.
pub(crate) fn to_rgb_on_white(image: &DynamicImage) -> RgbImage {
    if !image.color().has_alpha() {
        return image.to_rgb8();
    }
    let rgba = image.to_rgba8();
    let (w, h) = rgba.dimensions();
    let mut out = RgbImage::new(w, h);
    for (dst, src) in out.pixels_mut().zip(rgba.pixels()) {
        let a = src[3] as u32;
        for c in 0..3 {
            dst[c] = ((src[c] as u32 * a + 255 * (255 - a) + 127) / 255) as u8;
        }
    }
    out
}

/// Centre crop to (crop_h, crop_w), zero-padding an image that is smaller, with transformers'
/// offsets. Returns RGB bytes, row-major.
fn center_crop(image: &RgbImage, crop_h: u32, crop_w: u32) -> Vec<u8> {
    let (w, h) = (image.width() as i64, image.height() as i64);
    let (ch, cw) = (crop_h as i64, crop_w as i64);
    // transformers pads by ceil((crop - orig) / 2) and then crops from (orig - crop) // 2 + pad,
    // which in the unpadded image is a start of (orig - crop) // 2 (floor, may be negative).
    let offset = |orig: i64, crop: i64| -> i64 { (orig - crop).div_euclid(2) };
    let (top, left) = (offset(h, ch), offset(w, cw));
    let src = image.as_raw();
    let mut out = vec![0u8; (ch * cw * 3) as usize];
    for r in 0..ch {
        let y = top + r;
        if !(0..h).contains(&y) {
            continue;
        }
        let x0 = left.max(0);
        let x1 = (left + cw).min(w);
        if x0 >= x1 {
            continue;
        }
        let src_start = ((y * w + x0) * 3) as usize;
        let src_end = ((y * w + x1) * 3) as usize;
        let dst_start = ((r * cw + (x0 - left)) * 3) as usize;
        out[dst_start..dst_start + (src_end - src_start)].copy_from_slice(&src[src_start..src_end]);
    }
    out
}

/// Opens and decodes an image file (PNG or JPEG).
pub fn load_image(path: &Path) -> Result<DynamicImage> {
    let reader = image::ImageReader::open(path)
        .map_err(|e| ProcessorError::Image {
            origin: path.display().to_string(),
            detail: e.to_string(),
        })?
        .with_guessed_format()
        .map_err(|e| ProcessorError::Image {
            origin: path.display().to_string(),
            detail: e.to_string(),
        })?;
    reader.decode().map_err(|e| ProcessorError::Image {
        origin: path.display().to_string(),
        detail: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortest_edge_sizes_truncate_like_python() {
        let cfg = ClipImageConfig {
            size: ResizeTo::ShortestEdge(336),
            ..Default::default()
        };
        // 640x480 (w x h) -> h 336, w int(336 * 640 / 480) = 448
        assert_eq!(cfg.resized_size(480, 640), (336, 448));
        // 90x60 -> int(336 * 90 / 60) = 504
        assert_eq!(cfg.resized_size(60, 90), (336, 504));
        // int(336 * 500 / 333) = int(504.50...) = 504
        assert_eq!(cfg.resized_size(500, 333), (504, 336));
    }

    #[test]
    fn crop_pads_small_images_with_zeros_centred_like_transformers() {
        // 1x1 image cropped to 3x2: padded height 3 (pad 1 top), width 2 (pad ceil(1/2)=1 left).
        let img = RgbImage::from_raw(1, 1, vec![9, 9, 9]).unwrap();
        let out = center_crop(&img, 3, 2);
        let expect: Vec<u8> = [[0; 3], [0; 3], [0; 3], [9; 3], [0; 3], [0; 3]].concat();
        assert_eq!(out, expect);
        // A larger image: offsets floor((h - ch) / 2).
        let img = RgbImage::from_fn(5, 4, |x, y| image::Rgb([x as u8, y as u8, 0]));
        let out = center_crop(&img, 2, 2);
        assert_eq!(&out[..3], &[1, 1, 0]);
    }

    #[test]
    fn transparency_goes_onto_white() {
        let img =
            DynamicImage::ImageRgba8(image::RgbaImage::from_raw(1, 1, vec![0, 0, 0, 0]).unwrap());
        assert_eq!(to_rgb_on_white(&img).into_raw(), vec![255, 255, 255]);
    }

    #[test]
    fn bad_settings_are_reported_with_the_file() {
        let path = Path::new("preprocessor_config.json");
        let err =
            ClipImageConfig::from_json(&serde_json::json!({"resample": 5}), path).unwrap_err();
        let nearest =
            ClipImageConfig::from_json(&serde_json::json!({"resample": 0}), path).unwrap();
        assert_eq!(nearest.resample, 0);
        assert!(
            err.to_string().contains("preprocessor_config.json"),
            "{err}"
        );
        let err =
            ClipImageConfig::from_json(&serde_json::json!({"size": {"foo": 1}}), path).unwrap_err();
        assert!(err.to_string().contains("shortest_edge"), "{err}");
    }
}
