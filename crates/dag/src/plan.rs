//! From a validated experiment to a plan: one node per stage instance (sweeps fan out through
//! their downstream stages), each with its cache key and, against the store, its status.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use petgraph::algo::toposort;
use petgraph::graph::DiGraph;
use serde_json::{Value, json};
use std::path::PathBuf;

use xlvlm_spec::{DataSpec, Experiment, ModelSpec, StageKind, StageParams};
use xlvlm_store::{Key, Manifest, Store};

use crate::fingerprint::FingerprintCache;

/// Sweep coordinates and the input edges chosen so far, while fanning a stage out.
type Partial = (BTreeMap<String, String>, Vec<(String, usize)>);

/// One stage instance to run.
#[derive(Clone, Debug)]
pub struct PlanNode {
    pub stage: String,
    /// `stage`, or `stage[alpha=0.5]`, `eval[steered.alpha=0.5]` for sweep instances.
    pub label: String,
    pub kind: StageKind,
    /// Sweep coordinates this instance sits at: `stage.param` → value label, own and upstream.
    pub coords: BTreeMap<String, String>,
    pub params: StageParams,
    /// Input role → index of the upstream node in [`Plan::nodes`].
    pub inputs: Vec<(String, usize)>,
    /// Content fingerprints of the files the stage reads.
    pub fingerprints: BTreeMap<String, String>,
    /// The model the stage runs, with its checkpoint folder resolved.
    pub model: Option<NodeModel>,
    /// The dataset the stage reads.
    pub data: Option<NodeData>,
    pub key: Key,
}

#[derive(Clone, Debug)]
pub struct NodeModel {
    pub name: String,
    pub spec: ModelSpec,
    /// The checkpoint folder (`path`, or the Hub snapshot `source` resolved to).
    pub dir: PathBuf,
}

#[derive(Clone, Debug)]
pub struct NodeData {
    pub name: String,
    pub spec: DataSpec,
}

/// Finds the checkpoint folder of a `[models.*]` section (a local path or a Hub snapshot).
pub type ModelResolver<'a> = &'a dyn Fn(&ModelSpec) -> Result<PathBuf, String>;

/// Why a node will run, or that it will not.
#[derive(Clone, Debug, PartialEq)]
pub enum Status {
    Cached,
    /// Never run under this name before.
    New,
    /// The name pointed at another key; the reasons say what changed.
    Stale(Vec<String>),
    /// The artifact was removed (gc) or never finished; a resumable stage continues its shards.
    Missing,
    Forced,
}

impl Status {
    pub fn will_run(&self) -> bool {
        !matches!(self, Status::Cached)
    }

    pub fn describe(&self) -> String {
        match self {
            Status::Cached => "cached".into(),
            Status::New => "new".into(),
            Status::Stale(reasons) => format!("stale: {}", reasons.join("; ")),
            Status::Missing => "output missing".into(),
            Status::Forced => "forced".into(),
        }
    }
}

/// All nodes of an experiment in an order where inputs come first.
#[derive(Clone, Debug)]
pub struct Plan {
    pub experiment: String,
    pub nodes: Vec<PlanNode>,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("cannot fingerprint `{path}` (read by stage `{stage}`): {source}")]
    Fingerprint {
        stage: String,
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("model `{model}` (used by stage `{stage}`): {message}")]
    Model {
        stage: String,
        model: String,
        message: String,
    },
    #[error("stage `{0}` is not in this experiment")]
    UnknownStage(String),
    #[error(transparent)]
    Store(#[from] xlvlm_store::StoreError),
}

