//! Dense f32 decompositions for concept dictionaries (xl-vlms' `decompose_activations`):
//! PCA, k-means, sparse non-negative dictionary learning (`snmf`), semi-NMF and `simple`,
//! plus concept matching and shift analysis between two feature sets (see [`shift`]). Inputs
//! are row-major `rows x cols` matrices (one sample per row).
//!
//! Every method is seeded and gives the same bits for the same seed whatever the number of
//! rayon threads (parallel work is split in fixed blocks and summed in a fixed order; tested).
//! The one exception is exact PCA of large matrices, whose Gram product and eigensolver come
//! from faer: there the bits are the same for the same thread count.
//!
//! Large products of the data with the concepts use small kernels written for this shape
//! (the data streamed once against k concepts held in cache, with AVX2 chosen at run time);
//! SVD/eigen/QR of large matrices use faer.
//!
//! ```
//! use xlvlm_analysis::{decompose, Matrix, Method, PcaSolver};
//! let x = Matrix::new(4, 2, vec![1.0, 0.0, 2.0, 0.1, 3.0, -0.1, 4.0, 0.0]).unwrap();
//! let d = decompose(&x, 1, &Method::Pca { solver: PcaSolver::Exact }, 0).unwrap();
//! assert_eq!((d.concepts.rows, d.activations.rows), (1, 4));
//! ```

pub mod dictionary;
mod error;
pub mod kmeans;
pub mod matching;
mod matrix;
pub mod pca;
pub mod seminmf;
pub mod shift;
pub mod simple;

pub use dictionary::{SnmfInit, SnmfModel, SnmfParams};
pub use error::{AnalysisError, Result};
pub use kmeans::{KMeansInit, KMeansModel, KMeansParams};
pub use matching::{cosine_similarity, linear_sum_assignment, match_concepts};
pub use matrix::Matrix;
pub use pca::{PcaModel, PcaSolver};
pub use seminmf::{SemiNmfModel, SemiNmfParams};
pub use shift::{
    Aggregation, Association, ConceptShiftAnalysis, ConceptShiftParams, MatchBy, Overlap, Pair,
    PrincipalShift, Recovery, ShiftStats, SignRule, concept_directions, concept_shifts,
    mean_of_shifts, pca_of_differences, recovery_overlaps, shift_of_means,
};

/// A decomposition method and its parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum Method {
    Pca {
        solver: PcaSolver,
    },
    KMeans(KMeansParams),
    /// xl-vlms' `snmf`/`nndl`: dictionary learning with non-negative sparse codes.
    Snmf(SnmfParams),
    SemiNmf(SemiNmfParams),
    /// The `k` largest-norm rows as concepts.
    Simple,
}

/// A fitted model: what `transform` needs, plus each method's own outputs.
#[derive(Debug, Clone, PartialEq)]
pub enum Model {
    Pca(PcaModel),
    KMeans(KMeansModel),
    Snmf(SnmfModel),
    SemiNmf(SemiNmfModel),
    /// The concepts themselves.
    Simple(Matrix),
}

/// Concepts and activations of a matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct Decomposition {
    /// `k x cols`.
    pub concepts: Matrix,
    /// `rows x k`: PCA projections of the centred rows; `1 / (1 + distance)` for k-means and
    /// `simple`; non-negative codes for `snmf` and semi-NMF.
    pub activations: Matrix,
    /// PCA: total explained variance of the k components; k-means: inertia; snmf:
    /// ½‖X − VU‖² + α‖V‖₁; semi-NMF: ‖X − VU‖²; simple: sum of squared distances to the
    /// nearest concept.
    pub objective: f64,
    pub iterations: usize,
    pub model: Model,
}

