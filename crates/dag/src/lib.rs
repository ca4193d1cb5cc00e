//! xlvlm planning and execution.
//!
//! [`Plan::build`] turns a validated experiment into nodes (one per sweep instance, fanned out
//! through downstream stages) with content keys; [`Plan::statuses`] says, from manifests alone,
//! what is cached and why anything else must run; [`run`] builds what is missing through an
//! [`Executor`], publishing each artifact atomically under its key.

mod fingerprint;
mod plan;
mod run;

pub use fingerprint::FingerprintCache;
pub use plan::{
    ModelResolver, NodeData, NodeModel, Plan, PlanError, PlanNode, Status, key_of, name_file,
};
pub use run::{
    Executor, InputArtifact, NodeReport, Observer, Outcome, Quiet, RunError, StageContext,
    StageOutput, run,
};
