//! Idefics2 (`Idefics2Processor`): the image is resized so that its longest edge is at most
//! `size.longest_edge` and each edge at least `size.shortest_edge` (PIL, bilinear by default),
//! rescaled and normalised; each `<image>` placeholder becomes
//! `<fake_token_around_image>` + `<image>` × `image_seq_len` + `<fake_token_around_image>`, and as
//! in transformers two adjacent fake tokens merge into one and a fake token directly followed by
//! a word gets a space after it.
//!
//! Not supported: `do_image_splitting` (idefics2-8b's default), whose four crops and full image
//! have different sizes and are padded to a common size with a `pixel_attention_mask`, which the
//! model's input does not carry; and images of different sizes in one batch (same reason). Both
//! are errors, not silent approximations.

use std::path::Path;

use image::DynamicImage;

use crate::error::{ProcessorError, Result};
use crate::image::{Settings, resize_like_pil, to_channels_first, to_rgb_on_white};
use crate::processor::{CheckpointFiles, ImagePipeline, ProcessedImage};

/// Settings of `Idefics2ImageProcessor`.
#[derive(Debug, Clone, PartialEq)]
pub struct Idefics2ImageConfig {
    pub do_convert_rgb: bool,
    pub do_resize: bool,
    pub shortest_edge: u32,
    pub longest_edge: u32,
    /// PIL resampling code (2 = bilinear, the default).
    pub resample: u8,
    pub do_rescale: bool,
    pub rescale_factor: f64,
    pub do_normalize: bool,
    pub image_mean: [f32; 3],
    pub image_std: [f32; 3],
}

impl Default for Idefics2ImageConfig {
    /// `Idefics2ImageProcessor()`'s defaults (without image splitting).
    fn default() -> Self {
        Self {
            do_convert_rgb: true,
            do_resize: true,
            shortest_edge: 378,
            longest_edge: 980,
            resample: 2,
            do_rescale: true,
            rescale_factor: 1.0 / 255.0,
            do_normalize: true,
            image_mean: [0.5; 3],
            image_std: [0.5; 3],
        }
    }
}

impl Idefics2ImageConfig {
    /// Reads the settings from an image-processor JSON object; missing keys take
    /// `Idefics2ImageProcessor`'s defaults. `do_image_splitting: true` is an error (see the
    /// module documentation). `path` is only used in messages.
    pub fn from_json(value: &serde_json::Value, path: &Path) -> Result<Self> {
        let settings = Settings::new(value, path)?;
        if settings.flag("do_image_splitting", false)? {
            return Err(settings.bad(
                "do_image_splitting is not supported for Idefics2: its crops differ in size and need a pixel_attention_mask, which the model input does not carry; set it to false".into(),
            ));
        }
        let mut cfg = Self::default();
        if let Some(size) = settings.get("size") {
            match (size.get("shortest_edge"), size.get("longest_edge")) {
                (Some(short), Some(long)) => {
                    cfg.shortest_edge = settings.uint(short, "size.shortest_edge")?;
                    cfg.longest_edge = settings.uint(long, "size.longest_edge")?;
                }
                _ => {
                    return Err(settings.bad(format!(
                        "size must be {{\"shortest_edge\": n, \"longest_edge\": m}}, got {size}"
                    )));
                }
            }
        }
        cfg.do_convert_rgb = settings.flag("do_convert_rgb", cfg.do_convert_rgb)?;
        cfg.do_resize = settings.flag("do_resize", cfg.do_resize)?;
        cfg.resample = settings.resample(cfg.resample)?;
        cfg.do_rescale = settings.flag("do_rescale", cfg.do_rescale)?;
        cfg.rescale_factor = settings.number("rescale_factor", cfg.rescale_factor)?;
        cfg.do_normalize = settings.flag("do_normalize", cfg.do_normalize)?;
        cfg.image_mean = settings.triple("image_mean", cfg.image_mean)?;
        cfg.image_std = settings.std(cfg.image_std)?;
        Ok(cfg)
    }

    /// (height, width) after the resize: a longest edge above `longest_edge` comes down to it
    /// (the other edge from the aspect ratio, truncated), then each edge is raised to at least
    /// `shortest_edge` (the aspect ratio is not kept there, as in transformers).
    pub fn resized_size(&self, height: u32, width: u32) -> (u32, u32) {
        let (mut h, mut w) = (height as f64, width as f64);
        let aspect = w / h;
        let max_len = self.longest_edge as f64;
        if w >= h && w > max_len {
            w = max_len;
            h = (w / aspect).trunc();
        } else if h > w && h > max_len {
            h = max_len;
            w = (h * aspect).trunc();
        }
        let min_len = self.shortest_edge as f64;
        (h.max(min_len) as u32, w.max(min_len) as u32)
    }

    /// Runs the pipeline on one image: channels-first `[3, H, W]` values.
    pub fn preprocess(&self, image: &DynamicImage) -> Result<(Vec<f32>, [usize; 3])> {
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
        if self.do_resize {
            let (h, w) = self.resized_size(rgb.height(), rgb.width());
            rgb = resize_like_pil(rgb, w, h, self.resample)?;
        }
        let shape = [3, rgb.height() as usize, rgb.width() as usize];
        let data = to_channels_first(
            rgb.as_raw(),
            self.do_rescale.then_some(self.rescale_factor),
            self.do_normalize
                .then_some((self.image_mean, self.image_std)),
        );
        Ok((data, shape))
    }
}