impl Plan {
    /// Expands sweeps, orders stages and computes every key. Reads only the input files'
    /// fingerprints (cached by size/mtime/inode), never artifacts.
    pub fn build(
        exp: &Experiment,
        fingerprints: &mut FingerprintCache,
        resolve_model: ModelResolver<'_>,
    ) -> Result<Plan, PlanError> {
        // Stage-level order (references are acyclic: the spec checked).
        let mut graph = DiGraph::<usize, ()>::new();
        let ids: Vec<_> = (0..exp.stages.len()).map(|i| graph.add_node(i)).collect();
        for (i, stage) in exp.stages.iter().enumerate() {
            for inst in &stage.instances {
                for (_, r) in inst.params.inputs() {
                    let j = exp
                        .stages
                        .iter()
                        .position(|s| s.name == r.0)
                        .expect("references were validated");
                    graph.update_edge(ids[j], ids[i], ());
                }
            }
        }
        let order = toposort(&graph, None).expect("the spec rejects cycles");

        let mut nodes: Vec<PlanNode> = Vec::new();
        let mut nodes_of: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for idx in order {
            let stage = &exp.stages[graph[idx]];
            let mut mine = Vec::new();
            for inst in &stage.instances {
                let own: BTreeMap<String, String> = inst
                    .coords
                    .iter()
                    .map(|(p, v)| (format!("{}.{p}", stage.name), v.clone()))
                    .collect();
                // Join with every compatible combination of upstream instances: instances that
                // descend from the same sweep point stay together, independent sweeps multiply.
                let mut partial: Vec<Partial> = vec![(own, vec![])];
                for (role, r) in inst.params.inputs() {
                    let mut next = Vec::new();
                    if inst.params.gathers(&role) {
                        // One node reads every compatible instance; their coordinates are
                        // consumed rather than inherited.
                        for (coords, inputs) in &partial {
                            let mut ins = inputs.clone();
                            let compatible = nodes_of[r.0.as_str()].iter().filter(|&&u| {
                                nodes[u]
                                    .coords
                                    .iter()
                                    .all(|(k, v)| coords.get(k).is_none_or(|c| c == v))
                            });
                            for (i, &u) in compatible.enumerate() {
                                ins.push((format!("{role}.{i}"), u));
                            }
                            next.push((coords.clone(), ins));
                        }
                        partial = next;
                        continue;
                    }
                    for (coords, inputs) in &partial {
                        for &u in &nodes_of[r.0.as_str()] {
                            let up = &nodes[u].coords;
                            if up.iter().all(|(k, v)| coords.get(k).is_none_or(|c| c == v)) {
                                let mut c = coords.clone();
                                c.extend(up.iter().map(|(k, v)| (k.clone(), v.clone())));
                                let mut ins = inputs.clone();
                                ins.push((role.clone(), u));
                                next.push((c, ins));
                            }
                        }
                    }
                    partial = next;
                }
                let (fps, model, data) =
                    resources(exp, &stage.name, &inst.params, fingerprints, resolve_model)?;
                for (coords, inputs) in partial {
                    let input_keys: BTreeMap<String, Key> = inputs
                        .iter()
                        .map(|(role, u)| (role.clone(), nodes[*u].key.clone()))
                        .collect();
                    let key = key_of(stage.kind, &inst.params, &input_keys, &fps);
                    let label = label(&stage.name, &coords);
                    mine.push(nodes.len());
                    nodes.push(PlanNode {
                        stage: stage.name.clone(),
                        label,
                        kind: stage.kind,
                        coords,
                        params: inst.params.clone(),
                        inputs,
                        fingerprints: fps.clone(),
                        model: model.clone(),
                        data: data.clone(),
                        key,
                    });
                }
            }
            nodes_of.insert(stage.name.as_str(), mine);
        }
        Ok(Plan {
            experiment: exp.meta.name.clone(),
            nodes,
        })
    }

    /// The nodes of `stage` (all its sweep instances).
    pub fn nodes_of(&self, stage: &str) -> Vec<usize> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.stage == stage)
            .map(|(i, _)| i)
            .collect()
    }

    /// Restricts the plan to `stage` and everything upstream of it.
    pub fn only(&self, stage: &str) -> Result<Plan, PlanError> {
        let targets = self.nodes_of(stage);
        if targets.is_empty() {
            return Err(PlanError::UnknownStage(stage.to_string()));
        }
        let mut keep = vec![false; self.nodes.len()];
        let mut stack = targets;
        while let Some(i) = stack.pop() {
            if !keep[i] {
                keep[i] = true;
                stack.extend(self.nodes[i].inputs.iter().map(|(_, u)| *u));
            }
        }
        let mut remap = vec![usize::MAX; self.nodes.len()];
        let mut nodes = Vec::new();
        for (i, n) in self.nodes.iter().enumerate() {
            if keep[i] {
                remap[i] = nodes.len();
                let mut n = n.clone();
                for (_, u) in &mut n.inputs {
                    *u = remap[*u];
                }
                nodes.push(n);
            }
        }
        Ok(Plan {
            experiment: self.experiment.clone(),
            nodes,
        })
    }

    /// Each node's status against the store: reads manifests only.
    pub fn statuses(&self, store: &Store, forced: &[String]) -> Result<Vec<Status>, PlanError> {
        let mut out = Vec::with_capacity(self.nodes.len());
        for n in &self.nodes {
            if forced.contains(&n.stage) {
                out.push(Status::Forced);
                continue;
            }
            if store.contains(&n.key) {
                out.push(Status::Cached);
                continue;
            }
            let status = match store.resolve_name(&self.experiment, &name_file(&n.label))? {
                None => Status::New,
                Some(old) if old == n.key => Status::Missing,
                Some(old) => match store.manifest(&old)? {
                    Some(m) => Status::Stale(self.why_changed(n, &m)),
                    None => Status::Stale(vec![format!(
                        "the previous output ({}) is gone",
                        old.short()
                    )]),
                },
            };
            out.push(status);
        }
        Ok(out)
    }

    /// What differs between the node and the manifest its name last pointed to.
    fn why_changed(&self, node: &PlanNode, old: &Manifest) -> Vec<String> {
        let mut reasons = Vec::new();
        if old.kind != node.kind.name() || old.kind_version != node.kind.version() {
            reasons.push(format!(
                "stage kind {} v{} → {} v{}",
                old.kind,
                old.kind_version,
                node.kind,
                node.kind.version()
            ));
        }
        diff_json("", &old.params, &node.params.key_params(), &mut reasons);
        for (role, u) in &node.inputs {
            let up = &self.nodes[*u];
            match old.inputs.get(role) {
                Some(k) if *k == up.key => {}
                _ => reasons.push(format!("input `{role}` changed (upstream `{}`)", up.label)),
            }
        }
        for (what, fp) in &node.fingerprints {
            if old.fingerprints.get(what) != Some(fp) {
                reasons.push(format!("content of `{what}` changed"));
            }
        }
        if reasons.is_empty() {
            reasons.push("xlvlm's key recipe changed".into());
        }
        reasons
    }
}

