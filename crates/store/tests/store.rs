//! The store within one process: keys, manifests, publish, verify, names, removal and gc.

use std::collections::{BTreeMap, BTreeSet};

use xlvlm_store::{Column, FeatureTable, Key, Manifest, SHARDS_DONE_FILE, Store, StoreError};

fn key(n: u8) -> Key {
    Key::from_hash(&blake3::hash(&[n]))
}

fn manifest(key: &Key) -> Manifest {
    Manifest {
        key: key.clone(),
        kind: "aggregate".into(),
        kind_version: 1,
        stage: "pooled".into(),
        params: serde_json::json!({"pool": "mean", "filter": {"toi": true}}),
        inputs: BTreeMap::from([("features".to_string(), Key::new("ab".repeat(32)).unwrap())]),
        fingerprints: BTreeMap::from([("model".to_string(), "toy-llava@1".to_string())]),
        files: Vec::new(),
        rows: Some(3),
        summary: serde_json::json!({"dim": 4}),
        started_at: "2026-01-01T00:00:00.000Z".into(),
        finished_at: "2026-01-01T00:00:01.500Z".into(),
        seconds: 1.5,
        xlvlm_version: "0.1.0".into(),
    }
}

fn small_table() -> FeatureTable {
    FeatureTable::new()
        .with_column(
            "sample_id",
            Column::Utf8(vec!["a".into(), "b".into(), "c".into()]),
        )
        .with_column(
            "vector",
            Column::Vector {
                dim: 4,
                values: (0..12).map(|i| i as f32).collect(),
                half: false,
            },
        )
}

#[test]
fn keys_are_validated() {
    let hex = "0123456789abcdef".repeat(4);
    let k = Key::new(hex.clone()).unwrap();
    assert_eq!(k.as_str(), hex);
    assert_eq!(k.short(), "0123456789ab");
    assert_eq!(k.to_string(), hex);
    for bad in [
        "",
        "abc",
        &"A".repeat(64),
        &"g".repeat(64),
        &"0".repeat(65),
        &format!("../{}", "0".repeat(61)),
    ] {
        assert!(
            matches!(Key::new(bad), Err(StoreError::InvalidKey { .. })),
            "{bad:?}"
        );
    }
    // Deserialisation validates too.
    assert!(serde_json::from_str::<Key>("\"xyz\"").is_err());
    assert_eq!(
        serde_json::from_str::<Key>(&format!("\"{hex}\"")).unwrap(),
        k
    );
}

#[test]
fn publish_makes_a_complete_verified_artifact() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let k = key(1);
    assert!(!store.contains(&k));
    assert_eq!(store.manifest(&k).unwrap(), None);

    let staging = store.stage(&k).unwrap();
    staging
        .write_table("features.parquet", &small_table())
        .unwrap();
    staging
        .write_file("summary/metrics.json", b"{\"acc\": 0.5}\n")
        .unwrap();
    // Only the top-level manifest.json is reserved.
    staging.write_file("summary/manifest.json", b"{}").unwrap();
    staging.write_shard(0, &small_table()).unwrap();
    // A stray temporary file from an interrupted write is not part of the artifact.
    std::fs::write(staging.dir().join(".features.parquet.999-0.tmp"), b"half").unwrap();
    let published = staging.publish(manifest(&k)).unwrap();

    let paths: Vec<&str> = published.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "features.parquet",
            "shard-00000.parquet",
            "summary/manifest.json",
            "summary/metrics.json"
        ]
    );
    let metrics = published.file("summary/metrics.json").unwrap();
    assert_eq!(metrics.bytes, 13);
    assert_eq!(
        metrics.blake3,
        blake3::hash(b"{\"acc\": 0.5}\n").to_hex().to_string()
    );

    assert!(store.contains(&k));
    let read = store.manifest(&k).unwrap().unwrap();
    assert_eq!(read, published);
    store.verify(&k).unwrap();
    let artifact = store.artifact_dir(&k);
    assert_eq!(
        artifact,
        dir.path()
            .join("store/objects")
            .join(&k.as_str()[..2])
            .join(&k.as_str()[2..])
    );
    assert!(!artifact.join(SHARDS_DONE_FILE).exists());
    assert!(!dir.path().join("store/staging").join(k.as_str()).exists());
    assert_eq!(store.keys().unwrap(), vec![k.clone()]);
    assert_eq!(
        store.size(&k).unwrap(),
        published.data_bytes()
            + std::fs::metadata(artifact.join("manifest.json"))
                .unwrap()
                .len()
    );

    // Publishing the same key again is refused.
    let again = store.stage(&k).unwrap();
    let err = again.publish(manifest(&k)).unwrap_err();
    assert!(matches!(err, StoreError::AlreadyPublished { .. }), "{err}");
}

