//! Loading an experiment file: includes, `from` inheritance, sweeps, typed validation and
//! reference checks. Every error found is reported, each with file, line and column.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use crate::error::{SpecError, SpecErrors, did_you_mean};
use crate::params::*;
use crate::source::{FileId, KeyName, Node, SourceMap, Span, Table, Value, parse_file};

/// A validated experiment: every stage typed, every reference resolved, sweeps expanded.
#[derive(Clone, Debug)]
pub struct Experiment {
    /// The experiment file as given.
    pub path: PathBuf,
    pub meta: ExperimentMeta,
    pub models: BTreeMap<String, ModelSpec>,
    pub data: BTreeMap<String, DataSpec>,
    /// Stages in the order they appear.
    pub stages: Vec<Stage>,
    pub sources: SourceMap,
}

#[derive(Clone, Debug)]
pub struct Stage {
    pub name: String,
    pub kind: StageKind,
    /// Where `[stage.NAME]` is written.
    pub span: Span,
    pub description: Option<String>,
    /// The swept parameters of this stage, in the order written.
    pub axes: Vec<SweepAxis>,
    /// One per point of the sweep grid (one if nothing is swept).
    pub instances: Vec<Instance>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SweepAxis {
    /// Dotted parameter path, e.g. `alpha` or `generate.max_new_tokens`.
    pub param: String,
    pub labels: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Instance {
    /// (parameter, value label) for each swept parameter of the stage.
    pub coords: Vec<(String, String)>,
    pub params: StageParams,
}

impl Experiment {
    pub fn stage(&self, name: &str) -> Option<&Stage> {
        self.stages.iter().find(|s| s.name == name)
    }

    /// "file:line" of a span, for messages outside this crate.
    pub fn location(&self, span: &Span) -> String {
        let pos = self.sources.line_col(span);
        format!("{}:{}", self.sources.path(span.file).display(), pos.line)
    }
}

const TOP_LEVEL_KEYS: [&str; 5] = ["include", "experiment", "models", "data", "stage"];
const SECTIONS: [&str; 3] = ["models", "data", "stage"];
const STAGE_META_KEYS: [&str; 3] = ["kind", "from", "description"];

/// Loads and validates an experiment file.
pub fn load(path: &Path) -> Result<Experiment, SpecErrors> {
    let mut loader = Loader::default();
    let root = loader.read(path, None)?;
    let mut errors = Vec::new();

    // Top level: sections from the file and its includes.
    let mut sections: BTreeMap<&str, Vec<(KeyName, Node)>> = BTreeMap::new();
    let mut meta_node = None;
    loader.collect_top_level(
        &root,
        &mut sections,
        &mut meta_node,
        &mut Vec::new(),
        &mut errors,
    );

    let meta = match &meta_node {
        Some(node) => loader.typed::<ExperimentMeta>(node, &mut errors),
        None => {
            errors.push(
                SpecError::file(path, "missing `[experiment]` table")
                    .help("start the file with\n    [experiment]\n    name = \"my-experiment\""),
            );
            None
        }
    };
    if let (Some(meta), Some(node)) = (&meta, &meta_node)
        && !valid_name(&meta.name)
    {
        let span = node
            .as_table()
            .and_then(|t| t.get("name"))
            .map_or(&node.span, |n| &n.span);
        errors.push(
            SpecError::at(
                &loader.sources,
                span,
                format!("invalid experiment name `{}`", meta.name),
            )
            .help("use letters, digits, `-`, `_` and `.` only"),
        );
    }

    let mut models = BTreeMap::new();
    for (key, node) in sections.remove("models").unwrap_or_default() {
        let body = loader.expand_section_include(&node, &mut Vec::new(), &mut errors);
        if let Some(mut spec) = loader.typed::<ModelSpec>(&body, &mut errors) {
            loader.check_model(&key, &body, &mut spec, &mut errors);
            models.insert(key.name, spec);
        }
    }
    let seed = meta.as_ref().map_or(0, |m| m.seed);
    let mut data = BTreeMap::new();
    for (key, node) in sections.remove("data").unwrap_or_default() {
        let body = loader.expand_section_include(&node, &mut Vec::new(), &mut errors);
        if let Some(mut spec) = loader.typed::<DataSpec>(&body, &mut errors) {
            loader.resolve_data_paths(&body, &mut spec);
            // explicit, so that writing the default out keeps the cache key
            spec.seed = Some(spec.seed.unwrap_or(seed));
            if spec.format == DataFormat::Vqav2 {
                for (field, present) in [
                    ("questions", spec.questions.is_some()),
                    ("split", spec.split.is_some()),
                ] {
                    if !present {
                        errors.push(
                            loader
                                .err(&key.span, format!("VQAv2 dataset `{}` needs `{field}`", key.name))
                                .help("e.g. `questions = \"v2_OpenEnded_mscoco_val2014_questions.json\"` and `split = \"val2014\"`"),
                        );
                    }
                }
            }
            data.insert(key.name, spec);
        }
    }

    let stage_bodies: Vec<(KeyName, Node)> = sections
        .remove("stage")
        .unwrap_or_default()
        .into_iter()
        .map(|(k, n)| {
            let body = loader.expand_section_include(&n, &mut Vec::new(), &mut errors);
            (k, body)
        })
        .collect();
    let stages = loader.stages(&stage_bodies, seed, &mut errors);
    loader.check_references(&stages, &stage_bodies, &mut errors);
    loader.check_resources(&stages, &stage_bodies, &models, &data, &mut errors);

    if !errors.is_empty() {
        return Err(SpecErrors(errors));
    }
    Ok(Experiment {
        path: path.to_path_buf(),
        meta: meta.expect("no errors means the meta parsed"),
        models,
        data,
        stages,
        sources: loader.sources,
    })
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

fn valid_stage_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[derive(Default)]
struct Loader {
    sources: SourceMap,
}

impl Loader {
    /// Reads and parses one file. `from` is where it was included from, for the error.
    fn read(&mut self, path: &Path, from: Option<&Span>) -> Result<Table, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            let msg = format!("cannot read `{}`: {e}", path.display());
            match from {
                Some(span) => SpecError::at(&self.sources, span, msg),
                None => SpecError::file(path, msg),
            }
        })?;
        let id = self.sources.add(path.to_path_buf(), text);
        parse_file(&self.sources, id)
    }

