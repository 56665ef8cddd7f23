//! `bertology finetune`: train a model on a task and save the best dev checkpoint. A
//! classification task trains the classifier on labelled examples and keeps the epoch with the
//! best dev metric; a language-model task (--task lm / mlm) retrains the whole model on text
//! blocks through its language-model head and keeps the epoch with the lowest dev loss.
use super::args::{FinetuneArgs, GlobalArgs};
use super::common::{
    check_lm_predicts, check_lm_source, lm_examples, lm_pad_id, load_data, mlm_masking,
    read_head_mask, LmFiles,
};
use super::home::{home_dir, task_model_dir};
use super::session::{Fallback, Load, ModelSession};
use crate::data::batch::{Batch, Padding};
use crate::data::dataset::Dataset;
use crate::data::glue::{Example, Split, Task};
use crate::data::lm::MlmMasking;
use crate::data::source::{Source, SourceRequest};
use crate::data::spec::TaskSpec;
use crate::eval::{predict, score};
use crate::finetune::{epoch_batches, lr_at, warmup_steps, AdamW, Hyper};
use crate::metrics::Metrics;
use crate::model::tokenizer::TextTokenizer;
use crate::model::{ForwardOptions, Model};
use crate::output::{check_output_dir, ensure_not_input, write_json, Staging, MODEL_FILES};
use crate::progress;
use crate::run_files::finetune::{Epoch, FinetuneSettings, FinetuneSummary};
use anyhow::{bail, Context, Result};
use indicatif::ProgressBar;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{Device, Tensor};

pub fn run(args: &FinetuneArgs, global: &GlobalArgs) -> Result<()> {
    let summary = finetune(args, global)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else if !global.quiet {
        let best = &summary.best;
        let m = |k: &str| best.metrics.get(k).copied().unwrap_or(f64::NAN);
        // Language models: the dev loss that chose the epoch, and its perplexity.
        let scored = if summary.metric == "loss" {
            format!(
                "dev loss {:.4} (perplexity {:.2}, {:.0} tokens)",
                m("loss"),
                m("perplexity"),
                m("tokens")
            )
        } else {
            serde_json::to_string(&best.metrics)?
        };
        println!(
            "{}: best epoch {} with {} (train loss {:.4}), {:.0} s; saved to {}",
            summary.task, best.epoch, scored, best.train_loss, summary.seconds, summary.output_dir
        );
    }
    Ok(())
}

/// Every variable of a model, copied.
type Snapshot = Vec<(String, Tensor)>;

/// Trains and saves; returns the finetune.json summary. Also used to build a task's default model.
pub fn finetune(args: &FinetuneArgs, global: &GlobalArgs) -> Result<FinetuneSummary> {
    check_hyper(args)?;
    let lm_given = !args.text.is_empty() || args.token_ids.is_some();
    check_lm_source(&args.source, lm_given)?;
    let dev_given = !args.dev_text.is_empty() || args.dev_token_ids.is_some();
    match args.source.task.filter(|t| t.is_language_model()) {
        Some(task) => finetune_lm(args, global, task),
        None => {
            if dev_given {
                bail!("--dev-text and --dev-token-ids are for --task lm or mlm");
            }
            if args.dev_fraction.is_some() && args.source.data_file.is_none() {
                bail!(
                    "--dev-fraction is for --data-file or --task lm/mlm (a GLUE task has its own dev split)"
                );
            }
            finetune_classification(args, global)
        }
    }
}

/// The optimiser settings, checked before anything is loaded.
fn check_hyper(args: &FinetuneArgs) -> Result<Hyper> {
    for (name, v, ok, range) in [
        (
            "--learning-rate",
            args.learning_rate,
            args.learning_rate > 0.0 && args.learning_rate <= 1.0,
            "(0, 1]",
        ),
        (
            "--warmup-ratio",
            args.warmup_ratio,
            (0.0..=1.0).contains(&args.warmup_ratio),
            "[0, 1]",
        ),
        (
            "--weight-decay",
            args.weight_decay,
            (0.0..=1.0).contains(&args.weight_decay),
            "[0, 1]",
        ),
    ] {
        if !ok {
            bail!("{name} {v}: expected a value in {range}");
        }
    }
    if !(args.max_grad_norm > 0.0 && args.max_grad_norm.is_finite()) {
        bail!(
            "--max-grad-norm {}: expected a positive value",
            args.max_grad_norm
        );
    }
    Ok(Hyper {
        learning_rate: args.learning_rate,
        weight_decay: args.weight_decay,
        warmup_ratio: args.warmup_ratio,
        epochs: args.epochs as usize,
        batch_size: args.batch_size as usize,
        max_grad_norm: args.max_grad_norm,
        adam_beta1: 0.9,
        adam_beta2: 0.999,
        adam_epsilon: 1e-8,
    })
}

