//! Idefics2 (`Idefics2Processor`): the image is resized so that its longest edge is at most
//! `size.longest_edge` and each edge at least `size.shortest_edge` (PIL, bilinear by default),
//! rescaled and normalised; each `<image>` placeholder becomes
//! `<fake_token_around_image>` + `<image>` × `image_seq_len` + `<fake_token_around_image>`, and as
//! in transformers two adjacent fake tokens merge into one and a fake token directly followed by
//! a word gets a space after it.
//!
//! With `do_image_splitting` (idefics2-8b's setting) the image is first cut into four quarters
//! (halves rounded down, top-left, top-right, bottom-left, bottom-right) and followed by the whole
//! image; each of the five is resized on its own and the placeholder repeats five times. Entries
//! of different sizes (the five of a split image, or images of different sizes in one batch) are
//! zero-padded at the bottom and right to the batch's largest and a `pixel_attention_mask` marks
//! the real pixels, as transformers' `Idefics2ImageProcessor` does.

use std::path::Path;

use image::DynamicImage;
use image::imageops::crop_imm;

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
    /// Four quarters plus the whole image per image.
    pub do_image_splitting: bool,
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
            do_image_splitting: false,
        }
    }
}

impl Idefics2ImageConfig {
    /// Reads the settings from an image-processor JSON object; missing keys take
    /// `Idefics2ImageProcessor`'s defaults. `path` is only used in messages.
    pub fn from_json(value: &serde_json::Value, path: &Path) -> Result<Self> {
        let settings = Settings::new(value, path)?;
        let mut cfg = Self::default();
        cfg.do_image_splitting = settings.flag("do_image_splitting", cfg.do_image_splitting)?;
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

    /// Runs the pipeline on one image: the channels-first `[3, H, W]` values of each entry (the
    /// image, or its four quarters and the whole image when splitting), sizes may differ.
    pub fn preprocess(&self, image: &DynamicImage) -> Result<Vec<(Vec<f32>, [usize; 3])>> {
        let too_small = if self.do_image_splitting { 2 } else { 1 };
        if image.width() < too_small || image.height() < too_small {
            return Err(ProcessorError::Image {
                origin: "input".into(),
                detail: format!(
                    "image of {}x{} is too small (at least {too_small}x{too_small}{})",
                    image.width(),
                    image.height(),
                    if self.do_image_splitting {
                        " to split into quarters"
                    } else {
                        ""
                    }
                ),
            });
        }
        let rgb = if self.do_convert_rgb {
            to_rgb_on_white(image)
        } else {
            image.to_rgb8()
        };
        let entries = if self.do_image_splitting {
            let (w, h) = (rgb.width(), rgb.height());
            let (mid_w, mid_h) = (w / 2, h / 2);
            let quarter =
                |x: u32, y: u32, qw: u32, qh: u32| crop_imm(&rgb, x, y, qw, qh).to_image();
            vec![
                quarter(0, 0, mid_w, mid_h),
                quarter(mid_w, 0, w - mid_w, mid_h),
                quarter(0, mid_h, mid_w, h - mid_h),
                quarter(mid_w, mid_h, w - mid_w, h - mid_h),
                rgb,
            ]
        } else {
            vec![rgb]
        };
        entries
            .into_iter()
            .map(|mut rgb| {
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
            })
            .collect()
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
            .setting("image_seq_len")
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
        let images = Self {
            image,
            image_token: files.special_token_or("image_token", "<image>"),
            fake_image_token: files
                .special_token_or("image_boundary_token", "<fake_token_around_image>"),
            image_seq_len,
        };
        files.require_tokens("Idefics2", &[&images.fake_image_token])?;
        Ok(images)
    }
}

impl Idefics2Images {
    /// The text that replaces one `<image>`: one block per entry (five when splitting).
    pub fn placeholder(&self) -> String {
        let block = format!(
            "{fake}{images}{fake}",
            fake = self.fake_image_token,
            images = self.image_token.repeat(self.image_seq_len)
        );
        block.repeat(if self.image.do_image_splitting { 5 } else { 1 })
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
        let entries = self.image.preprocess(image)?;
        // entries of one image padded to their largest; the batch pads on to its largest
        let height = entries.iter().map(|(_, s)| s[1]).max().unwrap_or(0);
        let width = entries.iter().map(|(_, s)| s[2]).max().unwrap_or(0);
        let plane = height * width;
        let mut pixel_values = vec![0.0; entries.len() * 3 * plane];
        let mut pixel_mask = vec![false; entries.len() * plane];
        for (k, (data, [_, h, w])) in entries.iter().enumerate() {
            for y in 0..*h {
                let to = k * plane + y * width;
                pixel_mask[to..to + w].fill(true);
                for ch in 0..3 {
                    let to = (k * 3 + ch) * plane + y * width;
                    let from = (ch * h + y) * w;
                    pixel_values[to..to + w].copy_from_slice(&data[from..from + w]);
                }
            }
        }
        Ok(ProcessedImage {
            pixel_values,
            shape: vec![entries.len(), 3, height, width],
            placeholder: self.placeholder(),
            image_grid_thw: None,
            pixel_mask: Some(pixel_mask),
            token_pooling: None,
        })
    }