    fn dir_of(&self, file: FileId) -> PathBuf {
        self.sources
            .path(file)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }

    /// Paths are relative to the file they are written in.
    fn resolve_path(&self, node: Option<&Node>, path: &Path) -> PathBuf {
        match node {
            Some(n) if path.is_relative() => self.dir_of(n.span.file).join(path),
            _ => path.to_path_buf(),
        }
    }

    fn err(&self, span: &Span, msg: impl Into<String>) -> SpecError {
        SpecError::at(&self.sources, span, msg)
    }

    fn collect_top_level(
        &mut self,
        root: &Table,
        sections: &mut BTreeMap<&'static str, Vec<(KeyName, Node)>>,
        meta: &mut Option<Node>,
        include_stack: &mut Vec<PathBuf>,
        errors: &mut Vec<SpecError>,
    ) {
        for (key, node) in &root.entries {
            match key.name.as_str() {
                "include" => {
                    let paths: Vec<&Node> = match &node.value {
                        Value::String(_) => vec![node],
                        Value::Array(items) => items.iter().collect(),
                        _ => {
                            errors.push(self.err(
                                &node.span,
                                format!(
                                    "`include` must be a file name or a list of them, found {}",
                                    node.type_name()
                                ),
                            ));
                            continue;
                        }
                    };
                    for p in paths {
                        let Some(rel) = p.as_str() else {
                            errors.push(self.err(
                                &p.span,
                                format!("expected a file name, found {}", p.type_name()),
                            ));
                            continue;
                        };
                        let full = self.resolve_path(Some(p), Path::new(rel));
                        let canon = full.canonicalize().unwrap_or_else(|_| full.clone());
                        if include_stack.contains(&canon) {
                            errors.push(self.err(
                                &p.span,
                                format!("`{}` includes itself (an include cycle)", rel),
                            ));
                            continue;
                        }
                        match self.read(&full, Some(&p.span)) {
                            Ok(fragment) => {
                                if let Some(k) = fragment.key("experiment") {
                                    errors.push(self.err(&k.span, "an included fragment cannot have an `[experiment]` table").help(
                                        "fragments hold `[models.*]`, `[data.*]` and `[stage.*]` tables only",
                                    ));
                                }
                                include_stack.push(canon);
                                self.collect_top_level(
                                    &fragment,
                                    sections,
                                    &mut None,
                                    include_stack,
                                    errors,
                                );
                                include_stack.pop();
                            }
                            Err(e) => errors.push(e),
                        }
                    }
                }
                "experiment" => {
                    // `include` may also sit in `[experiment]` (TOML puts keys written after a
                    // table header into that table, so this is where many people write it).
                    let mut node = node.clone();
                    if let Value::Table(t) = &mut node.value
                        && let Some((k, inc)) = t.remove("include")
                    {
                        let mut wrapper = Table::default();
                        wrapper.entries.push((k, inc));
                        self.collect_top_level(
                            &wrapper,
                            sections,
                            &mut None,
                            include_stack,
                            errors,
                        );
                    }
                    *meta = Some(node);
                }
                name @ ("models" | "data" | "stage") => {
                    let section: &'static str =
                        SECTIONS.into_iter().find(|s| *s == name).expect("listed");
                    let Some(table) = node.as_table() else {
                        errors.push(self.err(
                            &node.span,
                            format!(
                                "`{name}` must be a table of named tables, e.g. `[{name}.NAME]`"
                            ),
                        ));
                        continue;
                    };
                    let list = sections.entry(section).or_default();
                    for (k, v) in &table.entries {
                        if v.as_table().is_none() {
                            errors.push(
                                self.err(
                                    &k.span,
                                    format!(
                                        "`{name}.{}` must be a table, found {}",
                                        k.name,
                                        v.type_name()
                                    ),
                                )
                                .help(format!(
                                    "write it as `[{name}.{}]` followed by its keys",
                                    k.name
                                )),
                            );
                            continue;
                        }
                        if let Some((first, _)) = list.iter().find(|(f, _)| f.name == k.name) {
                            let pos = self.sources.line_col(&first.span);
                            errors.push(
                                self.err(&k.span, format!("`{name}.{}` is defined twice", k.name))
                                    .help(format!(
                                        "first defined at {}:{}; rename one of them",
                                        self.sources.path(first.span.file).display(),
                                        pos.line
                                    )),
                            );
                            continue;
                        }
                        if section == "stage" && !valid_stage_name(&k.name) {
                            errors.push(
                                self.err(&k.span, format!("invalid stage name `{}`", k.name))
                                    .help("use letters, digits, `-` and `_` only"),
                            );
                            continue;
                        }
                        list.push((k.clone(), v.clone()));
                    }
                }
                other => {
                    let mut e = self.err(&key.span, format!("unknown top-level key `{other}`"));
                    e = match did_you_mean(other, TOP_LEVEL_KEYS) {
                        Some(s) => e.help(format!("did you mean `{s}`?")),
                        None => e.help("expected one of `include`, `[experiment]`, `[models.*]`, `[data.*]`, `[stage.*]`"),
                    };
                    errors.push(e);
                }
            }
        }
    }