#[test]
fn manifest_json_is_pretty_stable_and_round_trips() {
    let k = key(2);
    let mut m = manifest(&k);
    m.params = serde_json::json!({"zeta": 1, "alpha": [1.0, 2], "mid": {"b": true, "a": null}});
    let bytes = m.to_json_bytes();
    let text = String::from_utf8(bytes.clone()).unwrap();
    // Field order is declaration order; objects inside params are sorted.
    let key_at = text.find("\"key\"").unwrap();
    let kind_at = text.find("\"kind\"").unwrap();
    let version_at = text.find("\"xlvlm_version\"").unwrap();
    assert!(key_at < kind_at && kind_at < version_at, "{text}");
    assert!(
        text.find("\"alpha\"").unwrap() < text.find("\"zeta\"").unwrap(),
        "{text}"
    );
    assert!(text.contains("\n  \"kind\": \"aggregate\",\n"), "{text}");
    let back: Manifest = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(back, m);
    assert_eq!(back.to_json_bytes(), bytes);
    // RFC 3339 timestamps.
    let now = xlvlm_store::now_rfc3339();
    assert!(
        now.len() == 24 && now.ends_with('Z') && now.as_bytes()[10] == b'T',
        "{now}"
    );
}

#[test]
fn a_failed_publish_leaves_nothing_published_and_can_be_retried() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let k = key(3);

    // A dangling symlink cannot be part of an artifact: publish fails after cleaning up.
    let staging = store.stage(&k).unwrap();
    staging
        .write_table("features.parquet", &small_table())
        .unwrap();
    let link = staging.dir().join("link");
    std::os::unix::fs::symlink("/nonexistent/target", &link).unwrap();
    let err = staging.publish(manifest(&k)).unwrap_err();
    assert!(err.to_string().contains("link"), "{err}");
    assert!(!store.contains(&k));
    assert_eq!(store.manifest(&k).unwrap(), None);
    assert!(!store.artifact_dir(&k).exists());

    // Publishing fails when objects/<prefix> is a file: the manifest stays in staging only.
    std::fs::remove_file(&link).unwrap();
    let prefix = store.artifact_dir(&k).parent().unwrap().to_path_buf();
    std::fs::write(&prefix, b"in the way").unwrap();
    let err = store.stage(&k).unwrap().publish(manifest(&k)).unwrap_err();
    assert!(matches!(err, StoreError::Io { .. }), "{err}");
    assert!(!store.contains(&k));
    assert_eq!(store.keys().unwrap(), Vec::<Key>::new());

    // After the obstacle is gone the same staging area publishes.
    std::fs::remove_file(&prefix).unwrap();
    let published = store.stage(&k).unwrap().publish(manifest(&k)).unwrap();
    assert_eq!(published.files.len(), 1);
    store.verify(&k).unwrap();

    // A manifest for another key is refused.
    let other = key(4);
    let err = store
        .stage(&other)
        .unwrap()
        .publish(manifest(&k))
        .unwrap_err();
    assert!(matches!(err, StoreError::KeyMismatch { .. }), "{err}");
    assert!(!store.contains(&other));
}

