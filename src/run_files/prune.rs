//! prune.json: what `prune` masked, pruned and timed; `report` draws its curve and table.
use super::Fingerprints;
use crate::importance::Estimator;
use crate::masking::{Order, PruneUnit, Step, StopReason, Units};
use crate::metrics::Metrics;
use crate::timing::{Spread, Verdict};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PruneSummary {
    pub task: String,
    pub split: String,
    pub model: String,
    pub data_dir: String,
    /// What was read (kind, files, revision).
    pub source: Value,
    pub labels: Vec<String>,
    pub examples: usize,
    pub metric: String,
    pub original_score: f64,
    pub masked_score: f64,
    pub pruned_score: f64,
    pub pruned_metrics: Metrics,
    pub max_abs_logit_diff_pruned_vs_masked: f64,
    /// --masking-threshold (None only in summaries without it: no threshold line is drawn).
    pub threshold: Option<f64>,
    /// Budget runs: the fraction of heads (neurons) to keep; null in threshold mode.
    pub target_heads: Option<f64>,
    pub target_neurons: Option<f64>,
    /// What was masked (None in summaries older than neuron masking: heads).
    pub units: Option<Units>,
    pub stop: Option<StopReason>,
    /// None only in summaries without it (the shapes of the arrays are then not checked
    /// against it).
    pub heads_total: Option<u64>,
    pub heads_kept: u64,
    pub fraction_kept: f64,
    pub heads_kept_per_layer: Vec<i64>,
    /// Key/value heads per layer (fewer than the heads under grouped-query attention).
    pub kv_heads: u64,
    pub head_mask: Vec<Vec<f32>>,
    pub layers_without_heads: Vec<usize>,
    /// The pruned model's `pruned_heads` (layer -> removed heads).
    pub pruned_heads: BTreeMap<i64, Vec<i64>>,
    pub parameters_before: u64,
    pub parameters_after: u64,
    pub intermediate: i64,
    pub neurons_total: i64,
    pub neurons_kept: i64,
    pub neuron_fraction_kept: f64,
    pub neurons_kept_per_layer: Vec<i64>,
    /// The pruned model's `pruned_neurons` (layer -> removed neurons).
    pub pruned_neurons: BTreeMap<i64, Vec<i64>>,
    pub timing: Vec<TimingRow>,
    pub settings: PruneSettings,
    pub curve: Vec<Step>,
    pub masking_seconds: f64,
    pub seconds: f64,
    pub pruned_model: String,
    pub command: Option<String>,
    /// Sizes and hashes of the run's files (None in summaries older than fingerprints).
    pub outputs: Option<Fingerprints>,
}

impl PruneSummary {
    /// Whether the run masked feed-forward neurons (alone or with heads).
    pub fn prunes_neurons(&self) -> bool {
        matches!(self.units, Some(Units::Neurons | Units::Both))
    }

    /// The threshold a picture draws: none for a budget run (of heads or neurons).
    pub fn drawn_threshold(&self) -> Option<f64> {
        self.threshold
            .filter(|_| self.target_heads.is_none() && self.target_neurons.is_none())
    }

    /// The masking order's name ("importance" when the summary has none).
    pub fn order_name(&self) -> String {
        self.settings
            .order
            .map_or_else(|| "importance".into(), |o| super::name_of(&o))
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PruneSettings {
    /// Enums are None only in summaries without them.
    pub estimator: Option<Estimator>,
    pub layer_norm: bool,
    pub global_norm: bool,
    pub masking_amount: f64,
    pub min_heads_per_layer: usize,
    pub reestimate: bool,
    pub order: Option<Order>,
    pub prune_unit: Option<PruneUnit>,
    pub uniform_heads: bool,
    pub uniform_neurons: bool,
    pub seed: i64,
    pub batch_size: u64,
    pub max_seq_length: u64,
    pub pad_to_max_length: bool,
    pub data_subset: Option<u64>,
    pub timing_runs: u64,
    pub threads: i32,
    pub device: String,
}

/// Masked (full shapes) against pruned at one batch size. The speeds and the speed-up are
/// required: they are what the row says.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TimingRow {
    #[serde(default)]
    pub batch_size: u64,
    #[serde(default)]
    pub runs: u64,
    /// Median seconds of a pass over the data.
    #[serde(default)]
    pub seconds_before: f64,
    #[serde(default)]
    pub seconds_after: f64,
    #[serde(default)]
    pub seconds_before_spread: Spread,
    #[serde(default)]
    pub seconds_after_spread: Spread,
    pub examples_per_second_before: f64,
    pub examples_per_second_after: f64,
    /// [slowest, fastest] examples per second over the timed passes.
    pub examples_per_second_before_range: Option<[f64; 2]>,
    pub examples_per_second_after_range: Option<[f64; 2]>,
    pub speedup: f64,
    pub verdict: Option<Verdict>,
}

impl TimingRow {
    /// The row of `examples` examples timed `before` (masked) and `after` (pruned).
    pub fn of(batch_size: u64, examples: usize, before: &[f64], after: &[f64]) -> TimingRow {
        let n = examples as f64;
        let (b, a) = (Spread::of(before), Spread::of(after));
        TimingRow {
            batch_size,
            runs: before.len() as u64,
            seconds_before: b.median,
            seconds_after: a.median,
            seconds_before_spread: b,
            seconds_after_spread: a,
            examples_per_second_before: n / b.median,
            examples_per_second_after: n / a.median,
            examples_per_second_before_range: Some([n / b.max, n / b.min]),
            examples_per_second_after_range: Some([n / a.max, n / a.min]),
            speedup: b.median / a.median,
            verdict: Some(Verdict::of(before, after)),
        }
    }
}
