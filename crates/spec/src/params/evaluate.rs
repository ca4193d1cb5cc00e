//! `evaluate`: metrics over generations (VQA accuracy, captioning scores, steering target
//! rates, word-class rates), over concept dictionaries (word overlap, test grounding), over a
//! fine-tuning shift analysis (recovery of the fine-tuned concepts), and sweep tables gathering
//! the metrics of every instance of a swept `evaluate` stage.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use xlvlm_metrics::words::WordClass;

use super::{KindParams, ParamError, StageRef};

/// Which VQA accuracy formula to compute.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VqaAccuracyMode {
    /// The official VQAv2 evaluator (10-choose-9 average, official normalisation).
    #[default]
    Official,
    /// xl-vlms' simplified `min(1, matches / 3)` with a macro average over answer types.
    XlVlms,
}

/// A metric family `evaluate` can compute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// VQA accuracy, overall, per answer type and per question type (VQA generations).
    VqaAccuracy,
    /// Raw answers counted per answer type (VQA generations).
    AnswerCounts,
    /// Predicted answer types (VQA generations).
    AnswerTypes,
    /// Predictions with a word of interest, with targets too, changed against the baseline
    /// (needs `prediction_words` and `target_words`).
    TargetRate,
    /// BLEU-1..4, METEOR, ROUGE-L, CIDEr-D (captioning generations).
    Captioning,
    /// Rates of the `word_classes` words in captions (captioning generations).
    WordRates,
    /// Overlap between the grounding words of concepts (`ground`).
    Overlap,
    /// Top-1/top-3 concept words against caption words (`ground`, `activations`, `captions`).
    TestGrounding,
    /// Word and most-activating-sample overlaps of the original and the shifted concepts with
    /// their matched fine-tuned concepts (`recovery`).
    Recovery,
}

impl Metric {
    pub fn name(self) -> &'static str {
        match self {
            Metric::VqaAccuracy => "vqa_accuracy",
            Metric::AnswerCounts => "answer_counts",
            Metric::AnswerTypes => "answer_types",
            Metric::TargetRate => "target_rate",
            Metric::Captioning => "captioning",
            Metric::WordRates => "word_rates",
            Metric::Overlap => "overlap",
            Metric::TestGrounding => "test_grounding",
            Metric::Recovery => "recovery",
        }
    }
}

/// The plot of a sweep table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlotParams {
    /// The sweep coordinate on the x axis (`steered.alpha`); default: the first numeric one.
    #[serde(default)]
    pub x: Option<String>,
    /// Metric columns drawn as lines; default: those of `percent_flipped`,
    /// `percent_preds_with_toi`, `percent_preds_changed`, `vqa_accuracy` and `cider` that the
    /// table has.
    #[serde(default)]
    pub y: Vec<String>,
}

/// The data files of METEOR's synonym and paraphrase modules (from a METEOR 1.5 installation,
/// such as the one inside pycocoevalcap): with them, METEOR equals pycocoevalcap's; without
/// them it runs the exact and stem modules only.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeteorData {
    /// `english.synsets` (`unzip meteor-1.5.jar 'synonym/*'`).
    pub synsets: PathBuf,
    /// `english.exceptions`, beside it.
    pub exceptions: PathBuf,
    /// `data/paraphrase-en.gz`.
    pub paraphrases: PathBuf,
}

