//! Idefics3 and SmolVLM (`Idefics3Processor`, `SmolVLMProcessor`): the image is resized so its
//! longest edge is `size.longest_edge`, then (with `do_image_splitting`) resized up to multiples
//! of `max_image_size` and cut into `max_image_size` tiles, row by row, followed by the whole
//! image resized to one tile (the global image). Each `<image>` placeholder becomes
//!
//! ```text
//! <fake_token_around_image><row_1_col_1><image>×N ... <fake_token_around_image><row_1_col_C><image>×N\n
//! ...                                                                                          (R rows)
//! \n<fake_token_around_image><global-img><image>×N<fake_token_around_image>
//! ```
//!
//! (only the last line when the image fits in one tile), `N = image_seq_len`. It follows
//! transformers' PIL backend (`Idefics3ImageProcessorPil`): every resize is PIL's on 8-bit
//! pixels, rescale and normalise come after the split. All tiles have the same size, so no
//! padding (and no `pixel_attention_mask`) is needed.

use image::{DynamicImage, RgbImage};

use crate::error::{ProcessorError, Result};
use crate::image::{Settings, resize_like_pil, to_channels_first, to_rgb_on_white};
use crate::processor::{CheckpointFiles, ImagePipeline, ProcessedImage};

/// transformers' cap on the longest edge after the first resize (`MAX_IMAGE_SIZE`).
const MAX_IMAGE_SIZE: u32 = 4096;

/// Settings of `Idefics3ImageProcessor` (`SmolVLMImageProcessor` has the same).
#[derive(Debug, Clone, PartialEq)]
pub struct Idefics3ImageConfig {
    pub do_convert_rgb: bool,
    pub do_resize: bool,
    /// `size.longest_edge`: the longest edge after the first resize.
    pub longest_edge: u32,
    /// PIL resampling code (1 = Lanczos, the default).
    pub resample: u8,
    pub do_image_splitting: bool,
    /// `max_image_size.longest_edge`: the side of a tile (the vision encoder's input).
    pub max_image_size: u32,
    pub do_rescale: bool,
    pub rescale_factor: f64,
    pub do_normalize: bool,
    pub image_mean: [f32; 3],
    pub image_std: [f32; 3],
}

impl Default for Idefics3ImageConfig {
    /// `Idefics3ImageProcessor()`'s defaults.
    fn default() -> Self {
        Self {
            do_convert_rgb: true,
            do_resize: true,
            longest_edge: 4 * 364,
            resample: 1,
            do_image_splitting: true,
            max_image_size: 364,
            do_rescale: true,
            rescale_factor: 1.0 / 255.0,
            do_normalize: true,
            image_mean: [0.5; 3],
            image_std: [0.5; 3],
        }
    }
}

/// The tiles of one image: `pixel_values` `[tiles, 3, side, side]` and the split grid (0 × 0
/// when the image is a single tile).
#[derive(Debug, Clone, PartialEq)]
pub struct Tiles {
    pub pixel_values: Vec<f32>,
    pub shape: [usize; 4],
    pub rows: usize,
    pub cols: usize,
}

impl Idefics3ImageConfig {
    /// Reads the settings from an image-processor JSON object; missing keys take
    /// `Idefics3ImageProcessor`'s defaults. `path` is only used in messages.
    pub fn from_json(value: &serde_json::Value, path: &std::path::Path) -> Result<Self> {
        let settings = Settings::new(value, path)?;
        let mut cfg = Self::default();
        let edge = |key: &str, default: u32| -> Result<u32> {
            match settings.get(key) {
                None => Ok(default),
                Some(v) => match v.get("longest_edge") {
                    Some(edge) => settings.uint(edge, &format!("{key}.longest_edge")),
                    None => {
                        Err(settings.bad(format!("{key} must be {{\"longest_edge\": n}}, got {v}")))
                    }
                },
            }
        };
        cfg.do_convert_rgb = settings.flag("do_convert_rgb", cfg.do_convert_rgb)?;
        cfg.do_resize = settings.flag("do_resize", cfg.do_resize)?;
        cfg.longest_edge = edge("size", cfg.longest_edge)?;
        cfg.resample = settings.resample(cfg.resample)?;
        cfg.do_image_splitting = settings.flag("do_image_splitting", cfg.do_image_splitting)?;
        cfg.max_image_size = edge("max_image_size", cfg.max_image_size)?;
        cfg.do_rescale = settings.flag("do_rescale", cfg.do_rescale)?;
        cfg.rescale_factor = settings.number("rescale_factor", cfg.rescale_factor)?;
        cfg.do_normalize = settings.flag("do_normalize", cfg.do_normalize)?;
        cfg.image_mean = settings.triple("image_mean", cfg.image_mean)?;
        cfg.image_std = settings.std(cfg.image_std)?;
        Ok(cfg)
    }

