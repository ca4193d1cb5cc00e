//! ROUGE-L as pycocoevalcap's `rouge.py` computes it: tokens from `split(" ")` (so an empty
//! caption is one empty token), LCS against each reference, the maximum precision and the
//! maximum recall over references (taken separately), F-measure with β = 1.2; the corpus value is
//! the mean of the image values.

use super::MetricValues;

const BETA: f64 = 1.2;

/// Length of the longest common subsequence.
fn lcs(a: &[&str], b: &[&str]) -> usize {
    let (long, short) = if a.len() >= b.len() { (a, b) } else { (b, a) };
    let mut row = vec![0usize; short.len() + 1];
    for x in long {
        let mut diagonal = 0;
        for (j, y) in short.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if x == y {
                diagonal + 1
            } else {
                above.max(row[j])
            };
            diagonal = above;
        }
    }
    row[short.len()]
}

/// ROUGE-L of one hypothesis against its references.
pub fn rouge_l_image(hyp: &str, refs: &[&str]) -> f64 {
    let candidate: Vec<&str> = hyp.split(' ').collect();
    let (mut prec_max, mut rec_max) = (0.0f64, 0.0f64);
    for r in refs {
        let reference: Vec<&str> = r.split(' ').collect();
        let l = lcs(&reference, &candidate) as f64;
        prec_max = prec_max.max(l / candidate.len() as f64);
        rec_max = rec_max.max(l / reference.len() as f64);
    }
    if prec_max != 0.0 && rec_max != 0.0 {
        ((1.0 + BETA * BETA) * prec_max * rec_max) / (rec_max + BETA * BETA * prec_max)
    } else {
        0.0
    }
}

/// ROUGE-L of tokenised hypotheses against their references.
pub fn rouge_l(hyps: &[&str], refs: &[Vec<&str>]) -> MetricValues {
    let per_image: Vec<f64> = hyps
        .iter()
        .zip(refs)
        .map(|(h, rs)| rouge_l_image(h, rs))
        .collect();
    MetricValues {
        corpus: crate::caption::cider::numpy_mean(&per_image),
        per_image,
    }
}

#[cfg(test)]
mod tests {
    use super::lcs;

    #[test]
    fn lcs_lengths() {
        assert_eq!(lcs(&["a", "b", "c", "d"], &["a", "c", "d", "b"]), 3);
        assert_eq!(lcs(&[""], &["a"]), 0);
        assert_eq!(lcs(&["x"], &[]), 0);
    }
}
