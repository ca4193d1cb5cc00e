//! Errors of the metric computations: every one names what was wrong with which input.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum MetricsError {
    #[error("VQA: question {question_id} has a prediction but no annotation")]
    PredictionWithoutAnnotation { question_id: u64 },
    #[error("VQA: question {question_id} has an annotation but no prediction")]
    AnnotationWithoutPrediction { question_id: u64 },
    #[error("VQA: question {question_id} appears {count} times in the {what}")]
    DuplicateQuestion {
        question_id: u64,
        count: usize,
        what: &'static str,
    },
    #[error("VQA: question {question_id} has no ground-truth answers")]
    NoAnswers { question_id: u64 },
    #[error("VQA: no questions to evaluate")]
    EmptyVqa,
    #[error("captioning: no hypotheses to evaluate")]
    EmptyCaptions,
    #[error("captioning: image {id:?} has a hypothesis but no references")]
    HypothesisWithoutReferences { id: String },
    #[error("captioning: image {id:?} has references but no hypothesis")]
    ReferencesWithoutHypothesis { id: String },
    #[error("captioning: image {id:?} has an empty list of references")]
    NoReferences { id: String },
    #[error("{what}: {detail}")]
    InvalidInput { what: &'static str, detail: String },
}

pub type Result<T> = std::result::Result<T, MetricsError>;
