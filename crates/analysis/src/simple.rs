//! xl-vlms' `simple` decomposition: the `k` rows of largest L2 norm are the concepts, and a
//! sample's activation for a concept is `1 / (1 + distance)`.

use crate::error::{AnalysisError, Result};
use crate::matrix::{Matrix, row_sq_norms};

/// The `k` largest-norm rows, largest first (ties: lower row index first).
pub fn fit(x: &Matrix, k: usize) -> Result<Matrix> {
    x.validate("simple input")?;
    if k == 0 || k > x.rows {
        return Err(AnalysisError::TooManyConcepts {
            method: "simple",
            k,
            limit: format!("simple needs 1 <= k <= rows = {}", x.rows),
        });
    }
    let norms = row_sq_norms(x);
    let mut order: Vec<usize> = (0..x.rows).collect();
    order.sort_by(|&a, &b| norms[b].total_cmp(&norms[a]).then(a.cmp(&b)));
    let mut concepts = Matrix::zeros(k, x.cols);
    for (i, &r) in order.iter().take(k).enumerate() {
        concepts.data[i * x.cols..(i + 1) * x.cols].copy_from_slice(x.row(r));
    }
    Ok(concepts)
}
