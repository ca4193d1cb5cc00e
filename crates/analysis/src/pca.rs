//! Principal component analysis of centred data, with scikit-learn's conventions: components
//! are rows of unit norm whose largest-magnitude entry is positive (`svd_flip` with
//! `u_based_decision=False`), explained variance divides by `n - 1`.

use faer::{Mat, MatRef, Side};
use rand::SeedableRng;
use rand::rngs::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;

use crate::error::{AnalysisError, Result};
use crate::matrix::{Matrix, codes_t_x, matmul, x_times_rows_t};

/// How the principal directions are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PcaSolver {
    /// scikit-learn 1.9's rule: `cols <= 1000 && rows >= 10 * cols` or `max(rows, cols) <= 500`
    /// → exact; `k < 0.8 * min(rows, cols)` → randomized; otherwise exact.
    #[default]
    Auto,
    /// Eigendecomposition of the smaller Gram matrix of the centred data (D×D or N×N).
    Exact,
    /// Halko et al.'s randomized range finder as scikit-learn's `randomized_svd`: 10
    /// oversamples, 7 power iterations when `k < 0.1 * min(rows, cols)` else 4.
    Randomized,
}

impl PcaSolver {
    /// The solver `Auto` resolves to for an `rows x cols` matrix and `k` components.
    pub fn resolve(self, rows: usize, cols: usize, k: usize) -> PcaSolver {
        match self {
            PcaSolver::Auto => {
                if (cols <= 1000 && rows >= 10 * cols) || rows.max(cols) <= 500 {
                    PcaSolver::Exact
                } else if (k as f64) < 0.8 * rows.min(cols) as f64 {
                    PcaSolver::Randomized
                } else {
                    PcaSolver::Exact
                }
            }
            other => other,
        }
    }
}

/// A fitted PCA.
#[derive(Debug, Clone, PartialEq)]
pub struct PcaModel {
    /// The solver actually used (never `Auto`).
    pub solver: PcaSolver,
    /// Column means of the training data.
    pub mean: Vec<f32>,
    /// `k x cols`, orthonormal rows.
    pub components: Matrix,
    /// Variance of the data along each component (`singular_value^2 / (n - 1)`).
    pub explained_variance: Vec<f64>,
    /// `explained_variance / total variance of the data`.
    pub explained_variance_ratio: Vec<f64>,
    pub singular_values: Vec<f64>,
}

impl PcaModel {
    /// Projections of `x - mean` on the components (`rows x k`).
    pub fn transform(&self, x: &Matrix) -> Result<Matrix> {
        x.validate_width("PCA transform input", self.mean.len())?;
        let centred = centre(x, &self.mean);
        Ok(Matrix {
            rows: x.rows,
            cols: self.components.rows,
            data: x_times_rows_t(&centred, &self.components),
        })
    }
}

fn centre(x: &Matrix, mean: &[f32]) -> Matrix {
    let mut out = x.clone();
    out.data.par_chunks_mut(x.cols).for_each(|row| {
        for (v, m) in row.iter_mut().zip(mean) {
            *v -= m;
        }
    });
    out
}

/// Column means accumulated in f64.
fn column_means(x: &Matrix) -> Vec<f32> {
    let cols = x.cols;
    (0..cols)
        .into_par_iter()
        .map(|c| {
            let s: f64 = (0..x.rows).map(|r| f64::from(x.data[r * cols + c])).sum();
            (s / x.rows as f64) as f32
        })
        .collect()
}

/// Fits a `k`-component PCA. `seed` drives the randomized solver only.
pub fn fit(x: &Matrix, k: usize, solver: PcaSolver, seed: u64) -> Result<PcaModel> {
    x.validate("PCA input")?;
    let (n, d) = (x.rows, x.cols);
    if k == 0 || k > n.min(d) {
        return Err(AnalysisError::TooManyConcepts {
            method: "pca",
            k,
            limit: format!("PCA needs 1 <= k <= min(rows, cols) = {}", n.min(d)),
        });
    }
    let solver = solver.resolve(n, d, k);
    let mean = column_means(x);
    let centred = centre(x, &mean);
    // Per-row sums in f64, then a sequential sum: the same bits on every run.
    let row_sums: Vec<f64> = centred
        .data
        .par_chunks(d)
        .map(|r| r.iter().map(|&v| f64::from(v) * f64::from(v)).sum())
        .collect();
    let dof = (n as f64 - 1.0).max(1.0);
    let total_var = row_sums.iter().sum::<f64>() / dof;

    let (mut components, singular_values) = match solver {
        PcaSolver::Exact => exact_top_k(centred.view(), k)?,
        _ => randomized_top_k(&centred, k, seed)?,
    };
    flip_rows_by_largest_entry(&mut components);
    let explained_variance: Vec<f64> = singular_values.iter().map(|s| s * s / dof).collect();
    let explained_variance_ratio = explained_variance
        .iter()
        .map(|v| if total_var > 0.0 { v / total_var } else { 0.0 })
        .collect();
    Ok(PcaModel {
        solver,
        mean,
        components,
        explained_variance,
        explained_variance_ratio,
        singular_values,
    })
}

