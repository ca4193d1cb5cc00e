//! `extract`: run a model over a dataset and capture hidden states at hook points.
//!
//! Every option of the Python seed's `save_features.py` feature hooks has a key here:
//! `--generation_mode`/`--max_new_tokens` → `mode`/`generate`; `--modules_to_hook` → `hooks`;
//! `save_hidden_states` → `tokens = {}`; `..._given_token_idx` → `tokens.index`;
//! `..._given_token_start_end_idx` → `tokens.range`; `..._for_token_of_interest` →
//! `tokens.of_interest` (or `tokens.token_id` for `--token_of_interest_idx`);
//! `..._for_token_of_interest_class` → `tokens.class`; `..._before_special_tokens` →
//! `tokens.mean_before`; `--save_only_generated_tokens` → `tokens.among = "generated"`;
//! `--select_token_of_interest_samples`/`--token_of_interest_key`/
//! `--token_of_interest_num_samples` → `require_word_in`/`max_samples`; `--prompt_template` →
//! `prompt`; `--batch_size` → `batch_size` (any size works here).

use serde::{Deserialize, Serialize};

use xlvlm_metrics::words::WordClass;

use super::{KindParams, ParamError, StageRef};

/// Teacher forcing (one forward pass over prompt + ground-truth response) or greedy generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExtractMode {
    Generate,
    TeacherForcing,
}

/// Greedy generation settings (shared by `extract` in generate mode and `steer`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerateParams {
    /// The seed's `--max_new_tokens` (default 50, as the seed).
    #[serde(default = "default_max_new_tokens")]
    pub max_new_tokens: usize,
    /// Strings that end a generation once produced (besides the checkpoint's end-of-sequence
    /// tokens); the stop string stays in the generated tokens.
    #[serde(default)]
    pub stop: Vec<String>,
}

fn default_max_new_tokens() -> usize {
    50
}

impl Default for GenerateParams {
    fn default() -> Self {
        GenerateParams {
            max_new_tokens: default_max_new_tokens(),
            stop: Vec::new(),
        }
    }
}

impl GenerateParams {
    pub(crate) fn check(&self, key: &str) -> Result<(), ParamError> {
        if self.max_new_tokens == 0 {
            return Err(ParamError::new(
                format!("{key}.max_new_tokens"),
                "must be at least 1",
            ));
        }
        if self.stop.iter().any(|s| s.is_empty()) {
            return Err(ParamError::new(
                format!("{key}.stop"),
                "stop strings must not be empty",
            ));
        }
        Ok(())
    }
}

/// The seed's `llava` task prompts: the instruction sent with each image.
pub const CAPTION_PROMPT: &str = "\nProvide a one-sentence caption for the provided image.";
pub const VQA_SUFFIX: &str = "\nAnswer the question using a single word or phrase.";

/// How the user turn is built from a sample (shared by `extract` and `steer`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptParams {
    /// The whole instruction for captioning samples (the seed's `ShortCaptioning`).
    #[serde(default = "default_caption_prompt")]
    pub caption: String,
    /// Appended to each VQA question (the seed's `ShortVQA`).
    #[serde(default = "default_vqa_suffix")]
    pub vqa_suffix: String,
    /// Render the user turn (image, then instruction) with the checkpoint's chat template and
    /// its generation prompt; `false` tokenizes `<image>\n{instruction}` as raw text.
    #[serde(default = "default_true")]
    pub chat_template: bool,
}

fn default_caption_prompt() -> String {
    CAPTION_PROMPT.to_string()
}

fn default_vqa_suffix() -> String {
    VQA_SUFFIX.to_string()
}

fn default_true() -> bool {
    true
}

impl Default for PromptParams {
    fn default() -> Self {
        PromptParams {
            caption: default_caption_prompt(),
            vqa_suffix: default_vqa_suffix(),
            chat_template: true,
        }
    }
}

/// Which positions a token selection looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Among {
    /// Every position the model ran.
    All,
    /// Image-token positions.
    Image,
    /// Text positions of the prompt (not image tokens, not the answer).
    Prompt,
    /// The positions whose next-token prediction is an answer token: the last prompt token and
    /// every generated token fed back (generate mode), or the forced response (teacher forcing).
    /// The seed's `--save_only_generated_tokens`.
    Generated,
}

