//! VQA accuracy.
//!
//! [`VqaAccuracy::Official`] reproduces the official VQAv2 evaluator (`vqaEval.py` by aagrawal,
//! GT-Vision-Lab) exactly, quirks included:
//! * the prediction gets `processPunctuation` then `processDigitArticle` (lower-casing, number
//!   words to digits, articles dropped, contractions); the ground-truth answers get only
//!   `processPunctuation`, and only when the answers of the question are not all identical, so a
//!   prediction `"2"` scores 0 against ten answers `"two"`;
//! * `'` and `:` are not punctuation; a punctuation mark next to a space is deleted, otherwise it
//!   becomes a space (`t-shirt` -> `t shirt`); any `digit,digit` in the text deletes all marks;
//!   periods not followed by a digit are deleted (at most 32 of them: the evaluator passes
//!   `re.UNICODE` as the `count` argument of `re.sub`);
//! * a question scores the mean over its answers `g` of `min(1, #{other answers == pred} / 3)`
//!   (10-choose-9 leave-one-out), reported per question as `round(100 * acc, 2)`;
//! * overall, per answer type and per question type accuracies are `round(100 * mean, 2)` of the
//!   unrounded question scores.
//!
//! [`VqaAccuracy::XlVlms`] reproduces the simplified formula of xl-vlms (EvalAI answer processor
//! on the prediction, applied twice; only `process_digit_article` on the answers; `min(1,
//! matches / 3)` without leave-one-out; overall = unweighted mean of the per-answer-type means; no
//! rounding), for reproducing numbers computed with that code.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::error::{MetricsError, Result};
use crate::text::{py_split_whitespace, py_strip};
use crate::vqa_tables::{ARTICLES, CONTRACTIONS, NUMBER_WORDS, PUNCTUATION};

/// Which VQA accuracy formula to compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VqaAccuracy {
    /// The official VQAv2 evaluator.
    #[default]
    Official,
    /// The simplified formula of xl-vlms (`metrics/vqa_accuracy.py`).
    XlVlms,
}

/// A model's answer to one question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VqaPrediction {
    pub question_id: u64,
    pub answer: String,
}

/// The ground truth of one question (VQAv2 annotation file fields).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VqaAnnotation {
    pub question_id: u64,
    pub question_type: String,
    pub answer_type: String,
    /// The human answers (ten in VQAv2), raw.
    pub answers: Vec<String>,
}

/// The score of one question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VqaQuestionScore {
    pub question_id: u64,
    pub answer_type: String,
    pub question_type: String,
    /// The prediction after the formula's normalisation.
    pub normalized_prediction: String,
    /// Accuracy in percent (rounded to 2 decimals in official mode, as the evaluator's `evalQA`).
    pub accuracy: f64,
}

/// Accuracies in percent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VqaReport {
    pub mode: VqaAccuracy,
    /// Official: mean over questions. XlVlms: mean of the per-answer-type means.
    pub overall: f64,
    pub per_answer_type: BTreeMap<String, f64>,
    pub per_question_type: BTreeMap<String, f64>,
    /// In the order of the annotations.
    pub questions: Vec<VqaQuestionScore>,
}

