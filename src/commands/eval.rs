//! `bertology eval`: metrics of a model on a GLUE split, eval.json and predictions.csv.
use super::args::{EvalArgs, GlobalArgs};
use super::common::padding;
use super::common::{read_head_mask, read_neuron_mask, TaskSetup};
use super::setup::setup;
use crate::eval::{predict_masked, predictions, score};
use crate::metrics::Metrics;
use crate::output::{check_output_dir, write_csv, write_json, Staging, EVAL_FILES};
use crate::progress;
use crate::run_files::eval::EvalSummary;
use anyhow::{bail, Result};
use std::path::Path;
use std::time::Instant;
use tch::Tensor;

pub fn run(args: &EvalArgs, global: &GlobalArgs) -> Result<()> {
    check_output_dir(&args.output_dir)?;
    let s = setup(&args.model, &args.data, global)?;
    let (heads, neurons) = read_masks(args, &s)?;
    let start = Instant::now();
    let logits = predict_all(args, &s, heads.as_ref(), neurons.as_ref(), global.quiet)?;
    let seconds = start.elapsed().as_secs_f64();
    let metrics = if s.data.has_labels() {
        score(&s.data, &logits)
    } else {
        Default::default()
    };
    if logits.size()[0] as usize != s.data.len() {
        bail!(
            "internal: {} logits for {} examples",
            logits.size()[0],
            s.data.len()
        );
    }
    let staging = Staging::new(&args.output_dir, EVAL_FILES)?;
    let path = staging.dir().join("predictions.csv");
    if s.data.spec.is_language_model() {
        write_lm_predictions(&path, &logits)?;
    } else {
        write_predictions(&path, &s, &logits)?;
    }
    let summary = summarize(args, &s, heads.as_ref(), metrics, seconds);
    write_json(&staging.dir().join("eval.json"), &summary)?;
    staging.commit()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else if !global.quiet {
        let m = crate::metrics::display_all(&summary.metrics);
        println!(
            "{} {} ({} examples, {:.1} s): {}",
            summary.task,
            summary.split,
            summary.examples,
            seconds,
            if m.is_empty() {
                "no labels".to_string()
            } else {
                m
            }
        );
        println!(
            "wrote {}/eval.json and predictions.csv",
            args.output_dir.display()
        );
    }
    Ok(())
}

/// --head-mask and --neuron-mask, checked against the model's shape, on its device.
fn read_masks(args: &EvalArgs, s: &TaskSetup) -> Result<(Option<Tensor>, Option<Tensor>)> {
    let net = s.model.net.as_ref();
    let layers = net.num_layers();
    let heads = args
        .head_mask
        .as_deref()
        .map(|p| read_head_mask(p, layers, net.num_heads()).map(|m| m.to_device(s.device)))
        .transpose()?;
    let neurons = args
        .neuron_mask
        .as_deref()
        .map(|p| {
            read_neuron_mask(p, layers, net.intermediate_size()).map(|m| m.to_device(s.device))
        })
        .transpose()?;
    Ok((heads, neurons))
}

/// The logits of every example under the masks.
fn predict_all(
    args: &EvalArgs,
    s: &TaskSetup,
    heads: Option<&Tensor>,
    neurons: Option<&Tensor>,
    quiet: bool,
) -> Result<Tensor> {
    let batches = s
        .data
        .batches(args.data.batch_size as usize, padding(&args.data), s.device);
    let bar = progress::bar(s.data.len() as u64, "evaluating", quiet);
    let masks = crate::model::Masks { heads, neurons };
    let logits = predict_masked(s.model.net.as_ref(), &batches, masks, Some(&bar))?;
    bar.finish_and_clear();
    Ok(logits)
}

/// Per example (block or token-id line) of a language model: predicted tokens and mean token
/// loss.
fn write_lm_predictions(path: &Path, logits: &Tensor) -> Result<()> {
    let rows: Vec<Vec<f32>> = Vec::try_from(logits.to_kind(tch::Kind::Float))?;
    write_csv(
        path,
        &["index", "tokens", "loss"],
        rows.iter().enumerate().map(|(i, r)| {
            vec![
                i.to_string(),
                r[1].to_string(),
                (r[0] / r[1].max(1.0)).to_string(),
            ]
        }),
    )
}

/// Per example of a classifier or regression: label, prediction, logits, class names.
fn write_predictions(path: &Path, s: &TaskSetup, logits: &Tensor) -> Result<()> {
    let regression = s.data.spec.is_regression();
    let names = &s.data.spec.labels;
    let (preds, scores) = predictions(logits, regression);
    let rows: Vec<Vec<f32>> = Vec::try_from(logits.to_kind(tch::Kind::Float))?;
    let labels = s.data.label_values();
    // Class names beside the indices; empty for a regression.
    let name = |v: f64| -> String {
        if v.is_nan() || regression {
            return String::new();
        }
        names.get(v as usize).cloned().unwrap_or_default()
    };
    write_csv(
        path,
        &[
            "index",
            "label",
            "prediction",
            "logits",
            "label_name",
            "prediction_name",
        ],
        (0..s.data.len()).map(|i| {
            let label = if labels[i].is_nan() {
                String::new()
            } else {
                labels[i].to_string()
            };
            let pred = if regression {
                scores[i].to_string()
            } else {
                preds[i].to_string()
            };
            let l = rows[i]
                .iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(" ");
            let (label_name, pred_name) = (name(labels[i]), name(preds[i] as f64));
            vec![i.to_string(), label, pred, l, label_name, pred_name]
        }),
    )
}

fn summarize(
    args: &EvalArgs,
    s: &TaskSetup,
    head_mask: Option<&Tensor>,
    metrics: Metrics,
    seconds: f64,
) -> EvalSummary {
    let path = |p: &Option<std::path::PathBuf>| p.as_ref().map(|p| p.display().to_string());
    EvalSummary {
        task: s.data.spec.name().to_string(),
        split: s.split_name.clone(),
        model: s.model.dir.display().to_string(),
        data_dir: s.data_dir.display().to_string(),
        source: s.source.clone(),
        labels: s.data.spec.labels.clone(),
        metric: s.data.spec.default_metric().to_string(),
        score: metrics.get(s.data.spec.default_metric()).copied(),
        examples: s.data.len(),
        tokens: s.data.tokens(),
        metrics,
        head_mask: path(&args.head_mask),
        neuron_mask: path(&args.neuron_mask),
        heads_kept: head_mask.map(|m| m.sum(tch::Kind::Float).double_value(&[]) as i64),
        batch_size: args.data.batch_size,
        max_seq_length: args.data.max_seq_length,
        pad_to_max_length: args.data.pad_to_max_length,
        device: format!("{:?}", s.device),
        seconds,
        examples_per_second: s.data.len() as f64 / seconds,
    }
}
