//! Shift analysis between two feature sets of the same samples, e.g. hidden states of an
//! original and a fine-tuned model (xl-vlms' `analyse_clusters` and `get_steering_vector`,
//! with their failure modes fixed):
//!
//! - [`shift_of_means`] and [`mean_of_shifts`]: one vector from source to target;
//! - [`concept_shifts`]: per-concept shifts — decompose the original features into concepts,
//!   associate every matched sample with one concept, aggregate the sample shifts of each
//!   concept, shift the concepts, decompose the fine-tuned features onto the shifted concepts,
//!   match the shifted concepts to concepts decomposed from the fine-tuned features, and
//!   measure how well the shift recovers them;
//! - [`concept_directions`]: the directions between the concepts of one decomposition;
//! - [`pca_of_differences`]: the first principal direction of the matched differences.
//!
//! Every vector points from source (original) to target (fine-tuned): it is added to the
//! source to move towards the target. Empty and one-sample concepts are reported, never NaN.

use std::collections::HashSet;
use std::hash::Hash;

use crate::error::{AnalysisError, Result};
use crate::matrix::Matrix;
use crate::pca::{self, PcaSolver};
use crate::{Decomposition, Method, cosine_similarity, decompose, kmeans, match_concepts};

/// A row of `source` paired with the row of `target` that holds the same sample.
pub type Pair = (usize, usize);

/// How a matched sample is given to one concept of the original decomposition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Association {
    /// The concept with the largest activation (xl-vlms' `concept_activation`).
    #[default]
    Activation,
    /// The concept with the largest cosine similarity to the sample.
    Cosine,
    /// The nearest concept in Euclidean distance.
    L2,
}

/// How the sample shifts of one concept become its shift vector.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Aggregation {
    Mean,
    /// Per coordinate; the mean of the two middle values for an even count (NumPy's median).
    Median,
    /// Per coordinate, after dropping `floor(cut * n)` values at each end (SciPy's
    /// `trim_mean(x, cut)`); `0 <= cut < 0.5`.
    TrimmedMean {
        cut: f64,
    },
}

/// Which concepts the Hungarian matching pairs with the fine-tuned concepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MatchBy {
    /// The shifted concepts: the fine-tuned concept a concept became.
    #[default]
    Shifted,
    /// The original concepts (xl-vlms' choice).
    Original,
}

/// Parameters of [`concept_shifts`].
#[derive(Debug, Clone, PartialEq)]
pub struct ConceptShiftParams {
    pub num_concepts: usize,
    /// Used for both the original and the fine-tuned decomposition.
    pub method: Method,
    pub seed: u64,
    pub association: Association,
    pub aggregation: Aggregation,
    pub match_by: MatchBy,
}

/// Statistics of the sample shifts `δ_i = target_i − source_i` of one concept, and of its
/// shift vector `Δ`. Values that need more samples than the concept has are `None`.
#[derive(Debug, Clone, PartialEq)]
pub struct ShiftStats {
    pub samples: usize,
    /// `‖Δ‖` (0 for an empty concept, whose shift is zero).
    pub shift_norm: f64,
    /// Mean and population standard deviation of `‖δ_i‖` (one sample or more).
    pub mean_sample_norm: Option<f64>,
    pub std_sample_norm: Option<f64>,
    /// Norm of the per-coordinate population standard deviation of the `δ_i`.
    pub std_vector_norm: Option<f64>,
    /// Shift consistency: mean of `cos(δ_i, δ_j)` over all pairs `i < j` (two samples or more;
    /// a zero shift has cosine 0 with everything).
    pub pair_cosine: Option<f64>,
    /// Mean of `δ_i · δ_j` over all pairs `i < j`.
    pub pair_dot: Option<f64>,
    /// Mean of `cos(δ_i, Δ)` and of `δ_i · Δ`, with `Δ` the concept's shift vector.
    pub mean_cosine_with_shift: Option<f64>,
    pub mean_dot_with_shift: Option<f64>,
}

/// How close the original and the shifted concept `k` are to the fine-tuned concept matched
/// to it, `u^b = finetuned[matching[k]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Recovery {
    pub finetuned_concept: usize,
    /// `‖u^b − u^a_k‖` and `‖u^b − u^s_k‖`.
    pub distance_original: f64,
    pub distance_shifted: f64,
    /// `distance_original − distance_shifted`: positive when the shift moved the concept closer.
    pub improved_distance: f64,
    /// `improved_distance / distance_original`; `None` when the original distance is 0.
    pub normalized_improved_distance: Option<f64>,
    /// `cos(u^b, u^a_k)` and `cos(u^b, u^s_k)`.
    pub cosine_original: f64,
    pub cosine_shifted: f64,
    /// `cosine_shifted − cosine_original`.
    pub improved_cosine: f64,
    /// `improved_cosine / |cosine_original|` (xl-vlms divided by the signed cosine, which flips
    /// the sign of the improvement when the original cosine is negative); `None` when it is 0.
    pub normalized_improved_cosine: Option<f64>,
}

/// The result of [`concept_shifts`]. Concepts are indexed by the original decomposition.
#[derive(Debug, Clone, PartialEq)]
pub struct ConceptShiftAnalysis {
    /// Decomposition of every source row.
    pub original: Decomposition,
    /// Independent decomposition of every target row (same method, `k` and seed).
    pub finetuned: Decomposition,
    /// The concept each pair was given to, in the order of the pairs.
    pub assignment: Vec<usize>,
    /// `k x cols`: the shift vector `Δ_k` of each concept (zero for an empty concept).
    pub shifts: Matrix,
    /// `k x cols`: `u^s_k = u^a_k + Δ_k`.
    pub shifted_concepts: Matrix,
    /// `target.rows x k`: the target rows decomposed onto the fixed shifted concepts (the
    /// original model with its concepts replaced, see [`crate::Model::with_concepts`]).
    pub shifted_activations: Matrix,
    /// `matching[k]`: the fine-tuned concept matched to concept `k` (see [`MatchBy`]).
    pub matching: Vec<usize>,
    pub stats: Vec<ShiftStats>,
    pub recovery: Vec<Recovery>,
}

