//! Typed parameters of every stage kind, model and dataset section. Each struct is what a user
//! may write in a `[stage.NAME]` table; unknown keys are errors.

mod evaluate;
mod extract;
mod ground;
mod steer;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

pub use evaluate::*;
pub use extract::*;
pub use ground::*;
pub use steer::*;

/// What the loader and planner need from each kind's parameters beyond deserialising them.
pub trait KindParams {
    /// The stages read, each with its role (`input`, `source`, `features.0`): the DAG's edges.
    fn inputs(&self) -> Vec<(String, &StageRef)>;
    /// Roles (as in [`KindParams::inputs`], before any `.N`) that gather every sweep instance of
    /// the stage they name into one node (a sweep table), instead of fanning out per instance.
    /// The planner then names the inputs `{role}.0`, `{role}.1`, ... in sweep order.
    fn gathers(&self) -> &[&'static str] {
        &[]
    }
    /// The `[models.NAME]` the stage runs, if any.
    fn model(&self) -> Option<&str> {
        None
    }
    /// The `[data.NAME]` the stage reads, if any.
    fn data(&self) -> Option<&str> {
        None
    }
    /// Files the stage reads, by the key that names them; their content enters the cache key.
    fn files(&self) -> Vec<(String, &Path)> {
        Vec::new()
    }
    /// Path-valued keys (dotted for nested tables), resolved by the loader against the file
    /// that wrote them.
    fn paths_mut(&mut self) -> Vec<(&'static str, &mut PathBuf)> {
        Vec::new()
    }
    /// Makes defaults explicit (so writing a default out keeps the cache key) and checks rules
    /// across keys. `seed` is `[experiment] seed`.
    fn finish(&mut self, seed: u64) -> Result<(), ParamError> {
        let _ = seed;
        Ok(())
    }
}

/// A parameter rule broken, reported by the loader at the named key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamError {
    /// Dotted key (`tokens.of_interest`); empty for the stage as a whole.
    pub key: String,
    pub message: String,
    pub help: Option<String>,
}

impl ParamError {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        ParamError {
            key: key.into(),
            message: message.into(),
            help: None,
        }
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

/// Stage kinds, in pipeline order. Kinds that this version cannot run yet are still known, so
/// that a file using them gets "not implemented yet" rather than "unknown kind".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageKind {
    Import,
    Extract,
    Aggregate,
    Decompose,
    Ground,
    Shift,
    Steer,
    Evaluate,
}

impl StageKind {
    pub const ALL: [StageKind; 8] = [
        StageKind::Import,
        StageKind::Extract,
        StageKind::Aggregate,
        StageKind::Decompose,
        StageKind::Ground,
        StageKind::Shift,
        StageKind::Steer,
        StageKind::Evaluate,
    ];

    pub fn name(self) -> &'static str {
        match self {
            StageKind::Import => "import",
            StageKind::Extract => "extract",
            StageKind::Aggregate => "aggregate",
            StageKind::Decompose => "decompose",
            StageKind::Ground => "ground",
            StageKind::Shift => "shift",
            StageKind::Steer => "steer",
            StageKind::Evaluate => "evaluate",
        }
    }

    pub fn parse(name: &str) -> Option<StageKind> {
        StageKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Whether this version can run the kind.
    pub fn is_implemented(self) -> bool {
        matches!(
            self,
            StageKind::Import
                | StageKind::Extract
                | StageKind::Aggregate
                | StageKind::Decompose
                | StageKind::Ground
                | StageKind::Shift
                | StageKind::Steer
                | StageKind::Evaluate
        )
    }

    /// Bumped whenever a kind's output for the same inputs changes, so old artifacts go stale.
    pub fn version(self) -> u32 {
        match self {
            // 2: snmf runs the accelerated scheme (same objective, another path to it)
            StageKind::Decompose | StageKind::Shift => 2,
            _ => 1,
        }
    }
}

impl fmt::Display for StageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The name of another stage whose output this stage reads.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StageRef(pub String);

/// One stage name or a list of them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct StageRefs(pub Vec<StageRef>);

