//! The data: what it is (`spec`), where it comes from (`source`: GLUE TSV folders, parquet in
//! the hub's layout, the hub cache, one's own files), reading it, and batching it; language-model
//! text and token ids (`lm`).
pub mod batch;
pub mod custom;
pub mod dataset;
pub mod glue;
pub mod glue_parquet;
pub mod hub_cache;
pub mod lm;
pub mod parquet;
pub mod source;
pub mod spec;
pub mod table;
