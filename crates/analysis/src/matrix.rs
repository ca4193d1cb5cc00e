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

    /// [`Matrix::validate`], plus: the matrix has `cols` columns (the width a model was fitted on).
    pub(crate) fn validate_width(&self, what: &'static str, cols: usize) -> Result<()> {
        self.validate(what)?;
        if self.cols != cols {
            return Err(AnalysisError::DimensionMismatch {
                what,
                got: self.cols,
                expected: cols,
            });
        }
        Ok(())
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
/// row-major, clamped at 0), through `|x|^2 - 2 x.c + |c|^2`.
pub(crate) fn sq_distances(x: &Matrix, x_sq_norms: &[f64], centres: &Matrix) -> Vec<f64> {
    use rayon::prelude::*;
    let k = centres.rows;
    let dots = x_times_rows_t(x, centres);
    let c_norms = row_sq_norms(centres);
    let mut out = vec![0.0f64; x.rows * k];
    out.par_chunks_mut(k).enumerate().for_each(|(i, row)| {
        for (j, d) in row.iter_mut().enumerate() {
            *d = (x_sq_norms[i] - 2.0 * f64::from(dots[i * k + j]) + c_norms[j]).max(0.0);
        }
    });
    out
}

/// `x · rowsᵀ` (`x.rows x rows.rows`, row-major): every output is the dot product of two
/// rows. The decompositions multiply the whole data matrix by a handful of concepts, a shape
/// where streaming each data row once against all concepts (which stay in cache) is about
/// twice as fast as a general GEMM. Rows run in parallel; each dot product has a fixed
/// summation order, so results do not depend on threads.
pub(crate) fn x_times_rows_t(x: &Matrix, rows: &Matrix) -> Vec<f32> {
    use rayon::prelude::*;
    let (d, k) = (x.cols, rows.rows);
    debug_assert_eq!(rows.cols, d);
    let mut out = vec![0.0f32; x.rows * k];
    out.par_chunks_mut(k)
        .zip(x.data.par_chunks(d))
        .for_each(|(o, xr)| simd::dots(xr, &rows.data, o));
    out
}

/// `codesᵀ · x` (`k x x.cols`, row-major) for `codes` of `x.rows x k`, skipping zero codes
/// (sparse codes make most of them zero). Fixed blocks of rows are summed in parallel, each
/// streaming its rows once into a `k x cols` accumulator, and the block sums are added in
/// block order: results do not depend on threads.
pub(crate) fn codes_t_x(x: &Matrix, codes: &[f32], k: usize) -> Vec<f32> {
    use rayon::prelude::*;
    const ROWS_PER_BLOCK: usize = 512;
    let d = x.cols;
    let partials: Vec<Vec<f32>> = x
        .data
        .par_chunks(ROWS_PER_BLOCK * d)
        .zip(codes.par_chunks(ROWS_PER_BLOCK * k))
        .map(|(xb, cb)| {
            let mut acc = vec![0.0f32; k * d];
            simd::accumulate_rows(xb, d, cb, k, &mut acc);
            acc
        })
        .collect();
    let mut parts = partials.into_iter();
    let mut out = parts.next().unwrap_or_else(|| vec![0.0f32; k * d]);
    for p in parts {
        out.iter_mut().zip(p).for_each(|(a, b)| *a += b);
    }
    out
}

/// Small f32 kernels, compiled once for the baseline target and once with AVX2+FMA, chosen at
/// run time (the build targets generic x86-64).
mod simd {
    /// `out[j] = x · u_j` for the rows `u_j` of `u` (row-major, rows of `x.len()`).
    #[inline(always)]
    fn dots_impl(x: &[f32], u: &[f32], out: &mut [f32]) {
        const LANES: usize = 16;
        let d = x.len();
        for (j, o) in out.iter_mut().enumerate() {
            let ur = &u[j * d..(j + 1) * d];
            // Independent partial sums let the compiler vectorise without reassociating.
            let mut acc = [0.0f32; LANES];
            let (xc, uc) = (x.chunks_exact(LANES), ur.chunks_exact(LANES));
            let (xt, ut) = (xc.remainder(), uc.remainder());
            for (a, b) in xc.zip(uc) {
                for l in 0..LANES {
                    acc[l] += a[l] * b[l];
                }
            }
            let mut s: f32 = acc.iter().sum();
            for (a, b) in xt.iter().zip(ut) {
                s += a * b;
            }
            *o = s;
        }
    }

    /// `acc[j] += codes[i][j] * x[i]` over the rows `i` of `x` (rows of length `d`).
    #[inline(always)]
    fn accumulate_impl(x: &[f32], d: usize, codes: &[f32], k: usize, acc: &mut [f32]) {
        for (xr, v) in x.chunks_exact(d).zip(codes.chunks_exact(k)) {
            for (&vj, a) in v.iter().zip(acc.chunks_exact_mut(d)) {
                if vj != 0.0 {
                    for (av, &xv) in a.iter_mut().zip(xr) {
                        *av += vj * xv;
                    }
                }
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn dots_avx2(x: &[f32], u: &[f32], out: &mut [f32]) {
        dots_impl(x, u, out)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn accumulate_avx2(x: &[f32], d: usize, codes: &[f32], k: usize, acc: &mut [f32]) {
        accumulate_impl(x, d, codes, k, acc)
    }

    #[cfg(target_arch = "x86_64")]
    fn has_avx2() -> bool {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }

    pub(super) fn dots(x: &[f32], u: &[f32], out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if has_avx2() {
            // SAFETY: the CPU supports AVX2 and FMA (checked just above).
            return unsafe { dots_avx2(x, u, out) };
        }
        dots_impl(x, u, out)
    }

    pub(super) fn accumulate_rows(x: &[f32], d: usize, codes: &[f32], k: usize, acc: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if has_avx2() {
            // SAFETY: the CPU supports AVX2 and FMA (checked just above).
            return unsafe { accumulate_avx2(x, d, codes, k, acc) };
        }
        accumulate_impl(x, d, codes, k, acc)
    }
}
