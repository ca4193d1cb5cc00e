//! `ground` stage.

use xlvlm_dag::{StageContext, StageOutput};
use xlvlm_spec::GroundParams;

pub fn run(_ctx: &StageContext<'_>, _params: &GroundParams) -> anyhow::Result<StageOutput> {
    anyhow::bail!("the `ground` stage is not implemented yet (validation rejects it)")
}
