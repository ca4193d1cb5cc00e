//! The subcommands.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::Context;
use xlvlm_dag::{FingerprintCache, Plan, PlanError, RunError, Status};
use xlvlm_spec::{Experiment, ModelSpec, did_you_mean};
use xlvlm_store::{Column, Key, Store, read_parquet};

use crate::Failure;
use crate::report;

fn load(file: &Path) -> Result<Experiment, Failure> {
    xlvlm_spec::load(file).map_err(|e| Failure::Invalid(e.to_string()))
}

fn open_store(path: &Path) -> Result<Store, Failure> {
    Store::open(path)
        .with_context(|| format!("cannot open the store at `{}`", path.display()))
        .map_err(Failure::Failed)
}

fn check_stage(exp: &Experiment, name: &str, flag: &str) -> Result<(), Failure> {
    if exp.stage(name).is_some() {
        return Ok(());
    }
    let names: Vec<&str> = exp.stages.iter().map(|s| s.name.as_str()).collect();
    let hint = match did_you_mean(name, names.iter().copied()) {
        Some(s) => format!("did you mean `{s}`?"),
        None => format!("stages: {}", names.join(", ")),
    };
    Err(Failure::Invalid(format!(
        "error: {flag} {name}: `{}` has no stage `{name}`\n  help: {hint}",
        exp.path.display()
    )))
}

/// A missing or unreadable input file is bad input (exit 2), like an error in the file itself.
fn plan_failure(e: PlanError) -> Failure {
    match e {
        PlanError::Fingerprint { .. } | PlanError::Model { .. } => {
            Failure::Invalid(format!("error: {e}"))
        }
        other => Failure::Failed(other.into()),
    }
}

/// Builds the plan (keys from fingerprints and parameters) and each node's status.
fn plan_for(
    store: &Store,
    exp: &Experiment,
    force: &[String],
    only: Option<&str>,
) -> Result<(Plan, Vec<Status>), Failure> {
    for f in force {
        check_stage(exp, f, "--force")?;
    }
    if let Some(o) = only {
        check_stage(exp, o, "--only")?;
    }
    let mut fingerprints =
        FingerprintCache::open(store.root().join("cache").join("fingerprints.json"));
    let mut plan = Plan::build(exp, &mut fingerprints, &resolve_model).map_err(plan_failure)?;
    if let Err(e) = fingerprints.save() {
        tracing::warn!("could not save the fingerprint cache: {e}");
    }
    if let Some(o) = only {
        plan = plan.only(o).map_err(|e| Failure::Failed(e.into()))?;
    }
    let statuses = plan
        .statuses(store, force)
        .map_err(|e| Failure::Failed(e.into()))?;
    Ok((plan, statuses))
}

pub fn run(
    store: &Path,
    file: &Path,
    force: &[String],
    only: Option<&str>,
    dry_run: bool,
) -> Result<(), Failure> {
    let exp = load(file)?;
    let store = open_store(store)?;
    let (plan, statuses) = plan_for(&store, &exp, force, only)?;
    if dry_run {
        report::print_plan(&plan, &statuses);
        return Ok(());
    }
    let observer = report::Progress::new(statuses.iter().filter(|s| s.will_run()).count());
    let result = xlvlm_dag::run(
        &plan,
        &statuses,
        &store,
        &crate::stages::Stages,
        exp.meta.seed,
        &observer,
    );
    observer.finish();
    match result {
        Ok(reports) => {
            report::print_summary(&reports);
            Ok(())
        }
        Err(RunError::Stage {
            label,
            source,
            done,
        }) => {
            report::print_summary(&done);
            Err(Failure::Failed(source.context(format!(
                "stage `{label}` failed (finished stages and shards are kept; run again to resume)"
            ))))
        }
        Err(e) => Err(Failure::Failed(e.into())),
    }
}

pub fn plan(
    store: &Path,
    file: &Path,
    force: &[String],
    only: Option<&str>,
) -> Result<(), Failure> {
    let exp = load(file)?;
    let store = open_store(store)?;
    let (plan, statuses) = plan_for(&store, &exp, force, only)?;
    report::print_plan(&plan, &statuses);
    Ok(())
}

pub fn validate(file: &Path) -> Result<(), Failure> {
    let exp = load(file)?;
    let instances: usize = exp.stages.iter().map(|s| s.instances.len()).sum();
    println!(
        "{}: ok — experiment `{}`, {} stages ({} instances before fan-out), {} models, {} datasets",
        file.display(),
        exp.meta.name,
        exp.stages.len(),
        instances,
        exp.models.len(),
        exp.data.len()
    );
    Ok(())
}

