//! The set-up every task command shares: resolve the model (building the task's default model
//! with `finetune` when it is missing), load it, and load and tokenise its data. Above
//! `finetune`, which the default model needs; the pieces both use are in `common`.
use super::args::{DataArgs, FinetuneArgs, GlobalArgs, ModelArgs};
use super::common::{
    check_lm_data_args, check_lm_predicts, check_max_seq_length, check_token_ids_from, lm_examples,
    lm_pad_id, load_data, load_model, log_load, mlm_masking, model_dir, pad_as_config,
    select_example, LmFiles, TaskSetup,
};
use super::home::{home_dir, task_model_dir};
use crate::data::glue::Task;
use crate::data::source::Source;
use crate::data::spec::TaskSpec;
use crate::eval::Dataset;
use crate::model::tokenizer::TextTokenizer;
use crate::model::{LoadOptions, Model};
use anyhow::{bail, Result};
use std::path::Path;
use tch::Device;

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
    if let Some(task) = data_args.source.task.filter(|t| t.is_language_model()) {
        // Language-model text comes from --text / --token-ids, not a GLUE source.
        ensure_default_model(&model_args.model, task, global)?;
        let device = global.device.resolve()?;
        let dir = model_dir(model_args, Some(task), global.quiet)?;
        let model = load_model(
            &dir,
            &LoadOptions {
                device,
                seed: model_args.seed,
                task: Some(task.into()),
            },
            global.dtype,
        )?;
        log_load(&model, global);
        return lm_setup(model, &dir, task, data_args, device, model_args.seed);
    }
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
    let device = global.device.resolve()?;
    let dir = model_dir(model_args, task, global.quiet)?;
    let loaded = load_data(&req, &source, &[data_args.split], &dir)?;
    let model = load_model(
        &dir,
        &LoadOptions {
            device,
            seed: model_args.seed,
            task: Some((&loaded.spec).into()),
        },
        global.dtype,
    )?;
    log_load(&model, global);
    check_max_seq_length(data_args.max_seq_length as i64, &model)?;
    let tokenizer = TextTokenizer::from_dir(&dir, data_args.max_seq_length as usize)?;
    let mut examples = loaded.parts.into_iter().next().unwrap_or_default();
    if let Some(n) = data_args.data_subset {
        examples.truncate(n as usize);
    }
    select_example(&mut examples, data_args.example, data_args.split)?;
    let mut data = Dataset::new(loaded.spec, data_args.split, examples, &tokenizer)?;
    pad_as_config(&mut data, &model);
    check_token_ids_from(
        &data,
        model.net.vocab_size(),
        &dir,
        data_args.example.unwrap_or(0) as usize,
    )?;
    let split_name = match task {
        Some(_) => format!("{:?}", data_args.split).to_lowercase(),
        None => "file".into(),
    };
    Ok(TaskSetup {
        device,
        model,
        tokenizer: Some(tokenizer),
        data,
        data_dir: loaded.location,
        source: loaded.record,
        split_name,
    })
}

/// Language-model data for a loaded model: text blocks or token-id lines, padded with
/// `lm_pad_id`.
fn lm_setup(
    model: Model,
    dir: &Path,
    task: Task,
    data_args: &DataArgs,
    device: Device,
    seed: i64,
) -> Result<TaskSetup> {
    let files = LmFiles {
        text: &data_args.text,
        token_ids: data_args.token_ids.as_deref(),
        block_size: data_args.block_size as usize,
        text_flag: "--text",
        token_ids_flag: "--token-ids",
    };
    let (blocks, data_dir, source) = lm_examples(&model, dir, &files)?;
    let blocks = match data_args.data_subset {
        Some(n) => blocks.into_iter().take(n as usize).collect(),
        None => blocks,
    };
    let mlm = if task == Task::Mlm {
        Some(mlm_masking(dir, model.net.vocab_size(), seed as u64)?)
    } else {
        None
    };
    let pad_id = lm_pad_id(&model);
    // A tokenizer for the saved model's files; a token-id run needs none.
    let tokenizer = TextTokenizer::from_dir(dir, 8).ok();
    let data = Dataset::language_model(task, blocks, pad_id, mlm.as_ref());
    check_lm_predicts(&data, &files)?;
    Ok(TaskSetup {
        device,
        model,
        tokenizer,
        data,
        data_dir,
        source,
        split_name: "file".into(),
    })
}