/// The output folder must be able to hold a model and must not be one of the run's inputs.
fn check_outputs(args: &FinetuneArgs, output_dir: &Path, model_dir: &Path) -> Result<()> {
    check_output_dir(output_dir)?;
    ensure_not_input(output_dir, MODEL_FILES, "--model", model_dir)?;
    if let Some(m) = &args.head_mask {
        ensure_not_input(output_dir, MODEL_FILES, "--head-mask", m)?;
    }
    Ok(())
}

fn finetune_classification(args: &FinetuneArgs, global: &GlobalArgs) -> Result<FinetuneSummary> {
    let hyper = check_hyper(args)?;
    let req = SourceRequest {
        dev_file: args.dev_file.clone(),
        dev_fraction: args.dev_fraction.unwrap_or(0.1),
        ..args.source.request()
    };
    let source = Source::resolve(&req, &home_dir(), global.quiet)?;
    let task = source.glue_task();
    if let Some(task) = task {
        task.check_split(Split::Train)?;
    }
    let output_dir = classification_output_dir(args, task)?;
    let located = ModelSession::locate(args.model.as_deref(), Fallback::Base, global)?;
    check_outputs(args, &output_dir, &located.dir)?;
    // A model without a classifier gets a new head sized from the data's labels.
    let loaded = load_data(&req, &source, &[Split::Train, Split::Dev], &located.dir)?;
    let spec = loaded.spec;
    let mut session = located.load(
        &Load {
            global,
            seed: args.seed,
            head: Some((&spec).into()),
            // A new classifier is what fine-tuning is for: no warning about it unless asked.
            warn_initialised: false,
        },
        Some(args.max_seq_length),
    )?;
    let data_dir = loaded.location;
    let (train, dev) = train_and_dev(args, &session, &spec, loaded.parts, &data_dir)?;
    let metric = spec.default_metric().to_string();
    let watch = Watch {
        metric: &metric,
        lower_is_better: false,
    };
    let train = TrainData::Fixed(train);
    let trained = train_epochs(&mut session, &train, &dev, &watch, hyper, args, global)?;
    session
        .model
        .config
        .set_labels_for(spec.is_regression(), &spec.labels);
    let run = Run {
        task: spec.name(),
        model_dir: &session.dir,
        output_dir: &output_dir,
        data_dir: &data_dir,
        source: loaded.record,
        labels: Some(spec.labels.clone()),
        lm: None,
        length: Length::MaxSeqLength(args.max_seq_length),
        watch: &watch,
    };
    let tokenizer = Some(&session.tokenizer);
    save(&session, tokenizer, &run, &trained, &dev, &hyper, args)
}

/// Where a classification's model goes: --output-dir, else next to the installed models
/// (without --overwrite, never over an existing folder).
fn classification_output_dir(args: &FinetuneArgs, task: Option<Task>) -> Result<PathBuf> {
    let task = match (&args.output_dir, task) {
        (Some(dir), _) => return Ok(dir.clone()),
        (None, Some(task)) => task,
        (None, None) => bail!("--data-file needs --output-dir: where the fine-tuned model goes"),
    };
    // Named after the model fine-tuned: only the base model's fine-tune is the default model
    // that eval, importance and prune pick up without --model.
    let base = args
        .model
        .as_deref()
        .map(model_name)
        .filter(|n| n != super::home::BASE_MODEL_NAME);
    let (dir, what) = match &base {
        Some(name) => (
            super::home::fine_tuned_dir(name, task),
            format!("the {} fine-tune of {name}", task.name()),
        ),
        None => (
            task_model_dir(task),
            format!(
                "the default {} model that eval, importance and prune use",
                task.name()
            ),
        ),
    };
    if dir.exists() && !args.overwrite {
        bail!(
            "{} already exists: it is {what}; pass --overwrite to replace it, or --output-dir to write elsewhere",
            dir.display(),
        );
    }
    Ok(dir)
}

