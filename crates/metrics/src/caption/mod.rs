//! COCO captioning metrics as pycocoevalcap 1.2 (the coco-caption code) computes them.
//!
//! [`caption_scores`] tokenises hypotheses and references with [`crate::ptb_tokenize`] (the
//! PTBTokenizer step of pycocoevalcap) and then scores the tokenised corpus with
//! [`caption_scores_tokenized`]: BLEU-1..4 ([`bleu`]), METEOR ([`meteor`]), ROUGE-L ([`rouge`])
//! and CIDEr-D ([`cider`]). BLEU, ROUGE-L and CIDEr-D follow the Python scorers operation by
//! operation; METEOR ports the jar, its synonym and paraphrase modules working from data files
//! supplied at run time (see its module documentation).

pub mod bleu;
pub mod cider;
pub mod meteor;
mod ngrams;
pub mod rouge;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{MetricsError, Result};
use crate::ptb::ptb_tokenize;

/// The scores of one image, or of the corpus.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CaptionScores {
    /// BLEU-1..4.
    pub bleu: [f64; 4],
    /// METEOR (exact and stem modules, plus synonyms and paraphrases when their data is
    /// supplied; see [`meteor`]).
    pub meteor: f64,
    pub rouge_l: f64,
    /// CIDEr-D (pycocoevalcap's `CIDEr`).
    pub cider: f64,
}

/// Corpus scores (as pycocoevalcap reports them: corpus BLEU from summed statistics, METEOR from
/// aggregated statistics, ROUGE-L and CIDEr-D as means of the image scores) and image scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaptionReport {
    pub corpus: CaptionScores,
    pub per_image: BTreeMap<String, CaptionScores>,
}

/// Tokenises raw captions as pycocoevalcap's PTBTokenizer does (tokens joined by single spaces)
/// and scores them. Hypotheses and references must cover the same image ids.
pub fn caption_scores(
    hypotheses: &BTreeMap<String, String>,
    references: &BTreeMap<String, Vec<String>>,
) -> Result<CaptionReport> {
    caption_scores_with(hypotheses, references, &meteor::MeteorResources::default())
}

/// [`caption_scores`], with METEOR's synonym and paraphrase modules for the data
/// `meteor_resources` holds.
pub fn caption_scores_with(
    hypotheses: &BTreeMap<String, String>,
    references: &BTreeMap<String, Vec<String>>,
    meteor_resources: &meteor::MeteorResources,
) -> Result<CaptionReport> {
    let tokenize = |s: &str| ptb_tokenize(s).join(" ");
    let hyps: BTreeMap<String, String> = hypotheses
        .iter()
        .map(|(id, h)| (id.clone(), tokenize(h)))
        .collect();
    let refs: BTreeMap<String, Vec<String>> = references
        .iter()
        .map(|(id, rs)| (id.clone(), rs.iter().map(|r| tokenize(r)).collect()))
        .collect();
    caption_scores_tokenized_with(&hyps, &refs, meteor_resources)
}

/// Scores already tokenised captions (tokens separated by spaces).
pub fn caption_scores_tokenized(
    hypotheses: &BTreeMap<String, String>,
    references: &BTreeMap<String, Vec<String>>,
) -> Result<CaptionReport> {
    caption_scores_tokenized_with(hypotheses, references, &meteor::MeteorResources::default())
}

/// [`caption_scores_tokenized`], with METEOR's synonym and paraphrase modules for the data
/// `meteor_resources` holds.
pub fn caption_scores_tokenized_with(
    hypotheses: &BTreeMap<String, String>,
    references: &BTreeMap<String, Vec<String>>,
    meteor_resources: &meteor::MeteorResources,
) -> Result<CaptionReport> {
    let corpus = Corpus::new(hypotheses, references)?;
    let bleu = bleu::bleu(&corpus.hyps, &corpus.refs);
    let rouge = rouge::rouge_l(&corpus.hyps, &corpus.refs);
    let cider = cider::cider_d(&corpus.hyps, &corpus.refs);
    let meteor = meteor::meteor_with(&corpus.hyps, &corpus.refs, meteor_resources);
    let per_image = corpus
        .ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let scores = CaptionScores {
                bleu: std::array::from_fn(|k| bleu.per_image[k][i]),
                meteor: meteor.per_image[i],
                rouge_l: rouge.per_image[i],
                cider: cider.per_image[i],
            };
            ((*id).clone(), scores)
        })
        .collect();
    Ok(CaptionReport {
        corpus: CaptionScores {
            bleu: bleu.corpus,
            meteor: meteor.corpus,
            rouge_l: rouge.corpus,
            cider: cider.corpus,
        },
        per_image,
    })
}

/// A checked corpus: one hypothesis and at least one reference per image, in id order.
struct Corpus<'a> {
    ids: Vec<&'a String>,
    hyps: Vec<&'a str>,
    refs: Vec<Vec<&'a str>>,
}

impl<'a> Corpus<'a> {
    fn new(
        hypotheses: &'a BTreeMap<String, String>,
        references: &'a BTreeMap<String, Vec<String>>,
    ) -> Result<Self> {
        if hypotheses.is_empty() {
            return Err(MetricsError::EmptyCaptions);
        }
        if let Some(id) = references.keys().find(|k| !hypotheses.contains_key(*k)) {
            return Err(MetricsError::ReferencesWithoutHypothesis { id: id.clone() });
        }
        let mut corpus = Corpus {
            ids: Vec::with_capacity(hypotheses.len()),
            hyps: Vec::with_capacity(hypotheses.len()),
            refs: Vec::with_capacity(hypotheses.len()),
        };
        for (id, hyp) in hypotheses {
            let refs = references
                .get(id)
                .ok_or_else(|| MetricsError::HypothesisWithoutReferences { id: id.clone() })?;
            if refs.is_empty() {
                return Err(MetricsError::NoReferences { id: id.clone() });
            }
            corpus.ids.push(id);
            corpus.hyps.push(hyp);
            corpus.refs.push(refs.iter().map(String::as_str).collect());
        }
        Ok(corpus)
    }
}

/// Corpus and per-image values of one metric.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricValues {
    pub corpus: f64,
    pub per_image: Vec<f64>,
}
