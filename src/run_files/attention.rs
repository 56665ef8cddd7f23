//! attention.json: per-head attention statistics over a split, the findings and the settings.
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AttentionSummary {
    pub model: String,
    /// What was read (kind, files, revision).
    pub source: Value,
    pub examples: usize,
    pub tokens: i64,
    pub layers: i64,
    pub heads: i64,
    pub causal: bool,
    /// "measured", or why not.
    pub next_token: String,
    /// What uniform attention would give, averaged over query tokens.
    pub uniform_entropy: f64,
    /// Statistic -> [layer][head] (null for pruned heads and what was not measured).
    pub statistics: BTreeMap<String, Vec<Vec<Option<f64>>>>,
    /// The importance run given, and its values.
    pub importance: Option<AttentionImportance>,
    /// What the heads do (src/report/attention.rs `findings`).
    pub findings: Value,
    /// Whether the map of heads was drawn.
    pub map: bool,
    pub settings: AttentionSettings,
    pub device: String,
    pub seconds: f64,
    pub command: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AttentionImportance {
    pub run: String,
    pub values: Vec<Vec<f64>>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AttentionSettings {
    pub batch_size: u64,
    pub max_seq_length: u64,
    pub data_subset: Option<u64>,
    pub seed: i64,
    pub map_queries: usize,
}