pub fn dag(file: &Path, dot: bool) -> Result<(), Failure> {
    let exp = load(file)?;
    // Keys are not needed to draw the graph, but the plan is what fans sweeps out; fingerprints
    // go to a throwaway cache so `dag` never writes anywhere.
    let mut fingerprints = FingerprintCache::open(PathBuf::new());
    let plan = Plan::build(&exp, &mut fingerprints, &resolve_model).map_err(plan_failure)?;
    if dot {
        println!(
            "digraph \"{}\" {{\n  rankdir=LR;\n  node [shape=box, style=rounded];",
            exp.meta.name
        );
        for (i, n) in plan.nodes.iter().enumerate() {
            println!(
                "  n{i} [label=\"{}\\n({})\"];",
                n.label.replace('"', "\\\""),
                n.kind
            );
        }
        for (i, n) in plan.nodes.iter().enumerate() {
            for (role, u) in &n.inputs {
                println!("  n{u} -> n{i} [label=\"{role}\"];");
            }
        }
        println!("}}");
    } else {
        for n in &plan.nodes {
            let inputs: Vec<String> = n
                .inputs
                .iter()
                .map(|(role, u)| format!("{role}={}", plan.nodes[*u].label))
                .collect();
            if inputs.is_empty() {
                println!("{} ({})", n.label, n.kind);
            } else {
                println!("{} ({}) <- {}", n.label, n.kind, inputs.join(", "));
            }
        }
    }
    Ok(())
}

fn resolve_target(store: &Store, target: &str) -> Result<Key, Failure> {
    if let Some((exp, stage)) = target.split_once('/') {
        return store
            .resolve_name(exp, &xlvlm_dag::name_file(stage))
            .map_err(|e| Failure::Failed(e.into()))?
            .ok_or_else(|| {
                Failure::Invalid(format!(
                    "error: no artifact is named `{target}` in `{}`",
                    store.root().display()
                ))
            });
    }
    if target.len() < 6 || !target.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(Failure::Invalid(format!(
            "error: `{target}` is neither EXPERIMENT/STAGE nor a key prefix of at least 6 hex digits"
        )));
    }
    let keys = store.keys().map_err(|e| Failure::Failed(e.into()))?;
    let matches: Vec<Key> = keys
        .into_iter()
        .filter(|k| k.as_str().starts_with(target))
        .collect();
    match matches.len() {
        1 => Ok(matches.into_iter().next().expect("one")),
        0 => Err(Failure::Invalid(format!(
            "error: no artifact key starts with `{target}`"
        ))),
        n => Err(Failure::Invalid(format!(
            "error: {n} artifact keys start with `{target}`; give more digits"
        ))),
    }
}

pub fn show(store: &Path, target: &str, rows: usize) -> Result<(), Failure> {
    let store = open_store(store)?;
    let key = resolve_target(&store, target)?;
    let manifest = store
        .manifest(&key)
        .map_err(|e| Failure::Failed(e.into()))?
        .ok_or_else(|| Failure::Failed(anyhow::anyhow!("artifact {key} has no manifest")))?;
    let dir = store.artifact_dir(&key);
    println!("folder: {}", dir.display());
    println!("{}", String::from_utf8_lossy(&manifest.to_json_bytes()));
    for f in manifest
        .files
        .iter()
        .filter(|f| f.path.ends_with(".parquet"))
    {
        let table = read_parquet(&dir.join(&f.path)).map_err(|e| Failure::Failed(e.into()))?;
        println!(
            "\n{} — {} rows, {} bytes",
            f.path,
            table.num_rows(),
            f.bytes
        );
        let header: Vec<String> = table
            .columns
            .iter()
            .map(|(n, c)| match c {
                Column::Vector { dim, half, .. } => {
                    format!("{n}: {}[{dim}]", if *half { "f16" } else { "f32" })
                }
                other => format!("{n}: {}", other.type_name()),
            })
            .collect();
        println!("  {}", header.join(" | "));
        for r in 0..rows.min(table.num_rows()) {
            let cells: Vec<String> = table
                .columns
                .iter()
                .map(|(_, c)| report::cell(c, r))
                .collect();
            println!("  {}", cells.join(" | "));
        }
    }
    Ok(())
}

