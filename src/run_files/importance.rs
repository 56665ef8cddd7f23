//! importance.json: what `importance` measured; `report` draws its heatmaps.
use super::Fingerprints;
use crate::importance::Estimator;
use crate::metrics::Metrics;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ImportanceSummary {
    pub task: String,
    pub split: String,
    pub model: String,
    pub data_dir: String,
    /// What was read (kind, files, revision).
    pub source: Value,
    pub labels: Vec<String>,
    pub examples: usize,
    pub tokens: u64,
    pub layers: u64,
    pub heads: u64,
    /// Key/value heads per layer: fewer than heads under grouped-query attention, where
    /// query head h reads key/value group h / (heads / kv_heads). 0: not recorded.
    pub kv_heads: u64,
    /// The model's own pruned heads (transformers' format): the report fades them.
    pub pruned_heads: BTreeMap<i64, Vec<i64>>,
    pub settings: ImportanceSettings,
    pub metrics: Metrics,
    /// The task's metric of the unmasked model (null when it was not computed).
    pub score: Option<f64>,
    pub metric: String,
    pub device: String,
    pub seconds: f64,
    pub command: Option<String>,
    /// Sizes and hashes of the run's files (None in summaries older than fingerprints).
    pub outputs: Option<Fingerprints>,
    pub intermediate: i64,
    pub neurons_per_layer: Vec<i64>,
    /// Per layer, how neuron importance spreads (only when neurons were measured).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub neuron_importance_per_layer: Option<Vec<Quartiles>>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ImportanceSettings {
    /// None only in summaries without it.
    pub estimator: Option<Estimator>,
    pub layer_norm: bool,
    pub global_norm: bool,
    pub entropy: bool,
    pub neurons: bool,
    pub head_mask: Option<String>,
    pub neuron_mask: Option<String>,
    pub batch_size: u64,
    pub max_seq_length: u64,
    pub pad_to_max_length: bool,
    pub data_subset: Option<u64>,
    pub seed: i64,
}

/// The smallest, quartiles and largest of some values (f32 values written as f64, as they
/// always were).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct Quartiles {
    pub min: f64,
    pub q25: f64,
    pub median: f64,
    pub q75: f64,
    pub max: f64,
}

impl Quartiles {
    pub fn of(values: &[f32]) -> Quartiles {
        let mut v = values.to_vec();
        v.sort_by(|a, b| a.total_cmp(b));
        let q = |f: f64| f64::from(v[((v.len() - 1) as f64 * f).round() as usize]);
        Quartiles {
            min: q(0.0),
            q25: q(0.25),
            median: q(0.5),
            q75: q(0.75),
            max: q(1.0),
        }
    }
}
