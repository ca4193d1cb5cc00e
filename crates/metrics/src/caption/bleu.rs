//! BLEU-1..4 as pycocoevalcap's `bleu_scorer.py` computes it with `option='closest'`: the
//! reference length of an image is the one closest to the hypothesis length (ties to the shorter),
//! clipped n-gram counts use the maximum count over the references, precisions carry the
//! scorer's constants (`tiny = 1e-15` added to matches, `small = 1e-9` to guesses), and the
//! brevity penalty `exp(1 - ref/hyp)` applies when the hypothesis is shorter. Image scores use the
//! image's statistics; the corpus score uses the sums over images.

use std::collections::HashMap;

use super::ngrams::{self, Interner, MAX_N};

const TINY: f64 = 1e-15;
const SMALL: f64 = 1e-9;

/// BLEU-n for n = 1..4: corpus values and per-image values (`per_image[n - 1][image]`).
#[derive(Debug, Clone, PartialEq)]
pub struct BleuValues {
    pub corpus: [f64; 4],
    pub per_image: [Vec<f64>; 4],
}

/// The statistics `cook_test` keeps for one image.
struct ImageStats {
    test_len: usize,
    ref_len: usize,
    guess: [usize; MAX_N],
    correct: [usize; MAX_N],
}

fn image_stats<'a>(interner: &mut Interner<'a>, hyp: &'a str, refs: &[&'a str]) -> ImageStats {
    let mut ref_lens = Vec::with_capacity(refs.len());
    let mut max_counts: HashMap<u128, u32> = HashMap::new();
    for r in refs {
        let words = interner.words(r);
        ref_lens.push(words.len());
        for (k, c) in ngrams::count(&words) {
            let m = max_counts.entry(k).or_insert(0);
            *m = (*m).max(c);
        }
    }
    let words = interner.words(hyp);
    let test_len = words.len();
    let ref_len = ref_lens
        .iter()
        .copied()
        .min_by_key(|&l| (l.abs_diff(test_len), l))
        .expect("callers guarantee at least one reference");
    let mut correct = [0; MAX_N];
    for (k, c) in ngrams::count(&words) {
        correct[ngrams::order(k) - 1] += c.min(max_counts.get(&k).copied().unwrap_or(0)) as usize;
    }
    ImageStats {
        test_len,
        ref_len,
        guess: std::array::from_fn(|k| (test_len + 1).saturating_sub(k + 1)),
        correct,
    }
}

/// BLEU-1..4 of `stats`, as `compute_score` does for one image and for the totals.
fn bleu_of(test_len: usize, ref_len: usize, guess: &[usize; 4], correct: &[usize; 4]) -> [f64; 4] {
    let mut product = 1.0;
    let mut scores = [0.0; 4];
    for k in 0..MAX_N {
        product *= (correct[k] as f64 + TINY) / (guess[k] as f64 + SMALL);
        scores[k] = product.powf(1.0 / (k + 1) as f64);
    }
    let ratio = (test_len as f64 + TINY) / (ref_len as f64 + SMALL);
    if ratio < 1.0 {
        for s in &mut scores {
            *s *= (1.0 - 1.0 / ratio).exp();
        }
    }
    scores
}

/// BLEU-1..4 of tokenised hypotheses against their references.
pub fn bleu(hyps: &[&str], refs: &[Vec<&str>]) -> BleuValues {
    let mut interner = Interner::default();
    let mut per_image: [Vec<f64>; 4] = std::array::from_fn(|_| Vec::with_capacity(hyps.len()));
    let (mut test_total, mut ref_total) = (0, 0);
    let (mut guess_total, mut correct_total) = ([0; MAX_N], [0; MAX_N]);
    for (hyp, rs) in hyps.iter().zip(refs) {
        let s = image_stats(&mut interner, hyp, rs);
        let scores = bleu_of(s.test_len, s.ref_len, &s.guess, &s.correct);
        for k in 0..MAX_N {
            per_image[k].push(scores[k]);
            guess_total[k] += s.guess[k];
            correct_total[k] += s.correct[k];
        }
        test_total += s.test_len;
        ref_total += s.ref_len;
    }
    BleuValues {
        corpus: bleu_of(test_total, ref_total, &guess_total, &correct_total),
        per_image,
    }
}
