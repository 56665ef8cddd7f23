//! Command-line arguments. Raw arguments are validated into settings before any work starts.
use crate::device::DeviceChoice;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "bertology",
    version,
    about = "Study and shrink BERT-style transformers by their attention heads",
    long_about = "Study and shrink BERT-style transformers by their attention heads.\n\n\
        bertology loads a Hugging Face BERT checkpoint through libtorch, evaluates it on a GLUE task \
        while collecting the gradient of the loss with respect to a head mask, ranks every head by \
        importance (Michel, Levy & Neubig 2019), masks the least important heads until the score \
        falls below a threshold, prunes them physically and saves the smaller model.",
    after_help = "Models: a local folder with config.json and model.safetensors, or a hub id ORG/NAME[@REV] \
        found in the Hugging Face cache ($HF_HUB_CACHE, $HF_HOME/hub or ~/.cache/huggingface/hub)."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct GlobalArgs {
    /// Where tensors live: auto picks CUDA when libtorch sees a GPU.
    #[arg(long, global = true, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// No progress bars and no summary; errors still go to stderr.
    #[arg(long, short, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// More detail on stderr (load reports, per-step timings).
    #[arg(long, short, global = true)]
    pub verbose: bool,
    /// CPU threads for libtorch (default: libtorch's choice, all cores).
    #[arg(long, global = true, value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Load a model and describe it: shapes, heads per layer, parameters, load report.
    Inspect(InspectArgs),
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Model folder or hub id (default: the installed all-MiniLM-L6-v2).
    #[arg(long)]
    pub model: Option<String>,
    /// Print JSON on stdout instead of text.
    #[arg(long)]
    pub json: bool,
    /// Seed for weights the checkpoint lacks (classifier).
    #[arg(long, default_value_t = 42)]
    pub seed: i64,
}

/// Where the tool keeps installed models: $BERTOLOGY_HOME, else the source tree it was built in.
pub fn home_dir() -> PathBuf {
    std::env::var_os("BERTOLOGY_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// The installed base model (scripts/setup.sh puts it there).
pub fn base_model_dir() -> PathBuf {
    home_dir().join("models").join("all-MiniLM-L6-v2")
}
