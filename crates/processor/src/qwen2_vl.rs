//! Qwen2-VL (`Qwen2VLImageProcessor` / `Qwen2VLProcessor`): dynamic resolution. Each image is
//! resized so both sides are multiples of `patch_size * merge_size` (28) and its area lies in
//! `[min_pixels, max_pixels]` (`smart_resize`), rescaled and normalised, repeated over the
//! temporal patch (2 frames for a still image) and cut into patches flattened in the order the
//! vision tower's merger reads them; `<|image_pad|>` is repeated once per merged patch.

use image::DynamicImage;

use crate::error::{ProcessorError, Result};
use crate::image::{ClipImageConfig, resize_like_pil, to_rgb_on_white};
use crate::processor::{CheckpointFiles, ImagePipeline, ProcessedImage};

/// Qwen2-VL's image side of the processor.
#[derive(Debug, Clone, PartialEq)]
pub struct Qwen2VlImages {
    /// RGB conversion, rescale and normalisation settings (its resize and crop are off: the
    /// resize is `smart_resize`).
    pub normalize: ClipImageConfig,
    pub do_resize: bool,
    /// PIL resampling code of the resize (3 = bicubic).
    pub resample: u8,
    pub min_pixels: u64,
    pub max_pixels: u64,
    pub patch_size: usize,
    pub temporal_patch_size: usize,
    pub merge_size: usize,
    pub image_token: String,
}

/// One image as the Qwen2-VL vision tower takes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Qwen2VlPatches {
    /// `[patches, channels * temporal_patch * patch * patch]` row-major.
    pub data: Vec<f32>,
    /// Patch grid `[t, h, w]` (`image_grid_thw`).
    pub grid_thw: [usize; 3],
}

/// transformers' `smart_resize`: the (height, width) closest to the input's whose sides are
/// multiples of `factor` and whose area is within `[min_pixels, max_pixels]`.
pub fn smart_resize(
    height: u32,
    width: u32,
    factor: u32,
    min_pixels: u64,
    max_pixels: u64,
) -> Result<(u32, u32)> {
    if height == 0 || width == 0 || factor == 0 {
        return Err(ProcessorError::Input(format!(
            "cannot resize a {width}x{height} image to multiples of {factor}"
        )));
    }
    let (h, w, f) = (height as f64, width as f64, factor as f64);
    if h.max(w) / h.min(w) > 200.0 {
        return Err(ProcessorError::Input(format!(
            "a {width}x{height} image has an aspect ratio over 200, which Qwen2-VL does not take"
        )));
    }
    // Python's round() rounds halves to even
    let mut h_bar = (h / f).round_ties_even() * f;
    let mut w_bar = (w / f).round_ties_even() * f;
    if h_bar * w_bar > max_pixels as f64 {
        let beta = (h * w / max_pixels as f64).sqrt();
        h_bar = f.max((h / beta / f).floor() * f);
        w_bar = f.max((w / beta / f).floor() * f);
    } else if h_bar * w_bar < min_pixels as f64 {
        let beta = (min_pixels as f64 / (h * w)).sqrt();
        h_bar = (h * beta / f).ceil() * f;
        w_bar = (w * beta / f).ceil() * f;
    }
    Ok((h_bar as u32, w_bar as u32))
}

impl Qwen2VlImages {
    /// Builds the image side from a checkpoint's processor files.
    pub fn from_checkpoint(files: &CheckpointFiles<'_>) -> Result<Self> {
        let image_token = files
            .tokenizer
            .special_token("image_token")
            .map(|t| t.text.clone())
            .unwrap_or_else(|| "<|image_pad|>".to_owned());
        Self::from_json(files.image_settings, files.image_settings_path, image_token)
    }

    /// Reads the image-processor settings: `min_pixels`/`max_pixels` (Hub) or
    /// `size.shortest_edge`/`size.longest_edge` (transformers 5, the same two areas), patch,
    /// temporal patch and merge sizes, and the CLIP-style rescale/normalise keys.
    pub fn from_json(
        settings: &serde_json::Value,
        path: &std::path::Path,
        image_token: String,
    ) -> Result<Self> {
        let bad = |detail: String| ProcessorError::BadFile {
            path: path.to_path_buf(),
            detail,
        };
        // `size` holds pixel areas here, not CLIP's edge lengths: only the colour settings are read
        let mut colour = settings.clone();
        if let Some(obj) = colour.as_object_mut() {
            obj.remove("size");
            obj.remove("crop_size");
        }
        let mut normalize = ClipImageConfig::from_json(&colour, path)?;
        let do_resize = normalize.do_resize;
        let resample = normalize.resample;
        normalize.do_resize = false;
        normalize.do_center_crop = false;
        let uint = |keys: &[(&str, Option<&str>)], default: u64| -> Result<u64> {
            for (key, sub) in keys {
                let value = match sub {
                    None => settings.get(key),
                    Some(sub) => settings.get(key).and_then(|v| v.get(sub)),
                };
                match value {
                    None | Some(serde_json::Value::Null) => continue,
                    Some(v) => {
                        let name = sub.map_or(key.to_string(), |s| format!("{key}.{s}"));
                        return v.as_u64().filter(|&n| n > 0).ok_or_else(|| {
                            bad(format!("{name} must be a positive integer, got {v}"))
                        });
                    }
                }
            }
            Ok(default)
        };
        // Qwen2VLImageProcessor's defaults
        let images = Self {
            normalize,
            do_resize,
            resample,
            min_pixels: uint(
                &[("min_pixels", None), ("size", Some("shortest_edge"))],
                56 * 56,
            )?,
            max_pixels: uint(
                &[("max_pixels", None), ("size", Some("longest_edge"))],
                28 * 28 * 1280,
            )?,
            patch_size: uint(&[("patch_size", None)], 14)? as usize,
            temporal_patch_size: uint(&[("temporal_patch_size", None)], 2)? as usize,
            merge_size: uint(&[("merge_size", None)], 2)? as usize,
            image_token,
        };
        if images.min_pixels > images.max_pixels {
            return Err(bad(format!(
                "min_pixels ({}) is larger than max_pixels ({})",
                images.min_pixels, images.max_pixels
            )));
        }
        Ok(images)
    }