#[test]
fn verify_detects_damage() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let k = key(5);
    let staging = store.stage(&k).unwrap();
    staging.write_file("a.json", b"[1, 2, 3]").unwrap();
    staging.write_file("b.json", b"[4]").unwrap();
    staging.publish(manifest(&k)).unwrap();
    let artifact = store.artifact_dir(&k);

    std::fs::write(artifact.join("a.json"), b"[1, 2, 4]").unwrap();
    let err = store.verify(&k).unwrap_err().to_string();
    assert!(err.contains("a.json") && err.contains("blake3"), "{err}");
    std::fs::write(artifact.join("a.json"), b"[1, 2, 3, 4]").unwrap();
    let err = store.verify(&k).unwrap_err().to_string();
    assert!(err.contains("a.json") && err.contains("12 bytes"), "{err}");
    std::fs::write(artifact.join("a.json"), b"[1, 2, 3]").unwrap();
    std::fs::remove_file(artifact.join("b.json")).unwrap();
    let err = store.verify(&k).unwrap_err().to_string();
    assert!(err.contains("b.json") && err.contains("missing"), "{err}");
    std::fs::write(artifact.join("b.json"), b"[4]").unwrap();
    std::fs::write(artifact.join("extra.txt"), b"?").unwrap();
    let err = store.verify(&k).unwrap_err().to_string();
    assert!(
        err.contains("extra.txt") && err.contains("not listed"),
        "{err}"
    );
    std::fs::remove_file(artifact.join("extra.txt")).unwrap();
    store.verify(&k).unwrap();

    // A manifest that is not JSON, or is for another key, is reported with its path.
    let manifest_path = store.manifest_path(&k);
    let good = std::fs::read(&manifest_path).unwrap();
    std::fs::write(&manifest_path, b"{ not json").unwrap();
    let err = store.manifest(&k).unwrap_err();
    assert!(
        matches!(err, StoreError::Json { .. }) && err.to_string().contains("manifest.json"),
        "{err}"
    );
    let text = String::from_utf8(good)
        .unwrap()
        .replace(k.as_str(), key(6).as_str());
    std::fs::write(&manifest_path, text).unwrap();
    let err = store.manifest(&k).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    assert!(matches!(
        store.verify(&key(7)),
        Err(StoreError::Corrupt { .. })
    ));
}

#[test]
fn names_point_at_keys() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.resolve_name("exp", "stage").unwrap(), None);
    store
        .set_name("exp", "steered[alpha=0.5]", &key(1))
        .unwrap();
    store.set_name("exp", "eval", &key(2)).unwrap();
    store.set_name("other", "eval", &key(3)).unwrap();
    store.set_name("exp", "eval", &key(4)).unwrap();
    assert_eq!(store.resolve_name("exp", "eval").unwrap(), Some(key(4)));
    assert_eq!(
        store.names().unwrap(),
        [
            ("exp".to_string(), "eval".to_string(), key(4)),
            ("exp".to_string(), "steered[alpha=0.5]".to_string(), key(1)),
            ("other".to_string(), "eval".to_string(), key(3)),
        ]
    );
    assert!(store.remove_name("other", "eval").unwrap());
    assert!(!store.remove_name("other", "eval").unwrap());
    for (experiment, stage) in [
        ("", "s"),
        ("e", ""),
        ("../x", "s"),
        ("e", "a/b"),
        (".hidden", "s"),
        ("e", ".."),
    ] {
        let err = store.set_name(experiment, stage, &key(1)).unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidName { .. }),
            "{experiment:?}/{stage:?}: {err}"
        );
    }
    // A damaged name file is reported with its path.
    std::fs::write(dir.path().join("names/exp/eval"), "not a key\n").unwrap();
    let err = store.resolve_name("exp", "eval").unwrap_err().to_string();
    assert!(err.contains("names/exp/eval"), "{err}");
}

#[test]
fn remove_gc_and_stale_staging() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for n in 1..=3 {
        let staging = store.stage(&key(n)).unwrap();
        staging.write_table("t.parquet", &small_table()).unwrap();
        staging.publish(manifest(&key(n))).unwrap();
    }
    let referenced = BTreeSet::from([key(2)]);
    let plan = store.gc_plan(&referenced).unwrap();
    let mut planned: Vec<Key> = plan.iter().map(|(k, _)| k.clone()).collect();
    planned.sort();
    let mut want = vec![key(1), key(3)];
    want.sort();
    assert_eq!(planned, want);
    for (k, bytes) in plan {
        assert!(bytes > 0);
        let _lock = store.lock(&k).unwrap();
        assert_eq!(store.remove(&k).unwrap(), bytes);
        assert!(!store.contains(&k));
        assert!(!store.artifact_dir(&k).exists());
    }
    assert_eq!(store.keys().unwrap(), [key(2)]);
    assert_eq!(store.remove(&key(1)).unwrap(), 0);
    assert_eq!(
        std::fs::read_dir(dir.path().join("trash")).unwrap().count(),
        0
    );

    // Staging areas: a locked one is in use, an unlocked one is stale.
    let busy = store.stage(&key(8)).unwrap();
    busy.write_shard(0, &small_table()).unwrap();
    let busy_lock = store.lock(&key(8)).unwrap();
    let idle = store.stage(&key(9)).unwrap();
    idle.write_shard(0, &small_table()).unwrap();
    let stale = store.stale_staging().unwrap();
    assert_eq!(stale.len(), 1);
    assert_eq!(stale[0].0, key(9));
    let lock = store.try_lock(&key(9)).unwrap().unwrap();
    assert_eq!(store.remove_staging(&lock).unwrap(), stale[0].1);
    assert!(!idle.dir().exists());
    assert!(busy.dir().exists());
    drop(busy_lock);
}

