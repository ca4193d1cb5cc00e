//! Parity with scikit-learn 1.9.1 / scipy from the same inputs and initial states; the goldens
//! come from tools/refgen/analysis_goldens.py.

mod common;

use common::*;
use xlvlm_analysis::{
    KMeansInit, KMeansParams, Matrix, PcaSolver, SnmfInit, SnmfModel, SnmfParams, kmeans,
    linear_sum_assignment, pca,
};

fn check_pca(case: &str, solver: PcaSolver) {
    let x = golden_matrix(&format!("{case}_x"));
    let m = pca::fit(&x, 5, solver, 7).unwrap();
    let ev = golden(&format!("{case}_explained_variance")).1;
    let evr = golden(&format!("{case}_explained_variance_ratio")).1;
    for i in 0..5 {
        assert!(
            rel_diff(m.explained_variance[i], ev[i]) < 1e-4,
            "{case} {solver:?} explained variance {i}: {} vs {}",
            m.explained_variance[i],
            ev[i]
        );
        assert!(
            rel_diff(m.explained_variance_ratio[i], evr[i]) < 1e-4,
            "{case} {solver:?} ratio {i}: {} vs {}",
            m.explained_variance_ratio[i],
            evr[i]
        );
    }
    // Same sign convention as scikit-learn, so components compare signed.
    let comps = golden(&format!("{case}_components")).1;
    let err = max_rel_err(&to_f64(&m.components), &comps);
    let ev_err = (0..5)
        .map(|i| rel_diff(m.explained_variance[i], ev[i]))
        .fold(0.0, f64::max);
    eprintln!("{case} {solver:?}: explained variance {ev_err:.2e}, components {err:.2e}");
    assert!(err < 1e-4, "{case} {solver:?} components differ by {err}");
    let mean = golden(&format!("{case}_mean")).1;
    let mean_ours: Vec<f64> = m.mean.iter().map(|&v| f64::from(v)).collect();
    assert!(max_rel_err(&mean_ours, &mean) < 1e-5);
    let head = Matrix::new(20, x.cols, x.data[..20 * x.cols].to_vec()).unwrap();
    let proj = m.transform(&head).unwrap();
    let err = max_rel_err(&to_f64(&proj), &golden(&format!("{case}_transform")).1);
    assert!(err < 1e-4, "{case} {solver:?} projections differ by {err}");
}

#[test]
fn pca_exact_matches_sklearn_tall_and_wide() {
    check_pca("pca_tall", PcaSolver::Exact);
    check_pca("pca_wide", PcaSolver::Exact);
}

#[test]
fn pca_randomized_matches_sklearn_full_on_decaying_spectrum() {
    check_pca("pca_tall", PcaSolver::Randomized);
    check_pca("pca_wide", PcaSolver::Randomized);
}

#[test]
fn pca_auto_picks_the_solver_sklearn_picks() {
    let (shape, rule) = golden("pca_auto_rule");
    for r in 0..shape[0] {
        let (n, d, k) = (
            rule[r * 4] as usize,
            rule[r * 4 + 1] as usize,
            rule[r * 4 + 2] as usize,
        );
        let want = if rule[r * 4 + 3] == 1.0 {
            PcaSolver::Randomized
        } else {
            PcaSolver::Exact
        };
        assert_eq!(PcaSolver::Auto.resolve(n, d, k), want, "{n}x{d}, k={k}");
    }
}

#[test]
fn kmeans_matches_sklearn_from_the_same_init() {
    let x = golden_matrix("kmeans_x");
    let init = golden_matrix("kmeans_init");
    let params = KMeansParams {
        init: KMeansInit::Centres(init),
        n_init: 1,
        max_iter: 300,
        tol: 1e-4,
    };
    let m = kmeans::fit(&x, 6, &params, 0).unwrap();
    let inertia = golden_scalar("kmeans_inertia");
    assert!(
        rel_diff(m.inertia, inertia) < 1e-6,
        "{} vs {inertia}",
        m.inertia
    );
    let labels: Vec<usize> = golden("kmeans_labels")
        .1
        .iter()
        .map(|&v| v as usize)
        .collect();
    assert_eq!(m.labels, labels);
    assert_eq!(m.iterations, golden_scalar("kmeans_n_iter") as usize);
    assert!(max_rel_err(&to_f64(&m.centres), &golden("kmeans_centres").1) < 1e-5);
    let head = Matrix::new(20, x.cols, x.data[..20 * x.cols].to_vec()).unwrap();
    let dist = m.distances(&head).unwrap();
    assert!(max_rel_err(&to_f64(&dist), &golden("kmeans_distances").1) < 1e-4);
}