impl ConceptShiftAnalysis {
    /// Concepts with no associated sample (their shift is zero and stay where they were).
    pub fn empty_concepts(&self) -> Vec<usize> {
        self.concepts_with(|n| n == 0)
    }

    /// Concepts with exactly one associated sample (no pair statistics).
    pub fn singleton_concepts(&self) -> Vec<usize> {
        self.concepts_with(|n| n == 1)
    }

    fn concepts_with(&self, keep: impl Fn(usize) -> bool) -> Vec<usize> {
        (0..self.stats.len())
            .filter(|&k| keep(self.stats[k].samples))
            .collect()
    }
}

/// `mean(target) − mean(source)` (f64 accumulation): the two sets need not share samples.
pub fn shift_of_means(source: &Matrix, target: &Matrix) -> Result<Vec<f32>> {
    check_pair_of_sets(source, target)?;
    let (ms, mt) = (column_means(source), column_means(target));
    Ok(mt.iter().zip(&ms).map(|(t, s)| (t - s) as f32).collect())
}

/// Mean over the pairs of `target[j] − source[i]`.
pub fn mean_of_shifts(source: &Matrix, target: &Matrix, pairs: &[Pair]) -> Result<Vec<f32>> {
    check_pairs(source, target, pairs)?;
    let d = source.cols;
    let mut acc = vec![0f64; d];
    for &(i, j) in pairs {
        for ((a, &t), &s) in acc.iter_mut().zip(target.row(j)).zip(source.row(i)) {
            *a += f64::from(t) - f64::from(s);
        }
    }
    let n = pairs.len() as f64;
    Ok(acc.iter().map(|a| (a / n) as f32).collect())
}

/// Per-concept shift analysis (xl-vlms' `analyse_clusters`). `source` holds the original
/// features, `target` the fine-tuned ones; `pairs` says which rows hold the same sample.
/// Each decomposition uses all rows of its set; association and shifts use the pairs.
pub fn concept_shifts(
    source: &Matrix,
    target: &Matrix,
    pairs: &[Pair],
    p: &ConceptShiftParams,
) -> Result<ConceptShiftAnalysis> {
    check_pairs(source, target, pairs)?;
    if let Aggregation::TrimmedMean { cut } = p.aggregation
        && !(0.0..0.5).contains(&cut)
    {
        return Err(AnalysisError::InvalidParameter {
            name: "trim",
            value: cut.to_string(),
            expected: "a fraction cut from each end, 0 <= trim < 0.5",
        });
    }
    let k = p.num_concepts;
    let original = decompose(source, k, &p.method, p.seed)?;
    let finetuned = decompose(target, k, &p.method, p.seed)?;
    let concepts = &original.concepts;
    let d = source.cols;

    let assignment = associate(source, pairs, &original, p.association)?;
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); concepts.rows];
    for (pair, &c) in assignment.iter().enumerate() {
        members[c].push(pair);
    }

    let mut shifts = Matrix::zeros(concepts.rows, d);
    let mut stats = Vec::with_capacity(concepts.rows);
    for (c, idx) in members.iter().enumerate() {
        let deltas = Deltas {
            source,
            target,
            pairs: idx.iter().map(|&q| pairs[q]).collect(),
        };
        let shift = aggregate(&deltas, p.aggregation);
        stats.push(shift_stats(&deltas, &shift));
        for (o, v) in shifts.data[c * d..(c + 1) * d].iter_mut().zip(&shift) {
            *o = *v as f32;
        }
    }

    let mut shifted_concepts = concepts.clone();
    for (u, s) in shifted_concepts.data.iter_mut().zip(&shifts.data) {
        *u += s;
    }
    let shifted_activations = original
        .model
        .with_concepts(shifted_concepts.clone())?
        .transform(target)?;
    let matching = match p.match_by {
        MatchBy::Shifted => match_concepts(&shifted_concepts, &finetuned.concepts)?,
        MatchBy::Original => match_concepts(concepts, &finetuned.concepts)?,
    };
    let recovery = (0..concepts.rows)
        .map(|c| {
            recovery(
                concepts.row(c),
                shifted_concepts.row(c),
                finetuned.concepts.row(matching[c]),
                matching[c],
            )
        })
        .collect();
    Ok(ConceptShiftAnalysis {
        original,
        finetuned,
        assignment,
        shifts,
        shifted_concepts,
        shifted_activations,
        matching,
        stats,
        recovery,
    })
}

/// The concept of each paired source row.
fn associate(
    source: &Matrix,
    pairs: &[Pair],
    original: &Decomposition,
    how: Association,
) -> Result<Vec<usize>> {
    let rows: Vec<usize> = pairs.iter().map(|&(i, _)| i).collect();
    let concepts = &original.concepts;
    let scores = match how {
        Association::Activation => {
            let a = &original.activations;
            rows.iter().map(|&i| a.row(i).to_vec()).collect::<Vec<_>>()
        }
        Association::Cosine | Association::L2 => {
            let paired = select_rows(source, &rows);
            let m = match how {
                Association::Cosine => cosine_similarity(&paired, concepts)?,
                // Negated distances, so that the largest score wins in every case.
                _ => {
                    let mut dist = kmeans::euclidean_distances(&paired, concepts);
                    dist.data.iter_mut().for_each(|v| *v = -*v);
                    dist
                }
            };
            (0..m.rows).map(|r| m.row(r).to_vec()).collect()
        }
    };
    // Ties go to the lowest concept index, as NumPy's argmax.
    Ok(scores
        .iter()
        .map(|s| {
            s.iter()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |best, (c, &v)| {
                    if v > best.1 { (c, v) } else { best }
                })
                .0
        })
        .collect())
}

/// The shifts `target[j] − source[i]` of some pairs, computed when read: a concept may hold
/// tens of thousands of samples of thousands of dimensions, too many to copy in f64.
struct Deltas<'a> {
    source: &'a Matrix,
    target: &'a Matrix,
    pairs: Vec<Pair>,
}

