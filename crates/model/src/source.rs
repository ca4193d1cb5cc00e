//! Where a checkpoint lives: a local folder, or `hf:org/name[@revision]` resolved offline through
//! the Hugging Face hub cache (`HF_HUB_CACHE`, else `$HF_HOME/hub`, else
//! `~/.cache/huggingface/hub`), whose layout is `models--org--name/{refs/<rev>, snapshots/<hash>/}`.
//!
//! The lookup is done here rather than with `hf-hub` 0.5's offline `Cache`: that one ignores
//! `HF_HUB_CACHE`, cannot take a commit hash as the revision (no `refs/` entry exists for it),
//! panics without a home directory, and answers a miss with `None` instead of the paths it tried.

use std::path::{Path, PathBuf};

use crate::error::{ModelError, Result};

/// Resolves `source` to a local checkpoint folder holding `config.json`.
pub fn resolve(source: &str) -> Result<PathBuf> {
    resolve_with_cache(source, &default_cache_dir())
}

/// Like [`resolve`], with an explicit hub cache folder (tests, custom layouts).
pub fn resolve_with_cache(source: &str, cache_dir: &Path) -> Result<PathBuf> {
    let Some(spec) = source.strip_prefix("hf:") else {
        let dir = PathBuf::from(source);
        if dir.join("config.json").is_file() {
            return Ok(dir);
        }
        return Err(ModelError::SourceNotFound {
            source_name: source.to_string(),
            looked_in: vec![dir.join("config.json")],
        });
    };
    let (repo, revision) = match spec.split_once('@') {
        Some((repo, rev)) => (repo, rev),
        None => (spec, "main"),
    };
    if repo.split('/').count() != 2 || repo.split('/').any(str::is_empty) {
        return Err(ModelError::Input(format!(
            "hub source {source:?} must look like hf:org/name[@revision]"
        )));
    }
    let repo_dir = cache_dir.join(format!("models--{}", repo.replace('/', "--")));
    let ref_file = repo_dir.join("refs").join(revision);
    let commit = match std::fs::read_to_string(&ref_file) {
        Ok(hash) => hash.trim().to_string(),
        // a revision given as a commit hash has no refs/ entry
        Err(_) => revision.to_string(),
    };
    let snapshot = repo_dir.join("snapshots").join(&commit);
    if snapshot.join("config.json").is_file() {
        return Ok(snapshot);
    }
    Err(ModelError::SourceNotFound {
        source_name: source.to_string(),
        looked_in: vec![ref_file, snapshot.join("config.json")],
    })
}

/// The hub cache folder the Python `huggingface_hub` library would use.
pub fn default_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("HF_HUB_CACHE") {
        return PathBuf::from(dir);
    }
    if let Some(home) = std::env::var_os("HF_HOME") {
        return PathBuf::from(home).join("hub");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    home.join(".cache").join("huggingface").join("hub")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_cache_layout_resolves_refs_and_hashes() {
        let tmp = std::env::temp_dir().join(format!("xlvlm-model-src-{}", std::process::id()));
        let repo = tmp.join("models--org--tiny");
        let snap = repo.join("snapshots").join("abc123");
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs").join("main"), "abc123\n").unwrap();
        std::fs::write(snap.join("config.json"), "{}").unwrap();
        assert_eq!(resolve_with_cache("hf:org/tiny", &tmp).unwrap(), snap);
        assert_eq!(
            resolve_with_cache("hf:org/tiny@abc123", &tmp).unwrap(),
            snap
        );
        let err = resolve_with_cache("hf:org/tiny@v2", &tmp)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("refs/v2") && err.contains("snapshots/v2"),
            "{err}"
        );
        let err = resolve_with_cache("hf:org/missing", &tmp)
            .unwrap_err()
            .to_string();
        assert!(err.contains("models--org--missing"), "{err}");
        assert!(resolve_with_cache("hf:nonsense", &tmp).is_err());
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn local_folder_without_config_is_an_error_naming_the_file() {
        let err = resolve("/nonexistent/xlvlm").unwrap_err().to_string();
        assert!(err.contains("/nonexistent/xlvlm/config.json"), "{err}");
    }
}
