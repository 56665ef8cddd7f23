//! Steps every task command shares: read and check the data, batch; opening the model is
//! `session`'s.
use super::args::DataArgs;
use crate::data::batch::Padding;
use crate::data::custom::ModelLabels;
use crate::data::dataset::Dataset;
use crate::data::glue::Task;
use crate::data::source::{Loaded, Source, SourceRequest};
use crate::importance::Estimator;
use crate::model::config::ModelConfig;
use crate::model::families;
use crate::model::tokenizer::TextTokenizer;
use crate::model::{checkpoint, Model};
use anyhow::{bail, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// A model and a dataset ready for a task command.
pub struct TaskSetup {
    pub device: Device,
    pub model: Model,
    /// None for a token-id language-model run on a model folder without tokenizer files.
    pub tokenizer: Option<TextTokenizer>,
    pub data: Dataset,
    /// The folder or file the data came from.
    pub data_dir: PathBuf,
    /// What was read (kind, files, revision), for the outputs.
    pub source: Value,
    /// The split's name in outputs ("file" for a data file).
    pub split_name: String,
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

/// What a model's config and checkpoint say about its labels, before it is loaded (a data
/// file's labels are read in its terms). A folder that cannot be read says nothing here:
/// loading it reports why.
pub fn model_labels(dir: &Path) -> Result<ModelLabels> {
    let (Ok(config), Ok(files)) = (
        ModelConfig::from_file(&dir.join("config.json")),
        checkpoint::weight_files(dir),
    ) else {
        return Ok(ModelLabels::default());
    };
    let Ok(family) = families::family_of(&config) else {
        return Ok(ModelLabels::default());
    };
    let layout = &family.layout;
    let has_classifier = checkpoint::checkpoint_keys(&files)?
        .iter()
        .any(|k| checkpoint::canonical_key(k, layout.prefix).starts_with(layout.head));
    let id2label: Vec<(i64, String)> = config
        .id2label()
        .iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.parse().ok()?, v.clone())))
        .collect();
    Ok(ModelLabels {
        outputs: has_classifier.then_some(config.num_labels() as usize),
        names: ModelLabels::names_from(&id2label),
        regression: has_classifier && config.is_regression(),
        source: dir.display().to_string(),
    })
}

/// Reads the data a command asked for: `splits` of a GLUE source, or the data file (and for a
/// second part its dev rows), with labels in the terms of the model in `model_dir`.
pub fn load_data(
    req: &SourceRequest,
    source: &Source,
    splits: &[crate::data::glue::Split],
    model_dir: &Path,
) -> Result<Loaded> {
    let labels = match source {
        Source::File { .. } => model_labels(model_dir)?,
        _ => ModelLabels::default(),
    };
    source.load(req, splits, &labels)
}

pub fn padding(data: &DataArgs) -> Padding {
    if data.pad_to_max_length {
        Padding::Fixed(data.max_seq_length as usize)
    } else {
        Padding::Longest
    }
}

/// Keeps only example `n` of a split (`attention --example N`), so that the other rows are
/// neither tokenised nor checked: an empty row before it is no reason to fail.
pub fn select_example<T>(
    examples: &mut Vec<T>,
    n: Option<u64>,
    split: crate::data::glue::Split,
) -> Result<()> {
    if let Some(n) = n {
        let n = n as usize;
        if n >= examples.len() {
            bail!(
                "--example {n}: the {} split has only {} examples",
                format!("{split:?}").to_lowercase(),
                examples.len()
            );
        }
        let kept = examples.swap_remove(n);
        *examples = vec![kept];
    }
    Ok(())
}

/// Pads with the config's pad_token_id when it has one: GPT-2's classifier finds each
/// example's last token by it, and the tokenizer may know no [PAD] (GPT-2's pads with its
/// end-of-text token, 50256, where our tokenizer would say 0).
pub fn pad_as_config(data: &mut Dataset, model: &Model) {
    if let Some(pad) = model.config.get_f64("pad_token_id") {
        data.pad_id = pad as i64;
    }
}

