//! Checks config.json against the checkpoint's headers before any variable is allocated: a
//! config whose sizes disagree with the weights (a typo, a mangled file) would otherwise have
//! libtorch allocate whatever it says — gigabytes for one stray digit — before the first
//! shape check. Each family declares its size fields (`Family::sizes`); below them, the
//! field names of every family's config (transformers' shared names and the few of its own
//! that DistilBERT and GPT-2 use) are checked whatever the family, as a net.
use super::checkpoint::{canonical_key, map_file};
use super::config::ModelConfig;
use super::family::{Family, Held};
use anyhow::{anyhow, bail, Result};
use safetensors::SafeTensors;
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Shapes of the tensors in the checkpoint's files (headers only), by canonical name.
fn header_shapes(files: &[PathBuf], prefix: &str) -> Result<HashMap<String, Vec<usize>>> {
    let mut out = HashMap::new();
    for file in files {
        let bytes = map_file(file)?;
        let (_, meta) = SafeTensors::read_metadata(&bytes)
            .map_err(|e| anyhow!("{}: not a safetensors file: {e}", file.display()))?;
        for (name, info) in meta.tensors() {
            out.insert(canonical_key(&name, prefix), info.shape.clone());
        }
    }
    Ok(out)
}

/// Size fields checked for every family whatever it declares (each is some weight's
/// dimension), layer counts, and dropout probabilities.
const SIZES: &[&str] = &[
    "hidden_size",
    "intermediate_size",
    "embedding_size",
    "dim",
    "hidden_dim",
    "vocab_size",
    "max_position_embeddings",
    "type_vocab_size",
    "n_embd",
    "n_positions",
    "n_ctx",
    "n_inner",
    "num_key_value_heads",
    "head_dim",
];
const LAYERS: &[&str] = &["num_hidden_layers", "n_layers", "n_layer"];
const PROBABILITIES: &[&str] = &[
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "classifier_dropout",
    "dropout",
    "attention_dropout",
    "seq_classif_dropout",
    "qa_dropout",
    "resid_pdrop",
    "embd_pdrop",
    "attn_pdrop",
    "summary_first_dropout",
];
/// Normalisation epsilons: zero or negative makes a layer divide by zero or take the square
/// root of a negative number (NaN from the first token).
const EPSILONS: &[&str] = &["layer_norm_eps", "layer_norm_epsilon", "rms_norm_eps"];

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
                bail!(
                    "{at}: {k} must be a positive integer (expected an integer above 0), got {v}"
                );
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
    for k in EPSILONS {
        if let Some(v) = raw.get(*k).filter(|v| !v.is_null()) {
            if !v.as_f64().is_some_and(|e| e > 0.0 && e.is_finite()) {
                bail!("{at}: {k} must be a positive number, got {v}");
            }
        }
    }
    if let Some(v) = raw.get("initializer_range").filter(|v| !v.is_null()) {
        if !v.as_f64().is_some_and(|r| (0.0..=1e3).contains(&r)) {
            bail!("{at}: initializer_range must be a standard deviation in [0, 1000], got {v}");
        }
    }
    for f in family
        .sizes
        .iter()
        .filter(|f| !matches!(f.held, Held::TokenId))
    {
        if let Some(v) = raw.get(f.field).filter(|v| !v.is_null()) {
            if v.as_i64().is_none_or(|n| n <= 0) {
                bail!(
                    "{at}: {} must be a positive integer (expected an integer above 0), got {v}",
                    f.field
                );
            }
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
    // Each declared field equals the dimension of the weights that holds it (a default
    // applies when config.json leaves the field out, as the typed config does).
    for f in family.sizes {
        let (want, how) = match (int(f.field), f.default) {
            (Some(v), _) => (v, String::new()),
            (None, Some(d)) if raw.get(f.field).is_none() => (
                d(),
                " (the default: config.json does not set it)".to_string(),
            ),
            _ => continue,
        };
        let field = f.field;
        match f.held {
            Held::Dim(key, axis) => {
                if let Some(shape) = shapes.get(key) {
                    if shape.get(axis).map(|&d| d as i64) != Some(want) {
                        bail!("{at}: {field} is {want}{how} but {shown} holds {key} of shape {shape:?}");
                    }
                }
            }
            Held::Neurons(key, axis) => {
                let cut = config
                    .pruned_neurons()
                    .ok()
                    .and_then(|m| m.get(&0).map(|v| v.len() as i64))
                    .unwrap_or(0);
                if let Some(shape) = shapes.get(key) {
                    if shape.get(axis).map(|&d| d as i64 + cut) != Some(want) {
                        bail!("{at}: {field} is {want}{how} but {shown} holds {key} of shape {shape:?}{}", if cut > 0 { format!(" and pruned_neurons removes {cut} from layer 0") } else { String::new() });
                    }
                }
            }
            Held::Layers(stem) => {
                let layers = shapes
                    .keys()
                    .filter_map(|k| k.strip_prefix(stem)?.split('.').next()?.parse::<i64>().ok())
                    .max()
                    .map(|m| m + 1);
                if let Some(n) = layers.filter(|&n| n != want) {
                    bail!("{at}: {field} is {want}{how} but {shown} has {n} layers");
                }
            }
            Held::Bounded | Held::TokenId => {}
            Held::AtMost(limit) => {
                if want > limit {
                    bail!("{at}: {field} is {want}{how}, more than {limit}");
                }
            }
        }
    }
    // Token ids the network reads index the embedding rows: one past them fails deep inside
    // libtorch, or shifts RoBERTa's positions below zero.
    let vocab = family
        .sizes
        .iter()
        .find(|f| f.field == "vocab_size")
        .and_then(|f| int(f.field).or_else(|| f.default.map(|d| d())))
        .or_else(|| int("vocab_size"));
    if let Some(vocab) = vocab {
        for f in family
            .sizes
            .iter()
            .filter(|f| matches!(f.held, Held::TokenId))
        {
            if let Some(v) = raw.get(f.field).filter(|v| !v.is_null()) {
                if !v.as_i64().is_some_and(|id| (0..vocab).contains(&id)) {
                    bail!(
                        "{at}: {} {v} is outside the vocabulary 0..{vocab} (vocab_size); it must be a token id",
                        f.field
                    );
                }
            }
        }
    }
    // Families that declare nothing: the highest `.layer.` index must be the config's last layer.
    if family.sizes.is_empty() {
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
    }
    // Every size is some weight's dimension: none can exceed the largest one the checkpoint
    // holds (this bounds what libtorch is asked to allocate, whatever the family).
    let largest = shapes.values().flatten().copied().max().unwrap_or(0) as i64;
    if largest > 0 {
        // Except the fields a family bounds itself (Held::AtMost).
        let own_bound = |k: &str| {
            family
                .sizes
                .iter()
                .any(|f| f.field == k && matches!(f.held, Held::AtMost(_) | Held::TokenId))
        };
        let declared = family.sizes.iter().map(|f| f.field);
        for k in SIZES
            .iter()
            .copied()
            .chain(declared)
            .filter(|k| !own_bound(k))
        {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::checkpoint::KeyLayout;
    use crate::model::family::SizeField;

    /// A family as a new architecture declares it (Llama's RoPE positions have no weight).
    static ROPE: Family = Family {
        name: "rope-test",
        model_types: &["rope-test"],
        layout: KeyLayout {
            prefix: "model",
            head: "lm_head.",
            optional: &[],
        },
        sizes: &[
            SizeField::new("vocab_size", None, Held::Dim("embed_tokens.weight", 0)),
            SizeField::new("hidden_size", None, Held::Dim("embed_tokens.weight", 1)),
            SizeField::new("num_hidden_layers", None, Held::Layers("layers.")),
            SizeField::new("num_key_value_heads", None, Held::Bounded),
            SizeField::new("max_position_embeddings", None, Held::AtMost(1 << 20)),
        ],
        build: |_, _| unreachable!("preflight builds nothing"),
    };

    fn check_config(json: serde_json::Value) -> Result<()> {
        let dir = tempfile::tempdir().unwrap();
        let weights = dir.path().join("model.safetensors");
        let t = |shape: &[i64]| tch::Tensor::zeros(shape, (tch::Kind::Float, tch::Device::Cpu));
        tch::Tensor::write_safetensors(
            &[
                ("model.embed_tokens.weight", t(&[64, 8])),
                ("model.layers.0.mlp.gate_proj.weight", t(&[16, 8])),
                ("model.layers.1.mlp.gate_proj.weight", t(&[16, 8])),
            ],
            &weights,
        )
        .unwrap();
        let config = ModelConfig::from_json(&json.to_string()).unwrap();
        check(&dir.path().join("config.json"), &config, &ROPE, &[weights])
    }

    #[test]
    fn declared_fields_are_checked_and_at_most_bounds_itself() {
        let ok = serde_json::json!({"model_type": "rope-test", "vocab_size": 64, "hidden_size": 8,
            "num_hidden_layers": 2, "num_key_value_heads": 2, "max_position_embeddings": 4096});
        check_config(ok.clone()).unwrap();
        for (field, value, says) in [
            ("max_position_embeddings", 1i64 << 40, "more than 1048576"),
            ("num_hidden_layers", 3, "has 2 layers"),
            ("hidden_size", 16, "embed_tokens.weight of shape [64, 8]"),
            ("num_key_value_heads", 1000, "larger than any dimension"),
            ("vocab_size", 0, "positive integer"),
        ] {
            let mut bad = ok.clone();
            bad[field] = value.into();
            let e = check_config(bad).unwrap_err().to_string();
            assert!(e.contains(field) && e.contains(says), "{field}: {e}");
        }
    }
}
