//! k-means as scikit-learn's `KMeans(algorithm="lloyd")`: greedy k-means++ seeding with
//! `2 + ln(k)` local trials, Lloyd iterations, a tolerance relative to the mean per-feature
//! variance, empty clusters re-seeded with the points farthest from their centres, best of
//! `n_init` runs by inertia.

use rand::rngs::ChaCha8Rng;
use rand::{RngExt, SeedableRng};
use rayon::prelude::*;

use crate::error::{AnalysisError, Result};
use crate::matrix::{Matrix, row_sq_norms, sq_distances};

/// Where the centres start.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum KMeansInit {
    /// Seeded greedy k-means++.
    #[default]
    KMeansPlusPlus,
    /// These `k x cols` centres (then `n_init` is 1, as in scikit-learn).
    Centres(Matrix),
}

#[derive(Debug, Clone, PartialEq)]
pub struct KMeansParams {
    pub init: KMeansInit,
    /// Independent runs; the one with the lowest inertia wins.
    pub n_init: usize,
    pub max_iter: usize,
    /// Relative tolerance on the squared centre shift (times the mean feature variance).
    pub tol: f64,
}

impl Default for KMeansParams {
    fn default() -> Self {
        Self {
            init: KMeansInit::KMeansPlusPlus,
            n_init: 1,
            max_iter: 300,
            tol: 1e-4,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct KMeansModel {
    /// `k x cols`.
    pub centres: Matrix,
    pub labels: Vec<usize>,
    /// Sum of squared distances of the points to their centre.
    pub inertia: f64,
    pub iterations: usize,
}

impl KMeansModel {
    /// Euclidean distances of every row of `x` to every centre (`rows x k`).
    pub fn distances(&self, x: &Matrix) -> Result<Matrix> {
        x.validate_width("k-means transform input", self.centres.cols)?;
        Ok(euclidean_distances(x, &self.centres))
    }
}

pub(crate) fn euclidean_distances(x: &Matrix, centres: &Matrix) -> Matrix {
    let sq = sq_distances(x, &row_sq_norms(x), centres);
    Matrix::from_f64(
        x.rows,
        centres.rows,
        &sq.iter().map(|v| v.sqrt()).collect::<Vec<_>>(),
    )
}

/// Squared distance in f64 between two rows.
fn sq_dist(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&u, &v)| {
            let t = f64::from(u) - f64::from(v);
            t * t
        })
        .sum()
}

pub fn fit(x: &Matrix, k: usize, params: &KMeansParams, seed: u64) -> Result<KMeansModel> {
    x.validate("k-means input")?;
    if k == 0 || k > x.rows {
        return Err(AnalysisError::TooManyConcepts {
            method: "kmeans",
            k,
            limit: format!("k-means needs 1 <= k <= rows = {}", x.rows),
        });
    }
    if params.max_iter == 0 {
        return Err(AnalysisError::InvalidParameter {
            name: "max_iter",
            value: "0".into(),
            expected: "at least 1",
        });
    }
    if params.tol.is_nan() || params.tol < 0.0 {
        return Err(AnalysisError::InvalidParameter {
            name: "tol",
            value: params.tol.to_string(),
            expected: "a non-negative number",
        });
    }
    let tol = params.tol * mean_feature_variance(x);
    let x_norms = row_sq_norms(x);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (inits, n_init): (Vec<Option<&Matrix>>, usize) = match &params.init {
        KMeansInit::Centres(c) => {
            if c.rows != k || c.cols != x.cols {
                return Err(AnalysisError::InitShape {
                    what: "k-means initial centres",
                    rows: c.rows,
                    cols: c.cols,
                    expected_rows: k,
                    expected_cols: x.cols,
                });
            }
            c.validate("k-means initial centres")?;
            (vec![Some(c)], 1)
        }
        KMeansInit::KMeansPlusPlus => (vec![None; params.n_init.max(1)], params.n_init.max(1)),
    };
    let mut best: Option<KMeansModel> = None;
    for init in inits.into_iter().take(n_init) {
        let centres = match init {
            Some(c) => c.clone(),
            None => kmeans_plus_plus(x, &x_norms, k, &mut rng),
        };
        let run = lloyd(x, &x_norms, centres, params.max_iter, tol);
        if best.as_ref().is_none_or(|b| run.inertia < b.inertia) {
            best = Some(run);
        }
    }
    Ok(best.expect("n_init >= 1"))
}

fn mean_feature_variance(x: &Matrix) -> f64 {
    let (n, d) = (x.rows, x.cols);
    let total: f64 = (0..d)
        .into_par_iter()
        .map(|c| {
            let mean = (0..n).map(|r| f64::from(x.data[r * d + c])).sum::<f64>() / n as f64;
            (0..n)
                .map(|r| (f64::from(x.data[r * d + c]) - mean).powi(2))
                .sum::<f64>()
                / n as f64
        })
        .collect::<Vec<_>>()
        .iter()
        .sum();
    total / d as f64
}

/// Greedy k-means++ (Arthur & Vassilvitskii; scikit-learn's `_kmeans_plusplus`).
fn kmeans_plus_plus(x: &Matrix, x_norms: &[f64], k: usize, rng: &mut ChaCha8Rng) -> Matrix {
    let (n, d) = (x.rows, x.cols);
    let n_local_trials = 2 + (k as f64).ln() as usize;
    let mut centres = Matrix::zeros(k, d);
    let first = rng.random_range(0..n);
    centres.data[..d].copy_from_slice(x.row(first));
    let mut closest: Vec<f64> = (0..n)
        .into_par_iter()
        .map(|i| sq_dist(x.row(i), x.row(first)))
        .collect();
    let mut pot: f64 = closest.iter().sum();
    for c in 1..k {
        let mut cumsum = Vec::with_capacity(n);
        let mut acc = 0.0;
        for &v in &closest {
            acc += v;
            cumsum.push(acc);
        }
        let candidates: Vec<usize> = (0..n_local_trials)
            .map(|_| {
                let r = rng.random::<f64>() * pot;
                cumsum.partition_point(|&s| s < r).min(n - 1)
            })
            .collect();
        let mut cand = Matrix::zeros(candidates.len(), d);
        for (t, &i) in candidates.iter().enumerate() {
            cand.data[t * d..(t + 1) * d].copy_from_slice(x.row(i));
        }
        let dist = sq_distances(x, x_norms, &cand);
        let t_count = candidates.len();
        let mut best_t = 0;
        let mut best_pot = f64::INFINITY;
        for t in 0..t_count {
            let p: f64 = (0..n).map(|i| closest[i].min(dist[i * t_count + t])).sum();
            if p < best_pot {
                best_pot = p;
                best_t = t;
            }
        }
        for (i, v) in closest.iter_mut().enumerate() {
            *v = v.min(dist[i * t_count + best_t]);
        }
        pot = best_pot;
        centres.data[c * d..(c + 1) * d].copy_from_slice(x.row(candidates[best_t]));
    }
    centres
}

fn assign(x: &Matrix, x_norms: &[f64], centres: &Matrix) -> Vec<usize> {
    let k = centres.rows;
    let dist = sq_distances(x, x_norms, centres);
    dist.par_chunks(k)
        .map(|row| {
            let mut best = 0;
            for (j, &v) in row.iter().enumerate() {
                if v < row[best] {
                    best = j;
                }
            }
            best
        })
        .collect()
}

/// Mean of each cluster's members in f64 (clusters in parallel, members in index order, so
/// the sums do not depend on thread scheduling). Empty clusters get the farthest points; as in
/// scikit-learn this moves them between centres only, the labels stay those of the E-step.
fn update_centres(x: &Matrix, labels: &[usize], old: &Matrix) -> Matrix {
    let (k, d) = (old.rows, x.cols);
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); k];
    for (i, &l) in labels.iter().enumerate() {
        members[l].push(i);
    }
    let empty: Vec<usize> = (0..k).filter(|&j| members[j].is_empty()).collect();
    if !empty.is_empty() {
        // scikit-learn's `_relocate_empty_clusters_dense`: the points farthest from their
        // current centre each start a new cluster and leave their old one.
        let dist: Vec<f64> = (0..x.rows)
            .into_par_iter()
            .map(|i| sq_dist(x.row(i), old.row(labels[i])))
            .collect();
        let mut order: Vec<usize> = (0..x.rows).collect();
        order.sort_by(|&a, &b| dist[b].total_cmp(&dist[a]).then(a.cmp(&b)));
        for (&cluster, &far) in empty.iter().zip(&order) {
            let old_cluster = labels[far];
            members[old_cluster].retain(|&m| m != far);
            members[cluster].push(far);
        }
    }
    let sums: Vec<Vec<f64>> = members
        .par_iter()
        .enumerate()
        .map(|(j, idx)| {
            if idx.is_empty() {
                // Still empty (more empty clusters than points moved): keep the centre.
                return old.row(j).iter().map(|&v| f64::from(v)).collect();
            }
            let mut s = vec![0.0f64; d];
            for &i in idx {
                for (a, &v) in s.iter_mut().zip(x.row(i)) {
                    *a += f64::from(v);
                }
            }
            let inv = 1.0 / idx.len() as f64;
            s.iter_mut().for_each(|a| *a *= inv);
            s
        })
        .collect();
    Matrix::from_f64(k, d, &sums.concat())
}

