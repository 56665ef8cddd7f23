//! `bertology eval`: metrics of a model on a GLUE split, eval.json and predictions.csv.
use super::common::{padding, setup};
use crate::cli::{EvalArgs, GlobalArgs};
use crate::eval::{predict, predictions, score};
use crate::output::{prepare_dir, write_csv, write_json};
use crate::progress;
use anyhow::{bail, Result};
use serde_json::json;
use std::time::Instant;

pub fn run(args: &EvalArgs, global: &GlobalArgs) -> Result<()> {
    let s = setup(&args.model, &args.data, global)?;
    let labelled = s.data.has_labels();
    let out_dir = prepare_dir(&args.output_dir)?;
    let start = Instant::now();
    let batches = s
        .data
        .batches(args.data.batch_size as usize, padding(&args.data), s.device);
    let bar = progress::bar(s.data.len() as u64, "evaluating", global.quiet);
    let logits = predict(s.model.net.as_ref(), &batches, None, Some(&bar))?;
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

    let regression = s.data.task.is_regression();
    let (preds, scores) = predictions(&logits, regression);
    let rows: Vec<Vec<f32>> = Vec::try_from(logits.to_kind(tch::Kind::Float))?;
    let labels = s.data.label_values();
    if s.data.task.is_language_model() {
        // Per example (block or token-id line): predicted tokens and mean token loss.
        write_csv(
            &out_dir.join("predictions.csv"),
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
            &out_dir.join("predictions.csv"),
            &["index", "label", "prediction", "logits"],
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
                vec![i.to_string(), label, pred, l]
            }),
        )?;
    }
    let summary = json!({
        "task": s.data.task.name(),
        "split": format!("{:?}", s.data.split).to_lowercase(),
        "model": s.model.dir.display().to_string(),
        "data_dir": s.data_dir.display().to_string(),
        "examples": s.data.len(),
        "tokens": s.data.tokens(),
        "metrics": metrics,
        "batch_size": args.data.batch_size,
        "max_seq_length": args.data.max_seq_length,
        "pad_to_max_length": args.data.pad_to_max_length,
        "device": format!("{:?}", s.device),
        "seconds": seconds,
        "examples_per_second": s.data.len() as f64 / seconds,
    });
    write_json(&out_dir.join("eval.json"), &summary)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else if !global.quiet {
        let m: Vec<String> = metrics.iter().map(|(k, v)| format!("{k} {v:.4}")).collect();
        println!(
            "{} {} ({} examples, {:.1} s): {}",
            s.data.task.name(),
            format!("{:?}", s.data.split).to_lowercase(),
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
