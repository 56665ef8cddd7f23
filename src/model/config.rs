//! `config.json` of a BERT checkpoint, as transformers reads and writes it.
use anyhow::{bail, Context, Result};
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

/// BertConfig with transformers' defaults. Unknown fields are kept in `extra` so that a config
/// we write back (after pruning or fine-tuning) loses nothing.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BertConfig {
    #[serde(default = "defaults::model_type")]
    pub model_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architectures: Option<Vec<String>>,
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
    pub pad_token_id: i64,
    #[serde(default = "defaults::position_embedding_type")]
    pub position_embedding_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classifier_dropout: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_labels: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id2label: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label2id: Option<BTreeMap<String, i64>>,
    /// Layer index (a string in JSON) -> original indices of the heads removed from it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pruned_heads: BTreeMap<String, Vec<i64>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

mod defaults {
    use super::Activation;
    pub fn model_type() -> String {
        "bert".into()
    }
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

/// Model types whose checkpoints use BERT's architecture and key names.
const BERT_LIKE: &[&str] = &["bert"];

impl BertConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read the model config", path.display()))?;
        let config: BertConfig = serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}: malformed config: {e}", path.display()))?;
        config
            .validate()
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<()> {
        if !BERT_LIKE.contains(&self.model_type.as_str()) {
            bail!(
                "unsupported model_type {:?} (expected one of {:?})",
                self.model_type,
                BERT_LIKE
            );
        }
        if self.position_embedding_type != "absolute" {
            bail!(
                "unsupported position_embedding_type {:?} (only \"absolute\")",
                self.position_embedding_type
            );
        }
        for (name, v) in [
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("vocab_size", self.vocab_size),
        ] {
            if v <= 0 {
                bail!("{name} must be positive, got {v}");
            }
        }
        if self.hidden_size % self.num_attention_heads != 0 {
            bail!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size,
                self.num_attention_heads
            );
        }
        for (layer, heads) in &self.pruned_heads {
            let l: i64 = layer.parse().map_err(|_| {
                anyhow::anyhow!("pruned_heads: layer key {layer:?} is not an integer")
            })?;
            if l < 0 || l >= self.num_hidden_layers {
                bail!(
                    "pruned_heads: layer {l} is out of range 0..{}",
                    self.num_hidden_layers
                );
            }
            if let Some(h) = heads
                .iter()
                .find(|&&h| h < 0 || h >= self.num_attention_heads)
            {
                bail!(
                    "pruned_heads: head {h} of layer {l} is out of range 0..{}",
                    self.num_attention_heads
                );
            }
        }
        Ok(())
    }

    pub fn head_dim(&self) -> i64 {
        self.hidden_size / self.num_attention_heads
    }

    /// Number of outputs of the classifier: num_labels, else the size of id2label, else 2.
    pub fn num_labels(&self) -> i64 {
        self.num_labels
            .or_else(|| self.id2label.as_ref().map(|m| m.len() as i64))
            .unwrap_or(2)
    }

    /// Original indices of the heads still present in `layer`, ascending.
    pub fn kept_heads(&self, layer: i64) -> Vec<i64> {
        let pruned = self.pruned_heads.get(&layer.to_string());
        (0..self.num_attention_heads)
            .filter(|h| pruned.is_none_or(|p| !p.contains(h)))
            .collect()
    }

    /// Dropout before the classifier (transformers: classifier_dropout, else hidden_dropout_prob).
    pub fn classifier_dropout_prob(&self) -> f64 {
        self.classifier_dropout.unwrap_or(self.hidden_dropout_prob)
    }

    /// Whether the task is a regression (one output and MSE loss), as transformers decides it.
    pub fn is_regression(&self) -> bool {
        match self.problem_type.as_deref() {
            Some("regression") => true,
            Some(_) => false,
            None => self.num_labels() == 1,
        }
    }

    /// Sets num_labels and the label maps for a classification task with these label names.
    pub fn set_labels(&mut self, labels: &[String]) {
        self.num_labels = None;
        self.id2label = Some(
            labels
                .iter()
                .enumerate()
                .map(|(i, l)| (i.to_string(), l.clone()))
                .collect(),
        );
        self.label2id = Some(
            labels
                .iter()
                .enumerate()
                .map(|(i, l)| (l.clone(), i as i64))
                .collect(),
        );
    }

    /// Label maps of a task (none for a regression such as STS-B, which has one output).
    pub fn set_labels_for(&mut self, task: &crate::data::spec::TaskSpec) {
        if task.is_regression() {
            self.num_labels = Some(1);
            self.id2label = None;
            self.label2id = None;
            self.problem_type = Some("regression".into());
        } else {
            self.set_labels(&task.labels());
            self.problem_type = Some("single_label_classification".into());
        }
    }

    /// Adds heads to `pruned_heads` (original indices), merging with any already there.
    pub fn add_pruned_heads(&mut self, layer: i64, heads: &[i64]) {
        let entry = self.pruned_heads.entry(layer.to_string()).or_default();
        for &h in heads {
            if !entry.contains(&h) {
                entry.push(h);
            }
        }
        entry.sort_unstable();
        if entry.is_empty() {
            self.pruned_heads.remove(&layer.to_string());
        }
    }

    pub fn to_json_string(&self) -> Result<String> {
        Ok(serde_json::to_string_pretty(self)? + "\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_transformers_and_unknown_fields_survive() {
        let c: BertConfig = serde_json::from_str(
            r#"{"model_type":"bert","use_cache":true,"gradient_checkpointing":false}"#,
        )
        .unwrap();
        assert_eq!(c.hidden_size, 768);
        assert_eq!(c.num_labels(), 2);
        assert_eq!(c.hidden_act, Activation::Gelu);
        let back: Value = serde_json::from_str(&c.to_json_string().unwrap()).unwrap();
        assert_eq!(back["use_cache"], Value::Bool(true));
        assert_eq!(back["gradient_checkpointing"], Value::Bool(false));
    }

    #[test]
    fn pruned_heads_merge_and_kept_heads() {
        let mut c: BertConfig = serde_json::from_str(
            r#"{"num_attention_heads":4,"hidden_size":8,"pruned_heads":{"1":[2]}}"#,
        )
        .unwrap();
        c.add_pruned_heads(1, &[0, 2]);
        assert_eq!(c.pruned_heads["1"], vec![0, 2]);
        assert_eq!(c.kept_heads(1), vec![1, 3]);
        assert_eq!(c.kept_heads(0), vec![0, 1, 2, 3]);
    }

    #[test]
    fn rejects_bad_values() {
        let c: BertConfig = serde_json::from_str(r#"{"model_type":"gpt2"}"#).unwrap();
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("unsupported model_type"));
        let c: BertConfig =
            serde_json::from_str(r#"{"hidden_size":10,"num_attention_heads":3}"#).unwrap();
        assert!(c.validate().is_err());
        assert!(serde_json::from_str::<BertConfig>(r#"{"hidden_act":"nonsense"}"#).is_err());
    }
}