    /// `include = "fragment.toml"` inside a section: the fragment's keys are defaults that the
    /// section's own keys override.
    fn expand_section_include(
        &mut self,
        node: &Node,
        stack: &mut Vec<PathBuf>,
        errors: &mut Vec<SpecError>,
    ) -> Node {
        let Some(table) = node.as_table() else {
            return node.clone();
        };
        let Some(inc) = table.get("include") else {
            return node.clone();
        };
        let mut own = table.clone();
        own.remove("include");
        let Some(rel) = inc.as_str() else {
            errors.push(self.err(
                &inc.span,
                format!("`include` must be a file name, found {}", inc.type_name()),
            ));
            return Node {
                value: Value::Table(own),
                span: node.span.clone(),
            };
        };
        let full = self.resolve_path(Some(inc), Path::new(rel));
        let canon = full.canonicalize().unwrap_or_else(|_| full.clone());
        if stack.contains(&canon) {
            errors.push(self.err(
                &inc.span,
                format!("`{rel}` includes itself (an include cycle)"),
            ));
            return Node {
                value: Value::Table(own),
                span: node.span.clone(),
            };
        }
        match self.read(&full, Some(&inc.span)) {
            Ok(fragment) => {
                stack.push(canon);
                let frag_node = Node {
                    value: Value::Table(fragment),
                    span: inc.span.clone(),
                };
                let base = self.expand_section_include(&frag_node, stack, errors);
                stack.pop();
                let merged = merge(base.as_table().expect("a fragment is a table"), &own);
                Node {
                    value: Value::Table(merged),
                    span: node.span.clone(),
                }
            }
            Err(e) => {
                errors.push(e);
                Node {
                    value: Value::Table(own),
                    span: node.span.clone(),
                }
            }
        }
    }

    /// Deserialises a table into a typed struct, mapping serde's complaint back to a span.
    fn typed<T: DeserializeOwned>(&self, node: &Node, errors: &mut Vec<SpecError>) -> Option<T> {
        match serde_path_to_error::deserialize::<_, T>(node.to_json()) {
            Ok(v) => Some(v),
            Err(e) => {
                errors.push(self.serde_error(node, e.path(), &e.inner().to_string()));
                None
            }
        }
    }