/// Top-`k` right singular vectors (as rows) and singular values of `a` (`n x d`) through the
/// eigendecomposition of the smaller Gram matrix.
pub(crate) fn exact_top_k(a: MatRef<'_, f32>, k: usize) -> Result<(Matrix, Vec<f64>)> {
    let (n, d) = (a.nrows(), a.ncols());
    let no_conv = |_| AnalysisError::NoConvergence {
        what: "symmetric eigendecomposition",
    };
    if d <= n {
        let gram = matmul(a.transpose(), a);
        let evd = gram.self_adjoint_eigen(Side::Lower).map_err(no_conv)?;
        let (u, s) = (evd.U(), evd.S().column_vector());
        let mut comps = Matrix::zeros(k, d);
        let mut sv = Vec::with_capacity(k);
        for i in 0..k {
            let j = d - 1 - i; // eigenvalues come in nondecreasing order
            sv.push(f64::from(s[j]).max(0.0).sqrt());
            for c in 0..d {
                comps.data[i * d + c] = u[(c, j)];
            }
        }
        Ok((comps, sv))
    } else {
        // v_i = a^T u_i / s_i from the left singular vectors of the n x n Gram matrix.
        let gram = matmul(a, a.transpose());
        let evd = gram.self_adjoint_eigen(Side::Lower).map_err(no_conv)?;
        let u = evd.U();
        let top: Vec<usize> = (0..k).map(|i| n - 1 - i).collect();
        let u_top = Mat::<f32>::from_fn(n, k, |r, c| u[(r, top[c])]);
        let v = matmul(a.transpose(), u_top.as_ref()); // d x k
        let mut comps = Matrix::zeros(k, d);
        let mut sv = Vec::with_capacity(k);
        for i in 0..k {
            let col_norm: f64 = (0..d)
                .map(|c| f64::from(v[(c, i)]) * f64::from(v[(c, i)]))
                .sum::<f64>()
                .sqrt();
            sv.push(col_norm);
            let scale = if col_norm > 0.0 { 1.0 / col_norm } else { 0.0 };
            for c in 0..d {
                comps.data[i * d + c] = (f64::from(v[(c, i)]) * scale) as f32;
            }
        }
        Ok((comps, sv))
    }
}

/// Orthonormal basis of the columns of `m`: Gram-Schmidt applied twice ("CGS2", as accurate
/// as Householder QR for these thin matrices) in f64. Sequential, so the basis does not
/// depend on the thread count.
fn orthonormalise(m: Mat<f32>) -> Mat<f32> {
    let (rows, cols) = (m.nrows(), m.ncols());
    let mut q: Vec<Vec<f64>> = Vec::with_capacity(cols);
    for j in 0..cols {
        let mut v: Vec<f64> = (0..rows).map(|i| f64::from(m[(i, j)])).collect();
        let norm0 = v.iter().map(|a| a * a).sum::<f64>().sqrt();
        for _ in 0..2 {
            for b in &q {
                let r: f64 = b.iter().zip(&v).map(|(x, y)| x * y).sum();
                v.iter_mut().zip(b).for_each(|(y, x)| *y -= r * x);
            }
        }
        let norm = v.iter().map(|a| a * a).sum::<f64>().sqrt();
        // A column in the span of the previous ones contributes nothing.
        let inv = if norm > 1e-12 * norm0.max(f64::MIN_POSITIVE) {
            1.0 / norm
        } else {
            0.0
        };
        v.iter_mut().for_each(|a| *a *= inv);
        q.push(v);
    }
    Mat::from_fn(rows, cols, |i, j| q[j][i] as f32)
}

/// Eigenvalues (descending) and eigenvectors (columns of the returned row-major `n x n`
/// matrix) of a small symmetric f64 matrix by cyclic Jacobi rotations: accurate and
/// sequential (deterministic).
fn symmetric_eigen_small(a: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut a = a.to_vec();
    let mut v = vec![0.0f64; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|p| (0..n).filter(move |&q| q != p).map(move |q| (p, q)))
            .map(|(p, q)| a[p * n + q] * a[p * n + q])
            .sum();
        let scale: f64 = (0..n).map(|p| a[p * n + p] * a[p * n + p]).sum();
        if off <= 1e-30 * scale.max(f64::MIN_POSITIVE) {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq == 0.0 {
                    continue;
                }
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for r in 0..n {
                    let (arp, arq) = (a[r * n + p], a[r * n + q]);
                    a[r * n + p] = c * arp - s * arq;
                    a[r * n + q] = s * arp + c * arq;
                }
                for r in 0..n {
                    let (apr, aqr) = (a[p * n + r], a[q * n + r]);
                    a[p * n + r] = c * apr - s * aqr;
                    a[q * n + r] = s * apr + c * aqr;
                }
                for r in 0..n {
                    let (vrp, vrq) = (v[r * n + p], v[r * n + q]);
                    v[r * n + p] = c * vrp - s * vrq;
                    v[r * n + q] = s * vrp + c * vrq;
                }
            }
        }
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| a[j * n + j].total_cmp(&a[i * n + i]).then(i.cmp(&j)));
    let values = order.iter().map(|&i| a[i * n + i]).collect();
    let mut vectors = vec![0.0f64; n * n];
    for (new, &old) in order.iter().enumerate() {
        for r in 0..n {
            vectors[r * n + new] = v[r * n + old];
        }
    }
    (values, vectors)
}

