//! `bertology prune`: iterative masking, physical pruning, honest timing, the saved model.
use super::common::{padding, setup, TaskSetup};
use crate::cli::{GlobalArgs, PruneArgs};
use crate::data::batch::Batch;
use crate::eval::{predict, score};
use crate::masking::{mask_heads, Goal, MaskingSettings};
use crate::model::Model;
use crate::model::Network;
use crate::output::{head_table, prepare_dir, write_csv, write_json, write_npy};
use crate::progress;
use anyhow::{bail, Context, Result};
use serde_json::json;
use std::path::Path;
use std::time::Instant;
use tch::{Kind, Tensor};

fn validate(args: &PruneArgs) -> Result<()> {
    if !(args.masking_threshold > 0.0 && args.masking_threshold < 1.0) {
        bail!(
            "--masking-threshold {}: expected a value in (0, 1)",
            args.masking_threshold
        );
    }
    if !(args.masking_amount > 0.0 && args.masking_amount <= 1.0) {
        bail!(
            "--masking-amount {}: expected a value in (0, 1]",
            args.masking_amount
        );
    }
    if let Some(f) = args.target_heads {
        if !(0.0..=1.0).contains(&f) {
            bail!("--target-heads {f}: expected a fraction of heads to keep in [0, 1]");
        }
    }
    if let Some(m) = &args.metric {
        args.data.task.check_metric(m)?;
    }
    Ok(())
}

/// Median seconds of `runs` no-gradient passes over `batches`, and the first pass's logits.
///
/// The warm-up runs the batch with the most tokens (and the first one) before timing: that
/// starts the thread pool, loads kernels and grows the allocator to the largest shapes, which
/// is all a warm-up is for; a whole extra pass would only add time, not accuracy.
fn time_passes(
    net: &dyn Network,
    batches: &[Batch],
    mask: Option<&Tensor>,
    runs: u64,
) -> Result<(f64, Tensor)> {
    let largest = batches.iter().max_by_key(|b| b.input_ids.numel());
    for b in largest.into_iter().chain(batches.first()) {
        tch::no_grad(|| net.forward(&b.inputs(), mask, Default::default()))?;
    }
    let mut times = Vec::new();
    let mut first_logits = None;
    for _ in 0..runs {
        let start = Instant::now();
        let logits = predict(net, batches, mask, None)?;
        times.push(start.elapsed().as_secs_f64());
        first_logits.get_or_insert(logits);
    }
    times.sort_by(f64::total_cmp);
    let logits = first_logits.context("--timing-runs must be at least 1")?;
    Ok((times[times.len() / 2], logits))
}

fn save_pruned(model: &Model, tokenizer_dir: &Path, dir: &Path) -> Result<()> {
    // Written next to its final place, then renamed: never a half-written model folder.
    let staging = dir.with_extension("partial");
    if staging.exists() {
        std::fs::remove_dir_all(&staging)
            .with_context(|| format!("{}: cannot remove", staging.display()))?;
    }
    model.save(&staging)?;
    // A token-id language-model run may use a model folder without tokenizer files.
    if let Ok(tok) = crate::model::tokenizer::TextTokenizer::from_dir(tokenizer_dir, 8) {
        tok.save_files(&staging)?;
    }
    // GPT-2's slow-tokenizer files, which TOKENIZER_FILES does not list.
    for name in ["vocab.json", "merges.txt"] {
        let src = tokenizer_dir.join(name);
        if src.is_file() {
            std::fs::copy(&src, staging.join(name))
                .with_context(|| format!("{}: cannot copy", src.display()))?;
        }
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir)
            .with_context(|| format!("{}: cannot replace", dir.display()))?;
    }
    std::fs::rename(&staging, dir)
        .with_context(|| format!("{}: cannot rename into place", dir.display()))
}

