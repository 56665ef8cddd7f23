//! The command-line parser: the subcommands over their arguments (`commands::args`), and the
//! checks clap cannot make itself. Raw arguments are validated into settings before any work starts.
use crate::commands::args::{
    AblateArgs, EvalArgs, FinetuneArgs, GlobalArgs, ImportanceArgs, InspectArgs, PruneArgs,
    ReportArgs,
};
use crate::commands::{attention::AttentionArgs, hidden_states::HiddenStatesArgs};
use crate::data::glue::Task;
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "bertology",
    version,
    about = "Study and shrink transformers by their attention heads",
    long_about = "Study and shrink transformers by their attention heads.\n\n\
        bertology loads a Hugging Face checkpoint (BERT, RoBERTa, DistilBERT, ELECTRA, GPT-2, GPT) \
        through libtorch, evaluates it on a GLUE task, your own data or language modelling \
        while collecting the gradient of the loss with respect to a head mask, ranks every head by \
        importance (Michel, Levy & Neubig 2019), masks the least important heads until the score \
        falls below a threshold, prunes them physically and saves the smaller model.",
    after_help = "Models: a local folder with config.json and model.safetensors, or a hub id ORG/NAME[@REV] \
        found in the Hugging Face cache ($HF_HUB_CACHE, $HF_HOME/hub or ~/.cache/huggingface/hub), \
        else downloaded into it (not with HF_HUB_OFFLINE=1)."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Evaluate a model on a GLUE task or your own data: metrics, eval.json and predictions.csv.
    Eval(EvalArgs),
    /// Fine-tune a model on a GLUE task's train split or your own data, or retrain a language
    /// model (e.g. a pruned GPT-2) on text with --task lm / mlm; keeps the best dev checkpoint.
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
    /// What every head attends to over a split (statistics, heatmaps, a map of the heads,
    /// report.md), or one example's attention as a self-contained HTML page.
    Attention(AttentionArgs),
    /// Every layer's hidden states (and optionally attentions) as safetensors, with the
    /// token strings and example indices as JSON.
    HiddenStates(HiddenStatesArgs),
    /// The score with each head masked alone (how many single heads hurt, how many help), and
    /// with --single-head each layer reduced to one head: ablation.npy, .csv, .json, a picture.
    Ablate(AblateArgs),
}

/// Flags that the rest of the command line makes meaningless, refused as clap refuses a
/// conflict (one line, exit code 2) instead of being ignored: --block-size without --task lm
/// or mlm, --split or --pad-to-max-length with them, the column flags without --data-file.
/// clap cannot say these itself: they depend on --task's value, and flags with defaults.
pub fn check_inapplicable(matches: &clap::ArgMatches) -> Result<(), clap::Error> {
    use clap::parser::ValueSource;
    let Some((name, sub)) = matches.subcommand() else {
        return Ok(());
    };
    let given = |id: &str| {
        sub.try_contains_id(id).unwrap_or(false)
            && sub.value_source(id) == Some(ValueSource::CommandLine)
    };
    let task = sub.try_get_one::<Task>("task").ok().flatten().copied();
    let lm = task.is_some_and(|t| t.is_language_model());
    let data_file = given("data_file");
    let what = match task {
        Some(t) => format!("--task {}", t.name()),
        None if data_file => "--data-file".to_string(),
        None => String::new(),
    };
    let problem = if given("block_size") && !lm && !what.is_empty() {
        Some(format!(
            "the argument '--block-size' applies only to --task lm or mlm (their --text blocks), not with {what}"
        ))
    } else if lm && given("split") {
        Some(format!(
            "the argument '--split' cannot be used with {what}: its input is --text or --token-ids"
        ))
    } else if lm && given("pad_to_max_length") {
        Some(format!(
            "the argument '--pad-to-max-length' cannot be used with {what}: text is cut into --block-size blocks"
        ))
    } else {
        ["text_column", "text_pair_column", "label_column"]
            .into_iter()
            .find(|id| given(id) && !data_file)
            .map(|id| {
                format!(
                    "the argument '--{}' applies only to --data-file (a GLUE task's columns are fixed)",
                    id.replace('_', "-")
                )
            })
    };
    match problem {
        Some(msg) => Err(clap::Error::raw(
            clap::error::ErrorKind::ArgumentConflict,
            format!("{msg} (bertology {name})\n"),
        )),
        None => Ok(()),
    }
}
