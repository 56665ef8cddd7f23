//! One module per subcommand.
pub mod ablate;
pub mod attention;
pub mod common;
pub mod eval;
pub mod finetune;
pub mod hidden_states;
pub mod importance;
pub mod input;
pub mod inspect;
pub mod prune;
pub mod report;
