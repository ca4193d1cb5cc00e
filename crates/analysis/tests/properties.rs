//! Behaviour that needs no external reference: semi-NMF descent, determinism, transforms,
//! matching, and the errors bad input gets.

mod common;

use common::*;
use xlvlm_analysis::{
    AnalysisError, KMeansParams, Matrix, Method, PcaSolver, SemiNmfParams, SnmfParams, decompose,
    linear_sum_assignment, match_concepts, seminmf,
};

/// X = V U + noise with non-negative V (`n x k`) and mixed-sign U (`k x d`).
fn planted(n: usize, d: usize, k: usize, noise: f32) -> Matrix {
    let v = pseudo_random(n, k, 11);
    let u = pseudo_random(k, d, 12);
    let e = pseudo_random(n, d, 13);
    let mut x = Matrix::zeros(n, d);
    for i in 0..n {
        for c in 0..d {
            let s: f32 = (0..k).map(|j| v.get(i, j).abs() * 2.0 * u.get(j, c)).sum();
            x.data[i * d + c] = s + noise * e.get(i, c);
        }
    }
    x
}

fn all_methods() -> Vec<Method> {
    vec![
        Method::Pca {
            solver: PcaSolver::Exact,
        },
        Method::Pca {
            solver: PcaSolver::Randomized,
        },
        Method::KMeans(KMeansParams {
            n_init: 3,
            ..KMeansParams::default()
        }),
        Method::Snmf(SnmfParams {
            max_iter: 15,
            ..SnmfParams::default()
        }),
        Method::SemiNmf(SemiNmfParams {
            max_iter: 30,
            tol: 0.0,
        }),
        Method::Simple,
    ]
}

#[test]
fn semi_nmf_objective_never_increases_and_recovers_a_planted_factorisation() {
    let x = planted(150, 30, 4, 0.01);
    let m = seminmf::fit(
        &x,
        4,
        &SemiNmfParams {
            max_iter: 500,
            tol: 1e-9,
        },
        3,
    )
    .unwrap();
    let x_norm2: f64 = x.data.iter().map(|&v| f64::from(v).powi(2)).sum();
    // The objective comes from f32 products (‖X‖² − 2⟨V, XUᵀ⟩ + ⟨VᵀV, UUᵀ⟩): it is exact to
    // about 1e-7·‖X‖², so only rises above that rounding level count.
    for w in m.objectives.windows(2) {
        assert!(
            w[1] <= w[0] + 1e-6 * x_norm2,
            "objective rose: {} -> {}",
            w[0],
            w[1]
        );
    }
    assert!(m.objectives[0] > 10.0 * m.objectives.last().unwrap());
    let rel = m.objectives.last().unwrap() / x_norm2;
    assert!(rel < 0.01, "relative reconstruction error {rel}");
    assert!(m.activations.data.iter().all(|&v| v >= 0.0));
    // Transform of the training rows reconstructs them about as well.
    let v = m.transform(&x).unwrap();
    let mut err = 0.0f64;
    for i in 0..x.rows {
        for c in 0..x.cols {
            let r: f32 = (0..4).map(|j| v.get(i, j) * m.concepts.get(j, c)).sum();
            err += f64::from(x.get(i, c) - r).powi(2);
        }
    }
    assert!(
        err / x_norm2 < 0.02,
        "transform reconstruction error {}",
        err / x_norm2
    );
}

#[test]
fn every_method_is_deterministic_for_a_seed() {
    let x = planted(120, 24, 5, 0.3);
    for method in all_methods() {
        let a = decompose(&x, 5, &method, 42).unwrap();
        let b = decompose(&x, 5, &method, 42).unwrap();
        assert_eq!(a, b, "{method:?}");
        assert_eq!((a.concepts.rows, a.concepts.cols), (5, 24));
        assert_eq!((a.activations.rows, a.activations.cols), (120, 5));
        assert!(a.objective.is_finite());
    }
}

#[test]
fn seeds_matter_where_randomness_is_used() {
    let x = pseudo_random(200, 16, 5);
    let km = Method::KMeans(KMeansParams::default());
    let a = decompose(&x, 8, &km, 1).unwrap();
    let b = decompose(&x, 8, &km, 2).unwrap();
    assert_ne!(a.concepts, b.concepts);
}