impl<'de> Deserialize<'de> for StageRefs {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RefsVisitor;
        impl<'de> Visitor<'de> for RefsVisitor {
            type Value = StageRefs;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a stage name or a list of stage names")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<StageRefs, E> {
                Ok(StageRefs(vec![StageRef(v.to_string())]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StageRefs, A::Error> {
                let mut out = Vec::new();
                while let Some(name) = seq.next_element::<String>()? {
                    out.push(StageRef(name));
                }
                if out.is_empty() {
                    return Err(de::Error::invalid_length(0, &"at least one stage name"));
                }
                Ok(StageRefs(out))
            }
        }
        deserializer.deserialize_any(RefsVisitor)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImportFormat {
    Parquet,
    Npy,
    Safetensors,
}

/// `import`: bring your own features (Parquet with a vector column, `.npy`, `.safetensors`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportParams {
    /// The file, relative to the experiment file. Not part of the cache key: its content is.
    pub path: PathBuf,
    /// Detected from the file extension when absent.
    #[serde(default)]
    pub format: Option<ImportFormat>,
    /// Parquet: the vector column (default: the only list column).
    #[serde(default)]
    pub vector_column: Option<String>,
    /// Parquet: the column holding sample ids (default `sample_id` if present, else row numbers).
    #[serde(default)]
    pub id_column: Option<String>,
    /// Safetensors: the N×D tensor (default: the only 2-D tensor).
    #[serde(default)]
    pub tensor: Option<String>,
    /// `.npy` / `.safetensors`: a text file with one sample id per line (default: row numbers).
    #[serde(default)]
    pub ids: Option<PathBuf>,
    /// Rows per output shard; a killed import resumes at the first unfinished shard.
    #[serde(default = "default_shard_rows")]
    pub shard_rows: usize,
}

fn default_shard_rows() -> usize {
    4096
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pool {
    /// Average over all rows of a sample (the seed's default when no position is given).
    Mean,
    First,
    Last,
    /// The row whose `position` column equals `position` (the seed's `decomposition_extract_pos`).
    Position,
}

/// `aggregate`: an N×D matrix from feature artifacts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregateParams {
    /// One feature stage, or several to join on `sample_id` (the seed's matched features): a
    /// sample is kept only if present, and passing `filter`, in every input.
    pub features: StageRefs,
    /// The vector column to read from each input.
    #[serde(default = "default_vector_column")]
    pub column: String,
    /// A boolean column; rows where it is false are dropped (e.g. `toi_found`).
    #[serde(default)]
    pub filter: Option<String>,
    /// Keep only rows whose `hook` column equals this (features captured at several hooks).
    #[serde(default)]
    pub hook: Option<String>,
    /// How to reduce several rows (positions) of one sample to one vector.
    #[serde(default = "default_pool")]
    pub pool: Pool,
    /// With `pool = "position"`: which position.
    #[serde(default)]
    pub position: Option<i64>,
}

fn default_vector_column() -> String {
    "vector".to_string()
}

fn default_pool() -> Pool {
    Pool::Mean
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecomposeMethod {
    Pca,
    Kmeans,
    /// The seed's `snmf`: sparse dictionary learning with non-negative codes.
    Snmf,
    /// Semi-NMF with multiplicative updates (Ding, Li & Jordan).
    SemiNmf,
    /// The K rows of largest norm.
    Simple,
}

impl DecomposeMethod {
    /// Default `(max_iter, tol)`: scikit-learn's for k-means and dictionary learning; PCA and
    /// `simple` do not iterate.
    pub fn default_iterations(self) -> (usize, f64) {
        match self {
            DecomposeMethod::Pca | DecomposeMethod::Simple => (0, 0.0),
            DecomposeMethod::Kmeans => (300, 1e-4),
            DecomposeMethod::Snmf => (1000, 1e-8),
            DecomposeMethod::SemiNmf => (500, 1e-6),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PcaSolver {
    Auto,
    Full,
    Randomized,
}

/// `decompose`: concepts K×D and activations N×K from a matrix.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecomposeParams {
    pub input: StageRef,
    /// Another matrix (e.g. the test split) projected onto the concepts fitted on `input`; its
    /// activations go to `projected.parquet` (the seed's test-time dictionary evaluation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<StageRef>,
    #[serde(default = "default_vector_column")]
    pub column: String,
    pub method: DecomposeMethod,
    pub num_concepts: usize,
    /// Defaults to `[experiment] seed`.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Defaults per method: PCA 0 (unused), k-means 300, snmf 1000, semi-NMF 500.
    #[serde(default)]
    pub max_iter: Option<usize>,
    #[serde(default)]
    pub tol: Option<f64>,
    /// snmf: the L1 weight on the codes.
    #[serde(default)]
    pub alpha: Option<f64>,
    #[serde(default)]
    pub pca_solver: Option<PcaSolver>,
    /// k-means: number of initialisations.
    #[serde(default)]
    pub n_init: Option<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShiftMethod {
    /// mean(target) − mean(source).
    ShiftOfMeans,
    /// mean over samples present in both of (target_i − source_i), matched on `sample_id`.
    MeanOfShifts,
    /// Per-concept shifts between an original (`source`) and a fine-tuned (`target`) model.
    ConceptShifts,
    /// Directions between the concepts of the source (`concept_{i}_to_{j}` = c_j − c_i), and
    /// the shift of means.
    IntraClusters,
    /// First principal direction of the matched differences, signed to point from source to
    /// target.
    PcaOfDifferences,
}

impl ShiftMethod {
    pub fn name(self) -> &'static str {
        match self {
            ShiftMethod::ShiftOfMeans => "shift_of_means",
            ShiftMethod::MeanOfShifts => "mean_of_shifts",
            ShiftMethod::ConceptShifts => "concept_shifts",
            ShiftMethod::IntraClusters => "intra_clusters",
            ShiftMethod::PcaOfDifferences => "pca_of_differences",
        }
    }

    /// Whether the method decomposes the source into concepts.
    pub fn decomposes(self) -> bool {
        matches!(
            self,
            ShiftMethod::ConceptShifts | ShiftMethod::IntraClusters
        )
    }
}

/// `concept_shifts`: how a matched sample is given to one concept of the source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShiftAssociation {
    /// The concept with the largest activation (the seed's `concept_activation`).
    Activation,
    /// The concept with the largest cosine similarity to the sample.
    Cosine,
    /// The nearest concept.
    L2,
}

/// `concept_shifts`: how the sample shifts of a concept become its shift vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShiftAggregation {
    Mean,
    /// Per coordinate.
    Median,
    /// Per coordinate, `trim` of the values cut at each end (SciPy's `trim_mean`).
    TrimmedMean,
}

/// `concept_shifts`: which concepts the Hungarian matching pairs with the fine-tuned ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShiftMatch {
    /// The shifted concepts (what each concept became).
    Shifted,
    /// The original concepts (the seed's choice).
    Original,
}

/// `shift`: vectors pointing from `source` to `target`. Options that a method does not use are
/// errors; defaults are filled in by `finish`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShiftParams {
    pub method: ShiftMethod,
    /// The original features (`concept_shifts`: the model before fine-tuning).
    pub source: StageRef,
    /// The features the vectors point to (`concept_shifts`: the fine-tuned model).
    pub target: StageRef,
    #[serde(default = "default_vector_column")]
    pub column: String,
    /// `concept_shifts`, `intra_clusters`: concepts of the source decomposition (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_concepts: Option<usize>,
    /// `concept_shifts`, `intra_clusters`: default `kmeans` (the seed's scripts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decomposition: Option<DecomposeMethod>,
    /// Decomposing methods and `pca_of_differences`; defaults to `[experiment] seed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Decomposition iterations and tolerance; defaults as in `decompose`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_iter: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tol: Option<f64>,
    /// `decomposition = "kmeans"`: number of initialisations (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_init: Option<usize>,
    /// `decomposition = "pca"` and `pca_of_differences` (default `auto`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pca_solver: Option<PcaSolver>,
    /// `decomposition = "snmf"`: the L1 weight on the codes (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snmf_alpha: Option<f64>,
    /// `concept_shifts` (default `activation`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub association: Option<ShiftAssociation>,
    /// `concept_shifts` (default `mean`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregation: Option<ShiftAggregation>,
    /// `aggregation = "trimmed_mean"`: fraction cut at each end, `0 <= trim < 0.5` (default 0.1,
    /// the seed's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trim: Option<f64>,
    /// `concept_shifts` (default `shifted`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_concepts: Option<ShiftMatch>,
}

/// A stage's parameters, by kind.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum StageParams {
    Import(ImportParams),
    Extract(ExtractParams),
    Aggregate(AggregateParams),
    Decompose(DecomposeParams),
    Ground(GroundParams),
    Shift(ShiftParams),
    Steer(SteerParams),
    Evaluate(EvaluateParams),
}