/// The train and dev splits (each cut to its --train-subset / --eval-subset), tokenised and
/// checked; fine-tuning needs labels in both.
fn train_and_dev(
    args: &FinetuneArgs,
    session: &ModelSession,
    spec: &TaskSpec,
    parts: Vec<Vec<Example>>,
    data_dir: &Path,
) -> Result<(Dataset, Dataset)> {
    let mut parts = parts.into_iter();
    let mut part = |split, subset: Option<u64>| {
        let mut examples = parts.next().unwrap_or_default();
        if let Some(n) = subset {
            examples.truncate(n as usize);
        }
        session.dataset(spec.clone(), split, examples, 0)
    };
    let train = part(Split::Train, args.train_subset)?;
    let dev = part(Split::Dev, args.eval_subset)?;
    if !train.has_labels() || !dev.has_labels() {
        bail!(
            "{}: fine-tuning needs labelled train and dev data",
            data_dir.display()
        );
    }
    Ok((train, dev))
}

/// Saves the trained model, its tokenizer's files and finetune.json, all or nothing; returns
/// finetune.json's summary.
fn save<T>(
    session: &ModelSession<T>,
    tokenizer: Option<&TextTokenizer>,
    run: &Run,
    trained: &Trained,
    dev: &Dataset,
    hyper: &Hyper,
    args: &FinetuneArgs,
) -> Result<FinetuneSummary> {
    let summary = summary(run, trained, dev.len(), hyper, args, session.device);
    let staging = Staging::new(run.output_dir, MODEL_FILES)?;
    session.model.save(staging.dir())?;
    if let Some(tokenizer) = tokenizer {
        tokenizer.save_files(staging.dir())?;
    }
    write_json(&staging.dir().join("finetune.json"), &summary)?;
    staging.commit()?;
    Ok(summary)
}

/// `--task lm` / `--task mlm`: the model's own language-model head, trained on text blocks (or
/// token-id lines); the dev loss picks the epoch that is saved.
fn finetune_lm(args: &FinetuneArgs, global: &GlobalArgs, task: Task) -> Result<FinetuneSummary> {
    let hyper = check_hyper(args)?;
    let (model_spec, output_dir) = check_lm_flags(args, task)?;
    let located = ModelSession::locate(Some(model_spec), Fallback::Base, global)?;
    check_outputs(args, output_dir, &located.dir)?;
    let mut session = located.load_lm(&Load {
        global,
        seed: args.seed,
        head: Some(task.into()),
        warn_initialised: false,
    })?;
    let data = lm_data(args, task, &session)?;
    let (train, dev) = (&data.train, &data.dev);
    let watch = Watch {
        metric: "loss",
        lower_is_better: true,
    };
    let trained = train_epochs(&mut session, train, dev, &watch, hyper, args, global)?;
    let dev_tokens = dev.predicted_tokens(&(0..dev.len()).collect::<Vec<_>>());
    let model = &session.model;
    let run = Run {
        task: task.name(),
        model_dir: &session.dir,
        output_dir,
        data_dir: &data.data_dir,
        source: json!({"train": data.train_record, "dev": data.dev_record}),
        labels: None,
        lm: Some(LmFields {
            dev_tokens,
            heads_per_layer: model.net.heads_per_layer(),
            pruned_heads: model.config.pruned_heads()?,
        }),
        length: Length::BlockSize(args.block_size),
        watch: &watch,
    };
    // A token-id run may use a model folder without tokenizer files.
    let tokenizer = session.tokenizer.as_ref();
    save(&session, tokenizer, &run, &trained, dev, &hyper, args)
}

/// The flags a language-model run needs and those it does not take; returns --model and
/// --output-dir.
fn check_lm_flags(args: &FinetuneArgs, task: Task) -> Result<(&str, &Path)> {
    if args.dev_file.is_some() {
        bail!(
            "--dev-file is for --data-file; --task {} reads --dev-text or --dev-token-ids",
            task.name()
        );
    }
    if let Some(m) = &args.source.metric {
        bail!(
            "--metric {m}: --task {} is scored by its dev loss (lower is better)",
            task.name()
        );
    }
    let Some(model_spec) = &args.model else {
        bail!(
            "--task {} needs --model (a model with a language-model head; there is no default)",
            task.name()
        );
    };
    let Some(output_dir) = &args.output_dir else {
        bail!(
            "--task {} needs --output-dir: where the retrained model goes",
            task.name()
        );
    };
    Ok((model_spec.as_str(), output_dir.as_path()))
}

