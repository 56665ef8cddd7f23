//! Command-line arguments. Raw arguments are validated into settings before any work starts.
use crate::data::glue::{Split, Task};
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
    /// Evaluate a model on a GLUE task: metrics, eval.json and predictions.csv.
    Eval(EvalArgs),
    /// Load a model and describe it: shapes, heads per layer, parameters, load report.
    Inspect(InspectArgs),
}

/// Which model, for commands that run one on a task.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// Model folder or hub id ORG/NAME[@REV] (default: all-MiniLM-L6-v2 fine-tuned on the task,
    /// in models/).
    #[arg(long)]
    pub model: Option<String>,
    /// Seed for anything random: weights a checkpoint lacks, shuffling, random orders.
    #[arg(long, default_value_t = 42)]
    pub seed: i64,
}

/// Which data, and how it is batched.
#[derive(Args, Debug, Clone)]
pub struct DataArgs {
    /// GLUE task.
    #[arg(long, value_enum)]
    pub task: Task,
    /// Task folder of TSV files (default: $GLUE_DIR/<TASK>, else data/glue/<TASK>).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Split to evaluate on.
    #[arg(long, value_enum, default_value_t = Split::Dev)]
    pub split: Split,
    /// Use only the first N examples.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub data_subset: Option<u64>,
    /// Examples per batch.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_size: u64,
    /// Longest tokenised input; longer pairs are truncated (longest first).
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u64).range(8..=4096))]
    pub max_seq_length: u64,
    /// Pad every example to --max-seq-length in file order, as run_bertology.py does
    /// (default: sort by length and pad each batch to its longest example).
    #[arg(long)]
    pub pad_to_max_length: bool,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub data: DataArgs,
    /// Folder for eval.json and predictions.csv.
    #[arg(long, default_value = "runs/eval")]
    pub output_dir: PathBuf,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
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

/// The default model of a task: the base model fine-tuned on it.
pub fn task_model_dir(task: Task) -> PathBuf {
    home_dir().join("models").join(format!("all-MiniLM-L6-v2-{}", task.name()))
}
