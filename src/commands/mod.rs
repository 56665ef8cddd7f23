//! One module per subcommand, over what they share: `args` (the command line's arguments),
//! `home` (installed models), `setup` (model and data of a task command), `session` (opening a
//! model, for every command) and `common` (the data's pieces below them).
pub mod ablate;
pub mod args;
pub mod attention;
pub mod common;
pub mod eval;
pub mod finetune;
pub mod hidden_states;
pub mod home;
pub mod importance;
pub mod input;
pub mod inspect;
pub mod prune;
pub mod report;
pub mod session;
pub mod setup;
