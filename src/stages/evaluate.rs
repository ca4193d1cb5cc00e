//! `evaluate` stage.

use xlvlm_dag::{StageContext, StageOutput};
use xlvlm_spec::EvaluateParams;

pub fn run(_ctx: &StageContext<'_>, _params: &EvaluateParams) -> anyhow::Result<StageOutput> {
    anyhow::bail!("the `evaluate` stage is not implemented yet (validation rejects it)")
}