/// A language-model run's data: its training blocks and dev set, and what they were read from.
struct LmData {
    train: TrainData,
    dev: Dataset,
    /// The first training file.
    data_dir: PathBuf,
    train_record: Value,
    dev_record: Value,
}

/// Reads the training text (or token ids) in blocks, and the dev text or else the training
/// text's held-out tail; checks that both have tokens to predict.
fn lm_data(
    args: &FinetuneArgs,
    task: Task,
    session: &ModelSession<Option<TextTokenizer>>,
) -> Result<LmData> {
    let (model, model_dir) = (&session.model, &session.dir);
    let dev_given = !args.dev_text.is_empty() || args.dev_token_ids.is_some();
    let block_size = args.block_size as usize;
    let train_files = LmFiles {
        text: &args.text,
        token_ids: args.token_ids.as_deref(),
        block_size,
        text_flag: "--text",
        token_ids_flag: "--token-ids",
    };
    let dev_files = LmFiles {
        text: &args.dev_text,
        token_ids: args.dev_token_ids.as_deref(),
        block_size,
        text_flag: "--dev-text",
        token_ids_flag: "--dev-token-ids",
    };
    let (mut train_blocks, data_dir, train_record) = lm_examples(model, model_dir, &train_files)?;
    let (mut dev_blocks, dev_record) = if dev_given {
        let (blocks, _, record) = lm_examples(model, model_dir, &dev_files)?;
        (blocks, record)
    } else {
        let fraction = args.dev_fraction.unwrap_or(0.1);
        let dev = hold_out_tail(&mut train_blocks, fraction)?;
        (dev, json!({"kind": "held-out", "dev_fraction": fraction}))
    };
    if let Some(n) = args.train_subset {
        train_blocks.truncate(n as usize);
    }
    if let Some(n) = args.eval_subset {
        dev_blocks.truncate(n as usize);
    }
    let pad_id = lm_pad_id(model);
    // Masked LM: dev masked once with --seed (as `eval --task mlm --seed` masks it, so the
    // scores of every epoch are comparable and reproducible); training text masked anew each
    // epoch, as transformers' collator draws new masks every pass.
    let masking = match task {
        Task::Mlm => Some(mlm_masking(
            model_dir,
            model.net.vocab_size(),
            args.seed as u64,
        )?),
        _ => None,
    };
    let dev = Dataset::language_model(task, dev_blocks, pad_id, masking.as_ref());
    check_lm_predicts(&dev, if dev_given { &dev_files } else { &train_files })?;
    let train = match masking {
        Some(m) => TrainData::Remasked {
            blocks: train_blocks,
            pad_id,
            masking: m,
        },
        None => {
            let train = Dataset::language_model(task, train_blocks, pad_id, None);
            check_lm_predicts(&train, &train_files)?;
            TrainData::Fixed(train)
        }
    };
    Ok(LmData {
        train,
        dev,
        data_dir,
        train_record,
        dev_record,
    })
}

/// What differs between the summaries of the two kinds of run (classification, language model).
struct Run<'a> {
    task: &'a str,
    model_dir: &'a Path,
    output_dir: &'a Path,
    data_dir: &'a Path,
    source: Value,
    /// A classification's labels.
    labels: Option<Vec<String>>,
    /// A language model's dev tokens and heads.
    lm: Option<LmFields>,
    /// The settings' length.
    length: Length,
    watch: &'a Watch<'a>,
}

/// What only a language model's summary has.
struct LmFields {
    dev_tokens: Option<i64>,
    heads_per_layer: Vec<i64>,
    pruned_heads: std::collections::BTreeMap<i64, Vec<i64>>,
}

/// A classification's --max-seq-length or a language model's --block-size.
enum Length {
    MaxSeqLength(u64),
    BlockSize(u64),
}