    fn serde_error(
        &self,
        root: &Node,
        path: &serde_path_to_error::Path,
        message: &str,
    ) -> SpecError {
        use serde_path_to_error::Segment;
        let mut node = root;
        let mut key_span = None;
        let mut dotted = Vec::new();
        for seg in path.iter() {
            match seg {
                Segment::Map { key } => {
                    dotted.push(key.clone());
                    if let Some(t) = node.as_table()
                        && let Some((k, v)) = t.entries.iter().find(|(k, _)| &k.name == key)
                    {
                        key_span = Some(k.span.clone());
                        node = v;
                    }
                }
                Segment::Seq { index } => {
                    dotted.push(index.to_string());
                    if let Value::Array(items) = &node.value
                        && let Some(item) = items.get(*index)
                    {
                        node = item;
                    }
                }
                _ => {}
            }
        }
        // "unknown field `x`, expected one of ..." and "missing field `x`" name the key.
        if let Some(field) = message
            .strip_prefix("unknown field `")
            .and_then(|r| r.split('`').next())
        {
            let span = match node.as_table().and_then(|t| t.key(field)) {
                Some(k) => Some(k.span.clone()),
                None if dotted.last().is_some_and(|l| l == field) => key_span.clone(),
                None => None,
            };
            if let Some(span) = span {
                let expected: Vec<&str> = message.split('`').skip(3).step_by(2).collect();
                let mut e = self.err(&span, format!("unknown key `{field}`"));
                e = match did_you_mean(field, expected.iter().copied()) {
                    Some(s) => e.help(format!(
                        "did you mean `{s}`? valid keys: {}",
                        expected.join(", ")
                    )),
                    None => e.help(format!("valid keys: {}", expected.join(", "))),
                };
                return e;
            }
        }
        if let Value::Float(f) = node.value
            && !f.is_finite()
        {
            return self.err(
                &node.span,
                format!(
                    "key `{}`: `{f}` is not allowed here; give a finite number",
                    dotted.join(".")
                ),
            );
        }
        if let Some(field) = message
            .strip_prefix("missing field `")
            .and_then(|r| r.split('`').next())
        {
            return self.err(&node.span, format!("missing required key `{field}`"));
        }
        let span = match key_span {
            Some(k) if matches!(node.value, Value::Table(_)) && !dotted.is_empty() => k,
            _ => node.span.clone(),
        };
        let what = if dotted.is_empty() {
            String::new()
        } else {
            format!("key `{}`: ", dotted.join("."))
        };
        self.err(&span, format!("{what}{message}"))
    }

    fn check_model(
        &self,
        key: &KeyName,
        body: &Node,
        spec: &mut ModelSpec,
        errors: &mut Vec<SpecError>,
    ) {
        let table = body.as_table().expect("sections are tables");
        match (&spec.source, &spec.path) {
            (Some(_), Some(_)) => errors.push(
                self.err(&key.span, format!("model `{}` has both `source` and `path`", key.name))
                    .help("keep one: `source = \"hf:org/name\"` or `path = \"folder\"`"),
            ),
            (None, None) => errors.push(
                self.err(&key.span, format!("model `{}` needs `source` or `path`", key.name))
                    .help("e.g. `source = \"hf:llava-hf/llava-1.5-7b-hf\"` or `path = \"data/toy-vlm\"`"),
            ),
            (Some(src), None) if !src.starts_with("hf:") => errors.push(
                self.err(&table.get("source").expect("present").span, format!("unknown model source `{src}`"))
                    .help("sources look like `hf:org/name` or `hf:org/name@revision`; for a folder use `path`"),
            ),
            _ => {}
        }
        if let Some(p) = &spec.path {
            spec.path = Some(self.resolve_path(table.get("path"), p));
        }
        let device_ok = spec.device == "cpu"
            || spec.device == "cuda"
            || spec
                .device
                .strip_prefix("cuda:")
                .is_some_and(|n| n.parse::<u32>().is_ok());
        if !device_ok {
            let span = table.get("device").map_or(&key.span, |n| &n.span);
            errors.push(
                self.err(span, format!("unknown device `{}`", spec.device))
                    .help("use `cpu`, `cuda` or `cuda:N`"),
            );
        }
    }

    fn resolve_data_paths(&self, body: &Node, spec: &mut DataSpec) {
        let table = body.as_table().expect("sections are tables");
        spec.annotations = self.resolve_path(table.get("annotations"), &spec.annotations);
        if let Some(q) = &spec.questions {
            spec.questions = Some(self.resolve_path(table.get("questions"), q));
        }
        if let Some(i) = &spec.images {
            spec.images = Some(self.resolve_path(table.get("images"), i));
        }
    }

    /// `from = "other"`: the other stage's table, with this stage's keys on top.
    fn inherited(
        &self,
        name: &str,
        bodies: &[(KeyName, Node)],
        chain: &mut Vec<String>,
        errors: &mut Vec<SpecError>,
    ) -> Option<Table> {
        let (key, node) = bodies.iter().find(|(k, _)| k.name == name)?;
        let table = node.as_table().expect("stage bodies are tables");
        let Some(from) = table.get("from") else {
            return Some(table.clone());
        };
        let Some(parent) = from.as_str() else {
            errors.push(self.err(
                &from.span,
                format!("`from` must be a stage name, found {}", from.type_name()),
            ));
            return None;
        };
        if chain.iter().any(|c| c == parent) || parent == name {
            chain.push(parent.to_string());
            errors.push(self.err(
                &from.span,
                format!("`from` forms a cycle: {}", chain.join(" -> ")),
            ));
            return None;
        }
        if !bodies.iter().any(|(k, _)| k.name == parent) {
            let names = bodies.iter().map(|(k, _)| k.name.as_str());
            let mut e = self.err(
                &from.span,
                format!(
                    "stage `{}` inherits from unknown stage `{parent}`",
                    key.name
                ),
            );
            if let Some(s) = did_you_mean(parent, names) {
                e = e.help(format!("did you mean `{s}`?"));
            }
            errors.push(e);
            return None;
        }
        chain.push(parent.to_string());
        let base = self.inherited(parent, bodies, chain, errors)?;
        let mut own = table.clone();
        own.remove("from");
        let mut base = base;
        base.remove("description");
        Some(merge(&base, &own))
    }