/// Every example needs a token, and token ids must index the model's embedding rows: a
/// tokenizer with a larger vocabulary than the checkpoint's `vocab_size` would otherwise fail
/// deep inside libtorch. Examples are numbered from `first` in their split (`--example N` keeps
/// example N alone: its messages say N, not 0).
pub fn check_token_ids(
    data: &Dataset,
    vocab_size: i64,
    dir: &std::path::Path,
    first: usize,
) -> Result<()> {
    // An empty text leaves no token for a tokenizer without special tokens (GPT-2): the
    // model would read padding only, or fail on an empty batch.
    if let Some(i) = data.encoded.iter().position(|e| e.ids.is_empty()) {
        let i = i + first;
        bail!(
            "{}: example {i} of the {} data has no tokens: its text is empty and the tokenizer adds no special tokens; remove or fill the empty rows",
            dir.display(),
            format!("{:?}", data.split).to_lowercase()
        );
    }
    for (i, e) in data.encoded.iter().enumerate() {
        check_vocabulary(&e.ids, vocab_size, dir, || format!("example {}", i + first))?;
    }
    Ok(())
}

/// Token ids must index the model's embedding rows: a tokenizer with a larger vocabulary than
/// the checkpoint's `vocab_size` would otherwise fail deep inside libtorch. `which` names the
/// input in the message ("example 3", "--text number 1").
pub fn check_vocabulary(
    ids: &[i64],
    vocab_size: i64,
    dir: &Path,
    which: impl FnOnce() -> String,
) -> Result<()> {
    if let Some(&id) = ids.iter().find(|&&id| id >= vocab_size) {
        bail!(
            "{}: the tokenizer gives token id {id} ({}) but the model's vocab_size is {vocab_size}; the tokenizer files do not belong to this checkpoint",
            dir.display(),
            which()
        );
    }
    Ok(())
}

/// --text / --token-ids go with --task lm (or mlm), and only with it.
pub fn check_lm_data_args(data: &DataArgs) -> Result<()> {
    let given = !data.text.is_empty() || data.token_ids.is_some();
    check_lm_source(&data.source, given)
}

/// Language-model data (`given`: --text or --token-ids) goes with --task lm or mlm, which in
/// turn reads nothing else.
pub fn check_lm_source(src: &super::args::SourceArgs, given: bool) -> Result<()> {
    match src.task {
        Some(task) if task.is_language_model() => {
            if !given {
                bail!(
                    "--task {} needs --text FILE... or --token-ids FILE",
                    task.name()
                );
            }
            if src.data_dir.is_some() || src.dataset.is_some() {
                bail!(
                    "--task {} reads --text or --token-ids, not --data-dir or --dataset",
                    task.name()
                );
            }
        }
        Some(task) if given => bail!(
            "--text and --token-ids are for --task lm or mlm, not {}",
            task.name()
        ),
        None if given => bail!("--text and --token-ids are for --task lm or mlm, not --data-file"),
        _ => {}
    }
    Ok(())
}

/// The padding id of language-model batches: the config's pad_token_id, else its
/// eos_token_id, else 0 (padding is never attended to nor predicted).
pub fn lm_pad_id(model: &Model) -> i64 {
    let config_id = |k: &str| model.config.get_f64(k).map(|v| v as i64);
    config_id("pad_token_id")
        .or(config_id("eos_token_id"))
        .unwrap_or(0)
}

/// Where one part of a language-model run's examples comes from, and the flags that name it
/// in errors.
pub struct LmFiles<'a> {
    pub text: &'a [PathBuf],
    pub token_ids: Option<&'a Path>,
    pub block_size: usize,
    pub text_flag: &'a str,
    pub token_ids_flag: &'a str,
}

