//! xlvlm-store: the artifact store of the xlvlm pipeline runner and its Parquet I/O.
//!
//! * [`Store`]: content-keyed artifacts under `objects/`, each a directory with data files and a
//!   `manifest.json` written last; atomic publish by rename; per-key OS locks; human names;
//!   garbage collection.
//! * [`Staging`]: building an artifact, with crash-safe numbered Parquet shards that a resumed
//!   run continues from.
//! * [`FeatureTable`] and [`write_parquet`] / [`read_parquet`]: tables of metadata columns and
//!   fixed-width vectors as Parquet (zstd) that pyarrow, polars and duckdb read.
//! * [`read_matrix_npy`], [`read_matrix_safetensors`], [`read_matrix_parquet`],
//!   [`read_row_ids`]: user matrices for the `import` stage.

mod error;
mod fsutil;
mod import;
mod key;
mod manifest;
mod parquet_io;
mod store;
mod table;

pub use error::{Result, StoreError};
pub use import::{
    Matrix, read_matrix_npy, read_matrix_parquet, read_matrix_safetensors, read_row_ids,
};
pub use key::{KEY_HEX_LEN, KEY_SHORT_LEN, Key};
pub use manifest::{FileEntry, MANIFEST_FILE, Manifest, now_rfc3339, rfc3339};
pub use parquet_io::{read_parquet, read_parquet_columns, write_parquet};
pub use store::{KeyLock, SHARDS_DONE_FILE, Staging, Store};
pub use table::{Column, FeatureTable};