fn inertia(x: &Matrix, centres: &Matrix, labels: &[usize]) -> f64 {
    let per_row: Vec<f64> = (0..x.rows)
        .into_par_iter()
        .map(|i| sq_dist(x.row(i), centres.row(labels[i])))
        .collect();
    per_row.iter().sum()
}

fn lloyd(
    x: &Matrix,
    x_norms: &[f64],
    mut centres: Matrix,
    max_iter: usize,
    tol: f64,
) -> KMeansModel {
    let mut labels_old: Vec<usize> = vec![usize::MAX; x.rows];
    let mut labels = labels_old.clone();
    let mut strict = false;
    let mut iterations = 0;
    for it in 0..max_iter {
        iterations = it + 1;
        labels = assign(x, x_norms, &centres);
        let new_centres = update_centres(x, &labels, &centres);
        let shift: f64 = (0..centres.rows)
            .map(|j| sq_dist(centres.row(j), new_centres.row(j)))
            .sum();
        centres = new_centres;
        if labels == labels_old {
            strict = true;
            break;
        }
        if shift <= tol {
            break;
        }
        labels_old.clone_from(&labels);
    }
    if !strict {
        // Labels that match the final centres.
        labels = assign(x, x_norms, &centres);
    }
    let inertia = inertia(x, &centres, &labels);
    KMeansModel {
        centres,
        labels,
        inertia,
        iterations,
    }
}
