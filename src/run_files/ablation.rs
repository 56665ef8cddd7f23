//! ablation.json: the score with each head masked alone, and each layer reduced to one head.
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AblationSummary {
    pub task: String,
    pub split: String,
    pub model: String,
    pub data_dir: String,
    /// What was read (kind, files, revision).
    pub source: Value,
    pub examples: usize,
    pub tokens: i64,
    pub metric: String,
    pub layers: i64,
    pub heads: i64,
    pub kv_heads: i64,
    /// The unmasked model's score.
    pub score: f64,
    pub tolerance: f64,
    pub heads_that_hurt_when_masked: usize,
    pub heads_that_help_when_masked: usize,
    pub heads_ablated: i64,
    /// Per layer, the head that alone scores best (null without --single-head).
    pub best_single_head_per_layer: Vec<Option<BestHead>>,
    pub seconds: f64,
    pub command: String,
    /// Language models: exp(loss) unmasked, and with each head masked (null for heads the
    /// model no longer has).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub perplexity: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub perplexity_without: Option<Vec<Vec<Option<f64>>>>,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct BestHead {
    pub head: i64,
    pub score: f64,
}