/// `X q` (`x.rows x l`) for `q` of `x.cols x l`, through the concept-sized kernel.
fn x_times(x: &Matrix, q: &Mat<f32>) -> Mat<f32> {
    let l = q.ncols();
    let out = x_times_rows_t(x, &Matrix::from_faer(q.as_ref().transpose()));
    Mat::from_fn(x.rows, l, |i, j| out[i * l + j])
}

/// `Xᵀ p` (`x.cols x l`) for `p` of `x.rows x l`.
fn xt_times(x: &Matrix, p: &Mat<f32>) -> Mat<f32> {
    let l = p.ncols();
    let out = codes_t_x(x, &Matrix::from_faer(p.as_ref()).data, l);
    Mat::from_fn(x.cols, l, |i, j| out[j * x.cols + i])
}

/// Top-`k` right singular vectors (rows) and singular values of `x` by the randomized range
/// finder. Power iterations are re-orthonormalised (scikit-learn's 'auto' uses an LU
/// factor; both only keep the basis well conditioned, an orthonormal basis is the more
/// accurate of the two).
pub(crate) fn randomized_top_k(x: &Matrix, k: usize, seed: u64) -> Result<(Matrix, Vec<f64>)> {
    let (n, d) = (x.rows, x.cols);
    let n_random = (k + 10).min(n.min(d));
    let n_iter = if (k as f64) < 0.1 * n.min(d) as f64 {
        7
    } else {
        4
    };
    // As scikit-learn: work on M = Xᵀ when there are fewer rows than columns.
    let transpose = n < d;
    let m_times = |q: &Mat<f32>| {
        if transpose {
            xt_times(x, q)
        } else {
            x_times(x, q)
        }
    };
    let mt_times = |p: &Mat<f32>| {
        if transpose {
            x_times(x, p)
        } else {
            xt_times(x, p)
        }
    };
    let m_cols = if transpose { n } else { d };
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut q = Mat::<f32>::from_fn(m_cols, n_random, |_, _| {
        let v: f64 = StandardNormal.sample(&mut rng);
        v as f32
    });
    for _ in 0..n_iter {
        q = orthonormalise(m_times(&q));
        q = orthonormalise(mt_times(&q));
    }
    q = orthonormalise(m_times(&q));
    // B = qᵀ M (n_random x m_cols), kept as its transpose Mᵀ q (m_cols x n_random).
    let bt = mt_times(&q);
    let l = n_random;
    // SVD of the small B through the eigendecomposition of B Bᵀ (l x l, f64): B = W S Vᵀ
    // with V = Bᵀ W S⁻¹. The kept values are the largest of B, well separated from rounding.
    let mut bbt = vec![0.0f64; l * l];
    for a in 0..l {
        for b in 0..=a {
            let dot: f64 = (0..m_cols)
                .map(|r| f64::from(bt[(r, a)]) * f64::from(bt[(r, b)]))
                .sum();
            bbt[a * l + b] = dot;
            bbt[b * l + a] = dot;
        }
    }
    let (lambda, w) = symmetric_eigen_small(&bbt, l);
    let sv: Vec<f64> = lambda[..k].iter().map(|v| v.max(0.0).sqrt()).collect();
    // Without transpose the components are the columns of V; with it, those of q W.
    let comps_dim = if transpose { d } else { m_cols };
    let mut comps = Matrix::zeros(k, comps_dim);
    for i in 0..k {
        let row = &mut comps.data[i * comps_dim..(i + 1) * comps_dim];
        if transpose {
            for (r, out) in row.iter_mut().enumerate() {
                let v: f64 = (0..l).map(|a| f64::from(q[(r, a)]) * w[a * l + i]).sum();
                *out = v as f32;
            }
        } else {
            let inv = if sv[i] > 0.0 { 1.0 / sv[i] } else { 0.0 };
            for (r, out) in row.iter_mut().enumerate() {
                let v: f64 = (0..l).map(|a| f64::from(bt[(r, a)]) * w[a * l + i]).sum();
                *out = (v * inv) as f32;
            }
        }
    }
    Ok((comps, sv))
}

/// scikit-learn's `svd_flip(u_based_decision=False)`: each row's largest-magnitude entry
/// (the first one on ties) becomes positive.
pub(crate) fn flip_rows_by_largest_entry(m: &mut Matrix) {
    let cols = m.cols;
    for row in m.data.chunks_mut(cols) {
        let mut best = 0;
        for (i, v) in row.iter().enumerate() {
            if v.abs() > row[best].abs() {
                best = i;
            }
        }
        if row[best] < 0.0 {
            row.iter_mut().for_each(|v| *v = -*v);
        }
    }
}