    /// (height, width) after the first resize: the longest edge becomes `longest_edge`, the
    /// other keeps the aspect ratio (truncated, then rounded up to even), capped at 4096.
    pub fn resized_size(&self, height: u32, width: u32) -> (u32, u32) {
        let (mut h, mut w) = (height as f64, width as f64);
        let aspect = w / h;
        let max_len = self.longest_edge as f64;
        // _resize_output_size_rescale_to_max_len
        if w >= h {
            w = max_len;
            h = (w / aspect).trunc();
            if h % 2.0 != 0.0 {
                h += 1.0;
            }
        } else {
            h = max_len;
            w = (h * aspect).trunc();
            if w % 2.0 != 0.0 {
                w += 1.0;
            }
        }
        h = h.max(1.0);
        w = w.max(1.0);
        // _resize_output_size_scale_below_upper_bound
        let cap = MAX_IMAGE_SIZE as f64;
        let aspect = w / h;
        if w >= h && w > cap {
            w = cap;
            h = (w / aspect).trunc();
        } else if h > w && h > cap {
            h = cap;
            w = (h * aspect).trunc();
        }
        (h.max(1.0) as u32, w.max(1.0) as u32)
    }

    /// (height, width) that `resize_for_vision_encoder` gives: both sides rounded up to
    /// multiples of the tile side, the shorter one from the aspect ratio.
    pub fn tiled_size(&self, height: u32, width: u32) -> (u32, u32) {
        let tile = self.max_image_size as f64;
        let (h, w) = (height as f64, width as f64);
        let aspect = w / h;
        let up = |v: f64| (v / tile).ceil() * tile;
        let (h, w) = if w >= h {
            let w = up(w);
            (up((w / aspect).trunc()), w)
        } else {
            let h = up(h);
            (h, up((h * aspect).trunc()))
        };
        (h as u32, w as u32)
    }

    /// Runs the whole pipeline on one image.
    pub fn preprocess(&self, image: &DynamicImage) -> Result<Tiles> {
        if image.width() == 0 || image.height() == 0 {
            return Err(ProcessorError::Image {
                origin: "input".into(),
                detail: format!("empty image ({}x{})", image.width(), image.height()),
            });
        }
        let mut rgb = if self.do_convert_rgb {
            to_rgb_on_white(image)
        } else {
            image.to_rgb8()
        };
        let resize = |rgb: RgbImage, (h, w): (u32, u32)| resize_like_pil(rgb, w, h, self.resample);
        if self.do_resize {
            let size = self.resized_size(rgb.height(), rgb.width());
            rgb = resize(rgb, size)?;
        }
        let side = self.max_image_size;
        let (frames, rows, cols) = if self.do_image_splitting {
            let size = self.tiled_size(rgb.height(), rgb.width());
            rgb = resize(rgb, size)?;
            let (h, w) = (rgb.height(), rgb.width());
            if h > side || w > side {
                let rows = h.saturating_sub(side) / side + 1;
                let cols = w.saturating_sub(side) / side + 1;
                let mut frames = Vec::with_capacity((rows * cols + 1) as usize);
                for r in 0..rows {
                    for c in 0..cols {
                        frames.push(
                            image::imageops::crop_imm(&rgb, c * side, r * side, side, side)
                                .to_image(),
                        );
                    }
                }
                frames.push(resize(rgb, (side, side))?);
                (frames, rows as usize, cols as usize)
            } else {
                (vec![rgb], 0, 0)
            }
        } else {
            (vec![resize(rgb, (side, side))?], 0, 0)
        };
        let (h, w) = (frames[0].height() as usize, frames[0].width() as usize);
        if frames
            .iter()
            .any(|f| (f.height() as usize, f.width() as usize) != (h, w))
        {
            // only without resizing can tiles differ; they would need padding and a pixel mask
            return Err(ProcessorError::Input(format!(
                "the image gives tiles of different sizes ({:?}); set do_resize",
                frames.iter().map(|f| f.dimensions()).collect::<Vec<_>>()
            )));
        }
        let mut pixel_values = Vec::with_capacity(frames.len() * 3 * h * w);
        for frame in &frames {
            pixel_values.extend(to_channels_first(
                frame.as_raw(),
                self.do_rescale.then_some(self.rescale_factor),
                self.do_normalize
                    .then_some((self.image_mean, self.image_std)),
            ));
        }
        Ok(Tiles {
            pixel_values,
            shape: [frames.len(), 3, h, w],
            rows,
            cols,
        })
    }
}

