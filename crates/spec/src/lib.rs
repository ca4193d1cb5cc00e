//! xlvlm experiment files.
//!
//! An experiment file is TOML with an `[experiment]` table, named `[models.*]`, `[data.*]` and
//! `[stage.*]` tables, optional `include`s of fragments, `from = "other_stage"` inheritance, and
//! sweeps (`alpha = { sweep = [0.5, 1, 2] }`). [`load`] validates everything before anything
//! runs and reports every problem with file, line, column and a hint.

mod error;
mod load;
mod params;
mod source;

pub use error::{SpecError, SpecErrors, did_you_mean};
pub use load::{Experiment, Instance, Stage, SweepAxis, load};
pub use params::*;
pub use source::{FileId, LineCol, SourceMap, Span};
