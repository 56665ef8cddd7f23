//! A model repository's files: config, tokenizer, and safetensors weights (one file or the
//! shards an index names), downloaded into the cache; PyTorch-pickle-only repositories are
//! refused before any weights are fetched.
use super::cache::RepoCache;
use super::{is_commit_hash, Client, RepoType};
use anyhow::{anyhow, bail, Context, Result};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The tokenizer files any supported family may use; those the repository has are fetched.
pub const TOKENIZER_FILES: &[&str] = &[
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
];

const WEIGHTS: &str = "model.safetensors";
const WEIGHTS_INDEX: &str = "model.safetensors.index.json";

/// The snapshot folder of a model already complete in the cache (config and every weights
/// file), found without the network.
pub fn cached(cache_dir: &Path, id: &str, revision: &str) -> Option<PathBuf> {
    let repo = RepoCache::new(cache_dir, RepoType::Model, id);
    // A short commit hash has no refs/ file: its snapshot folder, if any, is named by it.
    let commit = repo
        .commit_for(revision)
        .unwrap_or_else(|| revision.to_string());
    let dir = repo.snapshot(&commit);
    (dir.join("config.json").is_file() && weights_present(&dir)).then_some(dir)
}

fn weights_present(dir: &Path) -> bool {
    if dir.join(WEIGHTS).is_file() {
        return true;
    }
    match std::fs::read_to_string(dir.join(WEIGHTS_INDEX)) {
        Ok(text) => shards(&text).is_ok_and(|s| s.iter().all(|f| dir.join(f).is_file())),
        Err(_) => false,
    }
}

/// The shard files a safetensors index names.
fn shards(index: &str) -> Result<BTreeSet<String>> {
    let v: serde_json::Value = serde_json::from_str(index)?;
    let map = v["weight_map"]
        .as_object()
        .ok_or_else(|| anyhow!("no \"weight_map\" object"))?;
    map.values()
        .map(|f| {
            f.as_str()
                .map(str::to_string)
                .ok_or_else(|| anyhow!("a weight_map value is not a file name"))
        })
        .collect()
}

/// Downloads what bertology needs of `id` at `revision` and returns the snapshot folder.
pub fn download(client: &Client, id: &str, revision: &str) -> Result<PathBuf> {
    let info = client.repo_info(RepoType::Model, id, revision)?;
    let spec = if revision == "main" {
        format!("--model {id}")
    } else {
        format!("--model {id}@{revision}")
    };
    let has = |f: &str| info.files.iter().any(|g| g == f);
    if !has("config.json") {
        bail!(
            "{spec}: the repository has no config.json at {revision} (is it a transformers model?)"
        );
    }
    let weights = if has(WEIGHTS) {
        WEIGHTS
    } else if has(WEIGHTS_INDEX) {
        WEIGHTS_INDEX
    } else if let Some(bin) = [
        "pytorch_model.bin",
        "pytorch_model.bin.index.json",
        "tf_model.h5",
    ]
    .into_iter()
    .find(|f| has(f))
    {
        let name = id.rsplit('/').next().unwrap_or(id);
        bail!(
            "{spec}: the repository has {bin} but no {WEIGHTS}, and libtorch cannot read PyTorch pickles; nothing was downloaded. Convert it once with: \
             python -c \"from transformers import AutoModelForSequenceClassification as M; M.from_pretrained('{id}', revision='{revision}').save_pretrained('models/{name}', safe_serialization=True)\" \
             (AutoModel for a model without a classifier), then pass --model models/{name}"
        );
    } else {
        bail!("{spec}: the repository has neither {WEIGHTS} nor {WEIGHTS_INDEX} at {revision}");
    };
    let repo = RepoCache::new(&client.settings().cache_dir, RepoType::Model, id);
    if !is_commit_hash(revision) {
        repo.write_ref(revision, &info.commit)?;
    }
    let get = |file: &str| client.download(RepoType::Model, id, revision, &info.commit, file);
    let config = get("config.json")?;
    for file in TOKENIZER_FILES.iter().filter(|f| has(f)) {
        get(file)?;
    }
    let weights_path = get(weights)?;
    if weights == WEIGHTS_INDEX {
        let text = std::fs::read_to_string(&weights_path)
            .with_context(|| format!("cannot read {}", weights_path.display()))?;
        let shards = shards(&text).map_err(|e| anyhow!("{spec}: {WEIGHTS_INDEX}: {e}"))?;
        for shard in &shards {
            if !has(shard) {
                bail!("{spec}: {WEIGHTS_INDEX} names {shard}, which the repository does not have");
            }
        }
        for shard in &shards {
            get(shard)?;
        }
    }
    Ok(config
        .parent()
        .expect("config.json is in a snapshot folder")
        .to_path_buf())
}
