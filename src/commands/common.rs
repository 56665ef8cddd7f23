//! Steps every task command shares: resolve the model and data, load them, batch.
use crate::cli::{home_dir, task_model_dir, DataArgs, FinetuneArgs, GlobalArgs, ModelArgs};
use crate::data::batch::Padding;
use crate::data::glue::resolve_data_dir;
use crate::data::glue::Task;
use crate::eval::Dataset;
use crate::importance::Estimator;
use crate::model::source::resolve_model;
use crate::model::tokenizer::TextTokenizer;
use crate::model::{LoadOptions, Model};
use anyhow::{bail, Result};
use std::path::PathBuf;
use tch::Device;

/// A model and a dataset ready for a task command.
pub struct TaskSetup {
    pub device: Device,
    pub model: Model,
    pub tokenizer: TextTokenizer,
    pub data: Dataset,
    pub data_dir: PathBuf,
}

/// The model folder for a task command: --model, else the task's fine-tuned default.
pub fn model_dir(args: &ModelArgs, data: &DataArgs, quiet: bool) -> Result<PathBuf> {
    match &args.model {
        Some(spec) => resolve_model(spec, quiet),
        None => {
            let dir = task_model_dir(data.task);
            if !dir.join("config.json").is_file() {
                bail!(
                    "no default model for {}: {} does not exist (run `bertology finetune --task {}` or pass --model)",
                    data.task.name(),
                    dir.display(),
                    data.task.name()
                );
            }
            Ok(dir)
        }
    }
}

/// Loads a model a command will run, refusing weights that hold NaN or infinity (they would
/// turn every result into NaN).
pub fn load_model(dir: &std::path::Path, opts: &LoadOptions) -> Result<Model> {
    let model = Model::load(dir, opts)?;
    let mut vars: Vec<(String, tch::Tensor)> = model.vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, t) in &vars {
        if !crate::finite::all_finite(t) {
            bail!(
                "{}: weight {name} holds NaN or infinity; the checkpoint is damaged",
                dir.display()
            );
        }
    }
    Ok(model)
}

/// The batches of a pass. The anchor estimator's result depends on the order of batches (its
/// gradient is never zeroed), so it always gets them in file order, whatever the padding.
pub fn batches(
    data: &Dataset,
    args: &DataArgs,
    batch_size: usize,
    estimator: Option<Estimator>,
    device: Device,
) -> Vec<crate::data::batch::Batch> {
    if estimator == Some(Estimator::Anchor) {
        data.batches_in_file_order(batch_size, padding(args), device)
    } else {
        data.batches(batch_size, padding(args), device)
    }
}

pub fn padding(data: &DataArgs) -> Padding {
    if data.pad_to_max_length {
        Padding::Fixed(data.max_seq_length as usize)
    } else {
        Padding::Longest
    }
}

/// Builds the task's default model with `finetune` defaults when it is missing, so eval,
/// importance and prune work on a fresh set-up with no other step.
fn ensure_default_model(model: &Option<String>, task: Task, global: &GlobalArgs) -> Result<()> {
    if model.is_some() || task_model_dir(task).join("config.json").is_file() {
        return Ok(());
    }
    eprintln!(
        "no fine-tuned default model for {} yet: building {} with `bertology finetune --task {}` defaults first",
        task.name(),
        task_model_dir(task).display(),
        task.name()
    );
    // Nothing usable is there (at most an empty folder): replacing it loses nothing.
    let mut args = FinetuneArgs::defaults_for(task);
    args.overwrite = true;
    super::finetune::finetune(&args, global).map(|_| ())
}

pub fn setup(
    model_args: &ModelArgs,
    data_args: &DataArgs,
    global: &GlobalArgs,
) -> Result<TaskSetup> {
    ensure_default_model(&model_args.model, data_args.task, global)?;
    let device = global.device.resolve()?;
    let dir = model_dir(model_args, data_args, global.quiet)?;
    let model = load_model(
        &dir,
        &LoadOptions {
            device,
            seed: model_args.seed,
            task: Some(data_args.task),
        },
    )?;
    if !global.quiet {
        if let Some(w) = model.init_warning() {
            eprintln!("{w}");
        }
    }
    if data_args.max_seq_length as i64 > model.net.max_positions() {
        bail!(
            "--max-seq-length {} exceeds the {} tokens the model's position embeddings hold",
            data_args.max_seq_length,
            model.net.max_positions()
        );
    }
    let tokenizer = TextTokenizer::from_dir(&dir, data_args.max_seq_length as usize)?;
    let data_dir = resolve_data_dir(data_args.task, data_args.data_dir.as_deref(), &home_dir())?;
    let data = Dataset::load(
        data_args.task,
        &data_dir,
        data_args.split,
        data_args.data_subset.map(|n| n as usize),
        &tokenizer,
    )?;
    check_token_ids(&data, model.net.vocab_size(), &dir)?;
    Ok(TaskSetup {
        device,
        model,
        tokenizer,
        data,
        data_dir,
    })
}

/// Token ids must index the model's embedding rows: a tokenizer with a larger vocabulary than
/// the checkpoint's `vocab_size` would otherwise fail deep inside libtorch.
pub fn check_token_ids(data: &Dataset, vocab_size: i64, dir: &std::path::Path) -> Result<()> {
    let found = data.encoded.iter().enumerate().find_map(|(i, e)| {
        e.ids
            .iter()
            .find(|&&id| id >= vocab_size)
            .map(|&id| (i, id))
    });
    if let Some((i, id)) = found {
        bail!(
            "{}: the tokenizer gives token id {id} (example {i}) but the model's vocab_size is {vocab_size}; the tokenizer files do not belong to this checkpoint",
            dir.display()
        );
    }
    Ok(())
}
