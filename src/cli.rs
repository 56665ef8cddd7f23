//! Command-line arguments. Raw arguments are validated into settings before any work starts.
use crate::data::glue::{Split, Task};
use crate::device::DeviceChoice;
use crate::importance::Estimator;
use crate::masking::Order;
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
    /// Fine-tune a model on a GLUE task's train split; keeps the best dev checkpoint.
    Finetune(FinetuneArgs),
    /// Head importance and attention entropy of every head (.npy, CSV, JSON, a table).
    Importance(ImportanceArgs),
    /// Mask the least important heads while the score holds, prune them physically, and save
    /// the smaller model (the main job).
    Prune(PruneArgs),
    /// Rebuild pictures and report.md from a finished importance or prune run (no model needed).
    Report(ReportArgs),
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
    /// --task lm: UTF-8 text files (one document each), tokenised with the model's tokenizer,
    /// joined with its end-of-text token and cut into blocks of --block-size tokens.
    #[arg(long, num_args = 1.., value_name = "FILE")]
    pub text: Vec<PathBuf>,
    /// --task lm: token ids, one sequence per line (run_prune_gpt's np.loadtxt format).
    #[arg(long, value_name = "FILE", conflicts_with = "text")]
    pub token_ids: Option<PathBuf>,
    /// --task lm: tokens per block of --text.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u64).range(2..))]
    pub block_size: u64,
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

/// How head importance is estimated and normalised.
#[derive(Args, Debug, Clone)]
pub struct ImportanceOptions {
    /// per-example: E_x |dL(x)/dxi|, the paper's definition, independent of the batch size;
    /// anchor: exactly run_bertology.py (batch-mean loss, gradient never zeroed).
    #[arg(long, value_enum, default_value_t = Estimator::PerExample)]
    pub estimator: Estimator,
    /// Do not divide each layer's importance by its L2 norm.
    #[arg(long)]
    pub no_layer_norm: bool,
    /// Do not min-max normalise importance over all heads.
    #[arg(long)]
    pub no_global_norm: bool,
}

#[derive(Args, Debug)]
pub struct ImportanceArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub importance: ImportanceOptions,
    /// Skip attention entropy (faster: fused attention).
    #[arg(long)]
    pub no_entropy: bool,
    /// Keep these heads masked: a [layers, heads] .npy of 1 (keep) and 0 (masked).
    #[arg(long, value_name = "FILE")]
    pub head_mask: Option<PathBuf>,
    /// Folder for the .npy, CSV and JSON files.
    #[arg(long, default_value = "runs/importance")]
    pub output_dir: PathBuf,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug, Clone)]
pub struct FinetuneArgs {
    /// GLUE task.
    #[arg(long, value_enum)]
    pub task: Task,
    /// Model folder or hub id to start from (default: the installed all-MiniLM-L6-v2).
    #[arg(long)]
    pub model: Option<String>,
    /// Task folder of TSV files (default: $GLUE_DIR/<TASK>, else data/glue/<TASK>).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Where the best checkpoint goes (default: models/all-MiniLM-L6-v2-<task>, the default
    /// model of the other commands).
    #[arg(long)]
    pub output_dir: Option<PathBuf>,
    /// Passes over the training data (the default, with the learning rate and weight decay
    /// below, measured best for MiniLM on MRPC: see BENCHMARKS.md).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    pub epochs: u64,
    /// Peak learning rate (2e-5 to 5e-5 is usual for BERT-base; small models like MiniLM
    /// take more).
    #[arg(long, default_value_t = 1e-4)]
    pub learning_rate: f64,
    /// Fraction of the steps spent warming the learning rate up from 0.
    #[arg(long, default_value_t = 0.1)]
    pub warmup_ratio: f64,
    /// Decoupled weight decay (none on biases and LayerNorm weights).
    #[arg(long, default_value_t = 0.01)]
    pub weight_decay: f64,
    /// Clip the global gradient norm to this.
    #[arg(long, default_value_t = 1.0)]
    pub max_grad_norm: f64,
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_size: u64,
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u64).range(8..=4096))]
    pub max_seq_length: u64,
    /// Train on the first N training examples only.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub train_subset: Option<u64>,
    /// Evaluate on the first N dev examples only.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub eval_subset: Option<u64>,
    /// Stop after this many optimiser steps in all (quick runs).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_steps: Option<u64>,
    /// Keep these heads masked while training (retraining after masking): a [layers, heads]
    /// .npy of 1 (keep) and 0 (masked).
    #[arg(long, value_name = "FILE")]
    pub head_mask: Option<PathBuf>,
    /// Seed for the new classifier, shuffling and dropout.
    #[arg(long, default_value_t = 42)]
    pub seed: i64,
    /// Plain shuffled batches instead of batches of similar lengths (slower: more padding).
    #[arg(long)]
    pub no_length_bucketing: bool,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

