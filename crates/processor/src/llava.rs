//! LLaVA-1.5 (`LlavaProcessor`): CLIP preprocessing and `<image>` expanded into one token per
//! vision feature the projector produces.

use std::path::Path;

use image::DynamicImage;

use crate::error::{ProcessorError, Result};
use crate::image::{ClipImageConfig, PixelValues};
use crate::processor::{CheckpointFiles, ImagePipeline, ProcessedImage};

/// LLaVA-1.5's image side of the processor.
#[derive(Debug, Clone)]
pub struct LlavaImages {
    pub image: ClipImageConfig,
    pub image_token: String,
    pub patch_size: u32,
    /// Tokens the vision tower adds besides the patches (1 for CLIP's CLS).
    pub num_additional_image_tokens: u32,
    /// `"default"` drops the CLS feature, `"full"` keeps it.
    pub vision_feature_select_strategy: String,
}

impl LlavaImages {
    /// Builds LLaVA's image side from a checkpoint's processor files.
    pub fn from_checkpoint(files: &CheckpointFiles<'_>) -> Result<Self> {
        let empty = serde_json::Value::Object(Default::default());
        let top = files.processor_config.unwrap_or(&empty);
        // LlavaProcessor takes the tokenizer's `image_token` when it has one.
        let image_token = files
            .tokenizer
            .special_token("image_token")
            .map(|t| t.text.clone())
            .or_else(|| {
                top.get("image_token")
                    .and_then(|v| v.as_str())
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| "<image>".to_owned());
        let clip = ClipImageConfig::from_json(files.image_settings, files.image_settings_path)?;
        Self::from_configs(
            clip,
            top,
            files.processor_config_path,
            files.model_config,
            image_token,
        )
    }

    /// Reads the LLaVA settings from the top level of `processor_config.json` (`patch_size`,
    /// `vision_feature_select_strategy`, `num_additional_image_tokens`), falling back to
    /// `config.json` (`vision_config.patch_size`, `vision_feature_select_strategy`) for Hub
    /// checkpoints whose processor file predates those keys.
    pub fn from_configs(
        image: ClipImageConfig,
        processor_config: &serde_json::Value,
        processor_config_path: &Path,
        model_config: Option<&serde_json::Value>,
        image_token: String,
    ) -> Result<Self> {
        let from_model = |key: &str| model_config.and_then(|c| c.get(key));
        let patch_size = processor_config
            .get("patch_size")
            .filter(|v| !v.is_null())
            .or_else(|| model_config.and_then(|c| c.get("vision_config")?.get("patch_size")))
            .and_then(|v| v.as_u64())
            .filter(|&p| p > 0)
            .ok_or_else(|| ProcessorError::BadFile {
                path: processor_config_path.to_path_buf(),
                detail: "no patch_size (looked in this file and in config.json vision_config)"
                    .into(),
            })? as u32;
        let strategy = processor_config
            .get("vision_feature_select_strategy")
            .filter(|v| !v.is_null())
            .or_else(|| from_model("vision_feature_select_strategy"))
            .and_then(|v| v.as_str())
            .unwrap_or("default")
            .to_owned();
        if strategy != "default" && strategy != "full" {
            return Err(ProcessorError::BadFile {
                path: processor_config_path.to_path_buf(),
                detail: format!(
                    "vision_feature_select_strategy must be \"default\" or \"full\", got {strategy:?}"
                ),
            });
        }
        let num_additional_image_tokens = processor_config
            .get("num_additional_image_tokens")
            .and_then(|v| v.as_u64())
            // CLIP adds a CLS token; LlavaProcessor's own default is 0, but every LLaVA-1.5
            // checkpoint whose processor file omits the key relied on the model-side expansion
            // that counted the CLS.
            .unwrap_or(1) as u32;
        Ok(Self {
            image,
            image_token,
            patch_size,
            num_additional_image_tokens,
            vision_feature_select_strategy: strategy,
        })
    }

    /// Number of `<image>` tokens for an image of (height, width) after preprocessing, as
    /// `LlavaProcessor.replace_image_token` counts them.
    pub fn num_image_tokens(&self, height: usize, width: usize) -> usize {
        let p = self.patch_size as usize;
        let mut n = (height / p) * (width / p) + self.num_additional_image_tokens as usize;
        if self.vision_feature_select_strategy == "default" {
            n = n.saturating_sub(1);
        }
        n
    }
}

impl ImagePipeline for LlavaImages {
    fn family(&self) -> &'static str {
        "llava"
    }

    fn image_token(&self) -> &str {
        &self.image_token
    }

    fn preprocess(&self, image: &DynamicImage) -> Result<ProcessedImage> {
        let PixelValues { data, shape } = self.image.preprocess(image)?;
        let num_tokens = self.num_image_tokens(shape[1], shape[2]);
        Ok(ProcessedImage {
            pixel_values: data,
            shape: shape.to_vec(),
            placeholder: self.image_token.repeat(num_tokens),
            image_grid_thw: None,
            pixel_mask: None,
            token_pooling: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn llava(strategy: &str, extra: u32) -> LlavaImages {
        LlavaImages {
            image: ClipImageConfig::default(),
            image_token: "<image>".into(),
            patch_size: 14,
            num_additional_image_tokens: extra,
            vision_feature_select_strategy: strategy.into(),
        }
    }

    #[test]
    fn llava_1_5_at_336_has_576_image_tokens() {
        assert_eq!(llava("default", 1).num_image_tokens(336, 336), 576);
        assert_eq!(llava("full", 1).num_image_tokens(336, 336), 577);
        assert_eq!(llava("default", 1).num_image_tokens(56, 56), 16);
    }

    #[test]
    fn hub_processor_files_without_patch_size_fall_back_to_config_json() {
        let model_config = serde_json::json!({
            "model_type": "llava",
            "vision_feature_select_strategy": "full",
            "vision_config": {"patch_size": 14}
        });
        let llava = LlavaImages::from_configs(
            ClipImageConfig::default(),
            &serde_json::json!({"processor_class": "LlavaProcessor"}),
            Path::new("processor_config.json"),
            Some(&model_config),
            "<image>".into(),
        )
        .unwrap();
        assert_eq!(llava.patch_size, 14);
        assert_eq!(llava.num_image_tokens(336, 336), 577);
        let err = LlavaImages::from_configs(
            ClipImageConfig::default(),
            &serde_json::json!({}),
            Path::new("processor_config.json"),
            None,
            "<image>".into(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("no patch_size"), "{err}");
    }

    #[test]
    fn strategy_must_be_known() {
        let err = LlavaImages::from_configs(
            ClipImageConfig::default(),
            &serde_json::json!({"patch_size": 14, "vision_feature_select_strategy": "cls"}),
            Path::new("processor_config.json"),
            None,
            "<image>".into(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("processor_config.json"), "{err}");
    }
}
