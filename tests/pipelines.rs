//! Every shipped experiment file is valid, so a user who copies one starts from a working file.

mod support;

#[test]
fn every_shipped_pipeline_validates() {
    let dir = support::repo().join("pipelines");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    for name in [
        "quickstart.toml",
        "concept_dictionary.toml",
        "shift_analysis.toml",
        "vqa_steering.toml",
        "caption_steering.toml",
        // their shapes-world twins, which run offline
        "shapes_concept_dictionary.toml",
        "shapes_shift_analysis.toml",
        "shapes_vqa_steering.toml",
        "shapes_caption_steering.toml",
    ] {
        assert!(
            files.iter().any(|f| f.ends_with(name)),
            "pipelines/{name} is missing"
        );
    }
    let store = tempfile::tempdir().unwrap();
    for file in files {
        let out = support::xlvlm(store.path())
            .arg("validate")
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{} does not validate:\n{}",
            file.display(),
            support::stderr(&out)
        );
    }
}