impl Among {
    pub fn name(self) -> &'static str {
        match self {
            Among::All => "all",
            Among::Image => "image",
            Among::Prompt => "prompt",
            Among::Generated => "generated",
        }
    }
}

/// Which token positions become feature rows. At most one selector; none selects every
/// position of `among`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSelection {
    /// A word: the row is the position whose next-token prediction starts the word's first
    /// occurrence (whole words only, case-insensitive: `no` never matches `snow` or `none`).
    #[serde(default)]
    pub of_interest: Option<String>,
    /// A token id: the position whose next-token prediction is its first occurrence.
    #[serde(default)]
    pub token_id: Option<u32>,
    /// A built-in class of words (see [`word_class_names`]): the first occurrence of any of them.
    #[serde(default)]
    pub class: Option<String>,
    /// Your own class of words: the first occurrence of any of them.
    #[serde(default)]
    pub words: Option<Vec<String>>,
    /// One position, counted within `among` (negative counts from its end: -1 = the last).
    #[serde(default)]
    pub index: Option<i64>,
    /// Positions `[start, end)` counted within `among` (negative counts from its end).
    #[serde(default)]
    pub range: Option<[i64; 2]>,
    /// One row per sample: the mean over the positions of `among` that come before the one
    /// predicting the first of these end tokens; `[]` = the checkpoint's end-of-sequence tokens.
    #[serde(default)]
    pub mean_before: Option<Vec<String>>,
    /// Where to look. Default: `generated` for word, token and mean selections, `all` otherwise.
    #[serde(default)]
    pub among: Option<Among>,
    /// Word, token-id and mean selections keep only states at this position or later
    /// (negative: counted back from the end of the positions the model ran); the seed's
    /// `--token_of_interest_start_token`.
    #[serde(default)]
    pub search_from: Option<i64>,
}

/// What [`TokenSelection`] resolves to.
#[derive(Clone, Debug, PartialEq)]
pub enum Selector<'a> {
    All,
    Words(Vec<&'a str>),
    TokenId(u32),
    Index(i64),
    Range(i64, i64),
    MeanBefore(&'a [String]),
}

impl TokenSelection {
    /// The selector (valid after `finish`).
    pub fn selector(&self) -> Selector<'_> {
        if let Some(w) = &self.of_interest {
            Selector::Words(vec![w.as_str()])
        } else if let Some(id) = self.token_id {
            Selector::TokenId(id)
        } else if let Some(class) = &self.class {
            Selector::Words(
                word_class(class)
                    .expect("checked by finish")
                    .iter()
                    .map(String::as_str)
                    .collect(),
            )
        } else if let Some(words) = &self.words {
            Selector::Words(words.iter().map(String::as_str).collect())
        } else if let Some(i) = self.index {
            Selector::Index(i)
        } else if let Some([s, e]) = self.range {
            Selector::Range(s, e)
        } else if let Some(end) = &self.mean_before {
            Selector::MeanBefore(end)
        } else {
            Selector::All
        }
    }

    /// The words a sample must contain for `require_word_in`.
    pub fn words(&self) -> Option<Vec<&str>> {
        match self.selector() {
            Selector::Words(w) => Some(w),
            _ => None,
        }
    }

    fn finish(&mut self) -> Result<(), ParamError> {
        let set = [
            ("of_interest", self.of_interest.is_some()),
            ("token_id", self.token_id.is_some()),
            ("class", self.class.is_some()),
            ("words", self.words.is_some()),
            ("index", self.index.is_some()),
            ("range", self.range.is_some()),
            ("mean_before", self.mean_before.is_some()),
        ];
        let given: Vec<&str> = set.iter().filter(|(_, s)| *s).map(|(n, _)| *n).collect();
        if given.len() > 1 {
            return Err(ParamError::new(
                format!("tokens.{}", given[1]),
                format!("`tokens` selects one way, found {}", given.join(" and ")),
            )
            .help("keep one of of_interest, token_id, class, words, index, range, mean_before (a stage that inherits with `from` merges its `tokens` with the parent's)"));
        }
        if let Some(w) = &self.of_interest
            && w.trim().is_empty()
        {
            return Err(ParamError::new("tokens.of_interest", "the word is empty"));
        }
        if let Some(class) = &self.class
            && word_class(class).is_none()
        {
            return Err(
                ParamError::new("tokens.class", format!("unknown word class `{class}`")).help(
                    format!(
                        "built-in classes: {}; or list your own with `words = [...]`",
                        word_class_names().join(", ")
                    ),
                ),
            );
        }
        if let Some(words) = &self.words
            && (words.is_empty() || words.iter().any(|w| w.trim().is_empty()))
        {
            return Err(ParamError::new(
                "tokens.words",
                "give at least one word, and no empty ones",
            ));
        }
        if let Some([s, e]) = self.range
            && (s >= 0) == (e >= 0)
            && e <= s
        {
            return Err(ParamError::new(
                "tokens.range",
                format!(
                    "[{s}, {e}] selects nothing: `end` is exclusive and must come after `start`"
                ),
            ));
        }
        if let Some(end) = &self.mean_before
            && end.iter().any(|s| s.is_empty())
        {
            return Err(ParamError::new(
                "tokens.mean_before",
                "end tokens must not be empty strings",
            )
            .help("`mean_before = []` uses the checkpoint's end-of-sequence tokens"));
        }
        let searches = self.of_interest.is_some()
            || self.token_id.is_some()
            || self.class.is_some()
            || self.words.is_some()
            || self.mean_before.is_some();
        let among = *self.among.get_or_insert(if searches {
            Among::Generated
        } else {
            Among::All
        });
        if self.search_from.is_some() && !searches {
            return Err(ParamError::new(
                "tokens.search_from",
                "applies to of_interest, token_id, class, words and mean_before",
            )
            .help("for positions from an index on use `range = [start, 1000000]`"));
        }
        if searches && among == Among::Image {
            return Err(ParamError::new(
                "tokens.among",
                "image positions hold no words or token ids to search",
            )
            .help("use among = \"generated\", \"prompt\" or \"all\""));
        }
        Ok(())
    }
}

