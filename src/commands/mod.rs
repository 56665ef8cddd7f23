//! One module per subcommand.
pub mod common;
pub mod eval;
pub mod finetune;
pub mod importance;
pub mod inspect;
pub mod prune;
pub mod report;
