//! The run loop: for each node that is not cached, take its lock, build it in staging (where a
//! killed run left finished shards), publish atomically, and point its name at the new key.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use serde_json::Value;
use xlvlm_store::{Key, Manifest, Staging, Store, now_rfc3339};

use crate::plan::{Plan, PlanNode, Status, name_file};

/// An upstream artifact as a stage sees it.
#[derive(Clone, Debug)]
pub struct InputArtifact {
    pub label: String,
    /// The upstream instance's sweep coordinates (`stage.param` → value label).
    pub coords: BTreeMap<String, String>,
    pub key: Key,
    pub dir: PathBuf,
    pub manifest: Manifest,
}

/// What a stage gets to do its work.
pub struct StageContext<'a> {
    pub node: &'a PlanNode,
    pub staging: &'a Staging,
    /// Role → upstream artifact.
    pub inputs: BTreeMap<String, InputArtifact>,
    pub seed: u64,
}

/// What a stage reports back, recorded in its manifest.
#[derive(Clone, Debug, Default)]
pub struct StageOutput {
    pub rows: Option<u64>,
    pub summary: Value,
}

/// Runs stages of every kind; implemented by the binary, which knows the stage code.
pub trait Executor {
    fn run(&self, ctx: &StageContext<'_>) -> anyhow::Result<StageOutput>;
}

#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Cached,
    Ran,
    /// Another process finished it while this one waited for the lock.
    RanElsewhere,
}

#[derive(Clone, Debug)]
pub struct NodeReport {
    pub label: String,
    pub kind: String,
    pub key: Key,
    pub outcome: Outcome,
    pub rows: Option<u64>,
    pub seconds: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("stage `{label}` failed: {source:#}")]
    Stage {
        label: String,
        #[source]
        source: anyhow::Error,
        /// What finished before the failure (kept in the store).
        done: Vec<NodeReport>,
    },
    #[error(transparent)]
    Store(#[from] xlvlm_store::StoreError),
}

/// Callbacks for progress display.
pub trait Observer {
    fn started(&self, _node: &PlanNode, _index: usize, _total: usize) {}
    fn waiting_for_lock(&self, _node: &PlanNode) {}
    fn finished(&self, _report: &NodeReport) {}
}

/// An observer that shows nothing.
pub struct Quiet;
impl Observer for Quiet {}

/// Runs the plan. `statuses` come from [`Plan::statuses`]; cached nodes only have their
/// manifest read (for the summary), never their data.
pub fn run(
    plan: &Plan,
    statuses: &[Status],
    store: &Store,
    executor: &dyn Executor,
    seed: u64,
    observer: &dyn Observer,
) -> Result<Vec<NodeReport>, RunError> {
    let mut reports = Vec::with_capacity(plan.nodes.len());
    let total = statuses.iter().filter(|s| s.will_run()).count();
    let mut started = 0;
    for (node, status) in plan.nodes.iter().zip(statuses) {
        if !status.will_run() {
            let m = store.manifest(&node.key)?;
            let report = NodeReport {
                label: node.label.clone(),
                kind: node.kind.name().to_string(),
                key: node.key.clone(),
                outcome: Outcome::Cached,
                rows: m.and_then(|m| m.rows),
                seconds: 0.0,
            };
            observer.finished(&report);
            reports.push(report);
            continue;
        }
        started += 1;
        observer.started(node, started, total);
        let report = match run_node(
            plan,
            node,
            *status == Status::Forced,
            store,
            executor,
            seed,
            observer,
        ) {
            Ok(r) => r,
            Err(RunError::Stage { label, source, .. }) => {
                return Err(RunError::Stage {
                    label,
                    source,
                    done: reports,
                });
            }
            Err(e) => return Err(e),
        };
        observer.finished(&report);
        reports.push(report);
    }
    Ok(reports)
}

fn run_node(
    plan: &Plan,
    node: &PlanNode,
    forced: bool,
    store: &Store,
    executor: &dyn Executor,
    seed: u64,
    observer: &dyn Observer,
) -> Result<NodeReport, RunError> {
    let lock = match store.try_lock(&node.key)? {
        Some(lock) => lock,
        None => {
            observer.waiting_for_lock(node);
            tracing::info!(
                "{}: waiting for another xlvlm process building {}",
                node.label,
                node.key.short()
            );
            store.lock(&node.key)?
        }
    };
    let report = |outcome, rows, seconds| NodeReport {
        label: node.label.clone(),
        kind: node.kind.name().to_string(),
        key: node.key.clone(),
        outcome,
        rows,
        seconds,
    };
    if let Some(m) = store.manifest(&node.key)? {
        if !forced {
            store.set_name(&plan.experiment, &name_file(&node.label), &node.key)?;
            return Ok(report(Outcome::RanElsewhere, m.rows, 0.0));
        }
        store.remove(&node.key)?;
    }

    let mut inputs = BTreeMap::new();
    for (role, u) in &node.inputs {
        let up = &plan.nodes[*u];
        let manifest = store.manifest(&up.key)?.ok_or_else(|| RunError::Stage {
            label: node.label.clone(),
            source: anyhow::anyhow!(
                "input `{}` ({}) is not in the store",
                up.label,
                up.key.short()
            ),
            done: vec![],
        })?;
        inputs.insert(
            role.clone(),
            InputArtifact {
                label: up.label.clone(),
                coords: up.coords.clone(),
                key: up.key.clone(),
                dir: store.artifact_dir(&up.key),
                manifest,
            },
        );
    }

    let staging = store.stage(&node.key)?;
    let started_at = now_rfc3339();
    let clock = Instant::now();
    let ctx = StageContext {
        node,
        staging: &staging,
        inputs,
        seed,
    };
    let output = executor.run(&ctx).map_err(|source| RunError::Stage {
        label: node.label.clone(),
        source,
        done: vec![],
    })?;
    let seconds = clock.elapsed().as_secs_f64();
    let manifest = Manifest {
        key: node.key.clone(),
        kind: node.kind.name().to_string(),
        kind_version: node.kind.version(),
        stage: node.label.clone(),
        params: node.params.key_params(),
        inputs: ctx
            .inputs
            .iter()
            .map(|(r, a)| (r.clone(), a.key.clone()))
            .collect(),
        fingerprints: node.fingerprints.clone(),
        files: vec![],
        rows: output.rows,
        summary: output.summary,
        started_at,
        finished_at: now_rfc3339(),
        seconds,
        xlvlm_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    staging.publish(manifest)?;
    store.set_name(&plan.experiment, &name_file(&node.label), &node.key)?;
    drop(lock);
    Ok(report(Outcome::Ran, output.rows, seconds))
}
