//! Steps every task command shares: resolve the model and data, load them, batch.
use crate::cli::{home_dir, task_model_dir, DataArgs, FinetuneArgs, GlobalArgs, ModelArgs};
use crate::data::batch::Padding;
use crate::data::glue::resolve_data_dir;
use crate::data::glue::Task;
use crate::eval::Dataset;
use crate::model::source::resolve_model;
use crate::model::tokenizer::TextTokenizer;
use crate::model::{LoadOptions, Model};
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};
use tch::Device;

/// A model and a dataset ready for a task command.
pub struct TaskSetup {
    pub device: Device,
    pub model: Model,
    /// None for a token-id language-model run on a model folder without tokenizer files.
    pub tokenizer: Option<TextTokenizer>,
    pub data: Dataset,
    pub data_dir: PathBuf,
}

/// The model folder for a task command: --model, else the task's fine-tuned default.
pub fn model_dir(args: &ModelArgs, data: &DataArgs) -> Result<PathBuf> {
    match &args.model {
        Some(spec) => resolve_model(spec),
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
    if task.is_language_model() {
        if model.is_none() {
            bail!(
                "--task {} needs --model (there is no default language model)",
                task.name()
            );
        }
        return Ok(());
    }
    if model.is_some() || task_model_dir(task).join("config.json").is_file() {
        return Ok(());
    }
    eprintln!(
        "no fine-tuned default model for {} yet: building {} with `bertology finetune --task {}` defaults first",
        task.name(),
        task_model_dir(task).display(),
        task.name()
    );
    super::finetune::finetune(&FinetuneArgs::defaults_for(task), global).map(|_| ())
}

pub fn setup(
    model_args: &ModelArgs,
    data_args: &DataArgs,
    global: &GlobalArgs,
) -> Result<TaskSetup> {
    ensure_default_model(&model_args.model, data_args.task, global)?;
    check_lm_data_args(data_args)?;
    let device = global.device.resolve()?;
    let dir = model_dir(model_args, data_args)?;
    let model = Model::load(
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
    if data_args.task.is_language_model() {
        return lm_setup(model, &dir, data_args, device, model_args.seed);
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
    let mut data = Dataset::load(
        data_args.task,
        &data_dir,
        data_args.split,
        data_args.data_subset.map(|n| n as usize),
        &tokenizer,
    )?;
    // Pad with the config's pad_token_id when it has one: GPT-2's classifier finds each
    // example's last token by it (and the tokenizer may know no [PAD]).
    if let Some(pad) = model.config.get_f64("pad_token_id") {
        data.pad_id = pad as i64;
    }
    check_token_ids(&data, model.net.vocab_size(), &dir)?;
    Ok(TaskSetup {
        device,
        model,
        tokenizer: Some(tokenizer),
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

/// --text / --token-ids go with --task lm (or mlm), and only with it.
fn check_lm_data_args(data: &DataArgs) -> Result<()> {
    let given = !data.text.is_empty() || data.token_ids.is_some();
    if data.task.is_language_model() && !given {
        bail!(
            "--task {} needs --text FILE... or --token-ids FILE",
            data.task.name()
        );
    }
    if !data.task.is_language_model() && given {
        bail!(
            "--text and --token-ids are for --task lm or mlm, not {}",
            data.task.name()
        );
    }
    Ok(())
}

/// Language-model data for a loaded model: text blocks or token-id lines, padded with the
/// config's pad_token_id (else its eos_token_id, else 0; padding is never attended to).
fn lm_setup(
    model: Model,
    dir: &Path,
    data_args: &DataArgs,
    device: Device,
    seed: i64,
) -> Result<TaskSetup> {
    use crate::data::lm::{read_token_ids, text_blocks};
    let config_id = |k: &str| model.config.get_f64(k).map(|v| v as i64);
    let eos = config_id("eos_token_id");
    let pad_id = config_id("pad_token_id").or(eos).unwrap_or(0);
    let vocab = model.net.vocab_size();
    let max_len = model.net.max_positions() as usize;
    let (blocks, data_dir) = match &data_args.token_ids {
        Some(path) => (read_token_ids(path, vocab, max_len)?, path.clone()),
        None => {
            let block_size = data_args.block_size as usize;
            if block_size > max_len {
                bail!(
                    "--block-size {block_size} exceeds the {max_len} tokens the model's position embeddings hold"
                );
            }
            let tokenizer = TextTokenizer::from_dir(dir, usize::MAX / 2)?;
            let blocks = text_blocks(&tokenizer, &data_args.text, block_size, eos, vocab)?;
            (blocks, data_args.text[0].clone())
        }
    };
    let blocks = match data_args.data_subset {
        Some(n) => blocks.into_iter().take(n as usize).collect(),
        None => blocks,
    };
    let mlm = if data_args.task == Task::Mlm {
        let (mask_id, special) = crate::data::lm::special_tokens(dir)?;
        Some(crate::data::lm::MlmMasking {
            mask_id,
            special,
            vocab_size: vocab,
            seed: seed as u64,
            probability: 0.15,
        })
    } else {
        None
    };
    // A tokenizer for the saved model's files; a token-id run needs none.
    let tokenizer = TextTokenizer::from_dir(dir, 8).ok();
    Ok(TaskSetup {
        device,
        model,
        tokenizer,
        data: Dataset::language_model(data_args.task, blocks, pad_id, mlm.as_ref()),
        data_dir,
    })
}