/// Idefics2's image side of the processor.
#[derive(Debug, Clone)]
pub struct Idefics2Images {
    pub image: Idefics2ImageConfig,
    pub image_token: String,
    pub fake_image_token: String,
    /// `<image>` tokens per image (the perceiver's latents).
    pub image_seq_len: usize,
}

impl Idefics2Images {
    /// Builds the image side from a checkpoint's processor files: the image settings,
    /// `image_seq_len` from `processor_config.json` (else `config.json`'s
    /// `perceiver_config.resampler_n_latents`), the tokens from the tokenizer.
    pub fn from_checkpoint(files: &CheckpointFiles<'_>) -> Result<Self> {
        let image =
            Idefics2ImageConfig::from_json(files.image_settings, files.image_settings_path)?;
        let image_seq_len = files
            .processor_config
            .and_then(|c| c.get("image_seq_len"))
            .or_else(|| files.image_settings.get("image_seq_len"))
            .or_else(|| {
                files
                    .model_config
                    .and_then(|c| c.get("perceiver_config")?.get("resampler_n_latents"))
            })
            .and_then(|v| v.as_u64())
            .filter(|&n| n > 0)
            .ok_or_else(|| ProcessorError::BadFile {
                path: files.processor_config_path.to_path_buf(),
                detail: "no image_seq_len (looked in this file and in config.json's perceiver_config.resampler_n_latents)".into(),
            })? as usize;
        // Idefics2Processor takes the tokenizer's image tokens when it names them
        let token = |name: &str, default: &str| {
            files
                .tokenizer
                .special_token(name)
                .map_or_else(|| default.to_owned(), |t| t.text.clone())
        };
        let images = Self {
            image,
            image_token: token("image_token", "<image>"),
            fake_image_token: token("image_boundary_token", "<fake_token_around_image>"),
            image_seq_len,
        };
        if files
            .tokenizer
            .token_to_id(&images.fake_image_token)
            .is_none()
        {
            return Err(ProcessorError::BadFile {
                path: files.dir.join("tokenizer.json"),
                detail: format!(
                    "the Idefics2 image token {:?} is not in the vocabulary",
                    images.fake_image_token
                ),
            });
        }
        Ok(images)
    }
}

impl Idefics2Images {
    /// The text that replaces one `<image>`.
    pub fn placeholder(&self) -> String {
        format!(
            "{fake}{images}{fake}",
            fake = self.fake_image_token,
            images = self.image_token.repeat(self.image_seq_len)
        )
    }
}

impl ImagePipeline for Idefics2Images {
    fn family(&self) -> &'static str {
        "idefics2"
    }

    fn image_token(&self) -> &str {
        &self.image_token
    }

    fn preprocess(&self, image: &DynamicImage) -> Result<ProcessedImage> {
        let (pixel_values, shape) = self.image.preprocess(image)?;
        Ok(ProcessedImage {
            pixel_values,
            shape: shape.to_vec(),
            placeholder: self.placeholder(),
            image_grid_thw: None,
            token_pooling: None,
        })
    }

    fn finish_prompt(&self, text: String) -> String {
        let fake = &self.fake_image_token;
        // adjacent images share one fake token
        let text = text.replace(&format!("{fake}{fake}"), fake);
        // `fake(?=[^\s<])` -> `fake ` : a word glued to the closing fake token is split off
        let mut out = String::with_capacity(text.len());
        let mut rest = text.as_str();
        while let Some(at) = rest.find(fake.as_str()) {
            let after = &rest[at + fake.len()..];
            out.push_str(&rest[..at + fake.len()]);
            if after
                .chars()
                .next()
                .is_some_and(|c| !c.is_whitespace() && c != '<')
            {
                out.push(' ');
            }
            rest = after;
        }
        out.push_str(rest);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn images() -> Idefics2Images {
        Idefics2Images {
            image: Idefics2ImageConfig::default(),
            image_token: "<image>".into(),
            fake_image_token: "<fake>".into(),
            image_seq_len: 2,
        }
    }

    #[test]
    fn sizes_follow_transformers() {
        let cfg = Idefics2ImageConfig {
            shortest_edge: 28,
            longest_edge: 56,
            ..Default::default()
        };
        // 90 x 60 (w x h): w -> 56, h -> int(56 / 1.5) = 37
        assert_eq!(cfg.resized_size(60, 90), (37, 56));
        // small images are only raised to the shortest edge, edge by edge
        assert_eq!(cfg.resized_size(10, 40), (28, 40));
        assert_eq!(cfg.resized_size(90, 30), (56, 28));
    }

    #[test]
    fn fake_tokens_merge_and_words_are_split_off() {
        let i = images();
        let p = i.placeholder();
        let text = format!("User:{p}{p}What is it?{p} ok{p}<end>");
        assert_eq!(
            i.finish_prompt(text),
            "User:<fake><image><image><fake><image><image><fake> What is it?<fake><image><image><fake> ok<fake><image><image><fake><end>"
        );
    }

    #[test]
    fn image_splitting_is_refused_with_the_file() {
        let err = Idefics2ImageConfig::from_json(
            &serde_json::json!({"do_image_splitting": true}),
            Path::new("preprocessor_config.json"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("do_image_splitting") && err.contains("preprocessor_config.json"),
            "{err}"
        );
    }
}
