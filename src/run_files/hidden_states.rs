//! hidden_states.json: what hidden_states.safetensors holds, and for each input its tokens.
use crate::hidden_states::Pool;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HiddenStatesSummary {
    pub model: String,
    /// What was read (kind, files, revision).
    pub source: Value,
    pub inputs: usize,
    /// Which hidden states (0 the embeddings' output, i layer i's).
    pub layers: Vec<usize>,
    pub pool: Pool,
    pub attentions: bool,
    pub heads_per_layer: Vec<i64>,
    pub kept_heads: Vec<Vec<i64>>,
    /// The safetensors file.
    pub file: String,
    /// Tensor name -> shape.
    pub tensors: BTreeMap<String, Vec<i64>>,
    pub seconds: f64,
    pub command: String,
    /// In the file, not in what --json prints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub examples: Option<Vec<HiddenStatesInput>>,
}

/// One input: its row in the tensors, its index in the split, its texts and tokens.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HiddenStatesInput {
    pub row: usize,
    pub index: usize,
    pub text_a: String,
    pub text_b: Option<String>,
    pub tokens: Vec<String>,
}