impl Deltas<'_> {
    fn len(&self) -> usize {
        self.pairs.len()
    }

    fn cols(&self) -> usize {
        self.source.cols
    }

    /// Columns `from..from + out.len()` of shift `q`.
    fn read(&self, q: usize, from: usize, out: &mut [f64]) {
        let (i, j) = self.pairs[q];
        let to = from + out.len();
        let (t, s) = (&self.target.row(j)[from..to], &self.source.row(i)[from..to]);
        for ((o, &t), &s) in out.iter_mut().zip(t).zip(s) {
            *o = f64::from(t) - f64::from(s);
        }
    }
}

/// Columns per block of the median and trimmed mean: the block of every shift (`n x 64` f64)
/// stays small while each source and target row is read in contiguous pieces.
const COLUMN_BLOCK: usize = 64;

fn aggregate(deltas: &Deltas<'_>, how: Aggregation) -> Vec<f64> {
    let (n, d) = (deltas.len(), deltas.cols());
    let mut out = vec![0f64; d];
    if n == 0 {
        return out;
    }
    let cut = match how {
        Aggregation::Mean => {
            let mut row = vec![0f64; d];
            for q in 0..n {
                deltas.read(q, 0, &mut row);
                out.iter_mut().zip(&row).for_each(|(a, v)| *a += v);
            }
            out.iter_mut().for_each(|a| *a /= n as f64);
            return out;
        }
        Aggregation::Median => None,
        Aggregation::TrimmedMean { cut } => Some(cut),
    };
    let mut block = vec![0f64; n * COLUMN_BLOCK];
    let mut column = vec![0f64; n];
    for from in (0..d).step_by(COLUMN_BLOCK) {
        let w = COLUMN_BLOCK.min(d - from);
        for q in 0..n {
            deltas.read(q, from, &mut block[q * w..(q + 1) * w]);
        }
        for (c, o) in out[from..from + w].iter_mut().enumerate() {
            column
                .iter_mut()
                .enumerate()
                .for_each(|(q, v)| *v = block[q * w + c]);
            column.sort_unstable_by(f64::total_cmp);
            *o = match cut {
                None if n % 2 == 1 => column[n / 2],
                None => 0.5 * (column[n / 2 - 1] + column[n / 2]),
                Some(cut) => {
                    let drop = (cut * n as f64).floor() as usize;
                    let kept = &column[drop..n - drop];
                    kept.iter().sum::<f64>() / kept.len() as f64
                }
            };
        }
    }
    out
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let den = norm(a) * norm(b);
    if den > 0.0 { dot(a, b) / den } else { 0.0 }
}

/// Statistics of one concept, in one pass over its shifts. Pair means use
/// `Σ_{i<j} x_i·x_j = (‖Σx‖² − Σ‖x‖²) / 2`, exact and linear in the number of samples.
fn shift_stats(deltas: &Deltas<'_>, shift: &[f64]) -> ShiftStats {
    let (n, d) = (deltas.len(), deltas.cols());
    let shift_norm = norm(shift);
    if n == 0 {
        return ShiftStats {
            samples: 0,
            shift_norm,
            mean_sample_norm: None,
            std_sample_norm: None,
            std_vector_norm: None,
            pair_cosine: None,
            pair_dot: None,
            mean_cosine_with_shift: None,
            mean_dot_with_shift: None,
        };
    }
    let nf = n as f64;
    let mut row = vec![0f64; d];
    let (mut sum, mut sum_sq, mut unit_sum) = (vec![0f64; d], vec![0f64; d], vec![0f64; d]);
    let mut norms = Vec::with_capacity(n);
    let (mut units_sq, mut cos_with, mut dot_with) = (0f64, 0f64, 0f64);
    for q in 0..n {
        deltas.read(q, 0, &mut row);
        let l = norm(&row);
        norms.push(l);
        let inv = if l > 0.0 { 1.0 / l } else { 0.0 };
        units_sq += if l > 0.0 { 1.0 } else { 0.0 };
        for (c, &v) in row.iter().enumerate() {
            sum[c] += v;
            sum_sq[c] += v * v;
            unit_sum[c] += v * inv;
        }
        cos_with += cosine(&row, shift);
        dot_with += dot(&row, shift);
    }
    let mean_norm = norms.iter().sum::<f64>() / nf;
    let std_norm = (norms.iter().map(|v| (v - mean_norm).powi(2)).sum::<f64>() / nf).sqrt();
    let var_sum: f64 = sum
        .iter()
        .zip(&sum_sq)
        .map(|(s, s2)| (s2 / nf - (s / nf).powi(2)).max(0.0))
        .sum();
    let (pair_cosine, pair_dot) = if n >= 2 {
        let pairs = nf * (nf - 1.0);
        let sq: f64 = norms.iter().map(|l| l * l).sum();
        (
            Some((dot(&unit_sum, &unit_sum) - units_sq) / pairs),
            Some((dot(&sum, &sum) - sq) / pairs),
        )
    } else {
        (None, None)
    };
    ShiftStats {
        samples: n,
        shift_norm,
        mean_sample_norm: Some(mean_norm),
        std_sample_norm: Some(std_norm),
        std_vector_norm: Some(var_sum.sqrt()),
        pair_cosine,
        pair_dot,
        mean_cosine_with_shift: Some(cos_with / nf),
        mean_dot_with_shift: Some(dot_with / nf),
    }
}

fn recovery(original: &[f32], shifted: &[f32], finetuned: &[f32], matched: usize) -> Recovery {
    let wide = |r: &[f32]| r.iter().map(|&v| f64::from(v)).collect::<Vec<f64>>();
    let (a, s, b) = (wide(original), wide(shifted), wide(finetuned));
    let dist = |x: &[f64]| {
        x.iter()
            .zip(&b)
            .map(|(u, v)| (u - v).powi(2))
            .sum::<f64>()
            .sqrt()
    };
    let (d_o, d_s) = (dist(&a), dist(&s));
    let (c_o, c_s) = (cosine(&a, &b), cosine(&s, &b));
    Recovery {
        finetuned_concept: matched,
        distance_original: d_o,
        distance_shifted: d_s,
        improved_distance: d_o - d_s,
        normalized_improved_distance: (d_o > 0.0).then(|| (d_o - d_s) / d_o),
        cosine_original: c_o,
        cosine_shifted: c_s,
        improved_cosine: c_s - c_o,
        normalized_improved_cosine: (c_o != 0.0).then(|| (c_s - c_o) / c_o.abs()),
    }
}

