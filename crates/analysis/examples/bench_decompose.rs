//! Times the decompositions on a matrix read from `.npy` (the one tools/refgen/analysis_bench.py
//! writes and feeds to scikit-learn), printing one JSON line per run.
//!
//! cargo run --release -p xlvlm-analysis --example bench_decompose -- X.npy \
//!     [--k 20] [--kmeans-init INIT.npy] [--snmf-target COST] [--snmf-max-iter N] \
//!     [--snmf-dict-sweeps N] [--snmf-plain] \
//!     [--methods pca_randomized,pca_exact,kmeans,kmeans_init,snmf]

#[path = "../tests/common/npy.rs"]
mod npy;

use std::path::PathBuf;
use std::time::Instant;

use xlvlm_analysis::{
    KMeansInit, KMeansParams, Matrix, Model, PcaSolver, SnmfParams, dictionary, kmeans, pca,
};

fn load(path: &str) -> Matrix {
    let (shape, v) = npy::read_npy(&PathBuf::from(path)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(shape.len(), 2, "{path}: expected a 2-D array");
    Matrix::new(
        shape[0],
        shape[1],
        v.into_iter().map(|x| x as f32).collect(),
    )
    .expect("shape")
}

/// CPU seconds (user + system, all threads) this process has used so far, from
/// /proc/self/stat (Linux; clock ticks of 1/100 s). Other jobs on the machine stretch wall
/// time but not CPU time, so both are reported.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn exact_dl_cost(x: &Matrix, code: &Matrix, dict: &Matrix, alpha: f64) -> f64 {
    use rayon::prelude::*;
    let k = dict.rows;
    let per_row: Vec<f64> = (0..x.rows)
        .into_par_iter()
        .map(|i| {
            let v = code.row(i);
            let mut s = 0.0;
            for c in 0..x.cols {
                let r: f64 = (0..k)
                    .map(|j| f64::from(v[j]) * f64::from(dict.get(j, c)))
                    .sum();
                s += (f64::from(x.get(i, c)) - r).powi(2);
            }
            0.5 * s + alpha * v.iter().map(|&a| f64::from(a).abs()).sum::<f64>()
        })
        .collect();
    per_row.iter().sum()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = args
        .first()
        .expect("usage: bench_decompose X.npy [options]")
        .clone();
    let opt = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let k: usize = opt("--k").map_or(20, |v| v.parse().expect("--k"));
    let methods = opt("--methods")
        .unwrap_or_else(|| "pca_randomized,pca_exact,kmeans,kmeans_init,snmf".into());
    let snmf_target: Option<f64> = opt("--snmf-target").map(|v| v.parse().expect("--snmf-target"));
    let snmf_max_iter: usize = opt("--snmf-max-iter").map_or(1000, |v| v.parse().expect("iters"));
    // scikit-learn's plain alternating scheme (one atom pass, no extrapolation) with
    // --snmf-plain; otherwise the accelerated one.
    let snmf_plain = args.iter().any(|a| a == "--snmf-plain");
    let snmf_sweeps: usize = opt("--snmf-dict-sweeps")
        .map_or(if snmf_plain { 1 } else { 2 }, |v| {
            v.parse().expect("--snmf-dict-sweeps")
        });
    let x = load(&path);
    println!(
        "{{\"matrix\": \"{}x{}\", \"threads\": {}}}",
        x.rows,
        x.cols,
        rayon::current_num_threads()
    );
    for method in methods.split(',') {
        let t = Instant::now();
        let cpu0 = cpu_seconds();
        match method {
            "pca_randomized" | "pca_exact" => {
                let solver = if method == "pca_exact" {
                    PcaSolver::Exact
                } else {
                    PcaSolver::Randomized
                };
                let m = pca::fit(&x, k, solver, 0).expect("pca");
                let s = t.elapsed().as_secs_f64();
                let cpu = cpu_seconds() - cpu0;
                println!(
                    "{{\"method\": \"{method}\", \"seconds\": {s:.3}, \"cpu_seconds\": {cpu:.2}, \"explained_variance_sum\": {:.6}, \"evr_sum\": {:.8}}}",
                    m.explained_variance.iter().sum::<f64>(),
                    m.explained_variance_ratio.iter().sum::<f64>()
                );
            }
            "kmeans" | "kmeans_init" => {
                let init = if method == "kmeans_init" {
                    let p = opt("--kmeans-init").expect("kmeans_init needs --kmeans-init INIT.npy");
                    KMeansInit::Centres(load(&p))
                } else {
                    KMeansInit::KMeansPlusPlus
                };
                let params = KMeansParams {
                    init,
                    ..KMeansParams::default()
                };
                let t = Instant::now();
                let cpu0 = cpu_seconds();
                let m = kmeans::fit(&x, k, &params, 0).expect("kmeans");
                let s = t.elapsed().as_secs_f64();
                let cpu = cpu_seconds() - cpu0;
                println!(
                    "{{\"method\": \"{method}\", \"seconds\": {s:.3}, \"cpu_seconds\": {cpu:.2}, \"inertia\": {:.6}, \"n_iter\": {}}}",
                    m.inertia, m.iterations
                );
            }
            "snmf" => {
                let params = SnmfParams {
                    max_iter: snmf_max_iter,
                    stop_at_cost: snmf_target,
                    dict_sweeps: snmf_sweeps,
                    extrapolate: !snmf_plain,
                    ..SnmfParams::accelerated()
                };
                let m = dictionary::fit(&x, k, &params, 0).expect("snmf");
                let s = t.elapsed().as_secs_f64();
                let cpu = cpu_seconds() - cpu0;
                let reached = snmf_target.is_some_and(|c| m.costs.last().is_some_and(|&v| v <= c));
                println!(
                    "{{\"method\": \"snmf\", \"seconds\": {s:.3}, \"cpu_seconds\": {cpu:.2}, \"iterations\": {}, \"cost\": {:.3}, \"first_cost\": {:.3}, \"target\": {}, \"reached_target\": {reached}}}",
                    m.iterations,
                    m.costs.last().copied().unwrap_or(f64::NAN),
                    m.costs[0],
                    snmf_target.map_or("null".to_string(), |v| format!("{v:.3}"))
                );
                // The cost recomputed from the residual in f64, to confirm the fast cost.
                let exact = exact_dl_cost(&x, &m.code, &m.dictionary, m.alpha);
                println!("{{\"method\": \"snmf_cost_check\", \"cost_from_residual\": {exact:.3}}}");
                let t = Instant::now();
                let head = Matrix::new(500, x.cols, x.data[..500 * x.cols].to_vec()).expect("head");
                let codes = Model::Snmf(m).transform(&head).expect("transform");
                println!(
                    "{{\"method\": \"snmf_transform_500\", \"seconds\": {:.3}, \"nonzero_frac\": {:.4}}}",
                    t.elapsed().as_secs_f64(),
                    codes.data.iter().filter(|&&v| v > 0.0).count() as f64
                        / codes.data.len() as f64
                );
            }
            other => panic!("unknown method {other}"),
        }
    }
}