/// The groundings of a `concept_shifts` shift analysis whose recovery is measured: three
/// `ground` stages over the same `shift` stage, one per concept set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecoveryInputs {
    /// The `shift` stage (`method = "concept_shifts"`): its `concepts.parquet` pairs each
    /// concept with its matched fine-tuned concept.
    pub shift: StageRef,
    /// A `ground` stage with `set = "original"` over `shift`.
    pub original: StageRef,
    /// A `ground` stage with `set = "shifted"` over `shift`.
    pub shifted: StageRef,
    /// A `ground` stage with `set = "finetuned"` over `shift`.
    pub finetuned: StageRef,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvaluateParams {
    /// Generations to score: an `extract` stage in generate mode, or a `steer` stage.
    #[serde(default)]
    pub input: Option<StageRef>,
    /// Generations of the same samples without steering, for changed predictions.
    #[serde(default)]
    pub baseline: Option<StageRef>,
    /// A `ground` stage: dictionary metrics of its concepts.
    #[serde(default)]
    pub ground: Option<StageRef>,
    /// Per-sample concept activations for test grounding: a `decompose` stage.
    #[serde(default)]
    pub activations: Option<StageRef>,
    /// Reference captions of those samples for test grounding: a stage whose table has
    /// `sample_id` and `references` columns (generations).
    #[serde(default)]
    pub captions: Option<StageRef>,
    /// A shift analysis and the groundings of its original, shifted and fine-tuned concepts:
    /// how well the original and the shifted concepts recover the fine-tuned ones.
    #[serde(default)]
    pub recovery: Option<RecoveryInputs>,
    /// A swept `evaluate` stage: one table row per instance (a sweep table), instead of metrics.
    #[serde(default)]
    pub collect: Option<StageRef>,
    /// Metric families to compute; default: every one the inputs allow.
    #[serde(default)]
    pub metrics: Option<Vec<Metric>>,
    #[serde(default)]
    pub vqa_accuracy: VqaAccuracyMode,
    /// Words or phrases of interest in predictions (`no` when steering yes→no), matched as whole
    /// words, case-insensitively.
    #[serde(default)]
    pub prediction_words: Vec<String>,
    /// Words or phrases of interest in the ground truth (`yes` when steering yes→no).
    #[serde(default)]
    pub target_words: Vec<String>,
    /// Word classes whose rates in generated captions are reported.
    #[serde(default = "default_word_classes")]
    pub word_classes: Vec<WordClass>,
    /// METEOR's synonym and paraphrase data, for captioning.
    #[serde(default)]
    pub meteor: Option<MeteorData>,
    /// With `collect`: the plot of the table.
    #[serde(default)]
    pub plot: Option<PlotParams>,
}

fn default_word_classes() -> Vec<WordClass> {
    vec![WordClass::Colors, WordClass::Places, WordClass::Sentiments]
}

impl KindParams for EvaluateParams {
    fn inputs(&self) -> Vec<(String, &StageRef)> {
        [
            ("input", &self.input),
            ("baseline", &self.baseline),
            ("ground", &self.ground),
            ("activations", &self.activations),
            ("captions", &self.captions),
            ("collect", &self.collect),
        ]
        .into_iter()
        .filter_map(|(role, r)| r.as_ref().map(|r| (role.to_string(), r)))
        .chain(self.recovery.iter().flat_map(|r| {
            [
                ("recovery.shift", &r.shift),
                ("recovery.original", &r.original),
                ("recovery.shifted", &r.shifted),
                ("recovery.finetuned", &r.finetuned),
            ]
            .map(|(role, r)| (role.to_string(), r))
        }))
        .collect()
    }

    fn files(&self) -> Vec<(String, &Path)> {
        match &self.meteor {
            Some(m) => vec![
                ("meteor.synsets".to_string(), m.synsets.as_path()),
                ("meteor.exceptions".to_string(), m.exceptions.as_path()),
                ("meteor.paraphrases".to_string(), m.paraphrases.as_path()),
            ],
            None => Vec::new(),
        }
    }

    fn paths_mut(&mut self) -> Vec<(&'static str, &mut PathBuf)> {
        match &mut self.meteor {
            Some(m) => vec![
                ("meteor.synsets", &mut m.synsets),
                ("meteor.exceptions", &mut m.exceptions),
                ("meteor.paraphrases", &mut m.paraphrases),
            ],
            None => Vec::new(),
        }
    }

    fn gathers(&self) -> &[&'static str] {
        if self.collect.is_some() {
            &["collect"]
        } else {
            &[]
        }
    }