/// Overlap of the fine-tuned concept's set with the original and the shifted concept's sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overlap {
    pub original: usize,
    pub shifted: usize,
}

/// Word or most-activating-sample overlaps (xl-vlms' `word_intersection_*` and
/// `mas_intersection_*`): for each concept `k`, the number of distinct items the fine-tuned
/// concept `matching[k]` shares with the original and with the shifted concept `k`.
pub fn recovery_overlaps<T: Eq + Hash>(
    original: &[Vec<T>],
    shifted: &[Vec<T>],
    finetuned: &[Vec<T>],
    matching: &[usize],
) -> Result<Vec<Overlap>> {
    if original.len() != matching.len() || shifted.len() != matching.len() {
        return Err(AnalysisError::InvalidParameter {
            name: "overlap sets",
            value: format!(
                "{} original and {} shifted sets for {} matched concepts",
                original.len(),
                shifted.len(),
                matching.len()
            ),
            expected: "one original and one shifted set per matched concept",
        });
    }
    if let Some(&m) = matching.iter().find(|&&m| m >= finetuned.len()) {
        return Err(AnalysisError::InvalidParameter {
            name: "matching",
            value: m.to_string(),
            expected: "an index into the fine-tuned sets",
        });
    }
    let common =
        |a: &[T], b: &HashSet<&T>| a.iter().collect::<HashSet<_>>().intersection(b).count();
    Ok(matching
        .iter()
        .enumerate()
        .map(|(k, &m)| {
            let target: HashSet<&T> = finetuned[m].iter().collect();
            Overlap {
                original: common(&original[k], &target),
                shifted: common(&shifted[k], &target),
            }
        })
        .collect())
}

/// The directions between concepts: for every ordered pair `from != to`, `c_to − c_from`, the
/// vector that moves concept `from` onto concept `to` (xl-vlms named `c_i − c_j`
/// `concept_i_to_j`, which moves `j` to `i`). Rows are ordered by `from`, then `to`.
pub fn concept_directions(concepts: &Matrix) -> Result<(Vec<(usize, usize)>, Matrix)> {
    concepts.validate("concepts")?;
    let (k, d) = (concepts.rows, concepts.cols);
    let pairs: Vec<(usize, usize)> = (0..k)
        .flat_map(|i| (0..k).filter(move |&j| j != i).map(move |j| (i, j)))
        .collect();
    let mut out = Matrix::zeros(pairs.len(), d);
    for (r, &(from, to)) in pairs.iter().enumerate() {
        let row = &mut out.data[r * d..(r + 1) * d];
        for ((o, &t), &f) in row.iter_mut().zip(concepts.row(to)).zip(concepts.row(from)) {
            *o = t - f;
        }
    }
    Ok((pairs, out))
}

/// How the sign of a principal direction was fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignRule {
    /// Positive dot product with the mean difference: the direction points from source to
    /// target.
    MeanDifference,
    /// The mean difference is orthogonal to the direction (no source-to-target side): the
    /// largest-magnitude coordinate is positive, as scikit-learn's `svd_flip`.
    LargestCoordinate,
}

/// The first principal direction of the matched differences.
#[derive(Debug, Clone, PartialEq)]
pub struct PrincipalShift {
    /// Unit norm, signed by `sign_rule`.
    pub direction: Vec<f32>,
    pub sign_rule: SignRule,
    pub samples: usize,
    /// Variance of the differences along the direction, and its share of their total variance.
    pub explained_variance: f64,
    pub explained_variance_ratio: f64,
    /// `direction · mean difference` (≥ 0): `alpha` equal to it moves a source row by the
    /// component of the mean shift along the direction.
    pub mean_projection: f64,
    /// Share of the differences whose projection on the direction is positive.
    pub positive_fraction: f64,
}

/// First principal direction of the centred differences `target[j] − source[i]` over the
/// pairs (as representation reading over paired activations), signed to point from source
/// to target. Needs two pairs or more whose differences are not all equal.
pub fn pca_of_differences(
    source: &Matrix,
    target: &Matrix,
    pairs: &[Pair],
    solver: PcaSolver,
    seed: u64,
) -> Result<PrincipalShift> {
    check_pairs(source, target, pairs)?;
    let d = source.cols;
    let mut diffs = Matrix::zeros(pairs.len(), d);
    for (r, &(i, j)) in pairs.iter().enumerate() {
        let row = &mut diffs.data[r * d..(r + 1) * d];
        for ((o, &t), &s) in row.iter_mut().zip(target.row(j)).zip(source.row(i)) {
            *o = t - s;
        }
    }
    let mean = column_means(&diffs);
    let spread: f64 = (0..pairs.len())
        .map(|r| {
            diffs
                .row(r)
                .iter()
                .zip(&mean)
                .map(|(&v, m)| (f64::from(v) - m).powi(2))
                .sum::<f64>()
        })
        .sum();
    if pairs.len() < 2 || spread == 0.0 {
        return Err(AnalysisError::InvalidParameter {
            name: "differences",
            value: format!("{} matched samples with no spread", pairs.len()),
            expected: "at least two differences that are not all equal (otherwise the principal \
                       direction is undefined; use the mean of shifts)",
        });
    }
    let model = pca::fit(&diffs, 1, solver, seed)?;
    let mut direction: Vec<f64> = model
        .components
        .row(0)
        .iter()
        .map(|&v| f64::from(v))
        .collect();
    let along = dot(&direction, &mean);
    let sign_rule = if along != 0.0 {
        if along < 0.0 {
            direction.iter_mut().for_each(|v| *v = -*v);
        }
        SignRule::MeanDifference
    } else {
        // pca::fit already made the largest-magnitude coordinate positive.
        SignRule::LargestCoordinate
    };
    let positive = (0..pairs.len())
        .filter(|&r| {
            let row: Vec<f64> = diffs.row(r).iter().map(|&v| f64::from(v)).collect();
            dot(&row, &direction) > 0.0
        })
        .count();
    Ok(PrincipalShift {
        direction: direction.iter().map(|&v| v as f32).collect(),
        sign_rule,
        samples: pairs.len(),
        explained_variance: model.explained_variance[0],
        explained_variance_ratio: model.explained_variance_ratio[0],
        mean_projection: along.abs(),
        positive_fraction: positive as f64 / pairs.len() as f64,
    })
}