/// finetune.json: the same fields for both kinds of run, with what only one kind has.
fn summary(
    run: &Run,
    trained: &Trained,
    dev_examples: usize,
    hyper: &Hyper,
    args: &FinetuneArgs,
    device: Device,
) -> FinetuneSummary {
    let lm = run.lm.as_ref();
    FinetuneSummary {
        task: run.task.to_string(),
        base_model: run.model_dir.display().to_string(),
        output_dir: run.output_dir.display().to_string(),
        data_dir: run.data_dir.display().to_string(),
        source: run.source.clone(),
        labels: run.labels.clone(),
        train_examples: trained.train_examples,
        dev_examples,
        dev_tokens: lm.map(|l| l.dev_tokens),
        heads_per_layer: lm.map(|l| l.heads_per_layer.clone()),
        pruned_heads: lm.map(|l| l.pruned_heads.clone()),
        settings: FinetuneSettings {
            hyper: *hyper,
            steps: trained.steps,
            warmup_steps: trained.warmup,
            max_seq_length: match run.length {
                Length::MaxSeqLength(n) => Some(n),
                Length::BlockSize(_) => None,
            },
            block_size: match run.length {
                Length::BlockSize(n) => Some(n),
                Length::MaxSeqLength(_) => None,
            },
            length_bucketing: !args.no_length_bucketing,
            seed: args.seed,
            head_mask: args.head_mask.as_ref().map(|p| p.display().to_string()),
            threads: tch::get_num_threads(),
            device: format!("{device:?}"),
        },
        metric: run.watch.metric.to_string(),
        lower_is_better: run.watch.lower_is_better,
        epochs: trained.epochs.clone(),
        best: trained.epochs[trained.best_epoch].clone(),
        seconds: trained.seconds,
        train_seconds: trained.train_seconds,
        seconds_per_step: trained.train_seconds / trained.steps.max(1) as f64,
    }
}

/// Moves the last `fraction` of the blocks (rounded) out of `blocks` and returns them: text
/// held out from the end, so no dev block is a neighbour of training text on both sides.
fn hold_out_tail(blocks: &mut Vec<Vec<i64>>, fraction: f64) -> Result<Vec<Vec<i64>>> {
    if !(fraction > 0.0 && fraction < 1.0) {
        bail!("--dev-fraction {fraction}: expected a fraction in (0, 1)");
    }
    let n = blocks.len();
    let dev_n = (n as f64 * fraction).round() as usize;
    if dev_n == 0 || dev_n == n {
        bail!(
            "--dev-fraction {fraction}: {n} blocks are too few to hold some out for dev (pass --dev-text or --dev-token-ids, or a smaller --block-size)"
        );
    }
    Ok(blocks.split_off(n - dev_n))
}

/// --head-mask, read against the model's layers and original heads.
fn head_mask(args: &FinetuneArgs, model: &Model, device: Device) -> Result<Option<Tensor>> {
    Ok(args
        .head_mask
        .as_deref()
        .map(|p| read_head_mask(p, model.net.num_layers(), model.net.num_heads()))
        .transpose()?
        .map(|m| m.to_device(device)))
}

/// The training examples of each epoch.
enum TrainData {
    /// The same examples every epoch.
    Fixed(Dataset),
    /// Masked-LM blocks, masked anew for each epoch.
    Remasked {
        blocks: Vec<Vec<i64>>,
        pad_id: i64,
        masking: MlmMasking,
    },
}

impl TrainData {
    fn len(&self) -> usize {
        match self {
            TrainData::Fixed(d) => d.len(),
            TrainData::Remasked { blocks, .. } => blocks.len(),
        }
    }

    /// Epoch `epoch`'s masked copy (None: use the fixed dataset).
    fn remasked(&self, epoch: usize) -> Option<Dataset> {
        let TrainData::Remasked {
            blocks,
            pad_id,
            masking,
        } = self
        else {
            return None;
        };
        // Never the dev seed: an epoch's masks differ from dev's and from every other epoch's.
        let seed = masking
            .seed
            .wrapping_add((epoch as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let m = MlmMasking {
            seed,
            ..masking.clone()
        };
        Some(Dataset::language_model(
            Task::Mlm,
            blocks.clone(),
            *pad_id,
            Some(&m),
        ))
    }
}

/// The dev metric that picks the saved epoch, and which way is better.
struct Watch<'a> {
    metric: &'a str,
    lower_is_better: bool,
}

impl Watch<'_> {
    fn improves(&self, value: f64, best: f64) -> bool {
        best.is_nan()
            || if self.lower_is_better {
                value < best
            } else {
                value > best
            }
    }
}

/// What the training loop did; the model holds the best epoch's weights afterwards.
struct Trained {
    epochs: Vec<Epoch>,
    best_epoch: usize,
    steps: usize,
    warmup: usize,
    train_examples: usize,
    seconds: f64,
    train_seconds: f64,
}