    fn stages(
        &self,
        bodies: &[(KeyName, Node)],
        seed: u64,
        errors: &mut Vec<SpecError>,
    ) -> Vec<Stage> {
        let mut out = Vec::new();
        for (key, _) in bodies {
            let Some(table) =
                self.inherited(&key.name, bodies, &mut vec![key.name.clone()], errors)
            else {
                continue;
            };
            if let Some(stage) = self.stage(key, table, seed, errors) {
                out.push(stage);
            }
        }
        out
    }

    fn stage(
        &self,
        key: &KeyName,
        mut table: Table,
        seed: u64,
        errors: &mut Vec<SpecError>,
    ) -> Option<Stage> {
        let Some((_, kind_node)) = table.remove("kind") else {
            errors.push(
                self.err(&key.span, format!("stage `{}` has no `kind`", key.name))
                    .help(format!(
                        "add e.g. `kind = \"aggregate\"`; kinds: {}",
                        StageKind::ALL.map(|k| k.name()).join(", ")
                    )),
            );
            return None;
        };
        let Some(kind_name) = kind_node.as_str() else {
            errors.push(self.err(
                &kind_node.span,
                format!("`kind` must be a string, found {}", kind_node.type_name()),
            ));
            return None;
        };
        let Some(kind) = StageKind::parse(kind_name) else {
            let mut e = self.err(&kind_node.span, format!("unknown stage kind `{kind_name}`"));
            e = match did_you_mean(kind_name, StageKind::ALL.map(|k| k.name())) {
                Some(s) => e.help(format!("did you mean `{s}`?")),
                None => e.help(format!(
                    "kinds: {}",
                    StageKind::ALL.map(|k| k.name()).join(", ")
                )),
            };
            errors.push(e);
            return None;
        };
        if !kind.is_implemented() {
            let runnable: Vec<&str> = StageKind::ALL
                .into_iter()
                .filter(|k| k.is_implemented())
                .map(|k| k.name())
                .collect();
            errors.push(
                self.err(
                    &kind_node.span,
                    format!(
                        "stage kind `{kind_name}` is not implemented yet in xlvlm {}",
                        env!("CARGO_PKG_VERSION")
                    ),
                )
                .help(format!("this version runs: {}", runnable.join(", "))),
            );
            return None;
        }
        let description = match table.remove("description") {
            Some((_, n)) => match n.as_str() {
                Some(s) => Some(s.to_string()),
                None => {
                    errors.push(self.err(&n.span, "`description` must be a string"));
                    None
                }
            },
            None => None,
        };
        for meta in STAGE_META_KEYS {
            table.remove(meta);
        }

        let mut axes = Vec::new();
        let mut axis_nodes = Vec::new();
        if let Err(e) = self.find_sweeps(&table, "", &mut axes, &mut axis_nodes) {
            errors.push(e);
            return None;
        }
        let mut instances = Vec::new();
        let n_points: usize = axis_nodes.iter().map(Vec::len).product();
        let errors_before = errors.len();
        for point in 0..n_points {
            // Mixed-radix digits of `point` pick one value per axis; the last axis varies fastest.
            let mut rest = point;
            let mut choice = vec![0; axes.len()];
            for (i, values) in axis_nodes.iter().enumerate().rev() {
                choice[i] = rest % values.len();
                rest /= values.len();
            }
            let mut t = table.clone();
            let mut coords = Vec::new();
            for (i, axis) in axes.iter().enumerate() {
                set_path(&mut t, &axis.param, axis_nodes[i][choice[i]].clone());
                coords.push((axis.param.clone(), axis.labels[choice[i]].clone()));
            }
            let node = Node {
                value: Value::Table(t.clone()),
                span: key.span.clone(),
            };
            if let Some(params) = self.stage_params(kind, &node, &t, seed, errors) {
                instances.push(Instance { coords, params });
            }
            if errors.len() > errors_before {
                break; // one bad sweep point is enough to report
            }
        }
        if errors.len() > errors_before {
            return None;
        }
        Some(Stage {
            name: key.name.clone(),
            kind,
            span: key.span.clone(),
            description,
            axes,
            instances,
        })
    }