/// Experiment files under `path`: `.toml` files with an `[experiment]` table (fragments have none).
fn experiment_files(path: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if path.is_file() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    let mut entries: Vec<_> = std::fs::read_dir(path)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.path());
    for e in entries {
        let p = e.path();
        let name = e.file_name();
        if name.to_string_lossy().starts_with('.') || name == "target" {
            continue;
        }
        if p.is_dir() {
            experiment_files(&p, out)?;
        } else if p.extension().is_some_and(|x| x == "toml")
            && std::fs::read_to_string(&p)
                .is_ok_and(|t| t.lines().any(|l| l.trim() == "[experiment]"))
        {
            out.push(p);
        }
    }
    Ok(())
}

pub fn gc(store_path: &Path, paths: &[PathBuf], dry_run: bool) -> Result<(), Failure> {
    let store = open_store(store_path)?;
    let roots = if paths.is_empty() {
        vec![PathBuf::from(".")]
    } else {
        paths.to_vec()
    };
    let mut files = Vec::new();
    for r in &roots {
        experiment_files(r, &mut files)
            .with_context(|| format!("cannot list `{}`", r.display()))?;
    }
    let mut referenced = BTreeSet::new();
    let mut fingerprints =
        FingerprintCache::open(store.root().join("cache").join("fingerprints.json"));
    for f in &files {
        // A file that does not validate might reference anything: refuse rather than guess.
        let exp = xlvlm_spec::load(f).map_err(|e| {
            Failure::Invalid(format!(
                "{e}\nnothing was removed: fix the file above or leave it out of the gc paths"
            ))
        })?;
        let plan = Plan::build(&exp, &mut fingerprints, &resolve_model).map_err(plan_failure)?;
        referenced.extend(plan.nodes.into_iter().map(|n| n.key));
    }
    let _ = fingerprints.save();
    let garbage = store
        .gc_plan(&referenced)
        .map_err(|e| Failure::Failed(e.into()))?;
    let total: u64 = garbage.iter().map(|(_, b)| b).sum();
    println!(
        "{} experiment files reference {} artifacts; {} unreferenced ({})",
        files.len(),
        referenced.len(),
        garbage.len(),
        report::bytes(total)
    );
    for (key, bytes) in &garbage {
        println!(
            "  {} {}",
            if dry_run { "would remove" } else { "remove" },
            format_args!("{key} ({})", report::bytes(*bytes))
        );
        if !dry_run {
            store.remove(key).map_err(|e| Failure::Failed(e.into()))?;
        }
    }
    // Half-built artifacts of runs that are no longer going on (their lock is free).
    for (key, bytes) in store
        .stale_staging()
        .map_err(|e| Failure::Failed(e.into()))?
    {
        let verb = if dry_run { "would remove" } else { "remove" };
        println!("  {verb} unfinished {key} ({})", report::bytes(bytes));
        if !dry_run
            && let Some(lock) = store
                .try_lock(&key)
                .map_err(|e| Failure::Failed(e.into()))?
        {
            store
                .remove_staging(&lock)
                .map_err(|e| Failure::Failed(e.into()))?;
        }
    }
    if !dry_run {
        store.empty_trash().map_err(|e| Failure::Failed(e.into()))?;
        let gone: BTreeSet<Key> = garbage.into_iter().map(|(k, _)| k).collect();
        for (exp, stage, key) in store.names().map_err(|e| Failure::Failed(e.into()))? {
            if gone.contains(&key) {
                store
                    .remove_name(&exp, &stage)
                    .map_err(|e| Failure::Failed(e.into()))?;
            }
        }
    }
    Ok(())
}

pub fn world_generate(out: &Path, seed: u64, size: usize, image_size: u32) -> Result<(), Failure> {
    let options = xlvlm_data::WorldOptions {
        image_size,
        ..Default::default()
    };
    let summary = xlvlm_data::generate_world(out, seed, size, &options)
        .with_context(|| format!("generating the shapes world in `{}`", out.display()))?;
    println!(
        "{}",
        serde_json::to_string_pretty(&summary).context("summarising the world")?
    );
    Ok(())
}

pub fn model_inspect(source: &str) -> Result<(), Failure> {
    let info = xlvlm_model::inspect(source).with_context(|| format!("inspecting `{source}`"))?;
    println!("{info}");
    Ok(())
}

/// The checkpoint folder of a `[models.*]` section: its `path`, or its `hf:` source looked up in
/// the local Hugging Face cache.
pub fn resolve_model(spec: &ModelSpec) -> Result<PathBuf, String> {
    let source = match (&spec.source, &spec.path) {
        (Some(source), _) => source.clone(),
        (None, Some(path)) => path.display().to_string(),
        (None, None) => return Err("needs `source` or `path`".to_string()),
    };
    xlvlm_model::resolve(&source).map_err(|e| e.to_string())
}
