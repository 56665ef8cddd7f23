//! eval.json: the metrics `eval` measured.
use crate::metrics::Metrics;
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EvalSummary {
    pub task: String,
    pub split: String,
    pub model: String,
    pub data_dir: String,
    /// What was read (kind, files, revision).
    pub source: Value,
    pub labels: Vec<String>,
    pub metric: String,
    /// The task's metric (null without labels).
    pub score: Option<f64>,
    pub examples: usize,
    pub tokens: i64,
    pub metrics: Metrics,
    pub head_mask: Option<String>,
    pub neuron_mask: Option<String>,
    /// Heads the --head-mask keeps (null without one).
    pub heads_kept: Option<i64>,
    pub batch_size: u64,
    pub max_seq_length: u64,
    pub pad_to_max_length: bool,
    pub device: String,
    pub seconds: f64,
    pub examples_per_second: f64,
}