    fn find_sweeps(
        &self,
        table: &Table,
        prefix: &str,
        axes: &mut Vec<SweepAxis>,
        nodes: &mut Vec<Vec<Node>>,
    ) -> Result<(), SpecError> {
        for (k, v) in &table.entries {
            let path = if prefix.is_empty() {
                k.name.clone()
            } else {
                format!("{prefix}.{}", k.name)
            };
            let Some(t) = v.as_table() else { continue };
            let Some(sweep) = t.get("sweep") else {
                self.find_sweeps(t, &path, axes, nodes)?;
                continue;
            };
            if let Some(extra) = t.entries.iter().find(|(k, _)| k.name != "sweep") {
                return Err(self
                    .err(
                        &extra.0.span,
                        format!("a sweep table takes only `sweep`, found `{}`", extra.0.name),
                    )
                    .help(format!("write `{} = {{ sweep = [...] }}`", k.name)));
            }
            let Value::Array(values) = &sweep.value else {
                return Err(self.err(
                    &sweep.span,
                    format!(
                        "`sweep` must be a list of values, found {}",
                        sweep.type_name()
                    ),
                ));
            };
            if values.is_empty() {
                return Err(self.err(&sweep.span, "`sweep` needs at least one value"));
            }
            if let Some(bad) = values
                .iter()
                .find(|n| matches!(n.value, Value::Array(_) | Value::Table(_)))
            {
                return Err(self.err(
                    &bad.span,
                    format!("sweep values must be scalars, found {}", bad.type_name()),
                ));
            }
            let labels: Vec<String> = values.iter().map(Node::label).collect();
            let mut seen = BTreeSet::new();
            if let Some((i, _)) = labels
                .iter()
                .enumerate()
                .find(|(_, l)| !seen.insert(l.as_str()))
            {
                return Err(self.err(
                    &values[i].span,
                    format!("sweep value `{}` appears twice", labels[i]),
                ));
            }
            axes.push(SweepAxis {
                param: path,
                labels,
            });
            nodes.push(values.clone());
        }
        Ok(())
    }

    fn stage_params(
        &self,
        kind: StageKind,
        node: &Node,
        table: &Table,
        seed: u64,
        errors: &mut Vec<SpecError>,
    ) -> Option<StageParams> {
        let params = match kind {
            StageKind::Import => {
                let mut p: ImportParams = self.typed(node, errors)?;
                let path_node = table.get("path");
                let relative = p.path.clone();
                p.path = self.resolve_path(path_node, &p.path);
                if let Some(ids) = &p.ids {
                    p.ids = Some(self.resolve_path(table.get("ids"), ids));
                }
                if p.format.is_none() {
                    let ext = p
                        .path
                        .extension()
                        .and_then(|e| e.to_str())
                        .unwrap_or("")
                        .to_ascii_lowercase();
                    p.format = match ext.as_str() {
                        "parquet" | "pq" => Some(ImportFormat::Parquet),
                        "npy" => Some(ImportFormat::Npy),
                        "safetensors" => Some(ImportFormat::Safetensors),
                        _ => {
                            errors.push(
                                self.err(
                                    &path_node.expect("required").span,
                                    format!(
                                        "cannot tell the format of `{}` from its extension",
                                        relative.display()
                                    ),
                                )
                                .help("add `format = \"parquet\"`, `\"npy\"` or `\"safetensors\"`"),
                            );
                            return None;
                        }
                    };
                }
                if p.shard_rows == 0 {
                    errors.push(self.err(
                        &table.get("shard_rows").expect("set").span,
                        "`shard_rows` must be at least 1",
                    ));
                    return None;
                }
                StageParams::Import(p)
            }
            StageKind::Aggregate => {
                let p: AggregateParams = self.typed(node, errors)?;
                match (p.pool, p.position) {
                    (Pool::Position, None) => {
                        errors.push(self.err(
                            &table.get("pool").expect("set").span,
                            "`pool = \"position\"` needs `position = N`",
                        ));
                        return None;
                    }
                    (pool, Some(_)) if pool != Pool::Position => {
                        errors.push(
                            self.err(
                                &table.get("position").expect("set").span,
                                "`position` is used only with `pool = \"position\"`",
                            )
                            .help("add `pool = \"position\"` or remove `position`"),
                        );
                        return None;
                    }
                    _ => {}
                }
                StageParams::Aggregate(p)
            }
            StageKind::Decompose => {
                let mut p: DecomposeParams = self.typed(node, errors)?;
                if p.num_concepts == 0 {
                    errors.push(self.err(
                        &table.get("num_concepts").expect("required").span,
                        "`num_concepts` must be at least 1",
                    ));
                    return None;
                }
                // Defaults are made explicit so that writing them out does not change the key.
                p.seed = Some(p.seed.unwrap_or(seed));
                let (max_iter, tol) = p.method.default_iterations();
                p.max_iter = Some(p.max_iter.unwrap_or(max_iter));
                p.tol = Some(p.tol.unwrap_or(tol));
                if p.method == DecomposeMethod::Snmf {
                    p.alpha = Some(p.alpha.unwrap_or(1.0));
                } else if p.alpha.is_some() {
                    errors.push(self.err(
                        &table.get("alpha").expect("set").span,
                        "`alpha` applies to `method = \"snmf\"` only",
                    ));
                    return None;
                }
                if p.method == DecomposeMethod::Pca {
                    p.pca_solver = Some(p.pca_solver.unwrap_or(PcaSolver::Auto));
                } else if p.pca_solver.is_some() {
                    errors.push(self.err(
                        &table.get("pca_solver").expect("set").span,
                        "`pca_solver` applies to `method = \"pca\"` only",
                    ));
                    return None;
                }
                if p.method == DecomposeMethod::Kmeans {
                    p.n_init = Some(p.n_init.unwrap_or(1));
                } else if p.n_init.is_some() {
                    errors.push(self.err(
                        &table.get("n_init").expect("set").span,
                        "`n_init` applies to `method = \"kmeans\"` only",
                    ));
                    return None;
                }
                StageParams::Decompose(p)
            }
            StageKind::Shift => StageParams::Shift(self.kind_params(node, table, seed, errors)?),
            StageKind::Extract => {
                StageParams::Extract(self.kind_params(node, table, seed, errors)?)
            }
            StageKind::Ground => StageParams::Ground(self.kind_params(node, table, seed, errors)?),
            StageKind::Steer => StageParams::Steer(self.kind_params(node, table, seed, errors)?),
            StageKind::Evaluate => {
                StageParams::Evaluate(self.kind_params(node, table, seed, errors)?)
            }
        };
        Some(params)
    }

