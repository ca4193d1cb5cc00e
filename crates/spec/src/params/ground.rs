//! `ground`: concepts in words (through the unembedding) and in images (most-activating samples).

use serde::{Deserialize, Serialize};

use super::{KindParams, StageRef};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroundParams {
    /// The `decompose` stage whose concepts are grounded.
    pub concepts: StageRef,
    /// The `[models.NAME]` whose unembedding maps concepts to words.
    pub model: String,
}

impl KindParams for GroundParams {
    fn inputs(&self) -> Vec<(String, &StageRef)> {
        vec![("concepts".to_string(), &self.concepts)]
    }

    fn model(&self) -> Option<&str> {
        Some(&self.model)
    }
}
