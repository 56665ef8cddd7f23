//! `config.json` as transformers reads and writes it: the fields every architecture shares
//! (labels, pruned heads, model type) on the raw JSON object, so a config written back after
//! pruning or fine-tuning loses nothing, and the BERT-shaped fields that BERT, RoBERTa and
//! ELECTRA read. Each architecture parses its own typed view with `ModelConfig::typed`.
use anyhow::{anyhow, bail, Context, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::Path;
/// Activations that transformers accepts for `hidden_act` (ACT2FN).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    Gelu,
    GeluPython,
    GeluNew,
    GeluPytorchTanh,
    GeluFast,
    QuickGelu,
    Relu,
    Relu6,
    Silu,
    Swish,
    Tanh,
    Sigmoid,
    Mish,
    Linear,
}

/// A checkpoint's config.json: the raw object, with accessors for the fields every
/// transformers config shares.
#[derive(Clone, Debug)]
pub struct ModelConfig {
    raw: Map<String, Value>,
}

/// `raw` read into a typed view; a field of the wrong type is named in the error (serde_json
/// does not name it), found by reading each field alone.
fn typed_view<T: DeserializeOwned>(raw: Map<String, Value>) -> Result<T> {
    serde_json::from_value(Value::Object(raw.clone())).map_err(|e| {
        let alone = |k: &String, v: &Value| {
            let one = Map::from_iter([(k.clone(), v.clone())]);
            serde_json::from_value::<T>(Value::Object(one))
                .is_err_and(|e| !e.to_string().starts_with("missing field"))
        };
        match raw.iter().find(|(k, v)| alone(k, v)) {
            Some((k, _)) => anyhow!("malformed config: {k}: {e}"),
            None => anyhow!("malformed config: {e}"),
        }
    })
}