    /// Deserialises a kind's parameters, resolves its paths and lets it finish itself.
    fn kind_params<T: DeserializeOwned + KindParams>(
        &self,
        node: &Node,
        table: &Table,
        seed: u64,
        errors: &mut Vec<SpecError>,
    ) -> Option<T> {
        let mut p: T = self.typed(node, errors)?;
        for (key, path) in p.paths_mut() {
            *path = self.resolve_path(lookup(table, key), path);
        }
        if let Err(e) = p.finish(seed) {
            let span = lookup(table, &e.key).map_or(&node.span, |n| &n.span);
            let mut err = self.err(span, e.message);
            if let Some(help) = e.help {
                err = err.help(help);
            }
            errors.push(err);
            return None;
        }
        Some(p)
    }

    fn check_references(
        &self,
        stages: &[Stage],
        bodies: &[(KeyName, Node)],
        errors: &mut Vec<SpecError>,
    ) {
        let names: Vec<&str> = bodies.iter().map(|(k, _)| k.name.as_str()).collect();
        let mut edges: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for stage in stages {
            let Some(first) = stage.instances.first() else {
                continue;
            };
            let table = bodies
                .iter()
                .find(|(k, _)| k.name == stage.name)
                .and_then(|(_, n)| n.as_table());
            for (role, target) in first.params.inputs() {
                let span = table
                    .and_then(|t| ref_span(t, &role))
                    .unwrap_or_else(|| stage.span.clone());
                if target.0 == stage.name {
                    errors.push(self.err(
                        &span,
                        format!("stage `{}` reads its own output", stage.name),
                    ));
                } else if !names.contains(&target.0.as_str()) {
                    let mut e = self.err(
                        &span,
                        format!(
                            "stage `{}` refers to unknown stage `{}`",
                            stage.name, target.0
                        ),
                    );
                    e = match did_you_mean(&target.0, names.iter().copied()) {
                        Some(s) => e.help(format!("did you mean `{s}`?")),
                        None => e.help(format!("stages in this experiment: {}", names.join(", "))),
                    };
                    errors.push(e);
                } else {
                    edges
                        .entry(stage.name.as_str())
                        .or_default()
                        .push(target.0.as_str());
                }
            }
        }
        // Cycles: depth-first search with colours, reporting each cycle once with its path.
        let mut state: BTreeMap<&str, u8> = BTreeMap::new();
        let mut path = Vec::new();
        for stage in stages {
            self.visit(&stage.name, &edges, &mut state, &mut path, stages, errors);
        }
    }