/// Scores `predictions` against `annotations`; every annotated question needs exactly one
/// prediction and vice versa (the official evaluator refuses partial result files too).
pub fn vqa_accuracy(
    predictions: &[VqaPrediction],
    annotations: &[VqaAnnotation],
    mode: VqaAccuracy,
) -> Result<VqaReport> {
    if annotations.is_empty() {
        return Err(MetricsError::EmptyVqa);
    }
    let mut answer_of: HashMap<u64, &str> = HashMap::with_capacity(predictions.len());
    for p in predictions {
        if answer_of.insert(p.question_id, &p.answer).is_some() {
            let count = predictions
                .iter()
                .filter(|q| q.question_id == p.question_id)
                .count();
            return Err(MetricsError::DuplicateQuestion {
                question_id: p.question_id,
                count,
                what: "predictions",
            });
        }
    }
    let mut seen = HashMap::with_capacity(annotations.len());
    for a in annotations {
        if seen.insert(a.question_id, ()).is_some() {
            let count = annotations
                .iter()
                .filter(|b| b.question_id == a.question_id)
                .count();
            return Err(MetricsError::DuplicateQuestion {
                question_id: a.question_id,
                count,
                what: "annotations",
            });
        }
        if !answer_of.contains_key(&a.question_id) {
            return Err(MetricsError::AnnotationWithoutPrediction {
                question_id: a.question_id,
            });
        }
        if a.answers.is_empty() {
            return Err(MetricsError::NoAnswers {
                question_id: a.question_id,
            });
        }
    }
    if let Some(p) = predictions
        .iter()
        .find(|p| !seen.contains_key(&p.question_id))
    {
        return Err(MetricsError::PredictionWithoutAnnotation {
            question_id: p.question_id,
        });
    }

    let mut raw_scores = Vec::with_capacity(annotations.len());
    let mut questions = Vec::with_capacity(annotations.len());
    for a in annotations {
        let answer = answer_of[&a.question_id];
        let (normalized_prediction, acc) = match mode {
            VqaAccuracy::Official => official_question_accuracy(answer, &a.answers),
            VqaAccuracy::XlVlms => xl_vlms_question_accuracy(answer, &a.answers),
        };
        let accuracy = match mode {
            VqaAccuracy::Official => py_round2(100.0 * acc),
            VqaAccuracy::XlVlms => 100.0 * acc,
        };
        raw_scores.push(acc);
        questions.push(VqaQuestionScore {
            question_id: a.question_id,
            answer_type: a.answer_type.clone(),
            question_type: a.question_type.clone(),
            normalized_prediction,
            accuracy,
        });
    }

    let group_means = |key: fn(&VqaAnnotation) -> &str| {
        let mut groups: BTreeMap<String, (f64, usize)> = BTreeMap::new();
        for (a, acc) in annotations.iter().zip(&raw_scores) {
            let entry = groups.entry(key(a).to_owned()).or_insert((0.0, 0));
            entry.0 += acc;
            entry.1 += 1;
        }
        groups
            .into_iter()
            .map(|(k, (sum, n))| (k, percent_of_mean(sum, n, mode)))
            .collect::<BTreeMap<_, _>>()
    };
    let per_answer_type = group_means(|a| &a.answer_type);
    let per_question_type = group_means(|a| &a.question_type);
    let overall = match mode {
        VqaAccuracy::Official => percent_of_mean(py_sum(&raw_scores), raw_scores.len(), mode),
        VqaAccuracy::XlVlms => per_answer_type.values().sum::<f64>() / per_answer_type.len() as f64,
    };
    Ok(VqaReport {
        mode,
        overall,
        per_answer_type,
        per_question_type,
        questions,
    })
}

fn percent_of_mean(sum: f64, n: usize, mode: VqaAccuracy) -> f64 {
    match mode {
        // The evaluator computes round(100 * float(sum(acc)) / len(acc), 2).
        VqaAccuracy::Official => py_round2(100.0 * sum / n as f64),
        VqaAccuracy::XlVlms => 100.0 * sum / n as f64,
    }
}

/// Left-to-right float sum, as Python's `sum`.
fn py_sum(values: &[f64]) -> f64 {
    values.iter().fold(0.0, |acc, v| acc + v)
}

/// Python's `round(x, 2)`: round half to even on the exact binary value, which is what Rust's
/// `{:.2}` formatting does too.
pub(crate) fn py_round2(x: f64) -> f64 {
    format!("{x:.2}")
        .parse()
        .expect("a formatted finite float parses back")
}

/// The official score of one question: (normalised prediction, accuracy in [0, 1]).
fn official_question_accuracy(answer: &str, gt_answers: &[String]) -> (String, f64) {
    let cleaned = py_strip(&answer.replace(['\n', '\t'], " ")).to_owned();
    let prediction = process_digit_article(&process_punctuation(&cleaned, CommaRule::Official));
    let all_same = gt_answers.iter().all(|g| *g == gt_answers[0]);
    let processed: Vec<String> = if all_same {
        gt_answers.to_vec()
    } else {
        gt_answers
            .iter()
            .map(|g| process_punctuation(g, CommaRule::Official))
            .collect()
    };
    let total_matches = processed.iter().filter(|g| **g == prediction).count();
    // Leave each answer out in turn and count matches among the others.
    let sum: f64 = processed
        .iter()
        .map(|g| {
            let others = total_matches - usize::from(*g == prediction);
            (others as f64 / 3.0).min(1.0)
        })
        .fold(0.0, |acc, v| acc + v);
    (prediction, sum / processed.len() as f64)
}

/// The xl-vlms score of one question: (normalised prediction, accuracy in [0, 1]).
fn xl_vlms_question_accuracy(answer: &str, gt_answers: &[String]) -> (String, f64) {
    // EvalAIAnswerProcessor.__call__: word_tokenize, whitespace, punctuation, digits/articles...
    let tokenized = answer
        .to_lowercase()
        .replace([',', '?'], "")
        .replace("'s", " 's");
    let cleaned = py_strip(&py_strip(&tokenized).replace(['\n', '\t'], " ")).to_owned();
    let once = process_digit_article(&process_punctuation(&cleaned, CommaRule::EvalAi));
    // ...then vqav2_process_results applies punctuation and digits/articles a second time.
    let prediction = process_digit_article(&process_punctuation(&once, CommaRule::EvalAi));
    let matches = gt_answers
        .iter()
        .filter(|g| process_digit_article(g) == prediction)
        .count();
    (prediction, (matches as f64 / 3.0).min(1.0))
}