impl ModelConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read the model config", path.display()))?;
        Self::from_json(&text).map_err(|e| anyhow!("{}: {e}", path.display()))
    }

    pub fn from_json(text: &str) -> Result<Self> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| anyhow!("malformed config: {e}"))?;
        let Value::Object(raw) = value else {
            bail!("malformed config: expected a JSON object");
        };
        let config = ModelConfig { raw };
        config.check_common()?;
        Ok(config)
    }

    fn check_common(&self) -> Result<()> {
        if let Some(v) = self.raw.get("model_type") {
            if !v.is_string() {
                bail!("model_type must be a string, got {v}");
            }
        }
        self.pruned_heads()?;
        self.pruned_neurons()?;
        self.typed::<LabelFields>()?;
        Ok(())
    }

    /// The architecture family's name (`model_type`; "bert" when absent, as old BERT configs).
    pub fn model_type(&self) -> &str {
        self.raw
            .get("model_type")
            .and_then(Value::as_str)
            .unwrap_or("bert")
    }

    /// The config read into an architecture's typed view (serde defaults fill the rest).
    pub fn typed<T: DeserializeOwned>(&self) -> Result<T> {
        typed_view(self.raw.clone())
    }

    /// The config with `defaults` filled in where absent, read into a typed view: families
    /// that reuse a typed config (RoBERTa, ELECTRA use BERT's) with their own defaults.
    pub fn typed_with_defaults<T: DeserializeOwned>(
        &self,
        defaults: &[(&str, Value)],
    ) -> Result<T> {
        let mut raw = self.raw.clone();
        for (k, v) in defaults {
            raw.entry(k.to_string()).or_insert_with(|| v.clone());
        }
        typed_view(raw)
    }

    fn labels(&self) -> LabelFields {
        self.typed().unwrap_or_default()
    }

    /// Number of outputs of the classifier: num_labels, else the size of id2label, else 2.
    pub fn num_labels(&self) -> i64 {
        let l = self.labels();
        l.num_labels
            .or_else(|| l.id2label.as_ref().map(|m| m.len() as i64))
            .unwrap_or(2)
    }

    /// Label names in id order, when the config has them.
    pub fn id2label(&self) -> Option<BTreeMap<String, String>> {
        self.labels().id2label
    }

    /// Whether the task is a regression (one output and MSE loss), as transformers decides it.
    pub fn is_regression(&self) -> bool {
        match self.labels().problem_type.as_deref() {
            Some("regression") => true,
            Some(_) => false,
            None => self.num_labels() == 1,
        }
    }

    /// Sets num_labels and the label maps for a classification task with these label names.
    pub fn set_labels(&mut self, labels: &[String]) {
        self.raw.remove("num_labels");
        let id2label: Map<String, Value> = labels
            .iter()
            .enumerate()
            .map(|(i, l)| (i.to_string(), Value::from(l.clone())))
            .collect();
        let label2id: Map<String, Value> = labels
            .iter()
            .enumerate()
            .map(|(i, l)| (l.clone(), Value::from(i as i64)))
            .collect();
        self.raw.insert("id2label".into(), Value::Object(id2label));
        self.raw.insert("label2id".into(), Value::Object(label2id));
    }

    /// Label maps of a task (none for a regression such as STS-B, which has one output).
    pub fn set_labels_for(&mut self, regression: bool, labels: &[String]) {
        if regression {
            self.raw.insert("num_labels".into(), 1.into());
            self.raw.remove("id2label");
            self.raw.remove("label2id");
            self.raw.insert("problem_type".into(), "regression".into());
        } else {
            self.set_labels(labels);
            self.raw
                .insert("problem_type".into(), "single_label_classification".into());
        }
    }

    /// Layer -> original indices of the heads removed from it (`pruned_heads`, whose keys are
    /// strings in JSON).
    pub fn pruned_heads(&self) -> Result<BTreeMap<i64, Vec<i64>>> {
        let Some(v) = self.raw.get("pruned_heads") else {
            return Ok(BTreeMap::new());
        };
        let map: BTreeMap<String, Vec<i64>> = serde_json::from_value(v.clone())
            .map_err(|e| anyhow!("pruned_heads: expected {{\"layer\": [head, ...]}}, {e}"))?;
        map.into_iter()
            .map(|(k, heads)| {
                let l: i64 = k
                    .trim()
                    .parse()
                    .map_err(|_| anyhow!("pruned_heads: layer key {k:?} is not an integer"))?;
                Ok((l, heads))
            })
            .collect()
    }

    /// Checks `pruned_heads` against the architecture's layer and head counts.
    pub fn check_pruned_heads(&self, layers: i64, heads: i64) -> Result<()> {
        for (l, pruned) in self.pruned_heads()? {
            if l < 0 || l >= layers {
                bail!("pruned_heads: layer {l} is out of range 0..{layers}");
            }
            if let Some(h) = pruned.iter().find(|&&h| h < 0 || h >= heads) {
                bail!("pruned_heads: head {h} of layer {l} is out of range 0..{heads}");
            }
        }
        Ok(())
    }

    /// Original indices of the heads still present in each of `layers` layers, ascending.
    pub fn kept_heads(&self, layers: i64, heads: i64) -> Vec<Vec<i64>> {
        let pruned = self.pruned_heads().unwrap_or_default();
        (0..layers)
            .map(|l| {
                let p = pruned.get(&l);
                (0..heads)
                    .filter(|h| p.is_none_or(|p| !p.contains(h)))
                    .collect()
            })
            .collect()
    }

    /// Names the classes of a modelling file saved beside the weights (`auto_map`).
    pub fn set_auto_map(&mut self, entries: &[(&str, String)]) {
        let map: Map<String, Value> = entries
            .iter()
            .map(|(k, v)| (k.to_string(), Value::from(v.clone())))
            .collect();
        self.raw.insert("auto_map".into(), Value::Object(map));
    }

    /// Drops `auto_map`: a model saved without its modelling file must not point to one.
    pub fn remove_auto_map(&mut self) {
        self.raw.remove("auto_map");
    }

    /// Adds heads to `pruned_heads` (original indices), merging with any already there.
    pub fn add_pruned_heads(&mut self, layer: i64, heads: &[i64]) {
        let mut all = self.pruned_heads().unwrap_or_default();
        let entry = all.entry(layer).or_default();
        for &h in heads {
            if !entry.contains(&h) {
                entry.push(h);
            }
        }
        entry.sort_unstable();
        if entry.is_empty() {
            all.remove(&layer);
        }
        if all.is_empty() {
            self.raw.remove("pruned_heads");
        } else {
            let map: Map<String, Value> = all
                .into_iter()
                .map(|(l, h)| (l.to_string(), Value::from(h)))
                .collect();
            self.raw.insert("pruned_heads".into(), Value::Object(map));
        }
    }

    /// Layer -> original indices of the intermediate neurons removed from its feed-forward
    /// block (`pruned_neurons`, written by bertology when layers keep different numbers of
    /// neurons; keys are strings in JSON).
    pub fn pruned_neurons(&self) -> Result<BTreeMap<i64, Vec<i64>>> {
        let Some(v) = self.raw.get("pruned_neurons") else {
            return Ok(BTreeMap::new());
        };
        let map: BTreeMap<String, Vec<i64>> = serde_json::from_value(v.clone())
            .map_err(|e| anyhow!("pruned_neurons: expected {{\"layer\": [neuron, ...]}}, {e}"))?;
        map.into_iter()
            .map(|(k, neurons)| {
                let l: i64 = k
                    .trim()
                    .parse()
                    .map_err(|_| anyhow!("pruned_neurons: layer key {k:?} is not an integer"))?;
                Ok((l, neurons))
            })
            .collect()
    }

    /// Checks `pruned_neurons` against the layer count and the intermediate size; returns the
    /// original neurons each layer keeps, ascending.
    pub fn kept_neurons(&self, layers: i64, intermediate: i64) -> Result<Vec<Vec<i64>>> {
        let pruned = self.pruned_neurons()?;
        for (&l, removed) in &pruned {
            if l < 0 || l >= layers {
                bail!("pruned_neurons: layer {l} is out of range 0..{layers}");
            }
            if let Some(n) = removed.iter().find(|&&n| n < 0 || n >= intermediate) {
                bail!(
                    "pruned_neurons: neuron {n} of layer {l} is out of range 0..{intermediate} (the intermediate size)"
                );
            }
        }
        Ok((0..layers)
            .map(|l| {
                let p = pruned.get(&l);
                (0..intermediate)
                    .filter(|n| p.is_none_or(|p| !p.contains(n)))
                    .collect()
            })
            .collect())
    }

    /// Records the neurons each layer keeps (original indices). When every layer keeps the
    /// same number and the architecture has an intermediate-size `field`, the kept neurons are
    /// renumbered 0..k: `field` becomes k and `pruned_neurons` goes (transformers' own class
    /// loads such a model); else `pruned_neurons` lists the removed ones of each layer.
    pub fn set_kept_neurons(&mut self, kept: &[Vec<i64>], intermediate: i64, field: Option<&str>) {
        let uniform = kept.windows(2).all(|w| w[0].len() == w[1].len());
        let all_kept = kept.iter().all(|k| k.len() as i64 == intermediate);
        self.raw.remove("pruned_neurons");
        if all_kept {
            return;
        }
        // (Configs refuse an intermediate size of 0: layers without neurons are recorded.)
        let size = kept.first().map_or(0, Vec::len);
        if let (true, Some(field), true) = (uniform, field, size > 0) {
            self.raw.insert(field.into(), Value::from(size));
            return;
        }
        let map: Map<String, Value> = kept
            .iter()
            .enumerate()
            .filter(|(_, k)| k.len() as i64 != intermediate)
            .map(|(l, k)| {
                let removed: Vec<i64> = (0..intermediate).filter(|n| !k.contains(n)).collect();
                (l.to_string(), Value::from(removed))
            })
            .collect();
        self.raw.insert("pruned_neurons".into(), Value::Object(map));
    }

    /// `pruned_neurons` as written to JSON (layer keys as strings).
    pub fn pruned_neurons_json(&self) -> Value {
        self.raw
            .get("pruned_neurons")
            .cloned()
            .unwrap_or_else(|| Value::Object(Map::new()))
    }

    /// Replaces the pruned heads by head counts that say the same thing: every layer keeps
    /// `heads` query heads over `kv_heads` key/value heads of `head_dim` (what a model pruned
    /// to one shape in every layer is, to transformers' own classes).
    pub fn set_uniform_heads(&mut self, heads: i64, kv_heads: i64, head_dim: i64) {
        self.raw.remove("pruned_heads");
        self.raw
            .insert("num_attention_heads".into(), Value::from(heads));
        self.raw
            .insert("num_key_value_heads".into(), Value::from(kv_heads));
        self.raw.insert("head_dim".into(), Value::from(head_dim));
    }

    /// `pruned_heads` as written to JSON (layer keys as strings).
    pub fn pruned_heads_json(&self) -> Value {
        self.raw
            .get("pruned_heads")
            .cloned()
            .unwrap_or_else(|| Value::Object(Map::new()))
    }

    /// Makes `architectures` name `class` (what transformers' AutoModel reads).
    pub fn set_architecture(&mut self, class: &str) {
        let has = self
            .raw
            .get("architectures")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|v| v == class));
        if !has {
            self.raw
                .insert("architectures".into(), Value::from(vec![class.to_string()]));
        }
    }

    /// A number field, when present.
    pub fn get_f64(&self, key: &str) -> Option<f64> {
        self.raw.get(key).and_then(Value::as_f64)
    }

    pub fn to_json_string(&self) -> Result<String> {
        Ok(serde_json::to_string_pretty(&Value::Object(self.raw.clone()))? + "\n")
    }
}

