//! What the analysis commands (attention, hidden-states) read: a split of a task, or texts
//! typed on the command line, through any model. Text mode needs no task and no classifier.
use super::args::{DataArgs, GlobalArgs, ModelArgs};
use super::common::{check_vocabulary, load_data, TaskSetup};
use super::home::home_dir;
use super::session::{Fallback, Load, ModelSession};
use super::setup::{setup, split_dataset};
use crate::data::batch::{make_batches, Batch, Padding};
use crate::data::dataset::Dataset;
use crate::data::glue::{Split, Task};
use crate::data::source::Source;
use crate::model::tokenizer::{Encoded, TextTokenizer};
use crate::model::Model;
use anyhow::{bail, Result};
use clap::Args;
use serde_json::{json, Value};
use std::path::PathBuf;
use tch::Device;

/// A split of a task (`--task`), or texts (`--text`, with `--text-pair`).
#[derive(Args, Debug, Clone)]
pub struct InputArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// GLUE task whose split is read (default model: all-MiniLM-L6-v2 fine-tuned on it); not
    /// lm or mlm: give a language model its input with --text.
    #[arg(long, value_enum, required_unless_present = "text")]
    pub task: Option<Task>,
    /// The task's folder: GLUE TSV files, or parquet in the hub's layout (default:
    /// $GLUE_DIR/<TASK>, else data/glue/<TASK>).
    #[arg(long, requires = "task")]
    pub data_dir: Option<PathBuf>,
    /// Split to read.
    #[arg(long, value_enum, default_value_t = Split::Dev)]
    pub split: Split,
    /// Use only the first N examples.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..), conflicts_with = "example")]
    pub data_subset: Option<u64>,
    /// Only example N (0-based) of the split.
    #[arg(long, value_name = "N", requires = "task")]
    pub example: Option<u64>,
    /// A text to analyse instead of a task's split (repeat for several; default model: the
    /// installed all-MiniLM-L6-v2).
    // The split's flags are listed too: clap lets a flag that `requires = "task"` through
    // when --text, which conflicts with --task, is given.
    #[arg(long, conflicts_with_all = ["task", "data_dir", "example", "data_subset", "split"])]
    pub text: Vec<String>,
    /// The second text of a pair, one per --text ("" for a text without one).
    #[arg(long, requires = "text")]
    pub text_pair: Vec<String>,
    /// Examples per batch.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch_size: u64,
    /// Longest tokenised input; longer ones are truncated (longest first). Default 128, or
    /// the model's position limit with --text when that is lower.
    #[arg(long, value_parser = clap::value_parser!(u64).range(8..=4096))]
    pub max_seq_length: Option<u64>,
}

/// A loaded model and tokenised inputs.
pub struct Input {
    pub device: Device,
    pub model: Model,
    pub tokenizer: TextTokenizer,
    pub encoded: Vec<Encoded>,
    /// Each input's index in its split (0.. for texts).
    pub indices: Vec<usize>,
    pub texts: Vec<(String, Option<String>)>,
    /// Where the inputs came from, for the run's JSON.
    pub source: Value,
}

impl Input {
    pub fn batches(&self, batch_size: usize) -> Vec<Batch> {
        let labels = vec![None; self.encoded.len()];
        make_batches(
            &self.encoded,
            &labels,
            batch_size,
            Padding::Longest,
            self.tokenizer.pad_id(),
            self.device,
        )
    }

    pub fn len(&self) -> usize {
        self.encoded.len()
    }

    pub fn is_empty(&self) -> bool {
        self.encoded.is_empty()
    }
}

pub fn load(args: &InputArgs, global: &GlobalArgs) -> Result<Input> {
    match args.task {
        Some(task) => from_task(args, task, global),
        None => from_texts(args, global),
    }
}

fn from_task(args: &InputArgs, task: Task, global: &GlobalArgs) -> Result<Input> {
    // Here --text is a literal text, not --task lm's text files: a language model's input is
    // given that way, without --task.
    if task.is_language_model() {
        bail!(
            "--task {}: this command reads a GLUE task's split; for a language model pass its input with --text \"...\" (without --task)",
            task.name()
        );
    }
    let data_args = split_args(args, task);
    let (session, data, data_dir) = match args.model.model {
        None => open_default(args, &data_args, global)?,
        Some(_) => open_given(args, &data_args, task, global)?,
    };
    let encoded = data.encoded;
    let texts: Vec<(String, Option<String>)> = data
        .examples
        .into_iter()
        .map(|e| (e.text_a, e.text_b))
        .collect();
    // Only that example was read (`select_example`).
    let indices = match args.example {
        Some(n) => vec![n as usize],
        None => (0..encoded.len()).collect(),
    };
    let source = json!({
        "task": task.name(),
        "split": format!("{:?}", args.split).to_lowercase(),
        "data_dir": data_dir.display().to_string(),
        "example": args.example,
        "data_subset": args.data_subset,
    });
    Ok(Input {
        device: session.device,
        model: session.model,
        tokenizer: session.tokenizer,
        encoded,
        indices,
        texts,
        source,
    })
}