impl StageParams {
    pub fn kind(&self) -> StageKind {
        match self {
            StageParams::Import(_) => StageKind::Import,
            StageParams::Extract(_) => StageKind::Extract,
            StageParams::Aggregate(_) => StageKind::Aggregate,
            StageParams::Decompose(_) => StageKind::Decompose,
            StageParams::Ground(_) => StageKind::Ground,
            StageParams::Shift(_) => StageKind::Shift,
            StageParams::Steer(_) => StageKind::Steer,
            StageParams::Evaluate(_) => StageKind::Evaluate,
        }
    }

    pub fn as_kind(&self) -> &dyn KindParams {
        match self {
            StageParams::Import(p) => p,
            StageParams::Extract(p) => p,
            StageParams::Aggregate(p) => p,
            StageParams::Decompose(p) => p,
            StageParams::Ground(p) => p,
            StageParams::Shift(p) => p,
            StageParams::Steer(p) => p,
            StageParams::Evaluate(p) => p,
        }
    }

    pub fn as_kind_mut(&mut self) -> &mut dyn KindParams {
        match self {
            StageParams::Import(p) => p,
            StageParams::Extract(p) => p,
            StageParams::Aggregate(p) => p,
            StageParams::Decompose(p) => p,
            StageParams::Ground(p) => p,
            StageParams::Shift(p) => p,
            StageParams::Steer(p) => p,
            StageParams::Evaluate(p) => p,
        }
    }

