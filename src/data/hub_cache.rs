//! Datasets in the Hugging Face hub cache: `datasets--ORG--NAME/refs/<branch>` holds the commit,
//! `snapshots/<commit>/` the files, exactly as `huggingface_hub` and `datasets` lay them out.
//! `find_dataset` is the one place that turns a dataset id into a folder: the cache when it
//! holds the config, else a download into it (`crate::hub::dataset`, unless $HF_HUB_OFFLINE).
use crate::hub::Settings;
use anyhow::{anyhow, bail, Context, Result};
use std::path::{Path, PathBuf};

/// A dataset snapshot found in the cache.
#[derive(Clone, Debug, PartialEq)]
pub struct CachedDataset {
    /// ORG/NAME.
    pub id: String,
    /// The revision as asked for (a branch such as main, or a commit).
    pub revision: String,
    /// The commit the snapshot folder is named by.
    pub commit: String,
    pub snapshot: PathBuf,
}

/// Finds `ORG/NAME[@REV]` with the folder `config` in the cache ($HF_HUB_CACHE, else
/// $HF_HOME/hub, else ~/.cache/huggingface/hub); when the cache lacks it, downloads the
/// config's parquet files into it first (not with $HF_HUB_OFFLINE set). A cached snapshot
/// that holds the config is used as it is: nothing is asked of the network.
pub fn find_dataset(spec: &str, config: &str, quiet: bool) -> Result<CachedDataset> {
    let settings = Settings::from_env();
    let cached = find_dataset_in(spec, &settings.cache_dir, settings.offline);
    match cached {
        Ok(found) if found.snapshot.join(config).is_dir() => return Ok(found),
        Ok(_) | Err(_) if settings.offline => return cached,
        _ => {}
    }
    let (id, revision) = spec.split_once('@').unwrap_or((spec, "main"));
    let files = crate::hub::dataset::download_parquet(id, revision, config, quiet)
        .map_err(|e| anyhow!("{e}"))?;
    let found = find_dataset_in(spec, &settings.cache_dir, settings.offline)?;
    if !files.iter().all(|f| f.starts_with(&found.snapshot)) {
        bail!(
            "--dataset {spec}: the hub has no {config}/ folder of its own at {revision} (only the converted refs/convert/parquet layout, which bertology does not read as GLUE)"
        );
    }
    Ok(found)
}

/// `find_dataset` with the cache folder and offline switch given explicitly.
pub fn find_dataset_in(spec: &str, cache_dir: &Path, offline: bool) -> Result<CachedDataset> {
    let (id, revision) = match spec.split_once('@') {
        Some((id, rev)) => (id, rev),
        None => (spec, "main"),
    };
    let parts: Vec<&str> = id.split('/').collect();
    if parts.len() != 2
        || parts
            .iter()
            .any(|p| p.is_empty() || *p == "." || *p == ".." || p.contains('\\'))
        || revision.is_empty()
        || revision.contains("..")
    {
        bail!("--dataset {spec}: expected a hub dataset id ORG/NAME[@REV]");
    }
    let folder = cache_dir.join(format!("datasets--{}--{}", parts[0], parts[1]));
    let why = if offline {
        "HF_HUB_OFFLINE is set"
    } else {
        "bertology reads datasets only from the cache"
    };
    if !folder.is_dir() {
        bail!(
            "--dataset {spec}: not in the Hugging Face cache (no folder {}; {why}); download it with `huggingface-cli download --repo-type dataset {id}`",
            folder.display()
        );
    }
    let ref_file = folder.join("refs").join(revision);
    let commit = if ref_file.is_file() {
        let text = std::fs::read_to_string(&ref_file)
            .with_context(|| format!("{}: cannot read", ref_file.display()))?;
        let commit = text.trim().to_string();
        if commit.is_empty() || commit.contains(['/', '\\']) || commit.contains("..") {
            bail!(
                "{}: expected a commit hash, found {:?}",
                ref_file.display(),
                text
            );
        }
        commit
    } else {
        // A revision given as a commit has no refs file: its snapshot folder is named by it.
        revision.to_string()
    };
    let snapshot = folder.join("snapshots").join(&commit);
    if !snapshot.is_dir() {
        let refs: Vec<String> = std::fs::read_dir(folder.join("refs"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        bail!(
            "--dataset {spec}: revision {revision} is not in the cache (no {}; branches there: {}; {why})",
            snapshot.display(),
            if refs.is_empty() {
                "none".to_string()
            } else {
                refs.join(", ")
            }
        );
    }
    Ok(CachedDataset {
        id: id.to_string(),
        revision: revision.to_string(),
        commit,
        snapshot,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_with_newline_commits_and_missing_ids() {
        let cache = tempfile::tempdir().unwrap();
        let folder = cache.path().join("datasets--org--set");
        std::fs::create_dir_all(folder.join("refs")).unwrap();
        std::fs::create_dir_all(folder.join("snapshots/abc123")).unwrap();
        std::fs::write(folder.join("refs/main"), "abc123\n").unwrap();
        let found = find_dataset_in("org/set", cache.path(), false).unwrap();
        assert_eq!(found.commit, "abc123");
        assert_eq!(found.snapshot, folder.join("snapshots/abc123"));
        let pinned = find_dataset_in("org/set@abc123", cache.path(), true).unwrap();
        assert_eq!(
            (pinned.revision.as_str(), pinned.commit.as_str()),
            ("abc123", "abc123")
        );
        let e = find_dataset_in("org/other", cache.path(), true)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("datasets--org--other") && e.contains("HF_HUB_OFFLINE"),
            "{e}"
        );
        let e = find_dataset_in("org/set@dev", cache.path(), false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("revision dev") && e.contains("main"), "{e}");
        assert!(find_dataset_in("just-a-name", cache.path(), false).is_err());
    }
}
