//! In-memory feature tables: named columns of equal length, some of them fixed-width vectors.

use std::collections::BTreeMap;

use crate::error::{Result, StoreError};

/// A feature table: one row per sample (or per sample × position), with metadata columns and one
/// or more fixed-width vector columns. Stored as Parquet by [`crate::write_parquet`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FeatureTable {
    /// Column order is preserved on disk.
    pub columns: Vec<(String, Column)>,
    /// Parquet key-value metadata (model, dtype, hook names, ...).
    pub metadata: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Column {
    Utf8(Vec<String>),
    Int64(Vec<i64>),
    Float64(Vec<f64>),
    Bool(Vec<bool>),
    /// Row-major `rows × dim` values. `half = true` stores them as Float16 on disk (half the
    /// bytes, each value rounded to the nearest Float16); they are always f32 in memory.
    Vector {
        dim: usize,
        values: Vec<f32>,
        half: bool,
    },
}

impl Column {
    /// Number of rows (for a vector column: `values.len() / dim`; 0 when `dim` is 0).
    pub fn len(&self) -> usize {
        match self {
            Column::Utf8(values) => values.len(),
            Column::Int64(values) => values.len(),
            Column::Float64(values) => values.len(),
            Column::Bool(values) => values.len(),
            Column::Vector { dim, values, .. } => values.len().checked_div(*dim).unwrap_or(0),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A short name of the column type, for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Column::Utf8(_) => "utf8",
            Column::Int64(_) => "int64",
            Column::Float64(_) => "float64",
            Column::Bool(_) => "bool",
            Column::Vector { half: false, .. } => "vector<float32>",
            Column::Vector { half: true, .. } => "vector<float16>",
        }
    }
}

impl FeatureTable {
    pub fn new() -> FeatureTable {
        FeatureTable::default()
    }

    /// Builder: appends a column.
    pub fn with_column(mut self, name: impl Into<String>, column: Column) -> FeatureTable {
        self.columns.push((name.into(), column));
        self
    }

    /// Builder: sets a key-value metadata entry.
    pub fn with_metadata(
        mut self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> FeatureTable {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// Number of rows (that of the first column; 0 without columns).
    pub fn num_rows(&self) -> usize {
        self.columns.first().map_or(0, |(_, column)| column.len())
    }

    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns
            .iter()
            .find(|(column_name, _)| column_name == name)
            .map(|(_, column)| column)
    }

    /// `(dim, row-major values)` of a vector column.
    pub fn vector(&self, name: &str) -> Option<(usize, &[f32])> {
        match self.column(name)? {
            Column::Vector { dim, values, .. } => Some((*dim, values)),
            _ => None,
        }
    }

    pub fn strings(&self, name: &str) -> Option<&[String]> {
        match self.column(name)? {
            Column::Utf8(values) => Some(values),
            _ => None,
        }
    }

    pub fn ints(&self, name: &str) -> Option<&[i64]> {
        match self.column(name)? {
            Column::Int64(values) => Some(values),
            _ => None,
        }
    }

    pub fn floats(&self, name: &str) -> Option<&[f64]> {
        match self.column(name)? {
            Column::Float64(values) => Some(values),
            _ => None,
        }
    }

    pub fn bools(&self, name: &str) -> Option<&[bool]> {
        match self.column(name)? {
            Column::Bool(values) => Some(values),
            _ => None,
        }
    }

    /// Checks that the table can be stored and read back as it is: unique non-empty column
    /// names, equal lengths, `values.len() == rows * dim` with `dim >= 1`, finite vector values
    /// (and within the Float16 range for `half` columns). Errors name the column and row.
    pub fn validate(&self) -> Result<()> {
        let invalid = |reason: String| StoreError::InvalidTable { path: None, reason };
        let rows = self.num_rows();
        for (position, (name, column)) in self.columns.iter().enumerate() {
            if name.is_empty() {
                return Err(invalid(format!("column {position} has an empty name")));
            }
            if self.columns[..position]
                .iter()
                .any(|(other, _)| other == name)
            {
                return Err(invalid(format!("column name {name:?} appears twice")));
            }
            if let Column::Vector { dim, values, half } = column {
                if *dim == 0 {
                    return Err(invalid(format!("vector column {name:?} has dim 0")));
                }
                if values.len() % dim != 0 {
                    return Err(invalid(format!(
                        "vector column {name:?} has {} values, not a multiple of dim {dim}",
                        values.len()
                    )));
                }
                let limit = if *half {
                    f32::from(half::f16::MAX)
                } else {
                    f32::MAX
                };
                if let Some(index) = first_out_of_range(values, limit) {
                    let value = values[index];
                    let what = if value.is_finite() {
                        "a value outside the Float16 range"
                    } else {
                        "a non-finite value"
                    };
                    return Err(invalid(format!(
                        "vector column {name:?} has {what} ({value}) at row {}, element {}",
                        index / dim,
                        index % dim
                    )));
                }
            }
            if column.len() != rows {
                return Err(invalid(format!(
                    "column {name:?} has {} rows but column {:?} has {rows}",
                    column.len(),
                    self.columns[0].0
                )));
            }
        }
        Ok(())
    }
}

/// Index of the first value that is NaN or whose magnitude exceeds `limit` (infinities do).
fn first_out_of_range(values: &[f32], limit: f32) -> Option<usize> {
    // A branch-free scan per chunk (it vectorises); the exact search only in a failing chunk.
    const CHUNK: usize = 1024;
    let in_range = |v: &f32| v.abs() <= limit; // false for NaN
    values.chunks(CHUNK).enumerate().find_map(|(chunk, part)| {
        let all_in_range = part.iter().fold(true, |acc, v| acc & in_range(v));
        (!all_in_range).then(|| chunk * CHUNK + part.iter().position(|v| !in_range(v)).unwrap_or(0))
    })
}