#[test]
fn locks_conflict_within_a_process_and_release_on_drop() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let held = store.lock(&key(1)).unwrap();
    assert_eq!(held.key(), &key(1));
    assert!(store.try_lock(&key(1)).unwrap().is_none());
    assert!(store.try_lock(&key(2)).unwrap().is_some());
    drop(held);
    assert!(store.try_lock(&key(1)).unwrap().is_some());
}

#[test]
fn done_shards_ignores_missing_files_and_cut_lines() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let staging = store.stage(&key(1)).unwrap();
    assert!(staging.done_shards().unwrap().is_empty());
    for index in [0, 1, 2] {
        staging.write_shard(index, &small_table()).unwrap();
    }
    assert_eq!(staging.done_shards().unwrap(), BTreeSet::from([0, 1, 2]));
    // A shard file that vanished is not done.
    std::fs::remove_file(staging.shard_path(1)).unwrap();
    assert_eq!(staging.done_shards().unwrap(), BTreeSet::from([0, 2]));
    // A crash mid-append leaves "1" without its newline: not done, and the next append
    // starts a new line instead of producing "13".
    let done = staging.dir().join(SHARDS_DONE_FILE);
    let mut text = std::fs::read_to_string(&done).unwrap();
    text.push('1');
    std::fs::write(&done, &text).unwrap();
    staging.write_shard(1, &small_table()).unwrap();
    let mut text = std::fs::read_to_string(&done).unwrap();
    text.push('3');
    std::fs::write(&done, &text).unwrap();
    assert_eq!(staging.done_shards().unwrap(), BTreeSet::from([0, 1, 2]));
    staging.write_shard(4, &small_table()).unwrap();
    assert_eq!(staging.done_shards().unwrap(), BTreeSet::from([0, 1, 2, 4]));
    assert!(!std::fs::read_to_string(&done).unwrap().contains("34"));
}

#[test]
fn staging_file_names_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let staging = store.stage(&key(1)).unwrap();
    for bad in [
        "",
        "manifest.json",
        SHARDS_DONE_FILE,
        "../escape",
        "/abs",
        "a/../b",
        ".hidden",
        "sub/.x.tmp",
    ] {
        let err = staging.write_file(bad, b"x").unwrap_err();
        assert!(
            matches!(err, StoreError::InvalidName { .. }),
            "{bad:?}: {err}"
        );
    }
    staging.write_file("deep/er/file.txt", b"ok").unwrap();
    assert_eq!(
        std::fs::read(staging.dir().join("deep/er/file.txt")).unwrap(),
        b"ok"
    );
}

#[test]
fn io_errors_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let err = Store::open(file.join("store")).unwrap_err();
    assert!(
        matches!(err, StoreError::Io { .. }) && err.to_string().contains("a-file"),
        "{err}"
    );

    let store = Store::open(dir.path().join("store")).unwrap();
    let staging = store.stage(&key(1)).unwrap();
    // A file where a directory is needed: every write below it fails with the path named.
    std::fs::write(staging.dir().join("blocker"), b"x").unwrap();
    let err = staging.write_file("blocker/inner.json", b"{}").unwrap_err();
    assert!(
        matches!(err, StoreError::Io { .. }) && err.to_string().contains("blocker"),
        "{err}"
    );
    let err = staging
        .write_table("blocker/t.parquet", &small_table())
        .unwrap_err();
    assert!(err.to_string().contains("blocker"), "{err}");
    // A names/ entry that is a file breaks set_name for that experiment.
    std::fs::write(dir.path().join("store/names/exp"), b"x").unwrap();
    let err = store.set_name("exp", "s", &key(1)).unwrap_err();
    assert!(err.to_string().contains("names/exp"), "{err}");
}