fn column_means(x: &Matrix) -> Vec<f64> {
    let mut acc = vec![0f64; x.cols];
    for r in 0..x.rows {
        acc.iter_mut()
            .zip(x.row(r))
            .for_each(|(a, &v)| *a += f64::from(v));
    }
    acc.iter_mut().for_each(|a| *a /= x.rows as f64);
    acc
}

fn select_rows(x: &Matrix, rows: &[usize]) -> Matrix {
    let mut data = Vec::with_capacity(rows.len() * x.cols);
    for &r in rows {
        data.extend_from_slice(x.row(r));
    }
    Matrix {
        rows: rows.len(),
        cols: x.cols,
        data,
    }
}

fn check_pair_of_sets(source: &Matrix, target: &Matrix) -> Result<()> {
    source.validate("shift source")?;
    target.validate_width("shift target", source.cols)
}

fn check_pairs(source: &Matrix, target: &Matrix, pairs: &[Pair]) -> Result<()> {
    check_pair_of_sets(source, target)?;
    if pairs.is_empty() {
        return Err(AnalysisError::InvalidParameter {
            name: "pairs",
            value: "none".to_string(),
            expected: "at least one sample present in both sets",
        });
    }
    if let Some(&(i, j)) = pairs
        .iter()
        .find(|&&(i, j)| i >= source.rows || j >= target.rows)
    {
        return Err(AnalysisError::InvalidParameter {
            name: "pairs",
            value: format!("({i}, {j})"),
            expected: "row indices within the source and the target",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KMeansParams;

    /// Small deterministic noise in [-0.05, 0.05].
    fn noise(i: usize, c: usize) -> f32 {
        ((i * 7919 + c * 104_729) as f32).sin() * 0.05
    }

    /// `per` noisy samples around each centre; the target adds the cluster's planted shift to
    /// every one of its samples. Returns (source, target, cluster of each row).
    fn planted(
        centres: &[Vec<f32>],
        shifts: &[Vec<f32>],
        per: usize,
    ) -> (Matrix, Matrix, Vec<usize>) {
        let d = centres[0].len();
        let (mut s, mut t, mut labels) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..per {
            for (c, (centre, shift)) in centres.iter().zip(shifts).enumerate() {
                let row: Vec<f32> = (0..d)
                    .map(|j| centre[j] + noise(i * centres.len() + c, j))
                    .collect();
                t.extend(row.iter().zip(shift).map(|(a, b)| a + b));
                s.extend(row);
                labels.push(c);
            }
        }
        let n = labels.len();
        (
            Matrix::new(n, d, s).unwrap(),
            Matrix::new(n, d, t).unwrap(),
            labels,
        )
    }

    fn kmeans() -> Method {
        Method::KMeans(KMeansParams {
            n_init: 4,
            ..KMeansParams::default()
        })
    }

    fn params(
        k: usize,
        association: Association,
        aggregation: Aggregation,
        match_by: MatchBy,
    ) -> ConceptShiftParams {
        ConceptShiftParams {
            num_concepts: k,
            method: kmeans(),
            seed: 3,
            association,
            aggregation,
            match_by,
        }
    }

    fn close(a: &[f32], b: &[f32], tol: f32) -> bool {
        a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol)
    }

    fn identity_pairs(n: usize) -> Vec<Pair> {
        (0..n).map(|i| (i, i)).collect()
    }

    // Concept 0 moves onto the direction of concept 1 and concept 1 onto a new axis, so matching
    // the original concepts by cosine pairs them with the wrong fine-tuned concepts, while
    // matching the shifted ones pairs them right.
    fn planted_world() -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
        let centres = vec![
            vec![10.0, 0.0, 0.0, 0.0],
            vec![0.0, 10.0, 0.0, 0.0],
            vec![0.0, 0.0, 0.0, 10.0],
        ];
        let shifts = vec![
            vec![-10.0, 10.0, 5.0, 0.0],
            vec![0.0, -10.0, 10.0, 0.0],
            vec![0.0, 0.0, 0.0, 0.0],
        ];
        (centres, shifts)
    }

    #[test]
    fn planted_shifts_are_recovered_for_every_association_and_aggregation() {
        let (centres, shifts) = planted_world();
        let (source, target, labels) = planted(&centres, &shifts, 15);
        let pairs = identity_pairs(labels.len());
        for association in [
            Association::Activation,
            Association::Cosine,
            Association::L2,
        ] {
            for aggregation in [
                Aggregation::Mean,
                Aggregation::Median,
                Aggregation::TrimmedMean { cut: 0.1 },
            ] {
                let p = params(3, association, aggregation, MatchBy::Shifted);
                let a = concept_shifts(&source, &target, &pairs, &p).unwrap();
                for (c, planted_shift) in shifts.iter().enumerate() {
                    // The concept that holds planted cluster c.
                    let k = a.assignment[labels.iter().position(|&l| l == c).unwrap()];
                    assert!(
                        labels
                            .iter()
                            .zip(&a.assignment)
                            .all(|(&l, &g)| (l == c) == (g == k)),
                        "{association:?}: cluster {c} split"
                    );
                    assert!(
                        close(a.shifts.row(k), planted_shift, 1e-4),
                        "{association:?} {aggregation:?}: {:?}",
                        a.shifts.row(k)
                    );
                    let st = &a.stats[k];
                    assert_eq!(st.samples, 15);
                    let r = &a.recovery[k];
                    assert!(r.distance_shifted < 0.05, "{r:?}");
                    let planted_norm = planted_shift
                        .iter()
                        .map(|v| f64::from(*v).powi(2))
                        .sum::<f64>()
                        .sqrt();
                    assert!((r.improved_distance - planted_norm).abs() < 0.05, "{r:?}");
                    assert!(r.cosine_shifted > 0.9999);
                    if planted_norm > 0.0 {
                        // Identical sample shifts: perfectly consistent.
                        assert!((st.pair_cosine.unwrap() - 1.0).abs() < 1e-9);
                        assert!((st.mean_cosine_with_shift.unwrap() - 1.0).abs() < 1e-9);
                        assert!(st.std_vector_norm.unwrap() < 1e-5);
                        assert!((st.shift_norm - planted_norm).abs() < 1e-4);
                    }
                    assert!(close(
                        a.finetuned.concepts.row(a.matching[k]),
                        a.shifted_concepts.row(k),
                        0.05
                    ));
                }
                // The target decomposed onto the shifted concepts: each target row is nearest
                // to its own shifted concept (k-means activations are 1 / (1 + distance)).
                for (r, &g) in a.assignment.iter().enumerate() {
                    let row = a.shifted_activations.row(r);
                    let best = (0..3).max_by(|&x, &y| row[x].total_cmp(&row[y])).unwrap();
                    assert_eq!(best, g);
                }
                assert!(a.empty_concepts().is_empty() && a.singleton_concepts().is_empty());
            }
        }
    }

    #[test]
    fn matching_by_original_concepts_reproduces_the_seeds_pairing() {
        let (centres, shifts) = planted_world();
        let (source, target, labels) = planted(&centres, &shifts, 15);
        let pairs = identity_pairs(labels.len());
        let by = |m| {
            concept_shifts(
                &source,
                &target,
                &pairs,
                &params(3, Association::Activation, Aggregation::Mean, m),
            )
            .unwrap()
        };
        let (shifted, original) = (by(MatchBy::Shifted), by(MatchBy::Original));
        let k0 = shifted.assignment[labels.iter().position(|&l| l == 0).unwrap()];
        // Concept 0 (on axis 0) is orthogonal to both moved fine-tuned concepts; by original
        // cosines, concept 1 takes the fine-tuned concept that concept 0 became.
        assert_ne!(shifted.matching[k0], original.matching[k0]);
        assert!(original.recovery[k0].distance_shifted > 5.0);
        assert!(shifted.recovery[k0].distance_shifted < 0.05);
    }

    /// Source rows of zeros and target rows `rows`: the shifts are the rows.
    fn as_sets(rows: &[Vec<f64>]) -> (Matrix, Matrix) {
        let d = rows[0].len();
        let t: Vec<f32> = rows.iter().flatten().map(|&v| v as f32).collect();
        (
            Matrix::zeros(rows.len(), d),
            Matrix::new(rows.len(), d, t).unwrap(),
        )
    }

    fn shifts_of<'a>(s: &'a Matrix, t: &'a Matrix) -> Deltas<'a> {
        Deltas {
            source: s,
            target: t,
            pairs: identity_pairs(s.rows),
        }
    }

    #[test]
    fn pair_statistics_match_brute_force() {
        let rows = vec![
            vec![1.0, 0.0, 2.0],
            vec![0.0, 1.0, -1.0],
            vec![1.0, 1.0, 0.0],
            vec![0.0, 0.0, 0.0],
        ];
        let (s, t) = as_sets(&rows);
        let deltas = shifts_of(&s, &t);
        let shift = aggregate(&deltas, Aggregation::Mean);
        let st = shift_stats(&deltas, &shift);
        let (mut cos, mut dots, mut pairs) = (0.0, 0.0, 0.0);
        for i in 0..4 {
            for j in 0..i {
                cos += cosine(&rows[i], &rows[j]);
                dots += dot(&rows[i], &rows[j]);
                pairs += 1.0;
            }
        }
        assert!((st.pair_cosine.unwrap() - cos / pairs).abs() < 1e-12);
        assert!((st.pair_dot.unwrap() - dots / pairs).abs() < 1e-12);
        let norms: Vec<f64> = rows.iter().map(|r| norm(r)).collect();
        let mean_norm = norms.iter().sum::<f64>() / 4.0;
        assert!((st.mean_sample_norm.unwrap() - mean_norm).abs() < 1e-12);
        let std_norm = (norms.iter().map(|l| (l - mean_norm).powi(2)).sum::<f64>() / 4.0).sqrt();
        assert!((st.std_sample_norm.unwrap() - std_norm).abs() < 1e-12);
        let var: f64 = (0..3)
            .map(|c| rows.iter().map(|r| (r[c] - shift[c]).powi(2)).sum::<f64>() / 4.0)
            .sum();
        assert!((st.std_vector_norm.unwrap() - var.sqrt()).abs() < 1e-12);
        let with_mean: f64 = rows.iter().map(|r| cosine(r, &shift)).sum::<f64>() / 4.0;
        assert!((st.mean_cosine_with_shift.unwrap() - with_mean).abs() < 1e-12);
        let dot_mean: f64 = rows.iter().map(|r| dot(r, &shift)).sum::<f64>() / 4.0;
        assert!((st.mean_dot_with_shift.unwrap() - dot_mean).abs() < 1e-12);
        assert!((st.shift_norm - norm(&[0.5, 0.5, 0.25])).abs() < 1e-12);
    }

    #[test]
    fn median_and_trimmed_mean_follow_numpy_and_scipy() {
        let rows: Vec<Vec<f64>> = [1.0, 100.0, 3.0, 2.0]
            .iter()
            .map(|&v| vec![v, -v])
            .collect();
        let (s, t) = as_sets(&rows);
        let deltas = shifts_of(&s, &t);
        assert_eq!(aggregate(&deltas, Aggregation::Median), vec![2.5, -2.5]);
        // trim_mean([1, 2, 3, 100], 0.25) drops one value at each end.
        assert_eq!(
            aggregate(&deltas, Aggregation::TrimmedMean { cut: 0.25 }),
            vec![2.5, -2.5]
        );
        // floor(0.1 * 4) = 0: nothing dropped.
        assert_eq!(
            aggregate(&deltas, Aggregation::TrimmedMean { cut: 0.1 }),
            vec![26.5, -26.5]
        );
        let odd: Vec<Vec<f64>> = [5.0, 1.0, 3.0].iter().map(|&v| vec![v]).collect();
        let (s, t) = as_sets(&odd);
        assert_eq!(
            aggregate(&shifts_of(&s, &t), Aggregation::Median),
            vec![3.0]
        );
        let (s, t, _) = planted(&[vec![1.0]], &[vec![1.0]], 3);
        let bad = params(
            1,
            Association::Activation,
            Aggregation::TrimmedMean { cut: 0.5 },
            MatchBy::Shifted,
        );
        assert!(matches!(
            concept_shifts(&s, &t, &identity_pairs(3), &bad),
            Err(AnalysisError::InvalidParameter { name: "trim", .. })
        ));
    }

    #[test]
    fn blocked_median_and_trimmed_mean_match_per_column_ones() {
        // More columns than one block, and a block that is cut short.
        let (n, d) = (7, 2 * COLUMN_BLOCK + 5);
        let rows: Vec<Vec<f64>> = (0..n)
            .map(|i| {
                (0..d)
                    .map(|c| f64::from(noise(i, c) * 40.0).round())
                    .collect()
            })
            .collect();
        let (s, t) = as_sets(&rows);
        let deltas = shifts_of(&s, &t);
        let median = aggregate(&deltas, Aggregation::Median);
        let trimmed = aggregate(&deltas, Aggregation::TrimmedMean { cut: 0.3 });
        for c in 0..d {
            let mut col: Vec<f64> = rows.iter().map(|r| r[c]).collect();
            col.sort_by(f64::total_cmp);
            assert_eq!(median[c], col[3], "column {c}");
            // floor(0.3 * 7) = 2 values dropped at each end.
            assert_eq!(
                trimmed[c],
                col[2..5].iter().sum::<f64>() / 3.0,
                "column {c}"
            );
        }
    }

    #[test]
    fn every_decomposition_gives_mean_shifts_of_its_assigned_samples() {
        let (centres, shifts) = planted_world();
        let (source, target, labels) = planted(&centres, &shifts, 6);
        let pairs = identity_pairs(labels.len());
        let methods = [
            Method::Pca {
                solver: PcaSolver::Exact,
            },
            kmeans(),
            Method::Snmf(crate::SnmfParams::default()),
            Method::SemiNmf(crate::SemiNmfParams::default()),
            Method::Simple,
        ];
        for method in methods {
            let p = ConceptShiftParams {
                method: method.clone(),
                ..params(
                    3,
                    Association::Activation,
                    Aggregation::Mean,
                    MatchBy::Shifted,
                )
            };
            let a = concept_shifts(&source, &target, &pairs, &p).unwrap();
            for k in 0..3 {
                let members: Vec<usize> =
                    (0..pairs.len()).filter(|&q| a.assignment[q] == k).collect();
                assert_eq!(a.stats[k].samples, members.len(), "{method:?}");
                for c in 0..4 {
                    let mean = if members.is_empty() {
                        0.0
                    } else {
                        members
                            .iter()
                            .map(|&q| target.get(q, c) - source.get(q, c))
                            .sum::<f32>()
                            / members.len() as f32
                    };
                    assert!((a.shifts.get(k, c) - mean).abs() < 1e-4, "{method:?}");
                    let moved = a.original.concepts.get(k, c) + a.shifts.get(k, c);
                    assert!((a.shifted_concepts.get(k, c) - moved).abs() < 1e-5);
                }
            }
            assert_eq!(a.shifted_activations.rows, target.rows);
            assert!(a.shifted_activations.data.iter().all(|v| v.is_finite()));
            let mut matched = a.matching.clone();
            matched.sort_unstable();
            assert_eq!(matched, vec![0, 1, 2], "{method:?}: a one-to-one matching");
        }
    }

    #[test]
    fn empty_and_singleton_concepts_are_reported_without_nan() {
        let (centres, shifts) = planted_world();
        let (source, target, labels) = planted(&centres, &shifts, 15);
        // All of cluster 0, one sample of cluster 1, none of cluster 2 are matched.
        let one = labels.iter().position(|&l| l == 1).unwrap();
        let pairs: Vec<Pair> = (0..labels.len())
            .filter(|&i| labels[i] == 0 || i == one)
            .map(|i| (i, i))
            .collect();
        let a = concept_shifts(
            &source,
            &target,
            &pairs,
            &params(
                3,
                Association::Activation,
                Aggregation::Mean,
                MatchBy::Shifted,
            ),
        )
        .unwrap();
        let concept_of =
            |c: usize| a.assignment[pairs.iter().position(|&(i, _)| labels[i] == c).unwrap()];
        let single = concept_of(1);
        let empty = (0..3).find(|&k| k != concept_of(0) && k != single).unwrap();
        assert_eq!(a.empty_concepts(), vec![empty]);
        assert_eq!(a.singleton_concepts(), vec![single]);
        assert_eq!(a.stats[empty].samples, 0);
        assert!(a.stats[empty].pair_cosine.is_none() && a.stats[empty].mean_sample_norm.is_none());
        assert!(a.shifts.row(empty).iter().all(|&v| v == 0.0));
        assert_eq!(
            a.shifted_concepts.row(empty),
            a.original.concepts.row(empty)
        );
        let s = &a.stats[single];
        assert!(s.pair_cosine.is_none() && s.pair_dot.is_none());
        assert_eq!(s.std_sample_norm, Some(0.0));
        assert!((s.mean_cosine_with_shift.unwrap() - 1.0).abs() < 1e-9);
        assert!(a.shifted_activations.data.iter().all(|v| v.is_finite()));
        for r in &a.recovery {
            for v in [
                r.distance_original,
                r.distance_shifted,
                r.improved_distance,
                r.cosine_original,
                r.cosine_shifted,
                r.improved_cosine,
            ] {
                assert!(v.is_finite());
            }
        }
    }

    #[test]
    fn association_rules_differ_where_they_should() {
        // `simple` keeps the two largest rows as concepts: (0, 5) then (2, 0).
        let source = Matrix::new(3, 2, vec![2.0, 0.0, 0.0, 5.0, 0.5, 1.2]).unwrap();
        let d = decompose(&source, 2, &Method::Simple, 0).unwrap();
        assert_eq!(d.concepts.row(0), &[0.0, 5.0]);
        let pick = |how| associate(&source, &[(2, 2)], &d, how).unwrap()[0];
        // (0.5, 1.2) is nearer to (2, 0) but points along (0, 5).
        assert_eq!(pick(Association::L2), 1);
        assert_eq!(pick(Association::Activation), 1);
        assert_eq!(pick(Association::Cosine), 0);
    }

    #[test]
    fn directions_are_named_from_to() {
        let c = Matrix::new(3, 2, vec![1.0, 0.0, 0.0, 2.0, -1.0, -1.0]).unwrap();
        let (pairs, dirs) = concept_directions(&c).unwrap();
        assert_eq!(pairs, vec![(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1)]);
        for (r, &(from, to)) in pairs.iter().enumerate() {
            let moved: Vec<f32> = c
                .row(from)
                .iter()
                .zip(dirs.row(r))
                .map(|(a, b)| a + b)
                .collect();
            assert_eq!(moved, c.row(to));
        }
    }

    #[test]
    fn principal_direction_points_from_source_to_target() {
        // u's largest-magnitude coordinate is negative, so PCA's own sign convention gives -u.
        let u = [0.2f32, -0.9, 0.3, 0.1];
        let un = u.iter().map(|v| v * v).sum::<f32>().sqrt();
        let u: Vec<f32> = u.iter().map(|v| v / un).collect();
        let n = 30;
        let source = Matrix::new(n, 4, (0..n * 4).map(|i| noise(i, 1) * 20.0).collect()).unwrap();
        let mut target = source.clone();
        for r in 0..n {
            let s = 1.0 + 2.0 * (r as f32 / n as f32);
            for (c, &uc) in u.iter().enumerate() {
                target.data[r * 4 + c] += s * uc + noise(r, c);
            }
        }
        let pairs = identity_pairs(n);
        let forward = pca_of_differences(&source, &target, &pairs, PcaSolver::Exact, 0).unwrap();
        assert_eq!(forward.sign_rule, SignRule::MeanDifference);
        let cos: f32 = forward.direction.iter().zip(&u).map(|(a, b)| a * b).sum();
        assert!(cos > 0.99, "{cos}");
        assert!(forward.explained_variance_ratio > 0.9);
        assert!(forward.positive_fraction == 1.0 && (forward.mean_projection - 2.0).abs() < 0.1);
        let backward = pca_of_differences(&target, &source, &pairs, PcaSolver::Exact, 0).unwrap();
        assert!(close(
            &backward.direction,
            &forward.direction.iter().map(|v| -v).collect::<Vec<_>>(),
            1e-5
        ));
    }

    #[test]
    fn principal_direction_without_a_mean_shift_and_without_spread() {
        let u = [0.6f32, -0.8];
        let source = Matrix::zeros(4, 2);
        let target = Matrix::new(
            4,
            2,
            [2.0f32, -2.0, 1.0, -1.0]
                .iter()
                .flat_map(|s| [s * u[0], s * u[1]])
                .collect(),
        )
        .unwrap();
        let pairs = identity_pairs(4);
        let p = pca_of_differences(&source, &target, &pairs, PcaSolver::Exact, 0).unwrap();
        assert_eq!(p.sign_rule, SignRule::LargestCoordinate);
        assert!(close(&p.direction, &[-0.6, 0.8], 1e-6));
        assert_eq!(p.mean_projection, 0.0);
        let shifted = Matrix::new(4, 2, vec![1.0; 8]).unwrap();
        assert!(matches!(
            pca_of_differences(&source, &shifted, &pairs, PcaSolver::Exact, 0),
            Err(AnalysisError::InvalidParameter {
                name: "differences",
                ..
            })
        ));
    }

    #[test]
    fn means_of_sets_and_of_matched_shifts() {
        let s = Matrix::new(2, 2, vec![0.0, 0.0, 2.0, 2.0]).unwrap();
        let t = Matrix::new(3, 2, vec![1.0, 1.0, 3.0, 5.0, 5.0, 3.0]).unwrap();
        assert_eq!(shift_of_means(&s, &t).unwrap(), vec![2.0, 2.0]);
        assert_eq!(
            mean_of_shifts(&s, &t, &[(0, 0), (1, 1)]).unwrap(),
            vec![1.0, 2.0]
        );
        assert!(mean_of_shifts(&s, &t, &[]).is_err());
        assert!(mean_of_shifts(&s, &t, &[(2, 0)]).is_err());
        let narrow = Matrix::new(1, 1, vec![0.0]).unwrap();
        assert!(matches!(
            shift_of_means(&s, &narrow),
            Err(AnalysisError::DimensionMismatch { .. })
        ));
    }

    #[test]
    fn overlaps_count_distinct_shared_items() {
        let original = vec![vec!["red", "car"], vec!["dog"]];
        let shifted = vec![vec!["blue", "car", "car"], vec!["cat", "dog"]];
        let finetuned = vec![vec!["cat", "dog", "fur"], vec!["blue", "car"]];
        let o = recovery_overlaps(&original, &shifted, &finetuned, &[1, 0]).unwrap();
        assert_eq!(
            o,
            vec![
                Overlap {
                    original: 1,
                    shifted: 2
                },
                Overlap {
                    original: 1,
                    shifted: 2
                }
            ]
        );
        assert!(recovery_overlaps(&original, &shifted, &finetuned, &[2, 0]).is_err());
    }
}
