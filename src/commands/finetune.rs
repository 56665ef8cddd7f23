//! `bertology finetune`: train a model on a task and save the best dev checkpoint.
use super::common::load_data;
use super::common::{load_model, pad_as_config};
use super::importance::read_head_mask;
use crate::cli::{base_model_dir, home_dir, task_model_dir, FinetuneArgs, GlobalArgs};
use crate::data::batch::Padding;
use crate::data::glue::Split;
use crate::data::source::{Source, SourceRequest};
use crate::eval::{predict, score, Dataset};
use crate::finetune::{epoch_batches, lr_at, warmup_steps, AdamW, Hyper};
use crate::model::source::resolve_model;
use crate::model::tokenizer::TextTokenizer;
use crate::model::LoadOptions;
use crate::output::{check_output_dir, ensure_not_input, write_json, Staging, MODEL_FILES};
use crate::progress;
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::time::Instant;
use tch::Tensor;

pub fn run(args: &FinetuneArgs, global: &GlobalArgs) -> Result<()> {
    let summary = finetune(args, global)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else if !global.quiet {
        let best = &summary["best"];
        println!(
            "{}: best epoch {} with {} (train loss {:.4}), {:.0} s; saved to {}",
            summary["task"].as_str().unwrap_or(""),
            best["epoch"],
            best["metrics"],
            best["train_loss"].as_f64().unwrap_or(f64::NAN),
            summary["seconds"].as_f64().unwrap_or(0.0),
            summary["output_dir"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

/// Every variable of a model, copied.
type Snapshot = Vec<(String, Tensor)>;

/// Trains and saves; returns the finetune.json summary. Also used to build a task's default model.
pub fn finetune(args: &FinetuneArgs, global: &GlobalArgs) -> Result<Value> {
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
    let output_dir = match (&args.output_dir, task) {
        (Some(dir), _) => dir.clone(),
        (None, Some(task)) => {
            let dir = task_model_dir(task);
            if dir.exists() && !args.overwrite {
                bail!(
                    "{} already exists: it is the default {} model that eval, importance and prune use; pass --overwrite to replace it, or --output-dir to write elsewhere",
                    dir.display(),
                    task.name()
                );
            }
            dir
        }
        (None, None) => bail!("--data-file needs --output-dir: where the fine-tuned model goes"),
    };
    let device = global.device.resolve()?;
    let model_dir = match &args.model {
        Some(spec) => resolve_model(spec, global.quiet)?,
        None => base_model_dir(),
    };
    check_output_dir(&output_dir)?;
    ensure_not_input(&output_dir, MODEL_FILES, "--model", &model_dir)?;
    if let Some(m) = &args.head_mask {
        ensure_not_input(&output_dir, MODEL_FILES, "--head-mask", m)?;
    }
    // A model without a classifier gets a new head sized from the data's labels.
    let loaded = load_data(&req, &source, &[Split::Train, Split::Dev], &model_dir)?;
    let spec = loaded.spec;
    let mut model = load_model(
        &model_dir,
        &LoadOptions {
            device,
            seed: args.seed,
            task: Some(spec.clone()),
        },
    )?;
    if args.max_seq_length as i64 > model.net.max_positions() {
        bail!(
            "--max-seq-length {} exceeds the model's max_position_embeddings {}",
            args.max_seq_length,
            model.net.max_positions()
        );
    }
    let tokenizer = TextTokenizer::from_dir(&model_dir, args.max_seq_length as usize)?;
    let data_dir = loaded.location;
    let mut parts = loaded.parts.into_iter();
    let (mut train_examples, mut dev_examples) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    if let Some(n) = args.train_subset {
        train_examples.truncate(n as usize);
    }
    if let Some(n) = args.eval_subset {
        dev_examples.truncate(n as usize);
    }
    let mut train = Dataset::new(spec.clone(), Split::Train, train_examples, &tokenizer)?;
    let mut dev = Dataset::new(spec.clone(), Split::Dev, dev_examples, &tokenizer)?;
    for data in [&mut train, &mut dev] {
        pad_as_config(data, &model);
        super::common::check_token_ids(data, model.net.vocab_size(), &model_dir)?;
    }
    if !train.has_labels() || !dev.has_labels() {
        bail!(
            "{}: fine-tuning needs labelled train and dev data",
            data_dir.display()
        );
    }
    let mask = args
        .head_mask
        .as_deref()
        .map(|p| read_head_mask(p, model.net.num_layers(), model.net.num_heads()))
        .transpose()?
        .map(|m| m.to_device(device));
    let hyper = Hyper {
        learning_rate: args.learning_rate,
        weight_decay: args.weight_decay,
        warmup_ratio: args.warmup_ratio,
        epochs: args.epochs as usize,
        batch_size: args.batch_size as usize,
        max_grad_norm: args.max_grad_norm,
        adam_beta1: 0.9,
        adam_beta2: 0.999,
        adam_epsilon: 1e-8,
    };
    let steps_per_epoch = train.len().div_ceil(hyper.batch_size);
    let mut total = steps_per_epoch * hyper.epochs;
    if let Some(m) = args.max_steps {
        total = total.min(m as usize);
    }
    let warmup = warmup_steps(total, hyper.warmup_ratio);
    let metric = spec.default_metric();
    let dev_batches = dev.batches(64, Padding::Longest, device);
    let mut opt = AdamW::new(&model.vs, hyper);
    let start = Instant::now();
    let bar = progress::bar(total as u64, "fine-tuning", global.quiet);
    let mut step = 0usize;
    let mut train_seconds = 0.0;
    let mut epochs = Vec::new();
    // (dev score, epoch index, a copy of every variable) of the best epoch so far.
    let mut best: Option<(f64, usize, Snapshot)> = None;
    let opts = crate::model::ForwardOptions {
        train: true,
        ..Default::default()
    };
    tch::manual_seed(args.seed);
    for epoch in 0..hyper.epochs {
        if step >= total {
            break;
        }
        let epoch_start = Instant::now();
        let (mut loss_sum, mut loss_n) = (0.0, 0usize);
        for batch in epoch_batches(
            &train,
            hyper.batch_size,
            args.seed + epoch as i64,
            !args.no_length_bucketing,
            device,
        ) {
            if step >= total {
                break;
            }
            let labels = batch.labels.as_ref().context("labels")?;
            let step_start = Instant::now();
            opt.zero_grad();
            crate::eval::check_inputs(model.net.as_ref(), &batch, step)?;
            let out = model.net.forward(&batch.inputs(), mask.as_ref(), opts)?;
            crate::finite::check_logits(&out.logits, step, &batch.indices)
                .with_context(|| format!("fine-tuning step {}", step + 1))?;
            let loss = model.net.loss(&out.logits, labels, false);
            loss.backward();
            opt.clip_grad_norm(hyper.max_grad_norm);
            opt.step(lr_at(step, total, warmup, hyper.learning_rate));
            step += 1;
            let l = loss.double_value(&[]);
            train_seconds += step_start.elapsed().as_secs_f64();
            if !l.is_finite() {
                bail!("training diverged at step {step} (loss {l}); lower --learning-rate");
            }
            loss_sum += l;
            loss_n += 1;
            bar.set_message(format!("loss {:.4}", loss_sum / loss_n as f64));
            bar.inc(1);
        }
        let logits = predict(model.net.as_ref(), &dev_batches, mask.as_ref(), None)?;
        let metrics = score(&dev, &logits);
        let value = metrics.get(metric).copied().unwrap_or(f64::NAN);
        let train_loss = loss_sum / loss_n.max(1) as f64;
        if !global.quiet {
            bar.suspend(|| {
                let m: Vec<String> = metrics.iter().map(|(k, v)| format!("{k} {v:.4}")).collect();
                eprintln!(
                    "epoch {}: train loss {train_loss:.4}, dev {}",
                    epoch + 1,
                    m.join(", ")
                );
            });
        }
        epochs.push(json!({
            "epoch": epoch + 1,
            "steps": step,
            "train_loss": train_loss,
            "metrics": metrics,
            "seconds": epoch_start.elapsed().as_secs_f64(),
        }));
        if best
            .as_ref()
            .is_none_or(|(b, _, _)| value > *b || b.is_nan())
        {
            let snapshot = model
                .vs
                .variables()
                .into_iter()
                .map(|(k, t)| (k, t.detach().copy()))
                .collect();
            best = Some((value, epoch, snapshot));
        }
    }
    bar.finish_and_clear();
    let (_, best_epoch, snapshot) = best.context("no epoch ran")?;
    tch::no_grad(|| {
        let vars = model.vs.variables();
        for (k, t) in &snapshot {
            vars[k].shallow_clone().copy_(t);
        }
    });
    let seconds = start.elapsed().as_secs_f64();
    model.config.set_labels_for(&spec);
    let staging = Staging::new(&output_dir, MODEL_FILES)?;
    model.save(staging.dir())?;
    tokenizer.save_files(staging.dir())?;
    let summary = json!({
        "task": spec.name(),
        "base_model": model_dir.display().to_string(),
        "output_dir": output_dir.display().to_string(),
        "data_dir": data_dir.display().to_string(),
        "source": loaded.record,
        "labels": spec.labels,
        "train_examples": train.len(),
        "dev_examples": dev.len(),
        "settings": {
            "hyper": hyper,
            "steps": step,
            "warmup_steps": warmup,
            "max_seq_length": args.max_seq_length,
            "length_bucketing": !args.no_length_bucketing,
            "seed": args.seed,
            "head_mask": args.head_mask.as_ref().map(|p| p.display().to_string()),
            "threads": tch::get_num_threads(),
            "device": format!("{device:?}"),
        },
        "metric": metric,
        "epochs": epochs,
        "best": epochs[best_epoch],
        "seconds": seconds,
        "train_seconds": train_seconds,
        "seconds_per_step": train_seconds / step.max(1) as f64,
    });
    write_json(&staging.dir().join("finetune.json"), &summary)?;
    staging.commit()?;
    Ok(summary)
}