#[test]
fn kmeans_reseeds_an_empty_cluster_as_sklearn() {
    let x = golden_matrix("kmeans_x");
    let params = KMeansParams {
        init: KMeansInit::Centres(golden_matrix("kmeans_empty_init")),
        n_init: 1,
        max_iter: 300,
        tol: 1e-4,
    };
    let m = kmeans::fit(&x, 4, &params, 0).unwrap();
    let inertia = golden_scalar("kmeans_empty_inertia");
    assert!(
        rel_diff(m.inertia, inertia) < 1e-6,
        "{} vs {inertia}",
        m.inertia
    );
    let labels: Vec<usize> = golden("kmeans_empty_labels")
        .1
        .iter()
        .map(|&v| v as usize)
        .collect();
    assert_eq!(m.labels, labels);
    assert_eq!(m.iterations, golden_scalar("kmeans_empty_n_iter") as usize);
}

#[test]
fn snmf_matches_sklearn_dictionary_learning_from_the_same_init() {
    let x = golden_matrix("dl_x");
    let params = SnmfParams {
        alpha: 1.0,
        max_iter: 20,
        tol: 1e-12,
        init: SnmfInit::Given {
            dictionary: golden_matrix("dl_dict_init"),
            code: golden_matrix("dl_code_init"),
        },
        ..SnmfParams::default()
    };
    let m = xlvlm_analysis::dictionary::fit(&x, 8, &params, 0).unwrap();
    let costs = golden("dl_costs").1;
    assert_eq!(m.costs.len(), costs.len());
    let worst = m
        .costs
        .iter()
        .zip(&costs)
        .map(|(a, b)| rel_diff(*a, *b))
        .fold(0.0, f64::max);
    eprintln!("snmf: largest relative cost difference over 20 iterations {worst:.2e}");
    for (i, (a, b)) in m.costs.iter().zip(&costs).enumerate() {
        assert!(
            rel_diff(*a, *b) < 1e-4,
            "cost after iteration {i}: {a} vs {b}"
        );
    }
    let err = max_rel_err(&to_f64(&m.dictionary), &golden("dl_dictionary").1);
    assert!(err < 1e-3, "dictionary differs by {err}");
    let err = max_rel_err(&to_f64(&m.code), &golden("dl_code").1);
    assert!(err < 1e-3, "codes differ by {err}");
    assert!(m.code.data.iter().all(|&v| v >= 0.0));
}

#[test]
fn snmf_transform_matches_sklearn_lasso_cd_on_the_same_dictionary() {
    let x = golden_matrix("dl_x");
    let dictionary = golden_matrix("dl_dictionary");
    let model = SnmfModel {
        code: Matrix::zeros(0, dictionary.rows),
        dictionary,
        costs: vec![],
        iterations: 0,
        alpha: 1.0,
        cd_max_iter: 1000,
    };
    let head = Matrix::new(20, x.cols, x.data[..20 * x.cols].to_vec()).unwrap();
    let codes = model.transform(&head).unwrap();
    let err = max_rel_err(&to_f64(&codes), &golden("dl_transform").1);
    assert!(err < 1e-4, "transform codes differ by {err}");
}

#[test]
fn linear_sum_assignment_matches_scipy() {
    for case in ["lsa_square", "lsa_wide", "lsa_tall"] {
        let (shape, cost) = golden(&format!("{case}_cost"));
        let rows: Vec<usize> = golden(&format!("{case}_rows"))
            .1
            .iter()
            .map(|&v| v as usize)
            .collect();
        let cols: Vec<usize> = golden(&format!("{case}_cols"))
            .1
            .iter()
            .map(|&v| v as usize)
            .collect();
        let pairs = linear_sum_assignment(&cost, shape[0], shape[1]).unwrap();
        let want: Vec<(usize, usize)> = rows.into_iter().zip(cols).collect();
        assert_eq!(pairs, want, "{case}");
    }
}
