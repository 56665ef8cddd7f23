//! bertology: study and shrink BERT-style transformers by their attention heads.
pub mod attention;
pub mod cli;
pub mod commands;
pub mod data;
pub mod device;
pub mod eval;
pub mod finetune;
pub mod hidden_states;
pub mod importance;
pub mod masking;
pub mod metrics;
pub mod model;
pub mod output;
pub mod progress;
pub mod pruning;
pub mod report;
