//! The integration tests, one binary (linked once against libtorch) with one module per area,
//! as ripgrep lays out its tests. Run one area with `cargo test --release --test it <module>::`.
mod common;

mod anchor_gpt;
mod attention;
mod cli_jobs;
mod cli_model_errors;
mod data_sources;
mod eval;
mod families;
mod gguf;
mod glue_readers;
mod gpt2_tokenizer;
mod gpt_classifier;
mod gpt_lm;
mod gpt_parity;
mod hidden_states;
mod hub_download;
mod importance_parity;
mod libtorch_link;
mod llama;
mod lm_finetune;
mod masked_lm_prune;
mod model_parity;
mod module_graph;
mod mutation;
mod neurons;
mod prune;
mod report;
mod robustness;
mod viewer_browser;