/// The label fields every transformers config has.
#[derive(Clone, Debug, Default, Deserialize)]
struct LabelFields {
    #[serde(default)]
    num_labels: Option<i64>,
    #[serde(default)]
    id2label: Option<BTreeMap<String, String>>,
    #[serde(default)]
    problem_type: Option<String>,
}

/// BertConfig's fields with transformers' defaults: the typed view of BERT, RoBERTa and
/// ELECTRA (which adds `embedding_size`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BertConfig {
    #[serde(default = "defaults::vocab_size")]
    pub vocab_size: i64,
    #[serde(default = "defaults::hidden_size")]
    pub hidden_size: i64,
    #[serde(default = "defaults::num_hidden_layers")]
    pub num_hidden_layers: i64,
    #[serde(default = "defaults::num_attention_heads")]
    pub num_attention_heads: i64,
    #[serde(default = "defaults::intermediate_size")]
    pub intermediate_size: i64,
    #[serde(default = "defaults::hidden_act")]
    pub hidden_act: Activation,
    #[serde(default = "defaults::dropout")]
    pub hidden_dropout_prob: f64,
    #[serde(default = "defaults::dropout")]
    pub attention_probs_dropout_prob: f64,
    #[serde(default = "defaults::max_position_embeddings")]
    pub max_position_embeddings: i64,
    #[serde(default = "defaults::type_vocab_size")]
    pub type_vocab_size: i64,
    #[serde(default = "defaults::initializer_range")]
    pub initializer_range: f64,
    #[serde(default = "defaults::layer_norm_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub pad_token_id: Option<i64>,
    #[serde(default = "defaults::position_embedding_type")]
    pub position_embedding_type: String,
    #[serde(default)]
    pub classifier_dropout: Option<f64>,
    /// ELECTRA: width of the embeddings before `embeddings_project`.
    #[serde(default)]
    pub embedding_size: Option<i64>,
}

