//! The command line's arguments, one struct per subcommand plus the ones they share; `cli`
//! composes them into the parser, the commands read them.
use crate::data::custom::Columns;
use crate::data::glue::{Split, Task};
use crate::data::source::SourceRequest;
use crate::device::{DeviceChoice, Dtype};
use crate::importance::Estimator;
use crate::masking::{Order, PruneUnit, Units};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug, Clone)]
pub struct GlobalArgs {
    /// Where tensors live: auto picks CUDA when libtorch sees a GPU.
    #[arg(long, global = true, value_enum, default_value_t = DeviceChoice::Auto)]
    pub device: DeviceChoice,
    /// No progress bars and no summary; errors still go to stderr.
    #[arg(long, short, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// More detail on stderr: each model's load report (class, heads, parameters, weights
    /// initialised or not used).
    #[arg(long, short, global = true)]
    pub verbose: bool,
    /// Precision of the weights and activations (bfloat16 halves the weights' memory; losses,
    /// scores and written outputs stay float32).
    #[arg(long, global = true, value_enum, default_value_t = Dtype::Float32)]
    pub dtype: Dtype,
    /// CPU threads for libtorch (default: libtorch's choice, all cores).
    #[arg(long, global = true, value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,
}

/// Which model, for commands that run one on a task.
#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// Model folder or hub id ORG/NAME[@REV] (default: all-MiniLM-L6-v2 fine-tuned on the task,
    /// in models/).
    #[arg(long)]
    pub model: Option<String>,
    /// Seed for anything random: weights a checkpoint lacks, shuffling, random orders,
    /// --task mlm's masked tokens.
    #[arg(long, default_value_t = 42)]
    pub seed: i64,
}

/// Where the data comes from: a GLUE task's folder (TSV or the hub's parquet layout), a
/// dataset in the Hugging Face cache, or one's own file.
#[derive(Args, Debug, Clone)]
pub struct SourceArgs {
    /// GLUE task (its config, columns, labels and metrics); not with --data-file, whose labels
    /// say what the task is.
    #[arg(
        long,
        value_enum,
        required_unless_present = "data_file",
        conflicts_with = "data_file"
    )]
    pub task: Option<Task>,
    /// The task's folder: GLUE TSV files, or parquet in the hub's layout (the config folder or
    /// the dataset's root) (default: $GLUE_DIR/<TASK>, else data/glue/<TASK>).
    #[arg(long, conflicts_with = "dataset")]
    pub data_dir: Option<PathBuf>,
    /// A dataset in the Hugging Face cache, e.g. nyu-mll/glue, downloaded into it when absent
    /// (the config is --task; REV a branch or commit, default main).
    #[arg(long, value_name = "ORG/NAME[@REV]")]
    pub dataset: Option<String>,
    /// Your own labelled text: a .csv, .tsv, .jsonl or .parquet file.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["data_dir", "dataset"])]
    pub data_file: Option<PathBuf>,
    /// Column of --data-file with the text [default: text].
    #[arg(long, value_name = "NAME", requires = "data_file")]
    pub text_column: Option<String>,
    /// Column of --data-file with the second text of a pair.
    #[arg(long, value_name = "NAME", requires = "data_file")]
    pub text_pair_column: Option<String>,
    /// Column of --data-file with the labels [default: label, when there is one]: integers
    /// (classes), names (classes) or floats (regression).
    #[arg(long, value_name = "NAME", requires = "data_file")]
    pub label_column: Option<String>,
    /// Metric reported as the score and watched by prune and finetune (default: the GLUE
    /// task's, e.g. acc for MRPC and mcc for CoLA; for --data-file acc for classes and pearson
    /// for scores; there: acc, f1, mcc, pearson, spearmanr).
    #[arg(long)]
    pub metric: Option<String>,
}

impl SourceArgs {
    pub fn request(&self) -> SourceRequest {
        SourceRequest {
            task: self.task,
            data_dir: self.data_dir.clone(),
            dataset: self.dataset.clone(),
            data_file: self.data_file.clone(),
            columns: Some(Columns {
                text: self.text_column.clone().unwrap_or_else(|| "text".into()),
                text_pair: self.text_pair_column.clone(),
                label: self.label_column.clone(),
            }),
            dev_file: None,
            dev_fraction: 0.0,
            metric: self.metric.clone(),
        }
    }
}