    /// Every `model = "..."` and `data = "..."` names a `[models.*]` / `[data.*]` section.
    fn check_resources(
        &self,
        stages: &[Stage],
        bodies: &[(KeyName, Node)],
        models: &BTreeMap<String, ModelSpec>,
        data: &BTreeMap<String, DataSpec>,
        errors: &mut Vec<SpecError>,
    ) {
        for stage in stages {
            let Some(first) = stage.instances.first() else {
                continue;
            };
            let table = bodies
                .iter()
                .find(|(k, _)| k.name == stage.name)
                .and_then(|(_, n)| n.as_table());
            let model_names: Vec<&str> = models.keys().map(String::as_str).collect();
            let data_names: Vec<&str> = data.keys().map(String::as_str).collect();
            let wanted = [
                ("model", "models", first.params.model(), model_names),
                ("data", "data", first.params.data(), data_names),
            ];
            for (key, section, name, known) in wanted {
                let Some(name) = name else { continue };
                if known.contains(&name) {
                    continue;
                }
                let span = table
                    .and_then(|t| t.get(key))
                    .map_or(&stage.span, |n| &n.span);
                let mut e = self.err(
                    span,
                    format!("stage `{}` uses unknown {key} `{name}`", stage.name),
                );
                e = match did_you_mean(name, known.iter().copied()) {
                    Some(s) => e.help(format!("did you mean `{s}`?")),
                    None if known.is_empty() => e.help(format!(
                        "add a `[{section}.{name}]` section (or include one from `configs/`)"
                    )),
                    None => e.help(format!(
                        "{section} in this experiment: {}",
                        known.join(", ")
                    )),
                };
                errors.push(e);
            }
        }
    }

    fn visit<'a>(
        &self,
        name: &'a str,
        edges: &BTreeMap<&'a str, Vec<&'a str>>,
        state: &mut BTreeMap<&'a str, u8>,
        path: &mut Vec<&'a str>,
        stages: &[Stage],
        errors: &mut Vec<SpecError>,
    ) {
        match state.get(name) {
            Some(2) => return,
            Some(1) => {
                let start = path.iter().position(|n| *n == name).expect("on the path");
                let mut cycle: Vec<&str> = path[start..].to_vec();
                cycle.push(name);
                let stage = stages.iter().find(|s| s.name == name).expect("known stage");
                let places: Vec<String> = path[start..]
                    .iter()
                    .filter_map(|n| stages.iter().find(|s| s.name == *n))
                    .map(|s| {
                        format!(
                            "`{}` at line {}",
                            s.name,
                            self.sources.line_col(&s.span).line
                        )
                    })
                    .collect();
                errors.push(
                    self.err(
                        &stage.span,
                        format!("stages form a cycle: {}", cycle.join(" -> ")),
                    )
                    .help(format!(
                        "a stage cannot depend on its own output; involved: {}",
                        places.join(", ")
                    )),
                );
                return;
            }
            _ => {}
        }
        state.insert(name, 1);
        path.push(name);
        for next in edges.get(name).map(Vec::as_slice).unwrap_or_default() {
            self.visit(next, edges, state, path, stages, errors);
        }
        path.pop();
        state.insert(name, 2);
    }
}

/// The node at a dotted key (`tokens.of_interest`) of a table.
fn lookup<'t>(table: &'t Table, dotted: &str) -> Option<&'t Node> {
    let mut parts = dotted.split('.');
    let mut node = table.get(parts.next()?)?;
    for part in parts {
        node = node.as_table()?.get(part)?;
    }
    Some(node)
}

/// The span of a reference given its role (`source`, `features.1`).
fn ref_span(table: &Table, role: &str) -> Option<Span> {
    let mut parts = role.split('.');
    let node = table.get(parts.next()?)?;
    match (parts.next(), &node.value) {
        (Some(i), Value::Array(items)) => {
            items.get(i.parse::<usize>().ok()?).map(|n| n.span.clone())
        }
        _ => Some(node.span.clone()),
    }
}

/// Deep merge: tables merge key by key, anything else in `over` replaces `base`.
fn merge(base: &Table, over: &Table) -> Table {
    let mut out = base.clone();
    for (k, v) in &over.entries {
        let is_sweep = v.as_table().is_some_and(|t| t.get("sweep").is_some());
        match (out.get(&k.name).and_then(Node::as_table), v.as_table()) {
            (Some(b), Some(o)) if !is_sweep => {
                let merged = merge(b, o);
                out.insert(
                    k.clone(),
                    Node {
                        value: Value::Table(merged),
                        span: v.span.clone(),
                    },
                );
            }
            _ => out.insert(k.clone(), v.clone()),
        }
    }
    out
}

fn set_path(table: &mut Table, path: &str, value: Node) {
    let mut parts: Vec<&str> = path.split('.').collect();
    let last = parts.pop().expect("non-empty path");
    let mut t = table;
    for p in parts {
        t = match &mut t.get_mut(p).expect("path exists").value {
            Value::Table(inner) => inner,
            _ => unreachable!("sweep paths go through tables"),
        };
    }
    let node = t.get_mut(last).expect("path exists");
    *node = value;
}
