//! Checks config.json against the checkpoint's headers before any variable is allocated: a
//! config whose sizes disagree with the weights (a typo, a mangled file) would otherwise have
//! libtorch allocate whatever it says — gigabytes for one stray digit — before the first
//! shape check.
use super::checkpoint::canonical_key;
use super::config::BertConfig;
use anyhow::{anyhow, bail, Context, Result};
use safetensors::SafeTensors;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Shapes of the tensors in the checkpoint's files (headers only), by canonical name.
fn header_shapes(files: &[PathBuf]) -> Result<HashMap<String, (Vec<usize>, PathBuf)>> {
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
            out.insert(canonical_key(&name), (info.shape.clone(), file.clone()));
        }
    }
    Ok(out)
}

/// Errors when a size in `config` disagrees with the checkpoint's tensors.
pub fn check(config_path: &Path, config: &BertConfig, files: &[PathBuf]) -> Result<()> {
    for (field, v) in [
        ("max_position_embeddings", config.max_position_embeddings),
        ("type_vocab_size", config.type_vocab_size),
        ("num_labels", config.num_labels()),
    ] {
        if v < 1 {
            bail!(
                "{}: {field} must be positive, got {v}",
                config_path.display()
            );
        }
    }
    for (field, p) in [
        ("hidden_dropout_prob", Some(config.hidden_dropout_prob)),
        (
            "attention_probs_dropout_prob",
            Some(config.attention_probs_dropout_prob),
        ),
        ("classifier_dropout", config.classifier_dropout),
    ] {
        if let Some(p) = p.filter(|p| !(0.0..=1.0).contains(p)) {
            bail!(
                "{}: {field} must be in [0, 1], got {p}",
                config_path.display()
            );
        }
    }
    if !(config.layer_norm_eps > 0.0 && config.layer_norm_eps.is_finite()) {
        bail!(
            "{}: layer_norm_eps must be positive, got {}",
            config_path.display(),
            config.layer_norm_eps
        );
    }
    let shapes = header_shapes(files)?;
    let h = config.hidden_size as usize;
    let expect = [
        (
            "embeddings.word_embeddings.weight",
            "vocab_size",
            config.vocab_size as usize,
            0,
        ),
        (
            "embeddings.position_embeddings.weight",
            "max_position_embeddings",
            config.max_position_embeddings as usize,
            0,
        ),
        (
            "embeddings.token_type_embeddings.weight",
            "type_vocab_size",
            config.type_vocab_size as usize,
            0,
        ),
        ("embeddings.word_embeddings.weight", "hidden_size", h, 1),
        (
            "encoder.layer.0.intermediate.dense.weight",
            "intermediate_size",
            config.intermediate_size as usize,
            0,
        ),
    ];
    for (key, field, want, dim) in expect {
        if let Some((shape, file)) = shapes.get(key) {
            if shape.get(dim) != Some(&want) {
                bail!(
                    "{}: {field} is {want} but {} holds {key} of shape {shape:?}",
                    config_path.display(),
                    file.display()
                );
            }
        }
    }
    // Layers: the checkpoint's highest encoder.layer.N must be the config's last layer.
    let layers = shapes
        .keys()
        .filter_map(|k| {
            k.strip_prefix("encoder.layer.")?
                .split('.')
                .next()?
                .parse::<usize>()
                .ok()
        })
        .max()
        .map(|m| m + 1);
    if let Some(n) = layers {
        if n != config.num_hidden_layers as usize {
            bail!(
                "{}: num_hidden_layers is {} but the checkpoint has {n} layers",
                config_path.display(),
                config.num_hidden_layers
            );
        }
    }
    // Whatever the names: a config describing far more parameters than the checkpoint holds
    // is wrong (missing weights are reported by name after loading; this bounds the allocation).
    let held: f64 = shapes
        .values()
        .map(|(shape, _)| shape.iter().map(|&d| d as f64).product::<f64>())
        .sum();
    let (hf, i) = (h as f64, config.intermediate_size as f64);
    let described =
        (config.vocab_size + config.max_position_embeddings + config.type_vocab_size + 2) as f64
            * hf
            + config.num_hidden_layers as f64 * (4.0 * hf * hf + 2.0 * hf * i + 9.0 * hf + i)
            + hf * hf
            + hf
            + config.num_labels() as f64 * (hf + 1.0);
    if described > 1.5 * held + 1e6 {
        bail!(
            "{}: describes a model of {described:.0} parameters but the checkpoint holds {held:.0}; the sizes in config.json are wrong",
            config_path.display()
        );
    }
    Ok(())
}