pub fn run(args: &PruneArgs, global: &GlobalArgs) -> Result<()> {
    validate(args)?;
    let start = Instant::now();
    let TaskSetup {
        device,
        mut model,
        data,
        data_dir,
        ..
    } = setup(&args.model, &args.data, global)?;
    if !data.has_labels() {
        bail!(
            "--split {:?}: masking needs labels, and this split has none",
            data.split
        );
    }
    model.vs.freeze();
    let out_dir = prepare_dir(&args.output_dir)?;
    let metric = args
        .metric
        .clone()
        .unwrap_or_else(|| data.task.default_metric().to_string());
    let (layers, heads) = (model.net.num_layers(), model.net.num_heads());
    let total = (layers * heads) as usize;
    let goal = match args.target_heads {
        Some(f) => Goal::KeepHeads((f * total as f64).round() as usize),
        None => Goal::Threshold(args.masking_threshold),
    };
    let settings = MaskingSettings {
        goal,
        amount: args.masking_amount,
        min_heads_per_layer: args.min_heads_per_layer,
        reestimate: !args.no_reestimate,
        order: args.order,
        seed: args.model.seed,
        importance: args.importance.settings(false),
    };
    let batches = data.batches(args.data.batch_size as usize, padding(&args.data), device);
    // One tick per importance pass; at most one step per masked-amount of heads, plus the first.
    let max_steps =
        (total as f64 / (total as f64 * args.masking_amount).floor().max(1.0)).ceil() as u64 + 1;
    let bar = progress::Steps::new(max_steps, "masking", global.quiet);
    let masking_start = Instant::now();
    let result = mask_heads(
        model.net.as_ref(),
        &data,
        &batches,
        &metric,
        settings,
        Some(&bar),
    )?;
    bar.finish();
    let masking_seconds = masking_start.elapsed().as_secs_f64();

    let pruned = crate::pruning::prune(&model, &result.mask)?;
    let mask_on_device = result.mask.to_device(device);
    let mut timing_sizes = args.timing_batch_sizes.clone();
    if timing_sizes.is_empty() {
        timing_sizes.push(args.data.batch_size);
    }
    let mut timings = Vec::new();
    // The first timed batch size is the run's own batches: their timed passes give the
    // masked and pruned logits, so nothing is evaluated twice.
    let mut checked: Option<(Tensor, Tensor)> = None;
    for &bs in &timing_sizes {
        let tb = if bs == args.data.batch_size {
            None
        } else {
            Some(data.batches(bs as usize, padding(&args.data), device))
        };
        let tb = tb.as_deref().unwrap_or(&batches);
        // Before: the masked model at its full shapes (what masking alone gives); after: the
        // pruned model. Both without gradient, after a warm-up.
        let (before, masked_logits) = time_passes(
            model.net.as_ref(),
            tb,
            Some(&mask_on_device),
            args.timing_runs,
        )?;
        let (after, pruned_logits) = time_passes(pruned.net.as_ref(), tb, None, args.timing_runs)?;
        checked.get_or_insert((masked_logits, pruned_logits));
        let n = data.len() as f64;
        timings.push(json!({
            "batch_size": bs,
            "seconds_before": before,
            "seconds_after": after,
            "examples_per_second_before": n / before,
            "examples_per_second_after": n / after,
            "speedup": before / after,
        }));
    }
    let (masked_logits, pruned_logits) = checked.context("no timing pass ran")?;
    let pruned_metrics = score(&data, &pruned_logits);
    let pruned_score = pruned_metrics[&metric];
    let max_logit_diff = (&pruned_logits - &masked_logits)
        .abs()
        .max()
        .double_value(&[]);

    save_pruned(&pruned, &model.dir, &out_dir.join("pruned_model"))?;
    write_npy(&out_dir.join("head_mask.npy"), &result.mask)?;
    write_npy(
        &out_dir.join("head_importance.npy"),
        &result.initial_importance,
    )?;
    write_npy(
        &out_dir.join("head_ranks.npy"),
        &crate::importance::ranks(&result.initial_importance),
    )?;
    write_csv(
        &out_dir.join("masking_curve.csv"),
        &[
            "step",
            "heads_kept",
            "fraction_kept",
            "score",
            "importance_reestimated",
            "accepted",
        ],
        result.curve.iter().map(|s| {
            vec![
                s.step.to_string(),
                s.heads_kept.to_string(),
                s.fraction_kept.to_string(),
                s.score.to_string(),
                s.reestimated.to_string(),
                s.accepted.to_string(),
            ]
        }),
    )?;
    let heads_per_layer = pruned.net.heads_per_layer();
    let kept: i64 = heads_per_layer.iter().sum();
    let params_before = model.num_parameters();
    let params_after = pruned.num_parameters();
    let empty_layers: Vec<usize> = heads_per_layer
        .iter()
        .enumerate()
        .filter(|(_, &h)| h == 0)
        .map(|(l, _)| l)
        .collect();
    let summary = json!({
        "task": data.task.name(),
        "split": format!("{:?}", data.split).to_lowercase(),
        "model": model.dir.display().to_string(),
        "data_dir": data_dir.display().to_string(),
        "examples": data.len(),
        "metric": metric,
        "original_score": result.original_score,
        "masked_score": result.final_score,
        "pruned_score": pruned_score,
        "pruned_metrics": pruned_metrics,
        "max_abs_logit_diff_pruned_vs_masked": max_logit_diff,
        "threshold": args.masking_threshold,
        "target_heads": args.target_heads,
        "stop": result.stop,
        "heads_total": total,
        "heads_kept": kept,
        "fraction_kept": kept as f64 / total as f64,
        "heads_kept_per_layer": heads_per_layer,
        "head_mask": Vec::<Vec<f32>>::try_from(&result.mask)?,
        "layers_without_heads": empty_layers,
        "pruned_heads": pruned.config.pruned_heads_json(),
        "parameters_before": params_before,
        "parameters_after": params_after,
        "timing": timings,
        "settings": {
            "estimator": settings.importance.estimator,
            "layer_norm": settings.importance.layer_norm,
            "global_norm": settings.importance.global_norm,
            "masking_amount": args.masking_amount,
            "min_heads_per_layer": args.min_heads_per_layer,
            "reestimate": settings.reestimate,
            "order": settings.order,
            "seed": args.model.seed,
            "batch_size": args.data.batch_size,
            "max_seq_length": args.data.max_seq_length,
            "pad_to_max_length": args.data.pad_to_max_length,
            "data_subset": args.data.data_subset,
            "timing_runs": args.timing_runs,
            "threads": tch::get_num_threads(),
            "device": format!("{device:?}"),
        },
        "curve": result.curve,
        "masking_seconds": masking_seconds,
        "seconds": start.elapsed().as_secs_f64(),
        "pruned_model": out_dir.join("pruned_model").display().to_string(),
        "command": crate::cli::command_line(),
    });
    write_json(&out_dir.join("prune.json"), &summary)?;
    crate::report::build(&out_dir)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else if !global.quiet {
        if !empty_layers.is_empty() {
            eprintln!(
                "note: layers {empty_layers:?} lost every head; transformers 4.57 cannot run such a layer (use --min-heads-per-layer 1 for models it must load)"
            );
        }
        println!("Final head mask (1 kept, 0 pruned; layers down, heads across)");
        print!("{}", head_table(&result.mask.to_kind(Kind::Float), 0));
        println!(
            "{}: kept {kept} of {total} heads ({:.0}%); {metric} {:.4} -> masked {:.4}, pruned {:.4}; parameters {params_before} -> {params_after}",
            data.task.name(),
            100.0 * kept as f64 / total as f64,
            result.original_score,
            result.final_score,
            pruned_score,
        );
        for t in &timings {
            println!(
                "batch {}: {:.1} -> {:.1} examples/s (x{:.2})",
                t["batch_size"],
                t["examples_per_second_before"].as_f64().unwrap_or(0.0),
                t["examples_per_second_after"].as_f64().unwrap_or(0.0),
                t["speedup"].as_f64().unwrap_or(0.0)
            );
        }
        println!(
            "wrote {}/pruned_model, head_mask.npy, masking_curve.csv, prune.json ({:.0} s)",
            out_dir.display(),
            start.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