/// Which data, and how it is batched.
#[derive(Args, Debug, Clone)]
pub struct DataArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// Split to evaluate on (dev is the hub's validation split); not with --data-file.
    #[arg(long, value_enum, default_value_t = Split::Dev, conflicts_with = "data_file")]
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
    /// --task lm/mlm: UTF-8 text files (one document each), tokenised with the model's
    /// tokenizer, joined with its end-of-text token and cut into blocks of --block-size tokens.
    #[arg(long, num_args = 1.., value_name = "FILE")]
    pub text: Vec<PathBuf>,
    /// --task lm/mlm: token ids, one sequence per line (run_prune_gpt's np.loadtxt format).
    #[arg(long, value_name = "FILE", conflicts_with = "text")]
    pub token_ids: Option<PathBuf>,
    /// --task lm/mlm: tokens per block of --text.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u64).range(2..))]
    pub block_size: u64,
    /// Only this example (0-based, after --data-subset) of the split is read and checked
    /// (`attention --example N`).
    #[arg(skip)]
    pub example: Option<u64>,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub data: DataArgs,
    /// Evaluate with these heads masked (without pruning): a [layers, heads] .npy of 1 (keep)
    /// and 0 (masked) over the model's original heads, e.g. a prune run's head_mask.npy.
    #[arg(long, value_name = "FILE")]
    pub head_mask: Option<PathBuf>,
    /// Evaluate with these feed-forward neurons masked (without pruning): a [layers,
    /// intermediate] .npy of 1 and 0 over the model's original neurons, e.g. a prune run's
    /// neuron_mask.npy.
    #[arg(long, value_name = "FILE")]
    pub neuron_mask: Option<PathBuf>,
    /// Folder for eval.json and predictions.csv.
    #[arg(long, default_value = "runs/eval")]
    pub output_dir: PathBuf,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct AblateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub data: DataArgs,
    /// Also score each layer reduced to each one of its heads (the rest of the model intact):
    /// one more pass per head.
    #[arg(long)]
    pub single_head: bool,
    /// A head hurts (or helps) when masking it lowers (raises) the score by more than this
    /// fraction of the unmasked score.
    #[arg(long, default_value_t = 0.001, value_parser = fraction)]
    pub tolerance: f64,
    /// Folder for ablation.npy, ablation.csv, ablation.json and the picture.
    #[arg(long, default_value = "runs/ablate")]
    pub output_dir: PathBuf,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// A number in [0, 1].
fn fraction(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|e| format!("{e}"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} is not in [0, 1]"))
    }
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
    /// Also rank every feed-forward (MLP) neuron by |∂L/∂m| of a mask on its activation, with
    /// the same estimator and normalisations: ffn_importance.npy [layers, intermediate] and a
    /// picture of each layer's distribution (ffn_importance.png/svg).
    #[arg(long)]
    pub neurons: bool,
    /// Keep these feed-forward neurons masked: a [layers, intermediate] .npy of 1 and 0.
    #[arg(long, value_name = "FILE")]
    pub neuron_mask: Option<PathBuf>,
    /// Folder for the .npy, CSV and JSON files.
    #[arg(long, default_value = "runs/importance")]
    pub output_dir: PathBuf,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug, Clone)]
