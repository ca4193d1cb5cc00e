//! `extract`: run a model over a dataset and capture hidden states at hook points.

use serde::{Deserialize, Serialize};

use super::{KindParams, StageRef};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtractParams {
    /// A `[models.NAME]` of this experiment.
    pub model: String,
    /// A `[data.NAME]` of this experiment.
    pub data: String,
    /// Hook points (`lm.layers.31`, or the checkpoint's own module names).
    pub hooks: Vec<String>,
}

impl KindParams for ExtractParams {
    fn inputs(&self) -> Vec<(String, &StageRef)> {
        Vec::new()
    }

    fn model(&self) -> Option<&str> {
        Some(&self.model)
    }

    fn data(&self) -> Option<&str> {
        Some(&self.data)
    }
}
