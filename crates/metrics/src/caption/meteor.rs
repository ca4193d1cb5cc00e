//! METEOR, after METEOR 1.5 as pycocoevalcap runs it (`-l en -norm`, task `rank`):
//! α = 0.85, β = 0.20, γ = 0.60, δ = 0.75, module weights exact 1.0 and stem 0.6.
//!
//! What is the same as the jar:
//! * the matchers: exact matches, then Snowball-English stem matches between words that are not
//!   identical;
//! * the alignment criterion: most matched words, then fewest chunks, then the smallest total
//!   distance between matched positions (found here by an exhaustive search with pruning; the jar
//!   runs a beam search of width 40, which reaches the same optimum on caption-length inputs);
//! * the score: δ-weighted precision and recall over content and function words (METEOR's
//!   English function-word list), `Fmean = P R / (α P + (1 - α) R)`, fragmentation penalty
//!   `γ (chunks / mean matched words)^β` (0 for a complete single-chunk match), best reference
//!   per image, corpus score from the summed statistics of the best references.
//!
//! What differs: the jar also matches WordNet synonyms (weight 0.8) and paraphrases from its
//! 61 MB paraphrase table (weight 0.6), which are not shipped here, and its `-norm` text
//! normalisation is not re-applied (inputs are PTB-tokenised and lower-cased already). Scores are
//! therefore lower than or equal to the jar's whenever a synonym or paraphrase would have matched;
//! the measured gap on the goldens is recorded in `BENCHMARKS.md` and the tests.

use std::collections::HashMap;

use rust_stemmers::{Algorithm, Stemmer};

use super::MetricValues;

const ALPHA: f64 = 0.85;
const BETA: f64 = 0.20;
const GAMMA: f64 = 0.60;
const DELTA: f64 = 0.75;
/// Weights of the modules, in matching order: exact, stem.
const MODULE_WEIGHTS: [f64; 2] = [1.0, 0.6];
const EXACT: usize = 0;
const STEM: usize = 1;

/// METEOR 1.5's English function words (`function/english.words`).
const FUNCTION_WORDS: &[&str] = &[
    "the", ",", ".", "to", "of", "and", "a", "in", "that", "for", "\"", "is", "on", "'s", "it",
    "with", "was", "as", "said", "at", "he", "by", "be", "from", "have", "has", "are", "his",
    "but", "an", "this", "not", "i", "will", "\u{2019}", "they", ")", "-rrb-", "(", "-lrb-", "who",
    "their", "had", "we", "which", "were", "been", "more", "or", "s", "its", "would", "about",
    "new", "one", "after", "you", ":", "also", "up", "when", "there", "than", "$", "all", "out",
    "her", "people", "she", "year", "two", "-", "can", "if", "last", "first", "\u{201C}", "over",
    "other", "\u{201D}", "into", "some", "what", "so", "--", "no", "time", "years", "could", "?",
    "'t", "\u{2014}", "'",
];

/// Sufficient statistics of one (hypothesis, reference) alignment; sums of them score a corpus.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Stats {
    test_len: f64,
    ref_len: f64,
    test_function: f64,
    ref_function: f64,
    /// Matched words per module, content and function, in the hypothesis and the reference.
    test_content: [f64; 2],
    test_functional: [f64; 2],
    ref_content: [f64; 2],
    ref_functional: [f64; 2],
    test_matched: f64,
    ref_matched: f64,
    chunks: f64,
}

impl Stats {
    fn add(&mut self, o: &Stats) {
        self.test_len += o.test_len;
        self.ref_len += o.ref_len;
        self.test_function += o.test_function;
        self.ref_function += o.ref_function;
        for m in 0..2 {
            self.test_content[m] += o.test_content[m];
            self.test_functional[m] += o.test_functional[m];
            self.ref_content[m] += o.ref_content[m];
            self.ref_functional[m] += o.ref_functional[m];
        }
        self.test_matched += o.test_matched;
        self.ref_matched += o.ref_matched;
        self.chunks += o.chunks;
    }