    /// The stages this one reads, with the role each plays (`features.0`, `source`, ...).
    pub fn inputs(&self) -> Vec<(String, &StageRef)> {
        self.as_kind().inputs()
    }

    pub fn model(&self) -> Option<&str> {
        self.as_kind().model()
    }

    pub fn gathers(&self, role: &str) -> bool {
        let root = role.split('.').next().unwrap_or(role);
        self.as_kind().gathers().contains(&root)
    }

    pub fn data(&self) -> Option<&str> {
        self.as_kind().data()
    }

    pub fn files(&self) -> Vec<(String, &Path)> {
        self.as_kind().files()
    }

    /// The parameters as they enter the cache key: stage, model and dataset names and file paths
    /// are left out (the keys of the inputs, the fingerprints of the model, the dataset and the
    /// files stand for them).
    pub fn key_params(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).expect("stage parameters serialise to JSON");
        if let Some(map) = value.as_object_mut() {
            let kind = self.as_kind();
            let mut dropped: Vec<String> = kind
                .inputs()
                .into_iter()
                .map(|(role, _)| role)
                .chain(kind.files().into_iter().map(|(role, _)| role))
                .map(|role| role.split('.').next().unwrap_or_default().to_string())
                .collect();
            if kind.model().is_some() {
                dropped.push("model".to_string());
            }
            if kind.data().is_some() {
                dropped.push("data".to_string());
            }
            for k in dropped {
                map.remove(&k);
            }
        }
        value
    }
}

impl KindParams for ImportParams {
    fn inputs(&self) -> Vec<(String, &StageRef)> {
        Vec::new()
    }

    fn files(&self) -> Vec<(String, &Path)> {
        let mut files = vec![("path".to_string(), self.path.as_path())];
        if let Some(ids) = &self.ids {
            files.push(("ids".to_string(), ids.as_path()));
        }
        files
    }

    fn paths_mut(&mut self) -> Vec<(&'static str, &mut PathBuf)> {
        let mut paths = vec![("path", &mut self.path)];
        if let Some(ids) = &mut self.ids {
            paths.push(("ids", ids));
        }
        paths
    }
}

impl KindParams for AggregateParams {
    fn inputs(&self) -> Vec<(String, &StageRef)> {
        self.features
            .0
            .iter()
            .enumerate()
            .map(|(i, r)| (format!("features.{i}"), r))
            .collect()
    }
}

impl KindParams for DecomposeParams {
    fn inputs(&self) -> Vec<(String, &StageRef)> {
        let mut inputs = vec![("input".to_string(), &self.input)];
        if let Some(project) = &self.project {
            inputs.push(("project".to_string(), project));
        }
        inputs
    }
}

