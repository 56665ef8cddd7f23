//! A dataset repository's parquet files for one config: the repository's own files under the
//! config's folder, else those the hub converted on the `refs/convert/parquet` branch.
use super::cache::RepoCache;
use super::{is_commit_hash, Client, RepoType, Settings};
use anyhow::{bail, Result};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The branch where the hub publishes every dataset converted to parquet.
pub const PARQUET_REVISION: &str = "refs/convert/parquet";

/// The local paths of `config`'s parquet files (sorted by repository path) of dataset `id` at
/// `revision`, downloaded into the cache when needed; from the cache only when offline.
pub fn parquet_files(
    client: &Client,
    id: &str,
    revision: &str,
    config: &str,
) -> Result<Vec<PathBuf>> {
    let settings = client.settings();
    if settings.offline {
        return cached_parquet_files(settings, id, revision, config);
    }
    let spec = format!("--dataset {id}@{revision} (config {config})");
    let info = client.repo_info(RepoType::Dataset, id, revision)?;
    let (revision, info, files) = match config_files(&info.files, config) {
        files if !files.is_empty() => (revision, info, files),
        _ => {
            let converted = client.repo_info(RepoType::Dataset, id, PARQUET_REVISION)?;
            let files = config_files(&converted.files, config);
            if files.is_empty() {
                let configs: BTreeSet<&str> = converted
                    .files
                    .iter()
                    .filter(|f| f.ends_with(".parquet"))
                    .filter_map(|f| f.split_once('/').map(|(c, _)| c))
                    .collect();
                bail!(
                    "{spec}: no parquet files under {config}/ at {revision} nor on {PARQUET_REVISION} (configs there: {})",
                    if configs.is_empty() { "none".to_string() } else { configs.into_iter().collect::<Vec<_>>().join(", ") }
                );
            }
            (PARQUET_REVISION, converted, files)
        }
    };
    if !is_commit_hash(revision) {
        RepoCache::new(&settings.cache_dir, RepoType::Dataset, id)
            .write_ref(revision, &info.commit)?;
    }
    files
        .iter()
        .map(|f| client.download(RepoType::Dataset, id, revision, &info.commit, f))
        .collect()
}

/// The parquet files under `config/`, sorted.
fn config_files(files: &[String], config: &str) -> Vec<String> {
    let prefix = format!("{config}/");
    let mut found: Vec<String> = files
        .iter()
        .filter(|f| f.starts_with(&prefix) && f.ends_with(".parquet"))
        .cloned()
        .collect();
    found.sort();
    found
}

/// Offline: the parquet files of `config` in the cached snapshot of `revision`, else of the
/// converted branch.
fn cached_parquet_files(
    settings: &Settings,
    id: &str,
    revision: &str,
    config: &str,
) -> Result<Vec<PathBuf>> {
    let repo = RepoCache::new(&settings.cache_dir, RepoType::Dataset, id);
    for rev in [revision, PARQUET_REVISION] {
        if let Some(commit) = repo.commit_for(rev) {
            let dir = repo.snapshot(&commit).join(config);
            let mut found = Vec::new();
            walk_parquet(&dir, &mut found);
            if !found.is_empty() {
                found.sort();
                return Ok(found);
            }
        }
    }
    bail!(
        "--dataset {id}@{revision} (config {config}): no parquet files in the hub cache ({}/snapshots/) and HF_HUB_OFFLINE is set",
        repo.path().display()
    )
}

fn walk_parquet(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk_parquet(&path, found);
        } else if path.extension().is_some_and(|e| e == "parquet") && path.is_file() {
            found.push(path);
        }
    }
}

/// `parquet_files` with the hub settings of the environment (HF_ENDPOINT, HF_TOKEN,
/// HF_HUB_OFFLINE, HF_HUB_CACHE/HF_HOME); `quiet` hides the progress bars.
pub fn download_parquet(
    id: &str,
    revision: &str,
    config: &str,
    quiet: bool,
) -> Result<Vec<PathBuf>> {
    parquet_files(
        &Client::new(Settings::from_env(), quiet),
        id,
        revision,
        config,
    )
}