    /// `MeteorScorer.computeMetrics`, in its order of operations.
    fn score(&self) -> f64 {
        let test_weighted_len =
            DELTA * (self.test_len - self.test_function) + (1.0 - DELTA) * self.test_function;
        let ref_weighted_len =
            DELTA * (self.ref_len - self.ref_function) + (1.0 - DELTA) * self.ref_function;
        let (mut test_weighted, mut ref_weighted) = (0.0, 0.0);
        for m in 0..2 {
            test_weighted += self.test_content[m] * MODULE_WEIGHTS[m] * DELTA;
        }
        for m in 0..2 {
            ref_weighted += self.ref_content[m] * MODULE_WEIGHTS[m] * DELTA;
        }
        for m in 0..2 {
            test_weighted += self.test_functional[m] * MODULE_WEIGHTS[m] * (1.0 - DELTA);
        }
        for m in 0..2 {
            ref_weighted += self.ref_functional[m] * MODULE_WEIGHTS[m] * (1.0 - DELTA);
        }
        let precision = test_weighted / test_weighted_len;
        let recall = ref_weighted / ref_weighted_len;
        let fmean = 1.0 / ((1.0 - ALPHA) / precision + ALPHA / recall);
        let frag = if self.test_matched == self.test_len
            && self.ref_matched == self.ref_len
            && self.chunks == 1.0
        {
            0.0
        } else {
            self.chunks / ((self.test_matched + self.ref_matched) / 2.0)
        };
        let penalty = GAMMA * frag.powf(BETA);
        let score = fmean * (1.0 - penalty);
        if score.is_nan() { 0.0 } else { score.max(0.0) }
    }
}

/// A candidate match between hypothesis word `test` and reference word `reference`.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    test: usize,
    module: usize,
}

/// The best alignment found so far.
#[derive(Clone)]
struct Best {
    matched: usize,
    chunks: usize,
    distance: usize,
    pairs: Vec<(usize, usize, usize)>,
}

struct Search<'a> {
    /// Candidates per reference position.
    candidates: &'a [Vec<Candidate>],
    /// Number of reference positions at or after `j` that have a candidate.
    remaining: Vec<usize>,
    used: Vec<bool>,
    pairs: Vec<(usize, usize, usize)>,
    best: Option<Best>,
    nodes: usize,
}

/// Node budget of the exhaustive search; past it the best alignment found so far is kept.
const MAX_SEARCH_NODES: usize = 200_000;

impl Search<'_> {
    fn better(&self, matched: usize, chunks: usize, distance: usize) -> bool {
        match &self.best {
            None => true,
            Some(b) => {
                (
                    matched,
                    std::cmp::Reverse(chunks),
                    std::cmp::Reverse(distance),
                ) > (
                    b.matched,
                    std::cmp::Reverse(b.chunks),
                    std::cmp::Reverse(b.distance),
                )
            }
        }
    }

    fn visit(&mut self, j: usize, chunks: usize, distance: usize) {
        self.nodes += 1;
        let matched = self.pairs.len();
        if let Some(b) = &self.best {
            let bound = matched + self.remaining[j];
            if bound < b.matched
                || (bound == b.matched && chunks > b.chunks)
                || self.nodes > MAX_SEARCH_NODES
            {
                return;
            }
        }
        if j == self.candidates.len() {
            if self.better(matched, chunks, distance) {
                self.best = Some(Best {
                    matched,
                    chunks,
                    distance,
                    pairs: self.pairs.clone(),
                });
            }
            return;
        }
        for k in 0..self.candidates[j].len() {
            let c = self.candidates[j][k];
            if self.used[c.test] {
                continue;
            }
            let continues = self
                .pairs
                .last()
                .is_some_and(|&(t, r, _)| t + 1 == c.test && r + 1 == j);
            self.used[c.test] = true;
            self.pairs.push((c.test, j, c.module));
            self.visit(
                j + 1,
                chunks + usize::from(!continues),
                distance + c.test.abs_diff(j),
            );
            self.pairs.pop();
            self.used[c.test] = false;
        }
        self.visit(j + 1, chunks, distance);
    }
}

