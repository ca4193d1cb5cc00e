//! `evaluate`: metrics over generations, concepts or shifts.

use serde::{Deserialize, Serialize};

use super::{KindParams, StageRef, StageRefs};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvaluateParams {
    /// The stage(s) evaluated.
    pub input: StageRefs,
    /// Metric names.
    pub metrics: Vec<String>,
}

impl KindParams for EvaluateParams {
    fn inputs(&self) -> Vec<(String, &StageRef)> {
        self.input
            .0
            .iter()
            .enumerate()
            .map(|(i, r)| (format!("input.{i}"), r))
            .collect()
    }
}
