//! Matching concepts of two decompositions: cosine similarities and an optimal one-to-one
//! assignment (the linear sum assignment problem scipy's `linear_sum_assignment` solves).

use crate::error::{AnalysisError, Result};
use crate::matrix::Matrix;

/// Cosine similarity of every row of `a` with every row of `b` (`a.rows x b.rows`, f64
/// accumulation). A zero row has similarity 0 with everything.
pub fn cosine_similarity(a: &Matrix, b: &Matrix) -> Result<Matrix> {
    a.validate("cosine similarity, first matrix")?;
    b.validate("cosine similarity, second matrix")?;
    if a.cols != b.cols {
        return Err(AnalysisError::DimensionMismatch {
            what: "cosine similarity, second matrix",
            got: b.cols,
            expected: a.cols,
        });
    }
    let norm = |r: &[f32]| r.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>().sqrt();
    let na: Vec<f64> = (0..a.rows).map(|i| norm(a.row(i))).collect();
    let nb: Vec<f64> = (0..b.rows).map(|j| norm(b.row(j))).collect();
    let mut out = Vec::with_capacity(a.rows * b.rows);
    for (i, &norm_a) in na.iter().enumerate() {
        for (j, &norm_b) in nb.iter().enumerate() {
            let dot: f64 = a
                .row(i)
                .iter()
                .zip(b.row(j))
                .map(|(&x, &y)| f64::from(x) * f64::from(y))
                .sum();
            let den = norm_a * norm_b;
            out.push(if den > 0.0 { dot / den } else { 0.0 });
        }
    }
    Ok(Matrix::from_f64(a.rows, b.rows, &out))
}

/// Minimum-cost assignment on a `rows x cols` cost matrix (row-major, f64): returns
/// `(row, col)` pairs sorted by row, `min(rows, cols)` of them, as scipy's
/// `linear_sum_assignment`. Shortest augmenting paths with potentials (Kuhn-Munkres in
/// O(n² m)).
pub fn linear_sum_assignment(
    cost: &[f64],
    rows: usize,
    cols: usize,
) -> Result<Vec<(usize, usize)>> {
    if cost.len() != rows * cols {
        return Err(AnalysisError::ShapeMismatch {
            rows,
            cols,
            len: cost.len(),
            expected: rows * cols,
        });
    }
    if let Some(i) = cost.iter().position(|v| !v.is_finite()) {
        return Err(AnalysisError::NotFinite {
            what: "assignment cost matrix",
            row: i / cols.max(1),
            col: i % cols.max(1),
            value: cost[i] as f32,
        });
    }
    if rows == 0 || cols == 0 {
        return Ok(Vec::new());
    }
    // The algorithm needs rows <= cols; solve the transpose otherwise.
    if rows > cols {
        let t: Vec<f64> = (0..cols)
            .flat_map(|c| (0..rows).map(move |r| (r, c)))
            .map(|(r, c)| cost[r * cols + c])
            .collect();
        let mut pairs: Vec<(usize, usize)> = linear_sum_assignment(&t, cols, rows)?
            .into_iter()
            .map(|(c, r)| (r, c))
            .collect();
        pairs.sort_unstable();
        return Ok(pairs);
    }
    let (n, m) = (rows, cols);
    let at = |i: usize, j: usize| cost[(i - 1) * m + (j - 1)];
    // 1-based: u/v are potentials, p[j] the row matched to column j (0 = free).
    let mut u = vec![0.0f64; n + 1];
    let mut v = vec![0.0f64; m + 1];
    let mut p = vec![0usize; m + 1];
    let mut way = vec![0usize; m + 1];
    for i in 1..=n {
        p[0] = i;
        let mut j0 = 0usize;
        let mut minv = vec![f64::INFINITY; m + 1];
        let mut used = vec![false; m + 1];
        loop {
            used[j0] = true;
            let i0 = p[j0];
            let mut delta = f64::INFINITY;
            let mut j1 = 0usize;
            for j in 1..=m {
                if !used[j] {
                    let cur = at(i0, j) - u[i0] - v[j];
                    if cur < minv[j] {
                        minv[j] = cur;
                        way[j] = j0;
                    }
                    if minv[j] < delta {
                        delta = minv[j];
                        j1 = j;
                    }
                }
            }
            for j in 0..=m {
                if used[j] {
                    u[p[j]] += delta;
                    v[j] -= delta;
                } else {
                    minv[j] -= delta;
                }
            }
            j0 = j1;
            if p[j0] == 0 {
                break;
            }
        }
        loop {
            let j1 = way[j0];
            p[j0] = p[j1];
            j0 = j1;
            if j0 == 0 {
                break;
            }
        }
    }
    let mut pairs: Vec<(usize, usize)> = (1..=m)
        .filter(|&j| p[j] != 0)
        .map(|j| (p[j] - 1, j - 1))
        .collect();
    pairs.sort_unstable();
    Ok(pairs)
}

/// For each concept of `a`, the concept of `b` it is matched to, maximising the total cosine
/// similarity (xl-vlms' `linear_sum_assignment(-cos(U_a, U_b))`). `a.rows <= b.rows`.
pub fn match_concepts(a: &Matrix, b: &Matrix) -> Result<Vec<usize>> {
    if a.rows > b.rows {
        return Err(AnalysisError::TooManyConcepts {
            method: "match_concepts",
            k: a.rows,
            limit: format!("the second set has only {} concepts", b.rows),
        });
    }
    let sim = cosine_similarity(a, b)?;
    let cost: Vec<f64> = sim.data.iter().map(|&s| -f64::from(s)).collect();
    Ok(linear_sum_assignment(&cost, a.rows, b.rows)?
        .into_iter()
        .map(|(_, c)| c)
        .collect())
}
