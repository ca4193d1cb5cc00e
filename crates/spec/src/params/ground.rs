//! `ground`: concepts in words (through the unembedding) and in images (most-activating samples).

use serde::{Deserialize, Serialize};

use super::{KindParams, ParamError, StageRef};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroundParams {
    /// The `decompose` stage whose concepts are grounded.
    pub concepts: StageRef,
    /// The `[models.NAME]` whose unembedding maps concepts to words and whose tokenizer decodes
    /// them.
    pub model: String,
    /// A stage whose table holds `sample_id` and `image` columns for the decomposed samples
    /// (extract features or generations): the images of the most-activating samples. Without
    /// it, most-activating samples are listed by sample id only and no grid is drawn.
    #[serde(default)]
    pub features: Option<StageRef>,
    /// Instead of `features`: the `[data.NAME]` the decomposed samples came from, whose samples
    /// give the images (by sample id).
    #[serde(default)]
    pub data: Option<String>,
    /// With a `shift` stage's concepts, which set to ground (`source`, `original`, `shifted`,
    /// `finetuned`: the values of its `set` column).
    #[serde(default)]
    pub set: Option<String>,
    /// Apply the model's final RMSNorm to a concept before the unembedding. xl-vlms does not
    /// (it unembeds raw intermediate-layer directions), hence off by default.
    #[serde(default)]
    pub final_norm: bool,
    /// Tokens taken by logit before the word filter (xl-vlms `--pre_num_top_tokens`).
    #[serde(default = "default_pre_num_top_tokens")]
    pub pre_num_top_tokens: usize,
    /// Words kept per concept after the filter (xl-vlms `--num_grounded_text_tokens`).
    #[serde(default = "default_num_grounded_text_tokens")]
    pub num_grounded_text_tokens: usize,
    /// Keep each word once per concept (xl-vlms kept `dog` from both `Dog` and ` dog`).
    #[serde(default = "default_true")]
    pub unique_words: bool,
    /// Most-activating samples per concept (xl-vlms `--num_most_activating_samples`).
    #[serde(default = "default_num_most_activating_samples")]
    pub num_most_activating_samples: usize,
    /// Side in pixels of each image of the concept grid.
    #[serde(default = "default_thumbnail_size")]
    pub thumbnail_size: u32,
}

fn default_pre_num_top_tokens() -> usize {
    50
}

fn default_num_grounded_text_tokens() -> usize {
    10
}

fn default_true() -> bool {
    true
}

fn default_num_most_activating_samples() -> usize {
    5
}

fn default_thumbnail_size() -> u32 {
    96
}

impl KindParams for GroundParams {
    fn inputs(&self) -> Vec<(String, &StageRef)> {
        let mut inputs = vec![("concepts".to_string(), &self.concepts)];
        if let Some(f) = &self.features {
            inputs.push(("features".to_string(), f));
        }
        inputs
    }

    fn model(&self) -> Option<&str> {
        Some(&self.model)
    }

    fn data(&self) -> Option<&str> {
        self.data.as_deref()
    }

    fn finish(&mut self, _seed: u64) -> Result<(), ParamError> {
        if self.features.is_some() && self.data.is_some() {
            return Err(ParamError::new(
                "data",
                "cannot be combined with `features`: images come from one of them",
            ));
        }
        if self.num_grounded_text_tokens == 0 {
            return Err(ParamError::new(
                "num_grounded_text_tokens",
                "must be at least 1",
            ));
        }
        if self.pre_num_top_tokens < self.num_grounded_text_tokens {
            return Err(ParamError::new(
                "pre_num_top_tokens",
                format!(
                    "is {} but must be at least `num_grounded_text_tokens` ({})",
                    self.pre_num_top_tokens, self.num_grounded_text_tokens
                ),
            )
            .help("the word filter keeps words among the top `pre_num_top_tokens` tokens"));
        }
        if self.num_most_activating_samples == 0 {
            return Err(ParamError::new(
                "num_most_activating_samples",
                "must be at least 1",
            ));
        }
        if !(8..=1024).contains(&self.thumbnail_size) {
            return Err(ParamError::new(
                "thumbnail_size",
                format!("is {}; use 8 to 1024 pixels", self.thumbnail_size),
            ));
        }
        Ok(())
    }
}
