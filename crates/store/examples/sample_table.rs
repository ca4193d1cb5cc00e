//! Writes a small feature table with every column type (Float32 and Float16 vectors, key-value
//! metadata) for checking that other Parquet readers understand xlvlm's files:
//!
//! cargo run -p xlvlm-store --example sample_table -- OUT.parquet [ROWS]
//! python tools/refgen/parquet_readers.py check OUT.parquet
//!
//! Vector values are ((row * dim + d) % 97) / 8 - 6: exact in Float16 and Float32, so the Python
//! side can recompute them.

use std::path::PathBuf;

use xlvlm_store::{Column, FeatureTable, write_parquet};

fn vector(rows: usize, dim: usize) -> Vec<f32> {
    (0..rows * dim)
        .map(|i| (i % 97) as f32 / 8.0 - 6.0)
        .collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = PathBuf::from(
        args.next()
            .ok_or("usage: sample_table OUT.parquet [ROWS]")?,
    );
    let rows: usize = args.next().map(|r| r.parse()).transpose()?.unwrap_or(1000);
    let table = FeatureTable::new()
        .with_column(
            "sample_id",
            Column::Utf8((0..rows).map(|i| format!("coco-{i:06}")).collect()),
        )
        .with_column(
            "hook",
            Column::Utf8((0..rows).map(|i| format!("lm.layers.{}", i % 4)).collect()),
        )
        .with_column(
            "position",
            Column::Int64((0..rows as i64).map(|i| i % 17 - 1).collect()),
        )
        .with_column(
            "logprob",
            Column::Float64((0..rows).map(|i| -(i as f64) / 64.0).collect()),
        )
        .with_column(
            "toi_found",
            Column::Bool((0..rows).map(|i| i % 5 != 0).collect()),
        )
        .with_column(
            "vector",
            Column::Vector {
                dim: 64,
                values: vector(rows, 64),
                half: false,
            },
        )
        .with_column(
            "vector_f16",
            Column::Vector {
                dim: 32,
                values: vector(rows, 32),
                half: true,
            },
        )
        .with_metadata("model", "toy-llava")
        .with_metadata("hooks", "lm.layers.0,lm.layers.1,lm.layers.2,lm.layers.3")
        .with_metadata("dtype", "f32");
    write_parquet(&path, &table)?;
    println!("wrote {} ({rows} rows)", path.display());
    Ok(())
}