pub(crate) mod defaults {
    use super::Activation;
    pub fn vocab_size() -> i64 {
        30522
    }
    pub fn hidden_size() -> i64 {
        768
    }
    pub fn num_hidden_layers() -> i64 {
        12
    }
    pub fn num_attention_heads() -> i64 {
        12
    }
    pub fn intermediate_size() -> i64 {
        3072
    }
    pub fn hidden_act() -> Activation {
        Activation::Gelu
    }
    pub fn dropout() -> f64 {
        0.1
    }
    pub fn max_position_embeddings() -> i64 {
        512
    }
    pub fn type_vocab_size() -> i64 {
        2
    }
    pub fn initializer_range() -> f64 {
        0.02
    }
    pub fn layer_norm_eps() -> f64 {
        1e-12
    }
    pub fn position_embedding_type() -> String {
        "absolute".into()
    }
}

impl BertConfig {
    pub fn validate(&self) -> Result<()> {
        if self.position_embedding_type != "absolute" {
            bail!(
                "unsupported position_embedding_type {:?} (only \"absolute\")",
                self.position_embedding_type
            );
        }
        check_sizes(&[
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("vocab_size", self.vocab_size),
            ("max_position_embeddings", self.max_position_embeddings),
        ])?;
        check_heads(
            "hidden_size",
            self.hidden_size,
            "num_attention_heads",
            self.num_attention_heads,
        )
    }