/// Language-model examples for a loaded model (folder `dir`): text blocks or token-id lines,
/// the file they came from, and a record of the source for the outputs.
pub fn lm_examples(
    model: &Model,
    dir: &Path,
    files: &LmFiles,
) -> Result<(Vec<Vec<i64>>, PathBuf, Value)> {
    use crate::data::lm::{read_token_ids, text_blocks};
    let eos = model.config.get_f64("eos_token_id").map(|v| v as i64);
    let vocab = model.net.vocab_size();
    let max_len = model.net.max_positions() as usize;
    match files.token_ids {
        Some(path) => Ok((
            read_token_ids(path, vocab, max_len, files.token_ids_flag)?,
            path.to_path_buf(),
            serde_json::json!({"kind": "token-ids", "files": [path.display().to_string()]}),
        )),
        None => {
            let block_size = files.block_size;
            if block_size > max_len {
                bail!(
                    "--block-size {block_size} exceeds the {max_len} tokens the model's position embeddings hold"
                );
            }
            let first = files
                .text
                .first()
                .ok_or_else(|| anyhow::anyhow!("{}: no file given", files.text_flag))?;
            let tokenizer = TextTokenizer::from_dir(dir, usize::MAX / 2)?;
            let blocks = text_blocks(
                &tokenizer,
                files.text,
                block_size,
                eos,
                vocab,
                files.text_flag,
            )?;
            let names: Vec<String> = files.text.iter().map(|p| p.display().to_string()).collect();
            let source =
                serde_json::json!({"kind": "text", "files": names, "block_size": block_size});
            Ok((blocks, first.clone(), source))
        }
    }
}

/// Refuses language-model data with no token to predict: every loss would be 0 / 0 (reported
/// as a perfect 0), and masking would find nothing to choose between.
pub fn check_lm_predicts(data: &Dataset, files: &LmFiles) -> Result<()> {
    if data.predicted_tokens(&(0..data.len()).collect::<Vec<_>>()) != Some(0) {
        return Ok(());
    }
    let source = match files.token_ids {
        Some(p) => format!("{} {}", files.token_ids_flag, p.display()),
        None => {
            let names: Vec<String> = files.text.iter().map(|p| p.display().to_string()).collect();
            format!("{} {}", files.text_flag, names.join(" "))
        }
    };
    let why = if data.spec.glue == Some(Task::Mlm) {
        "masking chose none of its tokens (give more text)"
    } else {
        "a causal language model predicts each token from the ones before it, so it needs a sequence of at least 2"
    };
    bail!("{source}: no token to predict: {why}")
}

/// --task mlm's masking with the tokenizer of model folder `dir`, seeded: transformers'
/// collator's 15 %.
pub fn mlm_masking(dir: &Path, vocab_size: i64, seed: u64) -> Result<crate::data::lm::MlmMasking> {
    let (mask_id, special) = crate::data::lm::special_tokens(dir)?;
    Ok(crate::data::lm::MlmMasking {
        mask_id,
        special,
        vocab_size,
        seed,
        probability: 0.15,
    })
}

/// Reads a [layers, heads] mask of 0/1 from a .npy file and checks it against the model.
pub fn read_head_mask(path: &Path, layers: i64, heads: i64) -> Result<Tensor> {
    read_mask(path, "--head-mask", [layers, heads], "heads")
}

/// Reads a [layers, intermediate] neuron mask of 0/1 from a .npy file and checks it against
/// the model.
pub fn read_neuron_mask(path: &Path, layers: i64, intermediate: i64) -> Result<Tensor> {
    read_mask(
        path,
        "--neuron-mask",
        [layers, intermediate],
        "intermediate neurons",
    )
}

/// A 0/1 mask given by `flag`, of shape [layers, units] (`units` names the second axis).
fn read_mask(path: &Path, flag: &str, [layers, n]: [i64; 2], units: &str) -> Result<Tensor> {
    let t = crate::npy::read(path).map_err(|e| anyhow::anyhow!("{flag} {e:#}"))?;
    if t.size() != [layers, n] {
        bail!(
            "{flag} {}: shape {:?}, expected [{layers}, {n}] (layers, {units} of the model)",
            path.display(),
            t.size()
        );
    }
    let t = t.to_kind(Kind::Float);
    let ok = t.eq(0.0).logical_or(&t.eq(1.0)).all().int64_value(&[]) == 1;
    if !ok {
        bail!(
            "{flag} {}: values must be 0 (masked) or 1 (kept)",
            path.display()
        );
    }
    Ok(t)
}