#[test]
fn transform_of_training_rows_gives_the_training_activations() {
    let x = planted(100, 20, 4, 0.2);
    for method in [
        Method::Pca {
            solver: PcaSolver::Exact,
        },
        Method::KMeans(KMeansParams::default()),
        Method::Simple,
    ] {
        let d = decompose(&x, 4, &method, 0).unwrap();
        let t = d.transform(&x).unwrap();
        let err = max_rel_err(&to_f64(&t), &to_f64(&d.activations));
        assert!(err < 1e-5, "{method:?}: {err}");
    }
    // snmf: the codes after the last iteration are a lasso solution for the atoms before the
    // last update, so compare the objective rather than the codes.
    let d = decompose(&x, 4, &Method::Snmf(SnmfParams::default()), 0).unwrap();
    let t = d.transform(&x).unwrap();
    assert!(t.data.iter().all(|&v| v >= 0.0));
    let diff = max_rel_err(&to_f64(&t), &to_f64(&d.activations));
    assert!(diff < 1e-2, "snmf transform vs fitted codes: {diff}");
}

#[test]
fn snmf_from_svd_init_decreases_the_cost() {
    let x = planted(120, 24, 5, 0.3);
    let d = decompose(
        &x,
        5,
        &Method::Snmf(SnmfParams {
            max_iter: 30,
            ..SnmfParams::default()
        }),
        0,
    )
    .unwrap();
    let xlvlm_analysis::Model::Snmf(m) = &d.model else {
        panic!("snmf model expected")
    };
    assert!(m.costs.last().unwrap() < &m.costs[0]);
    for atom in 0..5 {
        let norm: f32 = m
            .dictionary
            .row(atom)
            .iter()
            .map(|v| v * v)
            .sum::<f32>()
            .sqrt();
        assert!(norm <= 1.0 + 1e-5, "atom {atom} has norm {norm}");
    }
}

#[test]
fn pca_with_replaced_concepts_keeps_the_training_mean() {
    let x = planted(60, 10, 3, 0.2);
    let d = decompose(
        &x,
        3,
        &Method::Pca {
            solver: PcaSolver::Exact,
        },
        0,
    )
    .unwrap();
    let shifted = d.model.with_concepts(d.concepts.clone()).unwrap();
    assert_eq!(shifted.transform(&x).unwrap(), d.activations);
    assert!(matches!(
        d.model.with_concepts(Matrix::zeros(2, 10)),
        Err(AnalysisError::InitShape { .. })
    ));
}

#[test]
fn simple_takes_the_largest_norm_rows() {
    let x = Matrix::new(4, 2, vec![1.0, 0.0, 0.0, 5.0, 2.0, 2.0, 0.1, 0.1]).unwrap();
    let d = decompose(&x, 2, &Method::Simple, 0).unwrap();
    assert_eq!(d.concepts.data, vec![0.0, 5.0, 2.0, 2.0]);
    assert_eq!(d.activations.get(1, 0), 1.0); // distance 0 to itself
}

#[test]
fn match_concepts_recovers_a_permutation() {
    let a = pseudo_random(6, 12, 21);
    let perm = [3usize, 0, 5, 1, 4, 2];
    let mut b = Matrix::zeros(6, 12);
    for (i, &p) in perm.iter().enumerate() {
        for c in 0..12 {
            b.data[p * 12 + c] = a.get(i, c) * 2.0 + 0.01 * ((i + c) as f32).sin();
        }
    }
    assert_eq!(match_concepts(&a, &b).unwrap(), perm.to_vec());
}