/// Decomposes `x` into `k` concepts.
pub fn decompose(x: &Matrix, k: usize, method: &Method, seed: u64) -> Result<Decomposition> {
    match method {
        Method::Pca { solver } => {
            let m = pca::fit(x, k, *solver, seed)?;
            let activations = m.transform(x)?;
            Ok(Decomposition {
                concepts: m.components.clone(),
                activations,
                objective: m.explained_variance.iter().sum(),
                iterations: 1,
                model: Model::Pca(m),
            })
        }
        Method::KMeans(p) => {
            let m = kmeans::fit(x, k, p, seed)?;
            let activations = inverse_distance(&kmeans::euclidean_distances(x, &m.centres));
            Ok(Decomposition {
                concepts: m.centres.clone(),
                activations,
                objective: m.inertia,
                iterations: m.iterations,
                model: Model::KMeans(m),
            })
        }
        Method::Snmf(p) => {
            let m = dictionary::fit(x, k, p, seed)?;
            Ok(Decomposition {
                concepts: m.dictionary.clone(),
                activations: m.code.clone(),
                objective: *m.costs.last().expect("at least one iteration"),
                iterations: m.iterations,
                model: Model::Snmf(m),
            })
        }
        Method::SemiNmf(p) => {
            let m = seminmf::fit(x, k, p, seed)?;
            Ok(Decomposition {
                concepts: m.concepts.clone(),
                activations: m.activations.clone(),
                objective: *m.objectives.last().expect("at least one iteration"),
                iterations: m.iterations,
                model: Model::SemiNmf(m),
            })
        }
        Method::Simple => {
            let concepts = simple::fit(x, k)?;
            let dist = kmeans::euclidean_distances(x, &concepts);
            let objective = (0..dist.rows)
                .map(|i| {
                    let d = dist.row(i).iter().fold(f32::INFINITY, |a, &b| a.min(b));
                    f64::from(d) * f64::from(d)
                })
                .sum();
            Ok(Decomposition {
                concepts: concepts.clone(),
                activations: inverse_distance(&dist),
                objective,
                iterations: 1,
                model: Model::Simple(concepts),
            })
        }
    }
}

fn inverse_distance(dist: &Matrix) -> Matrix {
    Matrix {
        rows: dist.rows,
        cols: dist.cols,
        data: dist.data.iter().map(|&d| 1.0 / (1.0 + d)).collect(),
    }
}

impl Model {
    /// Activations of new rows on the fitted concepts, defined as for the training rows.
    pub fn transform(&self, x: &Matrix) -> Result<Matrix> {
        match self {
            Model::Pca(m) => m.transform(x),
            Model::KMeans(m) => Ok(inverse_distance(&m.distances(x)?)),
            Model::Snmf(m) => m.transform(x),
            Model::SemiNmf(m) => m.transform(x),
            Model::Simple(c) => {
                x.validate_width("simple transform input", c.cols)?;
                Ok(inverse_distance(&kmeans::euclidean_distances(x, c)))
            }
        }
    }

    /// The same model with other concepts (same shape), e.g. shifted concepts in shift
    /// analysis. PCA keeps its training mean (xl-vlms left it unset, so PCA could not be used
    /// there).
    pub fn with_concepts(&self, concepts: Matrix) -> Result<Model> {
        concepts.validate("replacement concepts")?;
        let current = self.concepts();
        if concepts.rows != current.rows || concepts.cols != current.cols {
            return Err(AnalysisError::InitShape {
                what: "replacement concepts",
                rows: concepts.rows,
                cols: concepts.cols,
                expected_rows: current.rows,
                expected_cols: current.cols,
            });
        }
        let mut out = self.clone();
        match &mut out {
            Model::Pca(m) => m.components = concepts,
            Model::KMeans(m) => m.centres = concepts,
            Model::Snmf(m) => m.dictionary = concepts,
            Model::SemiNmf(m) => m.concepts = concepts,
            Model::Simple(c) => *c = concepts,
        }
        Ok(out)
    }

    pub fn concepts(&self) -> &Matrix {
        match self {
            Model::Pca(m) => &m.components,
            Model::KMeans(m) => &m.centres,
            Model::Snmf(m) => &m.dictionary,
            Model::SemiNmf(m) => &m.concepts,
            Model::Simple(c) => c,
        }
    }
}

impl Decomposition {
    /// Activations of new rows on these concepts (see [`Model::transform`]).
    pub fn transform(&self, x: &Matrix) -> Result<Matrix> {
        self.model.transform(x)
    }
}