/// Idefics3's / SmolVLM's image side of the processor.
#[derive(Debug, Clone)]
pub struct Idefics3Images {
    pub image: Idefics3ImageConfig,
    pub image_token: String,
    pub fake_image_token: String,
    pub global_image_token: String,
    /// `<image>` tokens per tile.
    pub image_seq_len: usize,
}

impl Idefics3Images {
    /// Builds the image side from a checkpoint's processor files: the image settings,
    /// `image_seq_len` from `processor_config.json` (else from `config.json`'s vision sizes and
    /// `scale_factor`), the special tokens from the tokenizer.
    pub fn from_checkpoint(files: &CheckpointFiles<'_>) -> Result<Self> {
        let image =
            Idefics3ImageConfig::from_json(files.image_settings, files.image_settings_path)?;
        let from_processor = files.setting("image_seq_len").and_then(|v| v.as_u64());
        let from_model = files.model_config.and_then(|c| {
            let vision = c.get("vision_config")?;
            let size = vision.get("image_size")?.as_u64()?;
            let patch = vision.get("patch_size")?.as_u64()?;
            let scale = c.get("scale_factor").and_then(|v| v.as_u64()).unwrap_or(2);
            (patch > 0 && scale > 0).then(|| (size / patch).pow(2) / scale.pow(2))
        });
        let image_seq_len = from_processor
            .or(from_model)
            .filter(|&n| n > 0)
            .ok_or_else(|| ProcessorError::BadFile {
                path: files.processor_config_path.to_path_buf(),
                detail: "no image_seq_len (looked in this file and in config.json's vision_config and scale_factor)".into(),
            })? as usize;
        // SmolVLMProcessor reads these names from the tokenizer; Idefics3Processor hard-codes them
        let images = Self {
            image,
            image_token: files.special_token_or("image_token", "<image>"),
            fake_image_token: files
                .special_token_or("fake_image_token", "<fake_token_around_image>"),
            global_image_token: files.special_token_or("global_image_token", "<global-img>"),
            image_seq_len,
        };
        files.require_tokens(
            "Idefics3",
            &[&images.fake_image_token, &images.global_image_token],
        )?;
        Ok(images)
    }

    /// The text that replaces one `<image>` of an image split into `rows` × `cols` tiles.
    pub fn placeholder(&self, rows: usize, cols: usize) -> String {
        let image_tokens = self.image_token.repeat(self.image_seq_len);
        let global = format!(
            "{fake}{global}{image_tokens}{fake}",
            fake = self.fake_image_token,
            global = self.global_image_token
        );
        if rows == 0 && cols == 0 {
            return global;
        }
        let mut text = String::new();
        for r in 1..=rows {
            for c in 1..=cols {
                text.push_str(&self.fake_image_token);
                text.push_str(&format!("<row_{r}_col_{c}>"));
                text.push_str(&image_tokens);
            }
            text.push('\n');
        }
        text.push('\n');
        text.push_str(&global);
        text
    }
}