/// The file name a label is stored under in `names/<experiment>/`.
pub fn name_file(label: &str) -> String {
    label.replace('%', "%25").replace('/', "%2F")
}

fn label(stage: &str, coords: &BTreeMap<String, String>) -> String {
    if coords.is_empty() {
        return stage.to_string();
    }
    let prefix = format!("{stage}.");
    let mut own: Vec<String> = Vec::new();
    let mut up: Vec<String> = Vec::new();
    for (k, v) in coords {
        match k.strip_prefix(&prefix) {
            Some(param) => own.push(format!("{param}={v}")),
            None => up.push(format!("{k}={v}")),
        }
    }
    own.extend(up);
    format!("{stage}[{}]", own.join(","))
}

type Resources = (
    BTreeMap<String, String>,
    Option<NodeModel>,
    Option<NodeData>,
);

/// What a stage instance reads besides other stages, and the fingerprints that stand for it in
/// the key: its files, its model (checkpoint content and dtype) and its dataset (annotation
/// files, format, split and limit). Images are not fingerprinted: a dataset's images are taken
/// to be fixed once written.
fn resources(
    exp: &Experiment,
    stage: &str,
    params: &StageParams,
    fingerprints: &mut FingerprintCache,
    resolve_model: ModelResolver<'_>,
) -> Result<Resources, PlanError> {
    let mut fps = BTreeMap::new();
    let mut fingerprint = |role: String, path: &std::path::Path, fps: &mut BTreeMap<_, _>| {
        let fp = fingerprints
            .file(path)
            .map_err(|source| PlanError::Fingerprint {
                stage: stage.to_string(),
                path: path.to_path_buf(),
                source,
            })?;
        fps.insert(role, fp);
        Ok::<_, PlanError>(())
    };
    for (role, path) in params.files() {
        fingerprint(role, path, &mut fps)?;
    }
    let data = match params.data() {
        Some(name) => {
            let spec = exp.data[name].clone();
            fingerprint("data.annotations".into(), &spec.annotations, &mut fps)?;
            if let Some(q) = &spec.questions {
                fingerprint("data.questions".into(), q, &mut fps)?;
            }
            let selection = json!({
                "format": spec.format,
                "split": spec.split,
                "dataset_size": spec.dataset_size,
                "seed": spec.seed,
                "filter": spec.filter,
                "limit": spec.limit,
                "image_template": spec.image_template,
                "missing_images": spec.missing_images,
            });
            fps.insert("data.selection".into(), selection.to_string());
            Some(NodeData {
                name: name.to_string(),
                spec,
            })
        }
        None => None,
    };
    let model = match params.model() {
        Some(name) => {
            let spec = exp.models[name].clone();
            let dir = resolve_model(&spec).map_err(|message| PlanError::Model {
                stage: stage.to_string(),
                model: name.to_string(),
                message,
            })?;
            let fp = fingerprints
                .dir(&dir)
                .map_err(|source| PlanError::Fingerprint {
                    stage: stage.to_string(),
                    path: dir.clone(),
                    source,
                })?;
            fps.insert("model".into(), fp);
            fps.insert("model.dtype".into(), json!(spec.dtype).to_string());
            Some(NodeModel {
                name: name.to_string(),
                spec,
                dir,
            })
        }
        None => None,
    };
    Ok((fps, model, data))
}

/// The cache key: kind and version, canonical parameters, input keys and fingerprints.
pub fn key_of(
    kind: StageKind,
    params: &StageParams,
    inputs: &BTreeMap<String, Key>,
    fingerprints: &BTreeMap<String, String>,
) -> Key {
    let material = json!({
        "kind": kind.name(),
        "kind_version": kind.version(),
        "params": params.key_params(),
        "inputs": inputs.iter().map(|(r, k)| (r.clone(), Value::String(k.as_str().to_string()))).collect::<serde_json::Map<_, _>>(),
        "fingerprints": fingerprints,
    });
    let mut canonical = String::new();
    write_canonical(&material, &mut canonical);
    Key::from_hash(&blake3::hash(canonical.as_bytes()))
}

/// JSON with object keys sorted at every level, whatever serde_json's map type.
fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{}:", Value::String(k.clone()));
                write_canonical(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        other => {
            let _ = write!(out, "{other}");
        }
    }
}

fn diff_json(path: &str, old: &Value, new: &Value, out: &mut Vec<String>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                diff_json(
                    &p,
                    a.get(k).unwrap_or(&Value::Null),
                    b.get(k).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        (a, b) if a != b => out.push(format!("param `{path}`: {a} → {b}")),
        _ => {}
    }
}