    fn finish(&mut self, _seed: u64) -> Result<(), ParamError> {
        if self.collect.is_some() {
            for (key, set) in [
                ("input", self.input.is_some()),
                ("baseline", self.baseline.is_some()),
                ("ground", self.ground.is_some()),
                ("activations", self.activations.is_some()),
                ("captions", self.captions.is_some()),
                ("recovery", self.recovery.is_some()),
                ("metrics", self.metrics.is_some()),
                ("meteor", self.meteor.is_some()),
            ] {
                if set {
                    return Err(ParamError::new(
                        key,
                        "cannot be combined with `collect`",
                    )
                    .help("a sweep table gathers the metrics of another evaluate stage; compute them there"));
                }
            }
            return Ok(());
        }
        if self.plot.is_some() {
            return Err(ParamError::new("plot", "needs `collect` (a sweep table)"));
        }
        if self.baseline.is_some() && self.input.is_none() {
            return Err(ParamError::new("baseline", "needs `input`"));
        }
        if self.input.is_none() && self.ground.is_none() && self.recovery.is_none() {
            return Err(ParamError::new("", "has nothing to evaluate").help(
                "set `input` (generations), `ground` (a concept dictionary), `recovery` (a shift \
                 analysis) or `collect` (a sweep table)",
            ));
        }
        if let Some(r) = &self.recovery {
            let roles = [
                ("original", &r.original),
                ("shifted", &r.shifted),
                ("finetuned", &r.finetuned),
            ];
            for (i, (role, stage)) in roles.iter().enumerate() {
                if *stage == &r.shift {
                    return Err(ParamError::new(
                        format!("recovery.{role}"),
                        "names the shift stage itself",
                    )
                    .help(format!(
                        "name a `ground` stage over the shift stage, with `set = \"{role}\"`"
                    )));
                }
                if let Some((other, _)) = roles[..i].iter().find(|(_, s)| s == stage) {
                    return Err(ParamError::new(
                        format!("recovery.{role}"),
                        format!("names the same stage as `recovery.{other}`"),
                    )
                    .help("each concept set needs its own `ground` stage"));
                }
            }
        }
        for (key, set) in [
            ("activations", self.activations.is_some()),
            ("captions", self.captions.is_some()),
        ] {
            if set && self.ground.is_none() {
                return Err(ParamError::new(key, "needs `ground`"));
            }
        }
        if self.activations.is_some() != self.captions.is_some() {
            return Err(ParamError::new(
                if self.activations.is_some() {
                    "captions"
                } else {
                    "activations"
                },
                "test grounding needs both `activations` and `captions`",
            ));
        }
        if self.prediction_words.is_empty() != self.target_words.is_empty() {
            return Err(ParamError::new(
                if self.prediction_words.is_empty() {
                    "prediction_words"
                } else {
                    "target_words"
                },
                "target rates need both `prediction_words` and `target_words`",
            ));
        }
        for (key, words) in [
            ("prediction_words", &self.prediction_words),
            ("target_words", &self.target_words),
        ] {
            if words.iter().any(|w| !w.chars().any(char::is_alphanumeric)) {
                return Err(ParamError::new(
                    key,
                    "holds an entry without any letter or digit",
                ));
            }
        }
        if let Some(metrics) = &mut self.metrics {
            metrics.sort();
            metrics.dedup();
            for m in metrics.iter() {
                let missing = match m {
                    Metric::VqaAccuracy
                    | Metric::AnswerCounts
                    | Metric::AnswerTypes
                    | Metric::Captioning
                    | Metric::WordRates => self.input.is_none().then_some("`input`"),
                    Metric::TargetRate => (self.input.is_none()
                        || self.prediction_words.is_empty())
                    .then_some("`input`, `prediction_words` and `target_words`"),
                    Metric::Overlap => self.ground.is_none().then_some("`ground`"),
                    Metric::TestGrounding => self
                        .activations
                        .is_none()
                        .then_some("`ground`, `activations` and `captions`"),
                    Metric::Recovery => self.recovery.is_none().then_some("`recovery`"),
                };
                if let Some(missing) = missing {
                    return Err(ParamError::new(
                        "metrics",
                        format!("`{}` needs {missing}", m.name()),
                    ));
                }
            }
        }
        Ok(())
    }
}