impl FinetuneArgs {
    /// The defaults that build a task's default model.
    pub fn defaults_for(task: Task) -> Self {
        use clap::Parser;
        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            args: FinetuneArgs,
        }
        Wrapper::parse_from(["finetune", "--task", task.name()]).args
    }
}

#[derive(Args, Debug)]
pub struct PruneArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub importance: ImportanceOptions,
    /// Keep masking while the score is at least this fraction of the unmasked score.
    #[arg(long, default_value_t = 0.9)]
    pub masking_threshold: f64,
    /// Fraction of all heads masked per step (at least one head).
    #[arg(long, default_value_t = 0.1)]
    pub masking_amount: f64,
    /// Metric to watch (default: the task's, e.g. acc for MRPC, mcc for CoLA).
    #[arg(long)]
    pub metric: Option<String>,
    /// Order in which heads are masked; reverse and random are baselines.
    #[arg(long, value_enum, default_value_t = Order::Importance)]
    pub order: Order,
    /// Budget mode: keep this fraction of the heads (rounded), ignoring the threshold.
    #[arg(long, value_name = "F")]
    pub target_heads: Option<f64>,
    /// Never leave a layer with fewer heads than this (1 keeps the model loadable by
    /// transformers 4.57, which cannot run a layer without heads).
    #[arg(long, default_value_t = 0)]
    pub min_heads_per_layer: usize,
    /// Estimate importance once, on the unmasked model (the paper's authors' default),
    /// instead of after every step.
    #[arg(long)]
    pub no_reestimate: bool,
    /// Batch sizes at which the original and pruned models are timed (default: --batch-size).
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u64).range(1..))]
    pub timing_batch_sizes: Vec<u64>,
    /// Timed evaluation passes per model and batch size, after a warm-up; the median counts.
    /// One pass keeps the main job short (each costs a full dev pass per model); use 3 or
    /// more for benchmark-grade numbers, as scripts/bench.sh does.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub timing_runs: u64,
    /// Folder for head_mask.npy, masking_curve.csv, prune.json and pruned_model/.
    #[arg(long, default_value = "runs/prune")]
    pub output_dir: PathBuf,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Output folder of an importance or prune run.
    #[arg(required_unless_present = "compare")]
    pub run_dir: Option<PathBuf>,
    /// Compare the masking curves of several prune runs in one picture (e.g. --order baselines).
    #[arg(long, num_args = 2.., value_name = "RUN_DIR", conflicts_with = "run_dir")]
    pub compare: Vec<PathBuf>,
    /// Where the comparison goes (with --compare).
    #[arg(long, default_value = "runs/compare")]
    pub output_dir: PathBuf,
    /// Print the files written as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// The command line as typed, shell-quoted, for reports.
pub fn command_line() -> String {
    std::env::args()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=,:@".contains(c))
            {
                a
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
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
    home_dir()
        .join("models")
        .join(format!("all-MiniLM-L6-v2-{}", task.name()))
}