pub struct FinetuneArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// With --data-file: the dev file (same columns) that picks the best epoch.
    #[arg(long, value_name = "FILE", requires = "data_file")]
    pub dev_file: Option<PathBuf>,
    /// With --data-file and no --dev-file: the fraction of its rows held out for dev (every
    /// k-th row, the same on every run). With --task lm/mlm and no --dev-text or
    /// --dev-token-ids: the fraction of the blocks held out, taken from the end of the text so
    /// that dev text is never trained on [default: 0.1].
    #[arg(
        long,
        value_name = "F",
        conflicts_with_all = ["dev_file", "dev_text", "dev_token_ids"]
    )]
    pub dev_fraction: Option<f64>,
    /// --task lm/mlm: training text, UTF-8 files (one document each), tokenised with the
    /// model's tokenizer, joined with its end-of-text token and cut into blocks of
    /// --block-size tokens.
    #[arg(long, num_args = 1.., value_name = "FILE")]
    pub text: Vec<PathBuf>,
    /// --task lm/mlm: training token ids, one sequence per line (run_prune_gpt's format).
    #[arg(long, value_name = "FILE", conflicts_with = "text")]
    pub token_ids: Option<PathBuf>,
    /// --task lm/mlm: dev text (as --text) whose loss picks the best epoch.
    #[arg(long, num_args = 1.., value_name = "FILE")]
    pub dev_text: Vec<PathBuf>,
    /// --task lm/mlm: dev token ids (as --token-ids) whose loss picks the best epoch.
    #[arg(long, value_name = "FILE", conflicts_with = "dev_text")]
    pub dev_token_ids: Option<PathBuf>,
    /// --task lm/mlm: tokens per block of --text and --dev-text.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u64).range(2..))]
    pub block_size: u64,
    /// Model folder or hub id to start from (default: the installed all-MiniLM-L6-v2; needed
    /// with --task lm/mlm: a model with a language-model head, pruned or not).
    #[arg(long)]
    pub model: Option<String>,
    /// Where the best checkpoint goes (default: models/all-MiniLM-L6-v2-<task> under
    /// $BERTOLOGY_HOME or the source tree, the default model of the other commands; needed
    /// with --data-file and --task lm/mlm).
    #[arg(long)]
    pub output_dir: Option<PathBuf>,
    /// Replace the task's default model when it exists (without --output-dir only; the other
    /// commands use that model).
    #[arg(long)]
    pub overwrite: bool,
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
    /// Examples (language models: blocks) per optimiser step.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_size: u64,
    /// Longest tokenised input; longer pairs are truncated (longest first).
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u64).range(8..=4096))]
    pub max_seq_length: u64,
    /// Train on the first N training examples (language models: blocks) only.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub train_subset: Option<u64>,
    /// Evaluate on the first N dev examples (language models: blocks) only.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub eval_subset: Option<u64>,
    /// Stop after this many optimiser steps in all (quick runs).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_steps: Option<u64>,
    /// Keep these heads masked while training (retraining after masking): a [layers, heads]
    /// .npy of 1 (keep) and 0 (masked).
    #[arg(long, value_name = "FILE")]
    pub head_mask: Option<PathBuf>,
    /// Seed for the new classifier, shuffling and dropout (and --task mlm's masks: dev is
    /// masked as `eval --task mlm --seed` masks it, training text anew each epoch).
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
    /// Order in which heads are masked; reverse and random are baselines.
    #[arg(long, value_enum, default_value_t = Order::Importance)]
    pub order: Order,
    /// What one masking decision removes: a query head, or a whole key/value group (the
    /// key/value head and every query head that reads it; one head for models without
    /// grouped-query attention). A group's importance is the sum over its query heads.
    #[arg(long, value_enum, default_value_t = PruneUnit::Head)]
    pub prune_unit: PruneUnit,
    /// What is masked and pruned: attention heads, feed-forward (MLP) neurons, or both in the
    /// same steps (each step masks --masking-amount of each). Default: heads, or neurons when
    /// only --target-neurons is given, both when --target-heads is given too.
    #[arg(long, value_enum)]
    pub units: Option<Units>,
    /// Budget mode for neurons: keep this fraction of the feed-forward neurons (with
    /// --uniform-neurons, of each layer's), whatever the score.
    #[arg(long, value_name = "F")]
    pub target_neurons: Option<f64>,
    /// Keep the same number of neurons in every layer (each step masks as many in each), so
    /// the pruned model has one intermediate size and loads in transformers' own class;
    /// without it layers keep different sizes (`pruned_neurons` in config.json, loaded through
    /// the saved modelling file).
    #[arg(long)]
    pub uniform_neurons: bool,
    /// Budget mode: keep this fraction of the heads (rounded), ignoring the threshold.
    #[arg(long, value_name = "F")]
    pub target_heads: Option<f64>,
    /// Never leave a layer with fewer heads than this (1 keeps the model loadable by
    /// transformers 4.57, which cannot run a layer without heads).
    #[arg(long, default_value_t = 0)]
    pub min_heads_per_layer: usize,
    /// Mask as many heads (or key/value groups) in every layer at each step, and keep the
    /// --target-heads budget per layer, so every layer keeps one shape: a Llama-family model
    /// pruned by groups this way saves as a plain config (fewer heads, no modelling file) that
    /// transformers' own class loads.
    #[arg(long)]
    pub uniform_heads: bool,
    /// Estimate importance once, on the unmasked model (the paper's authors' default),
    /// instead of after every step.
    #[arg(long)]
    pub no_reestimate: bool,
    /// Batch sizes at which the original and pruned models are timed (default: --batch-size).
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u64).range(1..))]
    pub timing_batch_sizes: Vec<u64>,
    /// Timed evaluation passes per model and batch size, after a warm-up, the two models in
    /// alternation; the median and the range are reported, and a speed-up is claimed only
    /// when the ranges do not overlap (with one pass, none is).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
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
