#![allow(dead_code)] // each test binary uses a different subset

pub mod npy;

use std::path::PathBuf;

use xlvlm_analysis::Matrix;

fn golden_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/goldens")
        .join(format!("{name}.npy"))
}

/// A golden array as (shape, values).
pub fn golden(name: &str) -> (Vec<usize>, Vec<f64>) {
    npy::read_npy(&golden_path(name)).unwrap_or_else(|e| panic!("{e}"))
}

/// A 2-D golden as a Matrix (f32).
pub fn golden_matrix(name: &str) -> Matrix {
    let (shape, v) = golden(name);
    assert_eq!(shape.len(), 2, "{name} is not 2-D");
    Matrix::new(shape[0], shape[1], v.iter().map(|&x| x as f32).collect()).unwrap()
}

pub fn golden_scalar(name: &str) -> f64 {
    golden(name).1[0]
}

pub fn rel_diff(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-12)
}

/// Largest |a - b| relative to the largest |b|.
pub fn max_rel_err(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-12);
    a.iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

pub fn to_f64(m: &Matrix) -> Vec<f64> {
    m.data.iter().map(|&v| f64::from(v)).collect()
}

/// Deterministic pseudo-random matrix for tests that need no golden (splitmix64 → [-1, 1)).
pub fn pseudo_random(rows: usize, cols: usize, seed: u64) -> Matrix {
    let mut state = seed;
    let data = (0..rows * cols)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    Matrix::new(rows, cols, data).unwrap()
}