#[test]
fn linear_sum_assignment_is_optimal_against_brute_force() {
    fn permutations(n: usize) -> Vec<Vec<usize>> {
        if n == 0 {
            return vec![vec![]];
        }
        let mut out = Vec::new();
        for p in permutations(n - 1) {
            for pos in 0..=p.len() {
                let mut q = p.clone();
                q.insert(pos, n - 1);
                out.push(q);
            }
        }
        out
    }
    for seed in 0..20 {
        let n = 6;
        let m = pseudo_random(n, n, 100 + seed);
        let cost: Vec<f64> = m.data.iter().map(|&v| f64::from(v)).collect();
        let best = permutations(n)
            .iter()
            .map(|p| (0..n).map(|i| cost[i * n + p[i]]).sum::<f64>())
            .fold(f64::INFINITY, f64::min);
        let pairs = linear_sum_assignment(&cost, n, n).unwrap();
        let got: f64 = pairs.iter().map(|&(r, c)| cost[r * n + c]).sum();
        assert!((got - best).abs() < 1e-9, "seed {seed}: {got} vs {best}");
    }
}

#[test]
fn bad_input_gives_clear_errors() {
    let mut x = pseudo_random(10, 4, 1);
    x.data[2 * 4 + 3] = f32::NAN;
    for method in all_methods() {
        match decompose(&x, 2, &method, 0) {
            Err(AnalysisError::NotFinite { row: 2, col: 3, .. }) => {}
            other => panic!("{method:?}: expected NotFinite at row 2, got {other:?}"),
        }
    }
    x.data[2 * 4 + 3] = f32::INFINITY;
    let msg = decompose(&x, 2, &Method::Simple, 0)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("row 2") && msg.contains("inf"), "{msg}");

    let x = pseudo_random(5, 4, 1);
    for method in all_methods() {
        assert!(
            matches!(
                decompose(&x, 6, &method, 0),
                Err(AnalysisError::TooManyConcepts { k: 6, .. })
            ),
            "{method:?}"
        );
        assert!(matches!(
            decompose(&x, 0, &method, 0),
            Err(AnalysisError::TooManyConcepts { k: 0, .. })
        ));
        let empty = Matrix::new(0, 4, vec![]).unwrap();
        assert!(matches!(
            decompose(&empty, 1, &method, 0),
            Err(AnalysisError::Empty { .. })
        ));
    }
    assert!(matches!(
        Matrix::new(2, 3, vec![0.0; 5]),
        Err(AnalysisError::ShapeMismatch { .. })
    ));
    // Transform with the wrong width.
    let d = decompose(&x, 2, &Method::Simple, 0).unwrap();
    assert!(matches!(
        d.transform(&pseudo_random(3, 5, 2)),
        Err(AnalysisError::DimensionMismatch {
            got: 5,
            expected: 4,
            ..
        })
    ));
    // Initial state of the wrong shape.
    let bad_init = Method::KMeans(KMeansParams {
        init: xlvlm_analysis::KMeansInit::Centres(Matrix::zeros(3, 4)),
        ..KMeansParams::default()
    });
    assert!(matches!(
        decompose(&x, 2, &bad_init, 0),
        Err(AnalysisError::InitShape { .. })
    ));
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    let x = planted(300, 40, 5, 0.3);
    let run = |threads: usize, method: &Method| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| decompose(&x, 5, method, 9).unwrap())
    };
    for method in all_methods() {
        assert_eq!(run(1, &method), run(3, &method), "{method:?}");
    }
}

#[test]
fn degenerate_inputs_give_finite_results() {
    let zeros = Matrix::zeros(12, 6);
    let one_row = pseudo_random(1, 6, 4);
    let mut repeated = Matrix::zeros(10, 6);
    for i in 0..10 {
        repeated.data[i * 6..(i + 1) * 6].copy_from_slice(one_row.row(0));
    }
    for method in all_methods() {
        for (name, x, k) in [
            ("zeros", &zeros, 3),
            ("one row", &one_row, 1),
            ("repeated", &repeated, 2),
        ] {
            let pca = matches!(method, Method::Pca { .. });
            match decompose(x, k, &method, 0) {
                Ok(d) => {
                    assert!(d.objective.is_finite(), "{method:?} on {name}");
                    assert!(
                        d.activations.data.iter().all(|v| v.is_finite()),
                        "{method:?} on {name}"
                    );
                    assert!(
                        d.concepts.data.iter().all(|v| v.is_finite()),
                        "{method:?} on {name}"
                    );
                }
                // PCA of a single row has no variance to explain; it must say so, not panic.
                Err(e) => assert!(pca && name == "one row", "{method:?} on {name}: {e}"),
            }
        }
    }
}
