//! Writes and reads back an activation-like feature table (default 5000 × 4096 Gaussian f32,
//! plus sample_id and position columns) and prints timings and the file size.
//!
//! cargo run --release -p xlvlm-store --example bench_parquet -- [ROWS] [DIM] [REPEATS] [f32|f16|both]
//!
//! The pyarrow counterpart is `tools/refgen/parquet_readers.py bench ROWS DIM REPEATS`.

use std::time::Instant;

use xlvlm_store::{Column, FeatureTable, read_parquet, read_parquet_columns, write_parquet};

/// Standard normal samples from a xorshift generator (Box-Muller), so the data compresses like
/// real activations rather than like a constant.
fn gaussian(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.max(1);
    let mut uniform = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let (u, v) = (uniform(), uniform());
        let r = (-2.0 * u.ln()).sqrt();
        let t = 2.0 * std::f64::consts::PI * v;
        out.push((r * t.cos()) as f32);
        out.push((r * t.sin()) as f32);
    }
    out.truncate(n);
    out
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let precisions: Vec<bool> = match args.get(3).map(String::as_str) {
        None | Some("both") => vec![false, true],
        Some("f32") => vec![false],
        Some("f16") => vec![true],
        Some(other) => return Err(format!("expected f32, f16 or both, not {other:?}").into()),
    };
    args.truncate(3);
    let args: Vec<usize> = args.iter().map(|a| a.parse()).collect::<Result<_, _>>()?;
    let rows = args.first().copied().unwrap_or(5000);
    let dim = args.get(1).copied().unwrap_or(4096);
    let repeats = args.get(2).copied().unwrap_or(5);
    let dir = std::env::temp_dir().join(format!("xlvlm-bench-parquet-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;

    for half in precisions {
        let table = FeatureTable::new()
            .with_column(
                "sample_id",
                Column::Utf8((0..rows).map(|i| format!("sample-{i}")).collect()),
            )
            .with_column("position", Column::Int64((0..rows as i64).collect()))
            .with_column(
                "vector",
                Column::Vector {
                    dim,
                    values: gaussian(rows * dim, 42),
                    half,
                },
            );
        let path = dir.join(if half { "f16.parquet" } else { "f32.parquet" });
        let (mut write_s, mut read_s, mut meta_s) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..repeats {
            let t = Instant::now();
            write_parquet(&path, &table)?;
            write_s.push(t.elapsed().as_secs_f64());
            let t = Instant::now();
            let back = read_parquet(&path)?;
            read_s.push(t.elapsed().as_secs_f64());
            assert_eq!(back.num_rows(), rows);
            let t = Instant::now();
            let ids = read_parquet_columns(&path, &["sample_id"])?;
            meta_s.push(t.elapsed().as_secs_f64());
            assert_eq!(ids.num_rows(), rows);
        }
        let bytes = std::fs::metadata(&path)?.len();
        let raw = (rows * dim * 4) as f64;
        println!(
            "xlvlm-store {rows}x{dim} {}: write {:.3} s ({:.0} MB/s of f32), read {:.3} s ({:.0} MB/s), \
             sample_id only {:.4} s, file {:.1} MB ({:.2}x of raw f32); median of {repeats}",
            if half { "float16" } else { "float32" },
            median(write_s.clone()),
            raw / 1e6 / median(write_s),
            median(read_s.clone()),
            raw / 1e6 / median(read_s),
            median(meta_s),
            bytes as f64 / 1e6,
            bytes as f64 / raw,
        );
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