    /// Side lengths are multiples of this.
    pub fn factor(&self) -> u32 {
        (self.patch_size * self.merge_size) as u32
    }

    /// Values in one flattened patch.
    pub fn patch_dim(&self) -> usize {
        3 * self.temporal_patch_size * self.patch_size * self.patch_size
    }

    /// `<|image_pad|>` tokens of an image with patch grid `grid_thw`.
    pub fn num_image_tokens(&self, grid_thw: [usize; 3]) -> usize {
        grid_thw.iter().product::<usize>() / (self.merge_size * self.merge_size)
    }

    /// Resize, rescale, normalise, temporal repeat and patch flattening of one image.
    pub fn patches(&self, image: &DynamicImage) -> Result<Qwen2VlPatches> {
        if image.width() == 0 || image.height() == 0 {
            return Err(ProcessorError::Image {
                origin: "input".into(),
                detail: format!("empty image ({}x{})", image.width(), image.height()),
            });
        }
        let rgb = if self.normalize.do_convert_rgb {
            to_rgb_on_white(image)
        } else {
            image.to_rgb8()
        };
        let (height, width) = if self.do_resize {
            smart_resize(
                rgb.height(),
                rgb.width(),
                self.factor(),
                self.min_pixels,
                self.max_pixels,
            )?
        } else {
            (rgb.height(), rgb.width())
        };
        let p = self.patch_size;
        let m = self.merge_size;
        if !(height as usize).is_multiple_of(p * m) || !(width as usize).is_multiple_of(p * m) {
            return Err(ProcessorError::Input(format!(
                "a {width}x{height} image is not a multiple of {} on both sides (do_resize is off)",
                p * m
            )));
        }
        let resized = resize_like_pil(rgb, width, height, self.resample)?;
        let pixels = self
            .normalize
            .preprocess(&DynamicImage::ImageRgb8(resized))?;
        let [channels, h, w] = pixels.shape;
        let (gh, gw) = (h / p, w / p);
        let t = self.temporal_patch_size;
        let plane = h * w;
        let mut data = Vec::with_capacity(gh * gw * channels * t * p * p);
        // patch order: merge block row, block column, row in block, column in block; values in
        // a patch: channel, temporal copy, pixel row, pixel column
        for bh in 0..gh / m {
            for bw in 0..gw / m {
                for ih in 0..m {
                    for iw in 0..m {
                        let (y0, x0) = ((bh * m + ih) * p, (bw * m + iw) * p);
                        for c in 0..channels {
                            for _ in 0..t {
                                for y in y0..y0 + p {
                                    let start = c * plane + y * w + x0;
                                    data.extend_from_slice(&pixels.data[start..start + p]);
                                }
                            }
                        }
                    }
                }
            }
        }
        Ok(Qwen2VlPatches {
            data,
            grid_thw: [1, gh, gw],
        })
    }
}

impl ImagePipeline for Qwen2VlImages {
    fn family(&self) -> &'static str {
        "qwen2_vl"
    }

    fn image_token(&self) -> &str {
        &self.image_token
    }

    fn preprocess(&self, image: &DynamicImage) -> Result<ProcessedImage> {
        let Qwen2VlPatches { data, grid_thw } = self.patches(image)?;
        let patches = grid_thw.iter().product::<usize>();
        Ok(ProcessedImage {
            pixel_values: data,
            shape: vec![patches, self.patch_dim()],
            placeholder: self.image_token.repeat(self.num_image_tokens(grid_thw)),
            image_grid_thw: Some(grid_thw),
            pixel_mask: None,
            token_pooling: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn degenerate_sizes_are_errors() {
        assert!(smart_resize(0, 10, 28, 3136, 12544).is_err());
        let err = smart_resize(10, 2100, 28, 3136, 12544).unwrap_err();
        assert!(err.to_string().contains("aspect ratio"), "{err}");
    }

    #[test]
    fn settings_in_both_file_layouts() {
        let path = std::path::Path::new("preprocessor_config.json");
        let hub = serde_json::json!({"min_pixels": 3136, "max_pixels": 12845056, "patch_size": 14,
            "temporal_patch_size": 2, "merge_size": 2});
        let v5 = serde_json::json!({"size": {"shortest_edge": 3136, "longest_edge": 12845056}});
        let a = Qwen2VlImages::from_json(&hub, path, "<|image_pad|>".into()).unwrap();
        let b = Qwen2VlImages::from_json(&v5, path, "<|image_pad|>".into()).unwrap();
        assert_eq!(a, b);
        assert_eq!(
            (a.min_pixels, a.max_pixels, a.factor()),
            (3136, 12845056, 28)
        );
        let bad = serde_json::json!({"min_pixels": 20000, "max_pixels": 10000});
        let err = Qwen2VlImages::from_json(&bad, path, "<|image_pad|>".into()).unwrap_err();
        assert!(
            err.to_string().contains("preprocessor_config.json"),
            "{err}"
        );
    }
}