/// Aligns `test` to `reference` and returns the statistics.
fn align(test: &[&str], test_stems: &[String], reference: &[&str], ref_stems: &[String]) -> Stats {
    let candidates: Vec<Vec<Candidate>> = (0..reference.len())
        .map(|j| {
            let mut c: Vec<Candidate> = (0..test.len())
                .filter(|&i| test[i] == reference[j])
                .map(|i| Candidate {
                    test: i,
                    module: EXACT,
                })
                .collect();
            c.extend(
                (0..test.len())
                    .filter(|&i| test[i] != reference[j] && test_stems[i] == ref_stems[j])
                    .map(|i| Candidate {
                        test: i,
                        module: STEM,
                    }),
            );
            c
        })
        .collect();
    let mut remaining = vec![0; reference.len() + 1];
    for j in (0..reference.len()).rev() {
        remaining[j] = remaining[j + 1] + usize::from(!candidates[j].is_empty());
    }
    let mut search = Search {
        candidates: &candidates,
        remaining,
        used: vec![false; test.len()],
        pairs: Vec::new(),
        best: None,
        nodes: 0,
    };
    search.visit(0, 0, 0);
    let best = search
        .best
        .expect("the empty alignment is always reachable");

    let is_function = |w: &str| FUNCTION_WORDS.contains(&w);
    let mut stats = Stats {
        test_len: test.len() as f64,
        ref_len: reference.len() as f64,
        test_function: test.iter().filter(|w| is_function(w)).count() as f64,
        ref_function: reference.iter().filter(|w| is_function(w)).count() as f64,
        chunks: best.chunks as f64,
        test_matched: best.matched as f64,
        ref_matched: best.matched as f64,
        ..Stats::default()
    };
    for &(t, r, module) in &best.pairs {
        if is_function(test[t]) {
            stats.test_functional[module] += 1.0;
        } else {
            stats.test_content[module] += 1.0;
        }
        if is_function(reference[r]) {
            stats.ref_functional[module] += 1.0;
        } else {
            stats.ref_content[module] += 1.0;
        }
    }
    stats
}

/// Stems words with a per-corpus cache (the Snowball stemmer dominates the cost otherwise).
struct StemCache {
    stemmer: Stemmer,
    cache: HashMap<String, String>,
}

impl StemCache {
    fn stems(&mut self, words: &[&str]) -> Vec<String> {
        words
            .iter()
            .map(|w| {
                if let Some(s) = self.cache.get(*w) {
                    return s.clone();
                }
                let s = self.stemmer.stem(w).into_owned();
                self.cache.insert((*w).to_owned(), s.clone());
                s
            })
            .collect()
    }
}

/// METEOR of tokenised hypotheses against their references.
pub fn meteor(hyps: &[&str], refs: &[Vec<&str>]) -> MetricValues {
    let mut stems = StemCache {
        stemmer: Stemmer::create(Algorithm::English),
        cache: HashMap::new(),
    };
    let mut total = Stats::default();
    let mut per_image = Vec::with_capacity(hyps.len());
    for (hyp, rs) in hyps.iter().zip(refs) {
        let test: Vec<&str> = hyp.split_whitespace().collect();
        let test_stems = stems.stems(&test);
        let mut best: Option<(f64, Stats)> = None;
        for r in rs {
            let reference: Vec<&str> = r.split_whitespace().collect();
            let ref_stems = stems.stems(&reference);
            let stats = align(&test, &test_stems, &reference, &ref_stems);
            let score = stats.score();
            if best.as_ref().is_none_or(|(s, _)| score > *s) {
                best = Some((score, stats));
            }
        }
        let (score, stats) = best.expect("callers guarantee at least one reference");
        per_image.push(score);
        total.add(&stats);
    }
    MetricValues {
        corpus: total.score(),
        per_image,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_sentences_score_fmean_without_penalty() {
        let v = meteor(&["a dog runs"], &[vec!["a dog runs"]]);
        assert!((v.per_image[0] - 1.0).abs() < 1e-12);
    }

    #[test]
    fn stems_match_with_lower_weight() {
        let exact = meteor(&["dogs run"], &[vec!["dogs run"]]).per_image[0];
        let stem = meteor(&["dog running"], &[vec!["dogs run"]]).per_image[0];
        assert!(stem > 0.0 && stem < exact);
    }
}
