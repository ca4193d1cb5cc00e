//! `steer`: generate with vectors added at hook points.

use serde::{Deserialize, Serialize};

use super::{KindParams, StageRef};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SteerParams {
    /// A `[models.NAME]` of this experiment.
    pub model: String,
    /// A `[data.NAME]` of this experiment.
    pub data: String,
    /// The `shift` stage whose vector is added.
    pub vector: StageRef,
    /// Hook points the vector is added at.
    pub hooks: Vec<String>,
    /// Strength: the hidden state becomes `h + alpha * v`.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
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
}