/// The two digit-comma patterns that make punctuation deleted instead of spaced out.
#[derive(Clone, Copy)]
enum CommaRule {
    /// vqaEval.py: `(\d)(,)(\d)`.
    Official,
    /// EvalAI/mmf: `(?<=\d)(\,)+(?=\d)`.
    EvalAi,
}

/// Python's `\d` for `str` patterns matches decimal digits of any script; `char::is_numeric`
/// also accepts other numeric characters (such as `½`), which VQA answers practically never hold.
fn is_digit(c: char) -> bool {
    c.is_ascii_digit() || (!c.is_ascii() && c.is_numeric())
}

fn has_digit_comma_digit(text: &str, rule: CommaRule) -> bool {
    let chars: Vec<char> = text.chars().collect();
    (1..chars.len()).any(|i| {
        if chars[i] != ',' || !is_digit(chars[i - 1]) {
            return false;
        }
        let mut j = i;
        if matches!(rule, CommaRule::EvalAi) {
            while j < chars.len() && chars[j] == ',' {
                j += 1;
            }
        } else {
            j += 1;
        }
        j < chars.len() && is_digit(chars[j])
    })
}

/// `processPunctuation` of the evaluator.
fn process_punctuation(text: &str, rule: CommaRule) -> String {
    let delete_all = has_digit_comma_digit(text, rule);
    let mut out = text.to_owned();
    let mut pattern = [0u8; 4];
    for p in PUNCTUATION {
        let p_str: &str = p.encode_utf8(&mut pattern);
        let next_to_space =
            text.contains(&format!("{p_str} ")) || text.contains(&format!(" {p_str}"));
        out = if next_to_space || delete_all {
            out.replace(p, "")
        } else {
            out.replace(p, " ")
        };
    }
    strip_periods(&out)
}

/// `re.compile(r"(?!<=\d)(\.)(?!\d)").sub("", text, re.UNICODE)`: the first lookahead can never
/// fail (the next character is the period itself), so this deletes periods not followed by a
/// digit; `re.UNICODE` (= 32) lands in the `count` argument, so at most 32 are deleted.
fn strip_periods(text: &str) -> String {
    const MAX_DELETIONS: usize = 32;
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut deleted = 0;
    for (i, &c) in chars.iter().enumerate() {
        let followed_by_digit = chars.get(i + 1).is_some_and(|&n| is_digit(n));
        if c == '.' && !followed_by_digit && deleted < MAX_DELETIONS {
            deleted += 1;
        } else {
            out.push(c);
        }
    }
    out
}

/// `processDigitArticle` of the evaluator: lower-case, split on whitespace, number words to
/// digits, drop articles, expand contractions, join with single spaces.
fn process_digit_article(text: &str) -> String {
    let lowered = text.to_lowercase();
    let words: Vec<&str> = py_split_whitespace(&lowered)
        .map(|w| {
            NUMBER_WORDS
                .iter()
                .find(|(k, _)| *k == w)
                .map_or(w, |(_, v)| *v)
        })
        .filter(|w| !ARTICLES.contains(w))
        .map(|w| {
            CONTRACTIONS
                .iter()
                .find(|(k, _)| *k == w)
                .map_or(w, |(_, v)| *v)
        })
        .collect();
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn punctuation_rules() {
        let p = |s| process_punctuation(s, CommaRule::Official);
        assert_eq!(p("t-shirt"), "t shirt");
        assert_eq!(p("yes - no"), "yes  no");
        assert_eq!(p("1,000 (approx)"), "1000 approx");
        assert_eq!(p("3.5 m."), "3.5 m");
        assert_eq!(p("cat's: 3:30"), "cat's: 3:30");
    }

    #[test]
    fn period_deletions_stop_after_32() {
        let text = ".".repeat(40);
        assert_eq!(strip_periods(&text), ".".repeat(8));
    }

    #[test]
    fn digit_article() {
        assert_eq!(process_digit_article("The Two  dogs"), "2 dogs");
        assert_eq!(process_digit_article("dont know"), "don't know");
    }

    #[test]
    fn rounding_is_half_even_on_the_binary_value() {
        assert_eq!(py_round2(2.675), 2.67);
        assert_eq!(py_round2(0.125), 0.12);
        assert_eq!(py_round2(0.375), 0.38);
    }
}