impl KindParams for ShiftParams {
    fn inputs(&self) -> Vec<(String, &StageRef)> {
        vec![
            ("source".to_string(), &self.source),
            ("target".to_string(), &self.target),
        ]
    }

    fn finish(&mut self, seed: u64) -> Result<(), ParamError> {
        let method = self.method;
        let name = method.name();
        let not_for = |key: &str, applies: &str| {
            ParamError::new(
                key,
                format!("`{key}` does not apply to `method = \"{name}\"`"),
            )
            .help(format!("`{key}` applies to {applies} only"))
        };
        if method.decomposes() {
            let k = self.num_concepts.ok_or_else(|| {
                ParamError::new("", format!("`method = \"{name}\"` needs `num_concepts`"))
                    .help("e.g. `num_concepts = 20`")
            })?;
            let least = if method == ShiftMethod::IntraClusters {
                2
            } else {
                1
            };
            if k < least {
                return Err(ParamError::new(
                    "num_concepts",
                    format!("`num_concepts` must be at least {least} for `method = \"{name}\"`"),
                ));
            }
            let decomposition = *self.decomposition.get_or_insert(DecomposeMethod::Kmeans);
            let (max_iter, tol) = decomposition.default_iterations();
            self.max_iter.get_or_insert(max_iter);
            self.tol.get_or_insert(tol);
            let options = [
                ("n_init", self.n_init.is_some(), DecomposeMethod::Kmeans),
                (
                    "pca_solver",
                    self.pca_solver.is_some(),
                    DecomposeMethod::Pca,
                ),
                (
                    "snmf_alpha",
                    self.snmf_alpha.is_some(),
                    DecomposeMethod::Snmf,
                ),
            ];
            for (key, set, owner) in options {
                if set && decomposition != owner {
                    let owner = serde_json::to_value(owner).expect("enum serialises");
                    return Err(ParamError::new(
                        key,
                        format!("`{key}` applies to `decomposition = {owner}` only"),
                    ));
                }
            }
            match decomposition {
                DecomposeMethod::Kmeans => {
                    if self.n_init.get_or_insert(1) == &0 {
                        return Err(ParamError::new("n_init", "`n_init` must be at least 1"));
                    }
                }
                DecomposeMethod::Pca => {
                    self.pca_solver.get_or_insert(PcaSolver::Auto);
                }
                DecomposeMethod::Snmf => {
                    let alpha = *self.snmf_alpha.get_or_insert(1.0);
                    if !(alpha.is_finite() && alpha >= 0.0) {
                        return Err(ParamError::new(
                            "snmf_alpha",
                            "`snmf_alpha` must be a finite number >= 0",
                        ));
                    }
                }
                DecomposeMethod::SemiNmf | DecomposeMethod::Simple => {}
            }
        } else {
            let decomposing = "`method = \"concept_shifts\"` and `\"intra_clusters\"`";
            let options = [
                ("num_concepts", self.num_concepts.is_some()),
                ("decomposition", self.decomposition.is_some()),
                ("max_iter", self.max_iter.is_some()),
                ("tol", self.tol.is_some()),
                ("n_init", self.n_init.is_some()),
                ("snmf_alpha", self.snmf_alpha.is_some()),
            ];
            if let Some((key, _)) = options.iter().find(|(_, set)| *set) {
                return Err(not_for(key, decomposing));
            }
            if method == ShiftMethod::PcaOfDifferences {
                self.pca_solver.get_or_insert(PcaSolver::Auto);
            } else if self.pca_solver.is_some() {
                return Err(not_for(
                    "pca_solver",
                    "`method = \"pca_of_differences\"` and `decomposition = \"pca\"`",
                ));
            }
        }
        let seeded = method.decomposes() || method == ShiftMethod::PcaOfDifferences;
        if seeded {
            self.seed.get_or_insert(seed);
        } else if self.seed.is_some() {
            return Err(not_for(
                "seed",
                "`method = \"concept_shifts\"`, `\"intra_clusters\"` and `\"pca_of_differences\"`",
            ));
        }
        if method == ShiftMethod::ConceptShifts {
            self.association.get_or_insert(ShiftAssociation::Activation);
            self.match_concepts.get_or_insert(ShiftMatch::Shifted);
            let aggregation = *self.aggregation.get_or_insert(ShiftAggregation::Mean);
            if aggregation == ShiftAggregation::TrimmedMean {
                let trim = *self.trim.get_or_insert(0.1);
                if !(0.0..0.5).contains(&trim) {
                    return Err(ParamError::new(
                        "trim",
                        format!("`trim = {trim}` is out of range"),
                    )
                    .help("the fraction cut at each end: 0 <= trim < 0.5"));
                }
            } else if self.trim.is_some() {
                return Err(ParamError::new(
                    "trim",
                    "`trim` applies to `aggregation = \"trimmed_mean\"` only",
                ));
            }
        } else {
            let options = [
                ("association", self.association.is_some()),
                ("aggregation", self.aggregation.is_some()),
                ("trim", self.trim.is_some()),
                ("match_concepts", self.match_concepts.is_some()),
            ];
            if let Some((key, _)) = options.iter().find(|(_, set)| *set) {
                return Err(not_for(key, "`method = \"concept_shifts\"`"));
            }
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dtype {
    F32,
    F16,
    Bf16,
}

/// `[models.NAME]`: a checkpoint folder or a Hub id resolved through the local HF cache.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// `hf:org/name[@revision]`.
    #[serde(default)]
    pub source: Option<String>,
    /// A local checkpoint folder, relative to the experiment file.
    #[serde(default)]
    pub path: Option<PathBuf>,
    #[serde(default = "default_device")]
    pub device: String,
    #[serde(default = "default_dtype")]
    pub dtype: Dtype,
}

fn default_device() -> String {
    "cpu".to_string()
}

fn default_dtype() -> Dtype {
    Dtype::F32
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataFormat {
    /// `dataset_coco.json` (Karpathy splits).
    CocoKarpathy,
    /// VQAv2 questions + annotations.
    Vqav2,
    /// One JSON object per line: `{"id", "image", "prompt", "answer"?}`.
    Jsonl,
}

/// `[data.NAME]`: a dataset in one of the formats the readers understand.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSpec {
    pub format: DataFormat,
    /// The annotation file (captions, VQA annotations or JSONL), relative to the experiment file.
    pub annotations: PathBuf,
    /// VQAv2: the questions file.
    #[serde(default)]
    pub questions: Option<PathBuf>,
    /// The folder images are resolved against.
    #[serde(default)]
    pub images: Option<PathBuf>,
    /// COCO Karpathy: the split(s) to read (`train`, `restval`, `val`, `test`; several joined
    /// by `+`, e.g. `train+restval`). VQAv2: the split whose file names are used (`val2014`).
    #[serde(default)]
    pub split: Option<String>,
    /// A random subset of this many samples, exactly NumPy's
    /// `default_rng(seed).choice(n, dataset_size, replace=False)` as the seed's `--dataset_size`.
    #[serde(default)]
    pub dataset_size: Option<usize>,
    /// Seed of that subset; defaults to `[experiment] seed`.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Keep only samples whose metadata matches (after the subset, before `limit`).
    #[serde(default)]
    pub filter: DataFilter,
    /// Keep at most this many samples (after the subset and the filter).
    #[serde(default)]
    pub limit: Option<usize>,
    /// VQAv2: image path under `images`, with `{split}` and `{image_id}` (12 digits) replaced.
    #[serde(default)]
    pub image_template: Option<String>,
    /// What to do with a sample whose image file is missing.
    #[serde(default)]
    pub missing_images: MissingImagesPolicy,
}

/// Exact-match sample filters (the seed matched substrings: `no` also kept `none` and `snow`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataFilter {
    /// VQAv2 `multiple_choice_answer` (trimmed, lower-cased), e.g. `["yes"]`.
    #[serde(default)]
    pub answers: Vec<String>,
    /// `yes/no`, `number`, `other`.
    #[serde(default)]
    pub answer_types: Vec<String>,
    /// e.g. `what color is the`.
    #[serde(default)]
    pub question_types: Vec<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MissingImagesPolicy {
    /// Stop before running, naming the first sample and its path.
    #[default]
    Error,
    /// Drop such samples (their number is logged and recorded in the manifest).
    Skip,
}

/// `[experiment]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentMeta {
    pub name: String,
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub description: Option<String>,
}
