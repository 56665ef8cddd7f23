//! `bertology eval`: metrics of a model on a GLUE split, eval.json and predictions.csv.
use super::args::{EvalArgs, GlobalArgs};
use super::common::padding;
use super::common::{read_head_mask, read_neuron_mask};
use super::setup::setup;
use crate::eval::{predict_masked, predictions, score};
use crate::output::{check_output_dir, write_csv, write_json, Staging, EVAL_FILES};
use crate::progress;
use anyhow::{bail, Result};
use serde_json::json;
use std::time::Instant;

pub fn run(args: &EvalArgs, global: &GlobalArgs) -> Result<()> {
    check_output_dir(&args.output_dir)?;
    let s = setup(&args.model, &args.data, global)?;
    let (layers, heads) = (s.model.net.num_layers(), s.model.net.num_heads());
    let mask = args
        .head_mask
        .as_deref()
        .map(|p| read_head_mask(p, layers, heads).map(|m| m.to_device(s.device)))
        .transpose()?;
    let intermediate = s.model.net.intermediate_size();
    let neuron_mask = args
        .neuron_mask
        .as_deref()
        .map(|p| read_neuron_mask(p, layers, intermediate).map(|m| m.to_device(s.device)))
        .transpose()?;
    let labelled = s.data.has_labels();
    let out_dir = &args.output_dir;
    let start = Instant::now();
    let batches = s
        .data
        .batches(args.data.batch_size as usize, padding(&args.data), s.device);
    let bar = progress::bar(s.data.len() as u64, "evaluating", global.quiet);
    let masks = crate::model::Masks {
        heads: mask.as_ref(),
        neurons: neuron_mask.as_ref(),
    };
    let logits = predict_masked(s.model.net.as_ref(), &batches, masks, Some(&bar))?;
    bar.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    let metrics = if labelled {
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

    let regression = s.data.spec.is_regression();
    let names = &s.data.spec.labels;
    let (preds, scores) = predictions(&logits, regression);
    let rows: Vec<Vec<f32>> = Vec::try_from(logits.to_kind(tch::Kind::Float))?;
    let labels = s.data.label_values();
    let staging = Staging::new(out_dir, EVAL_FILES)?;
    if s.data.spec.is_language_model() {
        // Per example (block or token-id line): predicted tokens and mean token loss.
        write_csv(
            &staging.dir().join("predictions.csv"),
            &["index", "tokens", "loss"],
            rows.iter().enumerate().map(|(i, r)| {
                vec![
                    i.to_string(),
                    r[1].to_string(),
                    (r[0] / r[1].max(1.0)).to_string(),
                ]
            }),
        )?;
    } else {
        write_csv(
            &staging.dir().join("predictions.csv"),
            &[
                "index",
                "label",
                "prediction",
                "logits",
                "label_name",
                "prediction_name",
            ],
            (0..s.data.len()).map(|i| {
                // Class names beside the indices; empty for a regression.
                let name = |v: f64| -> String {
                    if v.is_nan() {
                        return String::new();
                    }
                    names.get(v as usize).cloned().unwrap_or_default()
                };
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
                let (label_name, pred_name) = if regression {
                    (String::new(), String::new())
                } else {
                    (name(labels[i]), name(preds[i] as f64))
                };
                vec![i.to_string(), label, pred, l, label_name, pred_name]
            }),
        )?;
    }
    let summary = json!({
        "task": s.data.spec.name(),
        "split": s.split_name,
        "model": s.model.dir.display().to_string(),
        "data_dir": s.data_dir.display().to_string(),
        "source": s.source,
        "labels": s.data.spec.labels,
        "metric": s.data.spec.default_metric(),
        "score": metrics.get(s.data.spec.default_metric()),
        "examples": s.data.len(),
        "tokens": s.data.tokens(),
        "metrics": metrics,
        "head_mask": args.head_mask.as_ref().map(|p| p.display().to_string()),
        "neuron_mask": args.neuron_mask.as_ref().map(|p| p.display().to_string()),
        "heads_kept": mask.as_ref().map(|m| m.sum(tch::Kind::Float).double_value(&[]) as i64),
        "batch_size": args.data.batch_size,
        "max_seq_length": args.data.max_seq_length,
        "pad_to_max_length": args.data.pad_to_max_length,
        "device": format!("{:?}", s.device),
        "seconds": seconds,
        "examples_per_second": s.data.len() as f64 / seconds,
    });
    write_json(&staging.dir().join("eval.json"), &summary)?;
    staging.commit()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else if !global.quiet {
        let m: Vec<String> = metrics
            .iter()
            .map(|(k, v)| crate::metrics::display(k, *v))
            .collect();
        println!(
            "{} {} ({} examples, {:.1} s): {}",
            s.data.spec.name(),
            s.split_name,
            s.data.len(),
            seconds,
            if m.is_empty() {
                "no labels".to_string()
            } else {
                m.join(", ")
            }
        );
        println!("wrote {}/eval.json and predictions.csv", out_dir.display());
    }
    Ok(())
}
