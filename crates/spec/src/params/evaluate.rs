//! `evaluate`: metrics over generations, concepts or shifts.

use serde::{Deserialize, Serialize};

use super::{KindParams, StageRef, StageRefs};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvaluateParams {
    /// The stage(s) evaluated.
    #[serde(default)]
    pub input: Option<StageRefs>,
    /// A swept stage whose instances are gathered into one table (one row per sweep point).
    #[serde(default)]
    pub collect: Option<StageRef>,
    /// Metric names.
    pub metrics: Vec<String>,
}

impl KindParams for EvaluateParams {
    fn inputs(&self) -> Vec<(String, &StageRef)> {
        let mut inputs: Vec<(String, &StageRef)> = self
            .input
            .iter()
            .flat_map(|refs| refs.0.iter())
            .enumerate()
            .map(|(i, r)| (format!("input.{i}"), r))
            .collect();
        if let Some(c) = &self.collect {
            inputs.push(("collect".to_string(), c));
        }
        inputs
    }

    fn gathers(&self) -> &[&'static str] {
        &["collect"]
    }
}
