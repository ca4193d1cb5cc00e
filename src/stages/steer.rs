//! `steer` stage.

use xlvlm_dag::{StageContext, StageOutput};
use xlvlm_spec::SteerParams;

pub fn run(_ctx: &StageContext<'_>, _params: &SteerParams) -> anyhow::Result<StageOutput> {
    anyhow::bail!("the `steer` stage is not implemented yet (validation rejects it)")
}
