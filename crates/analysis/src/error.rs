//! Errors of the decompositions: every one says what was wrong with which input.

/// Why a decomposition or a transform could not run.
#[derive(Debug, thiserror::Error)]
pub enum AnalysisError {
    #[error("{what}: the matrix is empty ({rows}x{cols}); need at least one row and one column")]
    Empty {
        what: &'static str,
        rows: usize,
        cols: usize,
    },
    #[error("{what}: row {row}, column {col} holds {value}, expected a finite number")]
    NotFinite {
        what: &'static str,
        row: usize,
        col: usize,
        value: f32,
    },
    #[error("matrix data has {len} values, expected rows x cols = {rows} x {cols} = {expected}")]
    ShapeMismatch {
        rows: usize,
        cols: usize,
        len: usize,
        expected: usize,
    },
    #[error("{method}: asked for {k} concepts but {limit}")]
    TooManyConcepts {
        method: &'static str,
        k: usize,
        limit: String,
    },
    #[error(
        "{what}: has {got} columns, expected {expected} (the dimension the model was fitted on)"
    )]
    DimensionMismatch {
        what: &'static str,
        got: usize,
        expected: usize,
    },
    #[error("{what}: shape is {rows}x{cols}, expected {expected_rows}x{expected_cols}")]
    InitShape {
        what: &'static str,
        rows: usize,
        cols: usize,
        expected_rows: usize,
        expected_cols: usize,
    },
    #[error("invalid parameter {name} = {value}: {expected}")]
    InvalidParameter {
        name: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("{what}: the linear-algebra routine did not converge")]
    NoConvergence { what: &'static str },
}

pub type Result<T> = std::result::Result<T, AnalysisError>;
