//! Semi-NMF (Ding, Li & Jordan, "Convex and Semi-Nonnegative Matrix Factorizations", TPAMI
//! 2010): X ≈ V U with non-negative activations V (`rows x k`) and mixed-sign concepts U
//! (`k x cols`). Alternates the exact least-squares update of U with the multiplicative update
//! of V, which does not increase ‖X − V U‖²_F (their Theorem 1). V starts from k-means cluster
//! indicators plus 0.2, as the paper does.

use rayon::prelude::*;

use crate::error::{AnalysisError, Result};
use crate::kmeans::{self, KMeansParams};
use crate::matrix::{Matrix, codes_t_x, row_sq_norms, x_times_rows_t};

#[derive(Debug, Clone, PartialEq)]
pub struct SemiNmfParams {
    pub max_iter: usize,
    /// Stop when the objective decreases by less than `tol` times its value in one iteration.
    pub tol: f64,
}

impl Default for SemiNmfParams {
    fn default() -> Self {
        Self {
            max_iter: 500,
            tol: 1e-6,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SemiNmfModel {
    /// `k x cols`.
    pub concepts: Matrix,
    /// Non-negative activations of the training rows, `rows x k`.
    pub activations: Matrix,
    /// ‖X − V U‖²_F after each iteration (from f32 products: exact to about 1e-7·‖X‖²).
    pub objectives: Vec<f64>,
    pub iterations: usize,
    pub max_iter: usize,
    pub tol: f64,
}

/// Keeps the multiplicative update defined where a numerator and denominator both vanish.
const EPS: f64 = 1e-12;

impl SemiNmfModel {
    /// Non-negative activations of new rows on the fixed concepts: multiplicative updates from
    /// the clipped least-squares solution (plus 0.2 so no entry starts at a fixed point 0).
    pub fn transform(&self, x: &Matrix) -> Result<Matrix> {
        x.validate_width("semi-NMF transform input", self.concepts.cols)?;
        let k = self.concepts.rows;
        let u: Vec<f64> = self.concepts.data.iter().map(|&v| f64::from(v)).collect();
        let g = gram(&u, k, x.cols);
        let c = xut(x, &self.concepts);
        let ginv = spd_inverse(&g, k);
        let mut v = vec![0.0; x.rows * k];
        v.par_chunks_mut(k)
            .zip(c.par_chunks(k))
            .for_each(|(vr, cr)| {
                for a in 0..k {
                    let ls: f64 = (0..k).map(|b| ginv[a * k + b] * cr[b]).sum();
                    vr[a] = ls.max(0.0) + 0.2;
                }
            });
        let x_norm2: f64 = row_sq_norms(x).iter().sum();
        let mut prev = f64::INFINITY;
        for _ in 0..self.max_iter {
            multiplicative_step(&mut v, &c, &g, k);
            let obj = objective(x_norm2, &v, &c, &g, k);
            if prev - obj < self.tol * obj {
                break;
            }
            prev = obj;
        }
        Ok(Matrix::from_f64(x.rows, k, &v))
    }
}

fn gram(u: &[f64], k: usize, d: usize) -> Vec<f64> {
    let mut g = vec![0.0; k * k];
    for a in 0..k {
        for b in 0..=a {
            let s: f64 = u[a * d..(a + 1) * d]
                .iter()
                .zip(&u[b * d..(b + 1) * d])
                .map(|(p, q)| p * q)
                .sum();
            g[a * k + b] = s;
            g[b * k + a] = s;
        }
    }
    g
}

fn xut(x: &Matrix, u: &Matrix) -> Vec<f64> {
    x_times_rows_t(x, u).into_iter().map(f64::from).collect()
}

/// Inverse of a symmetric positive semi-definite k×k matrix by Gauss-Jordan with partial
/// pivoting, after a relative ridge of 1e-10·trace so a rank-deficient V or U stays solvable.
fn spd_inverse(a: &[f64], k: usize) -> Vec<f64> {
    let trace: f64 = (0..k).map(|i| a[i * k + i]).sum();
    let ridge = 1e-10 * trace.max(f64::MIN_POSITIVE);
    let mut m = a.to_vec();
    for i in 0..k {
        m[i * k + i] += ridge;
    }
    let mut inv = vec![0.0; k * k];
    for i in 0..k {
        inv[i * k + i] = 1.0;
    }
    for col in 0..k {
        let piv = (col..k)
            .max_by(|&p, &q| m[p * k + col].abs().total_cmp(&m[q * k + col].abs()))
            .unwrap_or(col);
        if piv != col {
            for c in 0..k {
                m.swap(piv * k + c, col * k + c);
                inv.swap(piv * k + c, col * k + c);
            }
        }
        let p = m[col * k + col];
        let p = if p.abs() > 0.0 { p } else { ridge };
        for c in 0..k {
            m[col * k + c] /= p;
            inv[col * k + c] /= p;
        }
        for r in 0..k {
            if r != col {
                let f = m[r * k + col];
                if f != 0.0 {
                    for c in 0..k {
                        m[r * k + c] -= f * m[col * k + c];
                        inv[r * k + c] -= f * inv[col * k + c];
                    }
                }
            }
        }
    }
    inv
}

/// V ← V ∘ sqrt(((XUᵀ)⁺ + V (UUᵀ)⁻) / ((XUᵀ)⁻ + V (UUᵀ)⁺)).
fn multiplicative_step(v: &mut [f64], c: &[f64], g: &[f64], k: usize) {
    v.par_chunks_mut(k)
        .zip(c.par_chunks(k))
        .for_each(|(vr, cr)| {
            let old = vr.to_vec();
            for a in 0..k {
                let (mut vg_pos, mut vg_neg) = (0.0, 0.0);
                for b in 0..k {
                    let gv = g[b * k + a];
                    if gv > 0.0 {
                        vg_pos += old[b] * gv;
                    } else {
                        vg_neg -= old[b] * gv;
                    }
                }
                let (c_pos, c_neg) = (cr[a].max(0.0), (-cr[a]).max(0.0));
                vr[a] = old[a] * ((c_pos + vg_neg + EPS) / (c_neg + vg_pos + EPS)).sqrt();
            }
        });
}

/// ‖X − V U‖² = ‖X‖² − 2 Σ V∘(XUᵀ) + Σ (VᵀV)∘(UUᵀ), with fixed-block sums.
fn objective(x_norm2: f64, v: &[f64], c: &[f64], g: &[f64], k: usize) -> f64 {
    let parts: Vec<(f64, Vec<f64>)> = v
        .par_chunks(256 * k)
        .zip(c.par_chunks(256 * k))
        .map(|(vb, cb)| {
            let cross: f64 = vb.iter().zip(cb).map(|(a, b)| a * b).sum();
            let mut vtv = vec![0.0; k * k];
            for row in vb.chunks(k) {
                for a in 0..k {
                    for b in 0..k {
                        vtv[a * k + b] += row[a] * row[b];
                    }
                }
            }
            (cross, vtv)
        })
        .collect();
    let mut cross = 0.0;
    let mut vtv = vec![0.0; k * k];
    for (c, m) in parts {
        cross += c;
        vtv.iter_mut().zip(m).for_each(|(a, b)| *a += b);
    }
    let quad: f64 = vtv.iter().zip(g).map(|(a, b)| a * b).sum();
    (x_norm2 - 2.0 * cross + quad).max(0.0)
}

pub fn fit(x: &Matrix, k: usize, params: &SemiNmfParams, seed: u64) -> Result<SemiNmfModel> {
    x.validate("semi-NMF input")?;
    let (n, d) = (x.rows, x.cols);
    if k == 0 || k > n {
        return Err(AnalysisError::TooManyConcepts {
            method: "semi_nmf",
            k,
            limit: format!("semi-NMF needs 1 <= k <= rows = {n}"),
        });
    }
    if params.max_iter == 0 {
        return Err(AnalysisError::InvalidParameter {
            name: "max_iter",
            value: "0".into(),
            expected: "at least 1",
        });
    }
    let km = kmeans::fit(
        x,
        k,
        &KMeansParams {
            max_iter: 50,
            ..KMeansParams::default()
        },
        seed,
    )?;
    let mut v = vec![0.2f64; n * k];
    for (i, &l) in km.labels.iter().enumerate() {
        v[i * k + l] += 1.0;
    }
    let x_norm2: f64 = row_sq_norms(x).iter().sum();
    let mut objectives = Vec::new();
    let mut concepts = Matrix::zeros(k, d);
    let mut iterations = 0;
    for it in 0..params.max_iter {
        iterations = it + 1;
        // U = (VᵀV)⁻¹ Vᵀ X.
        let v32: Vec<f32> = v.iter().map(|&a| a as f32).collect();
        let vtx = codes_t_x(x, &v32, k); // k x d
        let vtv = {
            let mut m = vec![0.0; k * k];
            for row in v.chunks(k) {
                for a in 0..k {
                    for b in 0..k {
                        m[a * k + b] += row[a] * row[b];
                    }
                }
            }
            m
        };
        let inv = spd_inverse(&vtv, k);
        let mut u = vec![0.0; k * d];
        u.par_chunks_mut(d).enumerate().for_each(|(a, urow)| {
            for (c, out) in urow.iter_mut().enumerate() {
                *out = (0..k)
                    .map(|b| inv[a * k + b] * f64::from(vtx[b * d + c]))
                    .sum();
            }
        });
        concepts = Matrix::from_f64(k, d, &u);
        let g = gram(&u, k, d);
        let c = xut(x, &concepts);
        multiplicative_step(&mut v, &c, &g, k);
        let obj = objective(x_norm2, &v, &c, &g, k);
        objectives.push(obj);
        if it > 0 && objectives[it - 1] - obj < params.tol * obj {
            break;
        }
    }
    Ok(SemiNmfModel {
        concepts,
        activations: Matrix::from_f64(n, k, &v),
        objectives,
        iterations,
        max_iter: params.max_iter,
        tol: params.tol,
    })
}
