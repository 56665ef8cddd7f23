//! finetune.json, written into the fine-tuned model's folder: the data, the settings, every
//! epoch and the one whose weights were saved.
use crate::finetune::Hyper;
use crate::metrics::Metrics;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FinetuneSummary {
    pub task: String,
    pub base_model: String,
    pub output_dir: String,
    pub data_dir: String,
    /// What was read for training and dev (kind, files, revision).
    pub source: Value,
    /// A classification's labels (absent for a language model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<String>>,
    pub train_examples: usize,
    pub dev_examples: usize,
    /// A language model's dev tokens, heads per layer and pruned heads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dev_tokens: Option<Option<i64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heads_per_layer: Option<Vec<i64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pruned_heads: Option<BTreeMap<i64, Vec<i64>>>,
    pub settings: FinetuneSettings,
    /// What picks the saved epoch.
    pub metric: String,
    /// Present (true) when a lower metric is better (the loss).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub lower_is_better: bool,
    pub epochs: Vec<Epoch>,
    /// The epoch whose weights were saved.
    pub best: Epoch,
    pub seconds: f64,
    pub train_seconds: f64,
    pub seconds_per_step: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FinetuneSettings {
    pub hyper: Hyper,
    pub steps: usize,
    pub warmup_steps: usize,
    /// A classification's --max-seq-length, or a language model's --block-size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_seq_length: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_size: Option<u64>,
    pub length_bucketing: bool,
    pub seed: i64,
    pub head_mask: Option<String>,
    pub threads: i32,
    pub device: String,
}

/// One epoch: its training loss and the dev metrics after it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Epoch {
    pub epoch: usize,
    /// Optimiser steps so far.
    pub steps: usize,
    pub train_loss: f64,
    /// Language models only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_perplexity: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_tokens: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_tokens_per_second: Option<f64>,
    pub metrics: Metrics,
    pub seconds: f64,
}