    pub fn head_dim(&self) -> i64 {
        self.hidden_size / self.num_attention_heads
    }

    /// Dropout before the classifier (transformers: classifier_dropout, else hidden_dropout_prob).
    pub fn classifier_dropout_prob(&self) -> f64 {
        self.classifier_dropout.unwrap_or(self.hidden_dropout_prob)
    }
}

/// Every named size must be positive.
pub fn check_sizes(sizes: &[(&str, i64)]) -> Result<()> {
    for (name, v) in sizes {
        if *v <= 0 {
            bail!("{name} must be positive, got {v}");
        }
    }
    Ok(())
}

/// The hidden size must split evenly into heads.
pub fn check_heads(hidden_name: &str, hidden: i64, heads_name: &str, heads: i64) -> Result<()> {
    if hidden % heads != 0 {
        bail!("{hidden_name} {hidden} is not a multiple of {heads_name} {heads}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_transformers_and_unknown_fields_survive() {
        let c = ModelConfig::from_json(
            r#"{"model_type":"bert","use_cache":true,"gradient_checkpointing":false}"#,
        )
        .unwrap();
        let b: BertConfig = c.typed().unwrap();
        assert_eq!(b.hidden_size, 768);
        assert_eq!(c.num_labels(), 2);
        assert_eq!(b.hidden_act, Activation::Gelu);
        let back: Value = serde_json::from_str(&c.to_json_string().unwrap()).unwrap();
        assert_eq!(back["use_cache"], Value::Bool(true));
        assert_eq!(back["gradient_checkpointing"], Value::Bool(false));
    }

    #[test]
    fn pruned_heads_merge_and_kept_heads() {
        let mut c = ModelConfig::from_json(
            r#"{"num_attention_heads":4,"hidden_size":8,"pruned_heads":{"1":[2]}}"#,
        )
        .unwrap();
        c.add_pruned_heads(1, &[0, 2]);
        assert_eq!(c.pruned_heads().unwrap()[&1], vec![0, 2]);
        let kept = c.kept_heads(2, 4);
        assert_eq!(kept[1], vec![1, 3]);
        assert_eq!(kept[0], vec![0, 1, 2, 3]);
        assert!(c.check_pruned_heads(2, 4).is_ok());
        assert!(c.check_pruned_heads(1, 4).is_err());
    }

    #[test]
    fn rejects_bad_values() {
        let c = ModelConfig::from_json(r#"{"hidden_size":10,"num_attention_heads":3}"#).unwrap();
        assert!(c.typed::<BertConfig>().unwrap().validate().is_err());
        assert!(ModelConfig::from_json(r#"{"hidden_act":"nonsense"}"#)
            .unwrap()
            .typed::<BertConfig>()
            .is_err());
        assert!(ModelConfig::from_json(r#"{"pruned_heads":{"x":[1]}}"#).is_err());
        assert!(ModelConfig::from_json("[1]").is_err());
    }
}