impl ImagePipeline for Idefics3Images {
    fn family(&self) -> &'static str {
        "idefics3"
    }

    fn image_token(&self) -> &str {
        &self.image_token
    }

    fn preprocess(&self, image: &DynamicImage) -> Result<ProcessedImage> {
        let tiles = self.image.preprocess(image)?;
        Ok(ProcessedImage {
            placeholder: self.placeholder(tiles.rows, tiles.cols),
            pixel_values: tiles.pixel_values,
            shape: tiles.shape.to_vec(),
            image_grid_thw: None,
            pixel_mask: None,
            token_pooling: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(longest_edge: u32, tile: u32) -> Idefics3ImageConfig {
        Idefics3ImageConfig {
            longest_edge,
            max_image_size: tile,
            ..Default::default()
        }
    }

    #[test]
    fn sizes_follow_transformers_rounding() {
        // 90 x 60 (w x h) to a longest edge of 112: h = int(112 / 1.5) = 74 (even)
        assert_eq!(config(112, 56).resized_size(60, 90), (74, 112));
        // odd results are rounded up to even: 100 x 51 -> int(200 / (100/51)) = 102
        assert_eq!(config(200, 56).resized_size(51, 100), (102, 200));
        // portrait: 60 x 90 -> w = int(112 * 2/3) = 74
        assert_eq!(config(112, 56).resized_size(90, 60), (112, 74));
        // SmolVLM's 2048 / 512 on a 640 x 480 photo: 2048 x 1536, tiles 4 x 3
        assert_eq!(config(2048, 512).resized_size(480, 640), (1536, 2048));
        assert_eq!(config(2048, 512).tiled_size(1536, 2048), (1536, 2048));
        // up to multiples of the tile: 112 x 74 -> 112 x 112
        assert_eq!(config(112, 56).tiled_size(74, 112), (112, 112));
        assert_eq!(config(112, 56).tiled_size(40, 30), (56, 56));
    }

    #[test]
    fn split_images_expand_to_rows_then_the_global_image() {
        let images = Idefics3Images {
            image: config(112, 56),
            image_token: "<image>".into(),
            fake_image_token: "<fake>".into(),
            global_image_token: "<global-img>".into(),
            image_seq_len: 2,
        };
        assert_eq!(
            images.placeholder(0, 0),
            "<fake><global-img><image><image><fake>"
        );
        assert_eq!(
            images.placeholder(1, 2),
            "<fake><row_1_col_1><image><image><fake><row_1_col_2><image><image>\n\n<fake><global-img><image><image><fake>"
        );
    }

    #[test]
    fn tiles_are_crops_in_row_order_then_the_global_image() {
        // 4 x 2 pixels, tile 2, no resizing, no normalisation: two crops side by side + global
        let cfg = Idefics3ImageConfig {
            do_resize: false,
            max_image_size: 2,
            do_rescale: false,
            do_normalize: false,
            ..Default::default()
        };
        let img = RgbImage::from_fn(4, 2, |x, y| image::Rgb([(10 * x + y) as u8, 0, 0]));
        let tiles = cfg.preprocess(&DynamicImage::ImageRgb8(img)).unwrap();
        assert_eq!((tiles.rows, tiles.cols), (1, 2));
        assert_eq!(tiles.shape, [3, 3, 2, 2]);
        let plane = 4;
        let red = |t: usize| &tiles.pixel_values[t * 3 * plane..t * 3 * plane + plane];
        assert_eq!(red(0), &[0.0, 10.0, 1.0, 11.0]);
        assert_eq!(red(1), &[20.0, 30.0, 21.0, 31.0]);
    }

    #[test]
    fn bad_sizes_name_the_key() {
        let path = std::path::Path::new("processor_config.json");
        let err = Idefics3ImageConfig::from_json(&serde_json::json!({"size": {"height": 3}}), path)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("size must be") && err.contains("processor_config.json"),
            "{err}"
        );
        let err = Idefics3ImageConfig::from_json(
            &serde_json::json!({"max_image_size": {"longest_edge": 0}}),
            path,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("max_image_size.longest_edge"), "{err}");
    }
}