/// Epochs of AdamW over `train`, scored on `dev` after each; restores the best epoch's weights.
/// With a head mask, masked heads stay masked in every training and dev pass.
fn train_epochs<T>(
    session: &mut ModelSession<T>,
    train: &TrainData,
    dev: &Dataset,
    watch: &Watch,
    hyper: Hyper,
    args: &FinetuneArgs,
    global: &GlobalArgs,
) -> Result<Trained> {
    let (model, device) = (&mut session.model, session.device);
    let mask = head_mask(args, model, device)?;
    let mask = mask.as_ref();
    let total = total_steps(train, dev, &hyper, args)?;
    let dev_batches = dev.batches(64, Padding::Longest, device);
    let start = Instant::now();
    let mut stepper = Stepper {
        opt: AdamW::new(&model.vs, hyper),
        bar: progress::bar(total as u64, "fine-tuning", global.quiet),
        mask,
        hyper,
        args,
        device,
        total,
        warmup: warmup_steps(total, hyper.warmup_ratio),
        step: 0,
        train_seconds: 0.0,
    };
    let mut epochs = Vec::new();
    // (dev score, epoch index, a copy of every variable) of the best epoch so far.
    let mut best: Option<(f64, usize, Snapshot)> = None;
    tch::manual_seed(args.seed);
    for epoch in 0..hyper.epochs {
        if stepper.step >= total {
            break;
        }
        let epoch_start = Instant::now();
        let remasked = train.remasked(epoch);
        let data = match (&remasked, train) {
            (Some(d), _) => d,
            (None, TrainData::Fixed(d)) => d,
            (None, TrainData::Remasked { .. }) => bail!("internal: no masked training data"),
        };
        let loss = stepper.epoch(model, data, epoch)?;
        let logits = predict(model.net.as_ref(), &dev_batches, mask, None)?;
        let metrics = score(dev, &logits);
        let value = metrics.get(watch.metric).copied().unwrap_or(f64::NAN);
        if !global.quiet {
            log_epoch(&stepper.bar, epoch, loss.mean(), &metrics);
        }
        let seconds = epoch_start.elapsed().as_secs_f64();
        let lm = data.spec.is_language_model();
        epochs.push(epoch_record(
            epoch,
            stepper.step,
            &loss,
            &metrics,
            seconds,
            lm,
        ));
        if best
            .as_ref()
            .is_none_or(|(b, _, _)| watch.improves(value, *b))
        {
            best = Some((value, epoch, snapshot(model)));
        }
    }
    stepper.bar.finish_and_clear();
    let (_, best_epoch, snapshot) = best.context("no epoch ran")?;
    restore(model, &snapshot);
    Ok(Trained {
        epochs,
        best_epoch,
        steps: stepper.step,
        warmup: stepper.warmup,
        train_examples: train.len(),
        seconds: start.elapsed().as_secs_f64(),
        train_seconds: stepper.train_seconds,
    })
}

/// The steps of the run: every epoch's batches, or --max-steps when fewer.
fn total_steps(
    train: &TrainData,
    dev: &Dataset,
    hyper: &Hyper,
    args: &FinetuneArgs,
) -> Result<usize> {
    if train.len() == 0 {
        bail!("no training examples");
    }
    if dev.is_empty() {
        bail!("no dev examples");
    }
    let steps_per_epoch = train.len().div_ceil(hyper.batch_size);
    let mut total = steps_per_epoch * hyper.epochs;
    if let Some(m) = args.max_steps {
        total = total.min(m as usize);
    }
    Ok(total)
}

/// The optimiser and where the run stands, carried from step to step across epochs.
struct Stepper<'a> {
    opt: AdamW,
    bar: ProgressBar,
    mask: Option<&'a Tensor>,
    hyper: Hyper,
    args: &'a FinetuneArgs,
    device: Device,
    total: usize,
    warmup: usize,
    /// Steps taken so far.
    step: usize,
    /// Time spent in steps, without the dev passes.
    train_seconds: f64,
}

/// An epoch's training loss so far. Language models: the mean over every predicted token of the
/// epoch (each batch's mean weighted by its tokens), as the dev loss is; else over batches.
struct EpochLoss {
    sum: f64,
    weight: f64,
    tokens: i64,
}

impl EpochLoss {
    fn mean(&self) -> f64 {
        self.sum / self.weight.max(1e-12)
    }
}

