//! `steer`: generate with a vector added at hook points.
//!
//! The seed's `shift_hidden_states_add*` hooks map to `positions` (`_add` → `all`,
//! `_only_generated` → `generated`, `_last_prompt_token` → `last_prompt_token`,
//! `--start_prompt_token_idx_steering N` → `from_index` with `start_index = N`) and `mode`
//! (`_add_projected`, named but never implemented by the seed → `projected`);
//! `--steering_alpha` → `alpha`; `--modules_to_hook` → `hooks`; `--shift_vector_key` →
//! `vector_name`.

use serde::{Deserialize, Serialize};

use super::extract::{GenerateParams, PromptParams, check_hooks, check_sizes};
use super::{KindParams, ParamError, StageRef};

/// Which positions the vector is applied at. Every position selected at a hook is changed in
/// the prompt pass and in each generation step that feeds a generated token back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SteerPositions {
    /// Every prompt position (image tokens included) and every generated token.
    All,
    /// Generated tokens only: the prompt pass is untouched, so the first generated token is
    /// predicted unsteered (as the seed's `_only_generated`).
    Generated,
    /// The last prompt token and every generated token.
    LastPromptToken,
    /// Positions `start_index` and later (prompt and generated), e.g. after the image tokens.
    FromIndex,
}

/// How the vector changes a hidden state `h`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SteerMode {
    /// `h' = h + alpha * v`.
    Add,
    /// `h' = h - (h . u) u + alpha * u` with `u = v / |v|`: the component of `h` along `v` is
    /// replaced, so every steered state has the projection `h' . u = alpha` (alpha is in the
    /// hidden state's own units here, not in multiples of `v`).
    Projected,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SteerParams {
    /// A `[models.NAME]` of this experiment.
    pub model: String,
    /// A `[data.NAME]` of this experiment.
    pub data: String,
    /// The `shift` stage whose vector is applied.
    pub vector: StageRef,
    /// Which row of the shift stage's `vectors.parquet` (its `name` column) when it holds
    /// several; default: the only one.
    #[serde(default)]
    pub vector_name: Option<String>,
    /// Hook points the vector is applied at (the same vector at each).
    pub hooks: Vec<String>,
    /// Strength (sweepable: `alpha = { sweep = [0.5, 1, 2] }`).
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// Default `all` (the seed's `shift_hidden_states_add`).
    #[serde(default)]
    pub positions: Option<SteerPositions>,
    /// With `positions = "from_index"`: the first steered position.
    #[serde(default)]
    pub start_index: Option<usize>,
    /// Default `add`.
    #[serde(default)]
    pub mode: Option<SteerMode>,
    #[serde(default)]
    pub generate: Option<GenerateParams>,
    /// The instruction built from each sample (default: the seed's `llava` templates).
    #[serde(default)]
    pub prompt: Option<PromptParams>,
    /// Samples per generation batch, default 8 (left padding).
    #[serde(default)]
    pub batch_size: Option<usize>,
    /// Samples per output shard, default 64; a killed run resumes at the first unfinished shard.
    #[serde(default)]
    pub shard_samples: Option<usize>,
}

fn default_alpha() -> f64 {
    1.0
}

impl KindParams for SteerParams {
    fn inputs(&self) -> Vec<(String, &StageRef)> {
        vec![("vector".to_string(), &self.vector)]
    }

    fn model(&self) -> Option<&str> {
        Some(&self.model)
    }

    fn data(&self) -> Option<&str> {
        Some(&self.data)
    }

    fn finish(&mut self, _seed: u64) -> Result<(), ParamError> {
        check_hooks(&self.hooks)?;
        if !self.alpha.is_finite() {
            return Err(ParamError::new("alpha", "must be a finite number"));
        }
        let positions = *self.positions.get_or_insert(SteerPositions::All);
        match (positions, self.start_index) {
            (SteerPositions::FromIndex, None) => {
                return Err(ParamError::new(
                    "start_index",
                    "`positions = \"from_index\"` needs `start_index`",
                )
                .help(
                    "e.g. start_index = 577 steers LLaVA-1.5 after BOS and the 576 image tokens",
                ));
            }
            (SteerPositions::FromIndex, Some(_)) | (_, None) => {}
            (_, Some(_)) => {
                return Err(ParamError::new(
                    "start_index",
                    "`start_index` applies to `positions = \"from_index\"` only",
                ));
            }
        }
        self.mode.get_or_insert(SteerMode::Add);
        self.generate
            .get_or_insert_with(GenerateParams::default)
            .check("generate")?;
        self.prompt.get_or_insert_with(PromptParams::default);
        check_sizes(&mut self.batch_size, &mut self.shard_samples)?;
        Ok(())
    }
}
