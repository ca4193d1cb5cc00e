//! The no-op rerun cost: publish N artifacts (default 100) with realistic manifests, then time
//! `Store::manifest` + `Store::contains` for all of them, as the DAG runner does for a fully
//! cached pipeline.
//!
//! cargo run --release -p xlvlm-store --example bench_manifests -- [N] [REPEATS]

use std::collections::BTreeMap;
use std::time::Instant;

use xlvlm_store::{Column, FeatureTable, Key, Manifest, Store, now_rfc3339};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let count = args.first().copied().unwrap_or(100);
    let repeats = args.get(1).copied().unwrap_or(20);
    let root = std::env::temp_dir().join(format!("xlvlm-bench-manifests-{}", std::process::id()));
    let store = Store::open(&root)?;
    let table = FeatureTable::new()
        .with_column(
            "sample_id",
            Column::Utf8((0..64).map(|i| format!("s{i}")).collect()),
        )
        .with_column(
            "vector",
            Column::Vector {
                dim: 16,
                values: vec![0.5; 64 * 16],
                half: false,
            },
        );
    let keys: Vec<Key> = (0..count as u32)
        .map(|i| Key::from_hash(&blake3::hash(&i.to_le_bytes())))
        .collect();
    let t = Instant::now();
    for (i, key) in keys.iter().enumerate() {
        let staging = store.stage(key)?;
        for shard in 0..4 {
            staging.write_shard(shard, &table)?;
        }
        staging.publish(Manifest {
            key: key.clone(),
            kind: "extract".into(),
            kind_version: 1,
            stage: format!("stage_{i}"),
            params: serde_json::json!({"hooks": ["lm.layers.31"], "generate": {"max_new_tokens": 5}, "alpha": 0.5}),
            inputs: keys[..i].iter().rev().take(2).enumerate().map(|(j, k)| (format!("input{j}"), k.clone())).collect(),
            fingerprints: BTreeMap::from([("model".into(), "llava-1.5-7b@abc".into()), ("data".into(), "vqav2@def".into())]),
            files: Vec::new(),
            rows: Some(256),
            summary: serde_json::json!({"dim": 16, "metrics": {"accuracy": 0.5}}),
            started_at: now_rfc3339(),
            finished_at: now_rfc3339(),
            seconds: 0.1,
            xlvlm_version: "0.1.0".into(),
        })?;
    }
    let publish_s = t.elapsed().as_secs_f64();
    let mut times = Vec::new();
    for _ in 0..repeats {
        let t = Instant::now();
        for key in &keys {
            assert!(store.contains(key));
            let manifest = store.manifest(key)?.ok_or("missing manifest")?;
            assert_eq!(manifest.files.len(), 4);
        }
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    println!(
        "{count} artifacts (4 shards each): publish {:.1} ms each; reading all {count} manifests: \
         median {:.2} ms, min {:.2} ms, max {:.2} ms over {repeats} repeats",
        publish_s * 1e3 / count as f64,
        times[times.len() / 2] * 1e3,
        times[0] * 1e3,
        times[times.len() - 1] * 1e3
    );
    std::fs::remove_dir_all(&root)?;
    Ok(())
}
