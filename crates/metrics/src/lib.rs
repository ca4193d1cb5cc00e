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
//! * [`dictionary`]: concept-dictionary metrics (grounding-word overlap, test grounding scores);
//! * [`vocabulary`]: the English-word and stop-word filter of concept text grounding.
//!
//! ```
//! use std::collections::BTreeMap;
//! use xlvlm_metrics::{VqaAccuracy, VqaAnnotation, VqaPrediction, caption_scores, vqa_accuracy};
//!
//! let answers = ["red", "red", "red", "blue", "blue", "blue", "blue", "blue", "blue", "blue"];
//! let report = vqa_accuracy(
//!     &[VqaPrediction { question_id: 1, answer: "Red.".into() }],
//!     &[VqaAnnotation {
//!         question_id: 1,
//!         question_type: "what color".into(),
//!         answer_type: "other".into(),
//!         answers: answers.iter().map(|a| a.to_string()).collect(),
//!     }],
//!     VqaAccuracy::Official,
//! )?;
//! assert_eq!(report.overall, 90.0); // 3 matching answers: 10-choose-9 average
//!
//! let hyps = BTreeMap::from([("1".to_string(), "A dog runs on the grass.".to_string())]);
//! let refs = BTreeMap::from([(
//!     "1".to_string(),
//!     vec!["A dog running on grass.".to_string(), "A brown dog plays outside.".to_string()],
//! )]);
//! let scores = caption_scores(&hyps, &refs)?;
//! assert!(scores.corpus.bleu[0] > 0.5 && scores.per_image["1"].rouge_l > 0.5);
//! # Ok::<(), xlvlm_metrics::MetricsError>(())
//! ```

pub mod caption;
pub mod dictionary;
mod error;
pub mod ptb;
pub mod steering;
mod text;
pub mod vocabulary;
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
