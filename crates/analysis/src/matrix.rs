//! The dense row-major f32 matrix every method takes and returns, and the few faer bridges.

use faer::{Mat, MatRef, Par};

use crate::error::{AnalysisError, Result};

/// A dense `rows x cols` matrix of f32 stored row-major (`data[r * cols + c]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f32>,
}

impl Matrix {
    /// A matrix from row-major data; errors when `data.len() != rows * cols`.
    pub fn new(rows: usize, cols: usize, data: Vec<f32>) -> Result<Self> {
        let expected = rows.checked_mul(cols).ok_or(AnalysisError::ShapeMismatch {
            rows,
            cols,
            len: data.len(),
            expected: usize::MAX,
        })?;
        if data.len() != expected {
            return Err(AnalysisError::ShapeMismatch {
                rows,
                cols,
                len: data.len(),
                expected,
            });
        }
        Ok(Self { rows, cols, data })
    }

    pub fn zeros(rows: usize, cols: usize) -> Self {
        Self {
            rows,
            cols,
            data: vec![0.0; rows * cols],
        }
    }

    pub fn row(&self, r: usize) -> &[f32] {
        &self.data[r * self.cols..(r + 1) * self.cols]
    }

    pub fn get(&self, r: usize, c: usize) -> f32 {
        self.data[r * self.cols + c]
    }

    /// Errors on an empty matrix or on the first NaN/inf entry (naming its row and column).
    pub(crate) fn validate(&self, what: &'static str) -> Result<()> {
        if self.rows == 0 || self.cols == 0 {
            return Err(AnalysisError::Empty {
                what,
                rows: self.rows,
                cols: self.cols,
            });
        }
        if self.data.len() != self.rows * self.cols {
            return Err(AnalysisError::ShapeMismatch {
                rows: self.rows,
                cols: self.cols,
                len: self.data.len(),
                expected: self.rows * self.cols,
            });
        }
        if let Some(i) = self.data.iter().position(|v| !v.is_finite()) {
            return Err(AnalysisError::NotFinite {
                what,
                row: i / self.cols,
                col: i % self.cols,
                value: self.data[i],
            });
        }
        Ok(())
    }

    pub(crate) fn view(&self) -> MatRef<'_, f32> {
        MatRef::from_row_major_slice(&self.data, self.rows, self.cols)
    }

    pub(crate) fn from_faer(m: MatRef<'_, f32>) -> Self {
        let (rows, cols) = (m.nrows(), m.ncols());
        let mut data = Vec::with_capacity(rows * cols);
        for r in 0..rows {
            data.extend((0..cols).map(|c| m[(r, c)]));
        }
        Self { rows, cols, data }
    }

    pub(crate) fn from_f64(rows: usize, cols: usize, data: &[f64]) -> Self {
        Self {
            rows,
            cols,
            data: data.iter().map(|&v| v as f32).collect(),
        }
    }
}

/// Parallelism for faer kernels: all rayon threads. faer splits work by output blocks, so the
/// result is the same from run to run for a given thread count.
pub(crate) fn par() -> Par {
    Par::rayon(0)
}

/// `a * b` with faer's GEMM (column-major result).
pub(crate) fn matmul(a: MatRef<'_, f32>, b: MatRef<'_, f32>) -> Mat<f32> {
    let mut out = Mat::<f32>::zeros(a.nrows(), b.ncols());
    faer::linalg::matmul::matmul(out.as_mut(), faer::Accum::Replace, a, b, 1.0f32, par());
    out
}

/// Squared L2 norm of each row, accumulated in f64.
pub(crate) fn row_sq_norms(x: &Matrix) -> Vec<f64> {
    use rayon::prelude::*;
    x.data
        .par_chunks(x.cols)
        .map(|r| r.iter().map(|&v| f64::from(v) * f64::from(v)).sum())
        .collect()
}

/// Squared Euclidean distances from every row of `x` to every row of `centres` (`n x k`,
/// row-major, clamped at 0), through `|x|^2 - 2 x.c + |c|^2` with one GEMM.
pub(crate) fn sq_distances(x: &Matrix, x_sq_norms: &[f64], centres: &Matrix) -> Vec<f64> {
    use rayon::prelude::*;
    let dots = matmul(x.view(), centres.view().transpose());
    let c_norms = row_sq_norms(centres);
    let k = centres.rows;
    let mut out = vec![0.0f64; x.rows * k];
    out.par_chunks_mut(k).enumerate().for_each(|(i, row)| {
        for (j, d) in row.iter_mut().enumerate() {
            *d = (x_sq_norms[i] - 2.0 * f64::from(dots[(i, j)]) + c_norms[j]).max(0.0);
        }
    });
    out
}
