//! CIDEr-D as pycocoevalcap's `cider_scorer.py` computes it (σ = 6, n = 1..4):
//! * document frequencies count, for each n-gram, the images whose references contain it, so the
//!   IDF depends on the evaluated corpus; the weight of an n-gram is
//!   `tf * (ln(#images) - ln(max(1, df)))`;
//! * the similarity of hypothesis and reference vectors per n is
//!   `Σ min(h, r) * r / (|h| |r|)` (clipped), times the length penalty
//!   `e^(-δ² / (2σ²))` where δ is the difference of the *bigram* counts (the scorer's `length`
//!   only counts n = 2);
//! * an image scores `10 * mean_n(Σ_refs sim) / #refs`; the corpus value is their mean.

use std::collections::HashMap;

use super::MetricValues;
use super::ngrams::{self, Interner, MAX_N};

const SIGMA: f64 = 6.0;

/// tf-idf vector of one sentence: weights in n-gram order, per-n norms, bigram count.
struct TfIdf {
    weights: Vec<(u128, f64)>,
    norms: [f64; MAX_N],
    bigrams: u32,
}

fn tf_idf(counts: &[(u128, u32)], df: &HashMap<u128, f64>, log_images: f64) -> TfIdf {
    let mut squares = [0.0f64; MAX_N];
    let mut bigrams = 0;
    let weights = counts
        .iter()
        .map(|&(k, tf)| {
            let n = ngrams::order(k) - 1;
            let idf = df.get(&k).copied().unwrap_or(0.0).max(1.0).ln();
            let w = f64::from(tf) * (log_images - idf);
            squares[n] += w.powi(2);
            if n == 1 {
                bigrams += tf;
            }
            (k, w)
        })
        .collect();
    TfIdf {
        weights,
        norms: squares.map(f64::sqrt),
        bigrams,
    }
}

fn similarity(hyp: &TfIdf, reference: &TfIdf) -> [f64; MAX_N] {
    let ref_weight: HashMap<u128, f64> = reference.weights.iter().copied().collect();
    let delta = f64::from(hyp.bigrams) - f64::from(reference.bigrams);
    let penalty = std::f64::consts::E.powf(-(delta * delta) / (2.0 * SIGMA * SIGMA));
    let mut values = [0.0f64; MAX_N];
    for &(k, h) in &hyp.weights {
        let r = ref_weight.get(&k).copied().unwrap_or(0.0);
        values[ngrams::order(k) - 1] += h.min(r) * r;
    }
    for ((value, h), r) in values.iter_mut().zip(hyp.norms).zip(reference.norms) {
        if h != 0.0 && r != 0.0 {
            *value /= h * r;
        }
        *value *= penalty;
    }
    values
}

/// CIDEr-D of tokenised hypotheses against their references.
pub fn cider_d(hyps: &[&str], refs: &[Vec<&str>]) -> MetricValues {
    let mut interner = Interner::default();
    let ref_counts: Vec<Vec<Vec<(u128, u32)>>> = refs
        .iter()
        .map(|rs| {
            rs.iter()
                .map(|r| ngrams::count(&interner.words(r)))
                .collect()
        })
        .collect();
    let hyp_counts: Vec<Vec<(u128, u32)>> = hyps
        .iter()
        .map(|h| ngrams::count(&interner.words(h)))
        .collect();
    let mut df: HashMap<u128, f64> = HashMap::new();
    for image_refs in &ref_counts {
        let mut seen: Vec<u128> = image_refs.iter().flatten().map(|&(k, _)| k).collect();
        seen.sort_unstable();
        seen.dedup();
        for k in seen {
            *df.entry(k).or_insert(0.0) += 1.0;
        }
    }
    let log_images = (hyps.len() as f64).ln();
    let per_image: Vec<f64> = hyp_counts
        .iter()
        .zip(&ref_counts)
        .map(|(h, rs)| {
            let hyp = tf_idf(h, &df, log_images);
            let mut score = [0.0f64; MAX_N];
            for r in rs {
                let sim = similarity(&hyp, &tf_idf(r, &df, log_images));
                for n in 0..MAX_N {
                    score[n] += sim[n];
                }
            }
            numpy_mean(&score) / rs.len() as f64 * 10.0
        })
        .collect();
    MetricValues {
        corpus: numpy_mean(&per_image),
        per_image,
    }
}

/// `numpy.mean` of a float64 vector: numpy's pairwise summation divided by the length.
pub(crate) fn numpy_mean(values: &[f64]) -> f64 {
    pairwise_sum(values) / values.len() as f64
}

/// numpy's `pairwise_sum` for doubles (8-way unrolled blocks of up to 128 values).
fn pairwise_sum(a: &[f64]) -> f64 {
    const BLOCK: usize = 128;
    let n = a.len();
    if n < 8 {
        a.iter().fold(0.0, |acc, x| acc + x)
    } else if n <= BLOCK {
        let mut r: [f64; 8] = std::array::from_fn(|j| a[j]);
        let unrolled = n - n % 8;
        for i in (8..unrolled).step_by(8) {
            for j in 0..8 {
                r[j] += a[i + j];
            }
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for x in &a[unrolled..] {
            res += x;
        }
        res
    } else {
        let mut half = n / 2;
        half -= half % 8;
        pairwise_sum(&a[..half]) + pairwise_sum(&a[half..])
    }
}
