//! `extract` stage.

use xlvlm_dag::{StageContext, StageOutput};
use xlvlm_spec::ExtractParams;

pub fn run(_ctx: &StageContext<'_>, _params: &ExtractParams) -> anyhow::Result<StageOutput> {
    anyhow::bail!("the `extract` stage is not implemented yet (validation rejects it)")
}
