//! Checks config.json against the checkpoint's headers before any variable is allocated: a
//! config whose sizes disagree with the weights (a typo, a mangled file) would otherwise have
//! libtorch allocate whatever it says — gigabytes for one stray digit — before the first
//! shape check. The checks use the field names transformers' configs share, so they hold for
//! every family without naming one.
use super::checkpoint::canonical_key;
use super::config::ModelConfig;
use super::families::Family;
use anyhow::{anyhow, bail, Context, Result};
use safetensors::SafeTensors;
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Shapes of the tensors in the checkpoint's files (headers only), by canonical name.
fn header_shapes(files: &[PathBuf], prefix: &str) -> Result<HashMap<String, Vec<usize>>> {
    let mut out = HashMap::new();
    for file in files {
        let f = std::fs::File::open(file)
            .with_context(|| format!("{}: cannot open", file.display()))?;
        // SAFETY: the file is only read while mapped; checkpoints are not rewritten under us.
        let bytes = unsafe { memmap2::Mmap::map(&f) }
            .with_context(|| format!("{}: cannot map", file.display()))?;
        let (_, meta) = SafeTensors::read_metadata(&bytes)
            .map_err(|e| anyhow!("{}: not a safetensors file: {e}", file.display()))?;
        for (name, info) in meta.tensors() {
            out.insert(canonical_key(&name, prefix), info.shape.clone());
        }
    }
    Ok(out)
}

/// Size fields (each is some weight's dimension), layer counts, and dropout probabilities.
const SIZES: &[&str] = &[
    "hidden_size",
    "intermediate_size",
    "embedding_size",
    "dim",
    "hidden_dim",
    "vocab_size",
    "max_position_embeddings",
    "type_vocab_size",
];
const LAYERS: &[&str] = &["num_hidden_layers", "n_layers"];
const PROBABILITIES: &[&str] = &[
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "classifier_dropout",
    "dropout",
    "attention_dropout",
    "seq_classif_dropout",
    "qa_dropout",
];

/// Errors when a size in `config` is impossible or disagrees with the checkpoint's tensors.
pub fn check(
    config_path: &Path,
    config: &ModelConfig,
    family: &Family,
    files: &[PathBuf],
) -> Result<()> {
    let raw: Value = config.typed()?;
    let int = |k: &str| raw.get(k).and_then(Value::as_i64);
    let at = config_path.display();
    for k in SIZES.iter().chain(LAYERS) {
        if let Some(v) = raw.get(*k).filter(|v| !v.is_null()) {
            if v.as_i64().is_none_or(|n| n <= 0) {
                bail!("{at}: {k} must be a positive integer, got {v}");
            }
        }
    }
    for k in PROBABILITIES {
        if let Some(v) = raw.get(*k).filter(|v| !v.is_null()) {
            if !v.as_f64().is_some_and(|p| (0.0..=1.0).contains(&p)) {
                bail!("{at}: {k} must be a probability in [0, 1], got {v}");
            }
        }
    }
    if let Some(v) = raw.get("layer_norm_eps") {
        if !v.as_f64().is_some_and(|e| e > 0.0 && e.is_finite()) {
            bail!("{at}: layer_norm_eps must be positive, got {v}");
        }
    }
    if config.num_labels() < 1 {
        bail!(
            "{at}: num_labels must be positive, got {}",
            config.num_labels()
        );
    }
    let shapes = header_shapes(files, family.layout.prefix)?;
    let shown = files
        .first()
        .map(|f| f.display().to_string())
        .unwrap_or_default();
    // The embedding tables' rows are exactly these sizes.
    for (key, field) in [
        ("embeddings.word_embeddings.weight", "vocab_size"),
        (
            "embeddings.position_embeddings.weight",
            "max_position_embeddings",
        ),
        ("embeddings.token_type_embeddings.weight", "type_vocab_size"),
    ] {
        if let (Some(shape), Some(want)) = (shapes.get(key), int(field)) {
            if shape.first() != Some(&(want as usize)) {
                bail!("{at}: {field} is {want} but {shown} holds {key} of shape {shape:?}");
            }
        }
    }
    // The checkpoint's highest layer index must be the config's last layer.
    let layers = shapes
        .keys()
        .filter_map(|k| {
            let rest = k.split(".layer.").nth(1)?;
            rest.split('.').next()?.parse::<usize>().ok()
        })
        .max()
        .map(|m| m + 1);
    if let (Some(n), Some((field, want))) =
        (layers, LAYERS.iter().find_map(|k| int(k).map(|v| (*k, v))))
    {
        if n as i64 != want {
            bail!("{at}: {field} is {want} but {shown} has {n} layers");
        }
    }
    // Every size is some weight's dimension: none can exceed the largest one the checkpoint
    // holds (this bounds what libtorch is asked to allocate, whatever the family).
    let largest = shapes.values().flatten().copied().max().unwrap_or(0) as i64;
    if largest > 0 {
        for k in SIZES {
            if let Some(v) = int(k).filter(|&v| v > largest) {
                bail!(
                    "{at}: {k} is {v}, larger than any dimension of the weights in {shown} (at most {largest})"
                );
            }
        }
        if config.num_labels() > largest.max(1024) {
            bail!(
                "{at}: num_labels is {}, more than the model could have been trained for",
                config.num_labels()
            );
        }
    }
    Ok(())
}