/// Names of the built-in classes of words (the seed's `WORDS`, shipped by `xlvlm-metrics`).
pub fn word_class_names() -> [&'static str; 5] {
    WordClass::ALL.map(WordClass::name)
}

/// The words of a built-in class.
pub fn word_class(name: &str) -> Option<&'static [String]> {
    WordClass::from_name(name).map(WordClass::words)
}

/// Where `require_word_in` looks for the selection's word(s).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SampleField {
    /// The ground-truth response (first caption, VQAv2 `multiple_choice_answer`).
    Response,
    /// Any reference (every caption, any of the 10 VQA answers).
    References,
    /// The question or user prompt.
    Prompt,
}

/// Storage type of the `vector` column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VectorDtype {
    F32,
    /// Half the bytes; values rounded to the nearest Float16 (the seed stored fp16).
    F16,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtractParams {
    /// A `[models.NAME]` of this experiment.
    pub model: String,
    /// A `[data.NAME]` of this experiment.
    pub data: String,
    /// Hook points (`lm.layers.31`, or the checkpoint's own module names).
    pub hooks: Vec<String>,
    /// Default `generate`.
    #[serde(default)]
    pub mode: Option<ExtractMode>,
    /// Generation settings (generate mode only; filled with defaults there).
    #[serde(default)]
    pub generate: Option<GenerateParams>,
    #[serde(default)]
    pub tokens: TokenSelection,
    /// Keep only samples whose field contains the selection's word(s) as whole words.
    #[serde(default)]
    pub require_word_in: Option<SampleField>,
    /// Keep at most this many samples (after `require_word_in`).
    #[serde(default)]
    pub max_samples: Option<usize>,
    /// The instruction built from each sample (default: the seed's `llava` templates).
    #[serde(default)]
    pub prompt: Option<PromptParams>,
    /// Samples per forward pass, default 8 (left padding; results match batch 1 within float
    /// rounding).
    #[serde(default)]
    pub batch_size: Option<usize>,
    /// Samples per output shard, default 64; a killed run resumes at the first unfinished shard.
    #[serde(default)]
    pub shard_samples: Option<usize>,
    /// Storage of the `vector` column, default `f32`.
    #[serde(default)]
    pub vector_dtype: Option<VectorDtype>,
}

pub(crate) fn check_hooks(hooks: &[String]) -> Result<(), ParamError> {
    if hooks.is_empty() {
        return Err(ParamError::new("hooks", "name at least one hook point")
            .help("e.g. hooks = [\"lm.layers.31\"]; `xlvlm model inspect` lists a checkpoint's"));
    }
    let mut seen = std::collections::BTreeSet::new();
    for h in hooks {
        if h.trim().is_empty() {
            return Err(ParamError::new("hooks", "a hook name is empty"));
        }
        if !seen.insert(h.trim()) {
            return Err(ParamError::new("hooks", format!("`{h}` is listed twice")));
        }
    }
    Ok(())
}