impl Stepper<'_> {
    /// Epoch `epoch`'s batches of `data`, a step each, until the run's last step.
    fn epoch(&mut self, model: &Model, data: &Dataset, epoch: usize) -> Result<EpochLoss> {
        let mut loss = EpochLoss {
            sum: 0.0,
            weight: 0.0,
            tokens: 0,
        };
        for batch in epoch_batches(
            data,
            self.hyper.batch_size,
            self.args.seed + epoch as i64,
            !self.args.no_length_bucketing,
            self.device,
        ) {
            if self.step >= self.total {
                break;
            }
            let l = self.take_step(model, &batch)?;
            let weight = match data.predicted_tokens(&batch.indices) {
                Some(n) => {
                    loss.tokens += n;
                    n as f64
                }
                None => 1.0,
            };
            loss.sum += l * weight;
            loss.weight += weight;
            self.bar.set_message(format!("loss {:.4}", loss.mean()));
            self.bar.inc(1);
        }
        Ok(loss)
    }

    /// One step of AdamW on `batch`; returns the batch's loss.
    fn take_step(&mut self, model: &Model, batch: &Batch) -> Result<f64> {
        let step = self.step;
        let labels = batch.labels.as_ref().context("labels")?;
        let step_start = Instant::now();
        self.opt.zero_grad();
        crate::eval::check_inputs(model.net.as_ref(), batch, step)?;
        let opts = ForwardOptions {
            train: true,
            ..Default::default()
        };
        let out = model.net.forward(&batch.inputs(), self.mask, opts)?;
        crate::finite::check_logits(&out.logits, step, &batch.indices)
            .with_context(|| format!("fine-tuning step {}", step + 1))?;
        let loss = model.net.loss(&out.logits, labels, false);
        loss.backward();
        self.opt.clip_grad_norm(self.hyper.max_grad_norm);
        let lr = lr_at(step, self.total, self.warmup, self.hyper.learning_rate);
        self.opt.step(lr);
        self.step += 1;
        let l = loss.double_value(&[]);
        self.train_seconds += step_start.elapsed().as_secs_f64();
        if !l.is_finite() {
            bail!(
                "training diverged at step {} (loss {l}); lower --learning-rate",
                self.step
            );
        }
        Ok(l)
    }
}

/// Says on stderr (above the bar) how epoch `epoch` did.
fn log_epoch(bar: &ProgressBar, epoch: usize, train_loss: f64, metrics: &Metrics) {
    bar.suspend(|| {
        eprintln!(
            "epoch {}: train loss {train_loss:.4}, dev {}",
            epoch + 1,
            crate::metrics::display_all(metrics)
        );
    });
}

/// Epoch `epoch`'s record in finetune.json (`step`: the steps taken by its end).
fn epoch_record(
    epoch: usize,
    step: usize,
    loss: &EpochLoss,
    metrics: &Metrics,
    seconds: f64,
    language_model: bool,
) -> Epoch {
    let (train_loss, tokens) = (loss.mean(), loss.tokens);
    Epoch {
        epoch: epoch + 1,
        steps: step,
        train_loss,
        train_perplexity: language_model.then(|| train_loss.exp()),
        train_tokens: language_model.then_some(tokens),
        train_tokens_per_second: language_model.then(|| tokens as f64 / seconds.max(1e-9)),
        metrics: metrics.clone(),
        seconds,
    }
}

/// A copy of every variable of the model.
fn snapshot(model: &Model) -> Snapshot {
    model
        .vs
        .variables()
        .into_iter()
        .map(|(k, t)| (k, t.detach().copy()))
        .collect()
}

/// Puts a snapshot's values back into the model's variables.
fn restore(model: &mut Model, snapshot: &Snapshot) {
    tch::no_grad(|| {
        let vars = model.vs.variables();
        for (k, t) in snapshot {
            vars[k].shallow_clone().copy_(t);
        }
    });
}

/// The name of a model argument: a folder's last component, a hub id's NAME (without @REV).
fn model_name(spec: &str) -> String {
    let id = spec.split('@').next().unwrap_or(spec);
    let trimmed = id.trim_end_matches('/');
    let name = Path::new(trimmed)
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| trimmed.replace('/', "--"));
    if name.is_empty() || name == "." || name == ".." {
        "model".to_string()
    } else {
        name
    }
}
