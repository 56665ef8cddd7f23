//! The set-up every task command shares: resolve the model (building the task's default model
//! with `finetune` when it is missing), load it, and load and tokenise its data. Above
//! `finetune`, which the default model needs; the pieces both use are in `common` and
//! `session`.
use super::args::{DataArgs, FinetuneArgs, GlobalArgs, ModelArgs};
use super::common::{
    check_lm_data_args, check_lm_predicts, lm_examples, lm_pad_id, load_data, mlm_masking,
    select_example, LmFiles, TaskSetup,
};
use super::home::{home_dir, task_model_dir};
use super::session::{Load, ModelSession};
use crate::data::dataset::Dataset;
use crate::data::glue::{Example, Task};
use crate::data::source::Source;
use crate::data::spec::TaskSpec;
use anyhow::{bail, Result};

/// Builds the task's default model with `finetune` defaults when it is missing, so eval,
/// importance and prune work on a fresh set-up with no other step.
fn ensure_default_model(model: &Option<String>, task: Task, global: &GlobalArgs) -> Result<()> {
    if task.is_language_model() {
        if model.is_none() {
            bail!(
                "--task {} needs --model (there is no default language model)",
                task.name()
            );
        }
        return Ok(());
    }
    // AX has no training data: its default is MNLI's model.
    let task = task.model_task();
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
    check_lm_data_args(data_args)?;
    match data_args.source.task.filter(|t| t.is_language_model()) {
        // Language-model text comes from --text / --token-ids, not a GLUE source.
        Some(task) => lm_setup(model_args, task, data_args, global),
        None => data_setup(model_args, data_args, global),
    }
}

/// A GLUE split or a data file, read in the terms of the model and tokenised by it.
fn data_setup(
    model_args: &ModelArgs,
    data_args: &DataArgs,
    global: &GlobalArgs,
) -> Result<TaskSetup> {
    let req = data_args.source.request();
    // Flags checked before anything slow (building a missing default model).
    if let Some(task) = req.task {
        task.check_split(data_args.split)?;
        TaskSpec::glue(task, req.metric.as_deref())?;
    }
    let source = Source::resolve(&req, &home_dir(), global.quiet)?;
    let task = source.glue_task();
    if let Some(task) = task {
        ensure_default_model(&model_args.model, task, global)?;
    }
    let located = ModelSession::locate_for_task(model_args, task, global)?;
    let loaded = load_data(&req, &source, &[data_args.split], &located.dir)?;
    let session = located.load(
        &Load {
            global,
            seed: model_args.seed,
            head: Some((&loaded.spec).into()),
            warn_initialised: true,
        },
        Some(data_args.max_seq_length),
    )?;
    let examples = loaded.parts.into_iter().next().unwrap_or_default();
    let data = split_dataset(&session, loaded.spec, examples, data_args)?;
    let split_name = match task {
        Some(_) => format!("{:?}", data_args.split).to_lowercase(),
        None => "file".into(),
    };
    Ok(TaskSetup {
        device: session.device,
        model: session.model,
        tokenizer: Some(session.tokenizer),
        data,
        data_dir: loaded.location,
        source: loaded.record,
        split_name,
    })
}

/// The examples of a split a command runs on, tokenised and checked: the first --data-subset,
/// or --example N alone.
pub fn split_dataset(
    session: &ModelSession,
    spec: TaskSpec,
    mut examples: Vec<Example>,
    data_args: &DataArgs,
) -> Result<Dataset> {
    if let Some(n) = data_args.data_subset {
        examples.truncate(n as usize);
    }
    select_example(&mut examples, data_args.example, data_args.split)?;
    let first = data_args.example.unwrap_or(0) as usize;
    session.dataset(spec, data_args.split, examples, first)
}

/// Language-model data for the model: text blocks or token-id lines, padded with
/// `lm_pad_id`.
fn lm_setup(
    model_args: &ModelArgs,
    task: Task,
    data_args: &DataArgs,
    global: &GlobalArgs,
) -> Result<TaskSetup> {
    ensure_default_model(&model_args.model, task, global)?;
    let ModelSession {
        dir,
        device,
        model,
        tokenizer,
    } = ModelSession::locate_for_task(model_args, Some(task), global)?.load_lm(&Load {
        global,
        seed: model_args.seed,
        head: Some(task.into()),
        warn_initialised: true,
    })?;
    let files = LmFiles {
        text: &data_args.text,
        token_ids: data_args.token_ids.as_deref(),
        block_size: data_args.block_size as usize,
        text_flag: "--text",
        token_ids_flag: "--token-ids",
    };
    let (blocks, data_dir, source) = lm_examples(&model, &dir, &files)?;
    let blocks = match data_args.data_subset {
        Some(n) => blocks.into_iter().take(n as usize).collect(),
        None => blocks,
    };
    let mlm = if task == Task::Mlm {
        Some(mlm_masking(
            &dir,
            model.net.vocab_size(),
            model_args.seed as u64,
        )?)
    } else {
        None
    };
    let pad_id = lm_pad_id(&model);
    let data = Dataset::language_model(task, blocks, pad_id, mlm.as_ref());
    check_lm_predicts(&data, &files)?;
    Ok(TaskSetup {
        device,
        model,
        // A tokenizer for the saved model's files; a token-id run needs none.
        tokenizer,
        data,
        data_dir,
        source,
        split_name: "file".into(),
    })
}