    fn pads_to_batch(&self) -> bool {
        true
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
    fn splitting_gives_quarters_then_the_whole_image_padded_with_a_mask() {
        let cfg = Idefics2ImageConfig {
            do_resize: false,
            do_rescale: false,
            do_normalize: false,
            do_image_splitting: true,
            ..Default::default()
        };
        // 5 x 3 (w x h): quarters 2x1, 3x1, 2x2, 3x2; red = x, green = y
        let img = image::RgbImage::from_fn(5, 3, |x, y| image::Rgb([x as u8, y as u8, 0]));
        let entries = cfg
            .preprocess(&DynamicImage::ImageRgb8(img.clone()))
            .unwrap();
        let shapes: Vec<[usize; 3]> = entries.iter().map(|(_, s)| *s).collect();
        assert_eq!(
            shapes,
            [[3, 1, 2], [3, 1, 3], [3, 2, 2], [3, 2, 3], [3, 3, 5]]
        );
        // the top-left pixel of each quarter
        let origin: Vec<(f32, f32)> = entries
            .iter()
            .map(|(d, [_, h, w])| (d[0], d[h * w]))
            .collect();
        assert_eq!(origin, [(0., 0.), (2., 0.), (0., 1.), (2., 1.), (0., 0.)]);

        let pipeline = Idefics2Images {
            image: cfg,
            ..images()
        };
        let processed = pipeline.preprocess(&DynamicImage::ImageRgb8(img)).unwrap();
        assert_eq!(processed.shape, [5, 3, 3, 5]);
        let mask = processed.pixel_mask.unwrap();
        let rows = |k: usize| -> Vec<String> {
            (0..3)
                .map(|y| {
                    (0..5)
                        .map(|x| if mask[k * 15 + y * 5 + x] { '1' } else { '0' })
                        .collect()
                })
                .collect()
        };
        assert_eq!(rows(1), ["11100", "00000", "00000"]);
        assert_eq!(rows(4), ["11111", "11111", "11111"]);
        // padding is zero, the real pixels are where the mask says (entry 1: values from 45)
        assert_eq!(processed.pixel_values[45 + 3], 0.0);
        assert_eq!(processed.pixel_values[45 + 2], 4.0);
        assert_eq!(pipeline.placeholder().matches("<fake>").count(), 10);
    }

    #[test]
    fn splitting_needs_two_pixels_each_way() {
        let cfg = Idefics2ImageConfig {
            do_image_splitting: true,
            ..Default::default()
        };
        let err = cfg
            .preprocess(&DynamicImage::new_rgb8(1, 5))
            .unwrap_err()
            .to_string();
        assert!(err.contains("too small"), "{err}");
    }

    #[test]
    fn do_image_splitting_is_read_from_the_file() {
        let cfg = Idefics2ImageConfig::from_json(
            &serde_json::json!({"do_image_splitting": true}),
            Path::new("preprocessor_config.json"),
        )
        .unwrap();
        assert!(cfg.do_image_splitting);
    }
}