/// The task commands' data flags for a split of `task`: --example N reads the first N + 1
/// examples and keeps the last.
fn split_args(args: &InputArgs, task: Task) -> DataArgs {
    DataArgs {
        source: super::args::SourceArgs {
            task: Some(task),
            data_dir: args.data_dir.clone(),
            dataset: None,
            data_file: None,
            text_column: None,
            text_pair_column: None,
            label_column: None,
            metric: None,
        },
        split: args.split,
        data_subset: args.example.map(|n| n + 1).or(args.data_subset),
        batch_size: args.batch_size,
        max_seq_length: args.max_seq_length.unwrap_or(128),
        pad_to_max_length: false,
        text: Vec::new(),
        token_ids: None,
        block_size: 128,
        example: args.example,
    }
}

/// Without --model: the task's fine-tuned default, set up (built first if missing) as the other
/// task commands do.
fn open_default(
    args: &InputArgs,
    data_args: &DataArgs,
    global: &GlobalArgs,
) -> Result<(ModelSession, Dataset, PathBuf)> {
    let TaskSetup {
        device,
        model,
        tokenizer,
        data,
        data_dir,
        ..
    } = setup(&args.model, data_args, global)?;
    let tokenizer = tokenizer.ok_or_else(|| {
        anyhow::anyhow!(
            "{}: no tokenizer files in the model folder",
            model.dir.display()
        )
    })?;
    let session = ModelSession {
        dir: model.dir.clone(),
        device,
        model,
        tokenizer,
    };
    Ok((session, data, data_dir))
}

/// With --model no task head is needed: reading attentions and hidden states works for a
/// checkpoint with any number of labels, or none.
fn open_given(
    args: &InputArgs,
    data_args: &DataArgs,
    task: Task,
    global: &GlobalArgs,
) -> Result<(ModelSession, Dataset, PathBuf)> {
    let session = ModelSession::locate_for_task(&args.model, Some(task), global)?
        .load(&no_head(args, global), Some(data_args.max_seq_length))?;
    // Through the same sources as the default model's `setup`: TSV or parquet folders.
    let req = data_args.source.request();
    let source = Source::resolve(&req, &home_dir(), global.quiet)?;
    let loaded = load_data(&req, &source, &[args.split], &session.dir)?;
    let examples = loaded.parts.into_iter().next().unwrap_or_default();
    let data = split_dataset(&session, loaded.spec, examples, data_args)?;
    Ok((session, data, loaded.location))
}

/// Loading a model whose head is not used: a missing or odd-sized one is nothing to warn of.
fn no_head<'a>(args: &InputArgs, global: &'a GlobalArgs) -> Load<'a> {
    Load {
        global,
        seed: args.model.seed,
        head: None,
        warn_initialised: false,
    }
}

fn from_texts(args: &InputArgs, global: &GlobalArgs) -> Result<Input> {
    if !args.text_pair.is_empty() && args.text_pair.len() != args.text.len() {
        bail!(
            "--text-pair: {} given for {} --text; give one per --text or none",
            args.text_pair.len(),
            args.text.len()
        );
    }
    let session = ModelSession::locate(args.model.model.as_deref(), Fallback::Base, global)?
        .load(&no_head(args, global), args.max_seq_length)?;
    let texts: Vec<(String, Option<String>)> = args
        .text
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let pair = args.text_pair.get(i).filter(|p| !p.is_empty()).cloned();
            (t.clone(), pair)
        })
        .collect();
    let encoded = session.tokenizer.encode_batch(&texts)?;
    for (i, e) in encoded.iter().enumerate() {
        // An empty text is still [CLS] [SEP] to BERT; a tokenizer without special tokens
        // leaves nothing to run.
        if e.ids.is_empty() {
            bail!(
                "--text number {}: no tokens (the text is empty and {} adds no special tokens)",
                i + 1,
                session.dir.display()
            );
        }
        check_vocabulary(&e.ids, session.model.net.vocab_size(), &session.dir, || {
            format!("--text number {}", i + 1)
        })?;
    }
    Ok(Input {
        device: session.device,
        model: session.model,
        tokenizer: session.tokenizer,
        indices: (0..encoded.len()).collect(),
        encoded,
        texts,
        source: json!({ "texts": args.text.len() }),
    })
}
