//! Evaluation metrics of xlvlm, in pure Rust (no Java or Python at run time):
//!
//! * [`vqa_accuracy`]: the official VQAv2 accuracy (exactly as `vqaEval.py`) or the simplified
//!   formula of xl-vlms;
//! * [`caption_scores`]: COCO captioning metrics as pycocoevalcap computes them, after the same
//!   PTB tokenisation ([`ptb_tokenize`]): BLEU-1..4, METEOR (exact and stem modules, plus the
//!   synonym and paraphrase modules when METEOR's data files are supplied at run time, see
//!   [`meteor`]), ROUGE-L and CIDEr-D;
//! * [`target_rates`] and friends: steering counters (predictions containing a word of interest,
//!   changed predictions against a baseline, answer counts, word-class rates) with whole-word
//!   matching;
//! * [`dictionary`]: concept-dictionary metrics (grounding-word overlap, test grounding scores).

pub mod caption;
pub mod dictionary;
mod error;
pub mod ptb;
pub mod steering;
mod text;
pub mod vqa;
mod vqa_tables;
pub mod words;

pub use caption::{CaptionReport, CaptionScores, caption_scores, caption_scores_with, meteor};
pub use error::{MetricsError, Result};
pub use ptb::ptb_tokenize;
pub use steering::target_rates;
pub use vqa::{
    VqaAccuracy, VqaAnnotation, VqaPrediction, VqaQuestionScore, VqaReport, vqa_accuracy,
};