pub(crate) fn check_sizes(
    batch_size: &mut Option<usize>,
    shard_samples: &mut Option<usize>,
) -> Result<(), ParamError> {
    let b = *batch_size.get_or_insert(8);
    let s = *shard_samples.get_or_insert(64);
    if b == 0 {
        return Err(ParamError::new("batch_size", "must be at least 1"));
    }
    if s == 0 {
        return Err(ParamError::new("shard_samples", "must be at least 1"));
    }
    Ok(())
}

impl KindParams for ExtractParams {
    fn inputs(&self) -> Vec<(String, &StageRef)> {
        Vec::new()
    }

    fn model(&self) -> Option<&str> {
        Some(&self.model)
    }

    fn data(&self) -> Option<&str> {
        Some(&self.data)
    }

    fn finish(&mut self, _seed: u64) -> Result<(), ParamError> {
        check_hooks(&self.hooks)?;
        let mode = *self.mode.get_or_insert(ExtractMode::Generate);
        match mode {
            ExtractMode::Generate => self
                .generate
                .get_or_insert_with(GenerateParams::default)
                .check("generate")?,
            ExtractMode::TeacherForcing if self.generate.is_some() => {
                return Err(ParamError::new(
                    "generate",
                    "generation settings do not apply to `mode = \"teacher_forcing\"`",
                )
                .help("remove `generate`, or set `mode = \"generate\"`"));
            }
            ExtractMode::TeacherForcing => {}
        }
        self.tokens.finish()?;
        if self.require_word_in.is_some() && self.tokens.words().is_none() {
            return Err(
                ParamError::new("require_word_in", "needs a word selection to look for")
                    .help("set tokens.of_interest, tokens.class or tokens.words"),
            );
        }
        if self.max_samples == Some(0) {
            return Err(ParamError::new("max_samples", "must be at least 1"));
        }
        self.prompt.get_or_insert_with(PromptParams::default);
        check_sizes(&mut self.batch_size, &mut self.shard_samples)?;
        self.vector_dtype.get_or_insert(VectorDtype::F32);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn extract(tokens: TokenSelection) -> ExtractParams {
        ExtractParams {
            model: "m".into(),
            data: "d".into(),
            hooks: vec!["lm.layers.0".into()],
            mode: None,
            generate: None,
            tokens,
            require_word_in: None,
            max_samples: None,
            prompt: None,
            batch_size: None,
            shard_samples: None,
            vector_dtype: None,
        }
    }

    #[test]
    fn defaults_are_made_explicit() {
        let mut p = extract(TokenSelection::default());
        p.finish(0).unwrap();
        assert_eq!(p.mode, Some(ExtractMode::Generate));
        assert_eq!(p.generate, Some(GenerateParams::default()));
        assert_eq!(p.tokens.among, Some(Among::All));
        assert_eq!((p.batch_size, p.shard_samples), (Some(8), Some(64)));
        assert_eq!(p.vector_dtype, Some(VectorDtype::F32));
        let mut p = extract(TokenSelection {
            of_interest: Some("yes".into()),
            ..Default::default()
        });
        p.finish(0).unwrap();
        assert_eq!(p.tokens.among, Some(Among::Generated));
        assert_eq!(p.tokens.selector(), Selector::Words(vec!["yes"]));
    }

    #[test]
    fn ranges_must_select_something() {
        for (range, ok) in [
            ([0, 3], true),
            ([-3, -1], true),
            ([2, -1], true),
            ([3, 3], false),
            ([-1, -3], false),
        ] {
            let mut p = extract(TokenSelection {
                range: Some(range),
                ..Default::default()
            });
            assert_eq!(p.finish(0).is_ok(), ok, "{range:?}");
        }
    }

    #[test]
    fn built_in_word_classes_are_the_seeds() {
        let sizes: Vec<usize> = word_class_names()
            .iter()
            .map(|c| word_class(c).unwrap().len())
            .collect();
        assert_eq!(sizes, [30, 48, 145, 53, 52]);
        assert!(
            word_class("places")
                .unwrap()
                .iter()
                .any(|w| w == "bus stop")
        );
        assert!(word_class("fruits").is_none());
    }
}
