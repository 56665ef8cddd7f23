//! `bertology prune`: iterative masking, physical pruning, honest timing, the saved model.
use super::args::{GlobalArgs, PruneArgs};
use super::common::{batches, TaskSetup};
use super::setup::setup;
use crate::data::batch::Batch;
use crate::eval::{predict, score};
use crate::masking::{
    mask_heads, mask_units, Goal, MaskingSettings, NeuronSettings, PruneUnit, Units,
};
use crate::model::Masks;
use crate::model::Model;
use crate::model::Network;
use crate::output::fingerprints;
use crate::output::{
    check_output_dir, ensure_not_input, head_table, write_csv, write_json, write_npy, Staging,
    RUN_FILES,
};
use crate::progress;
use crate::timing::{Spread, Verdict};
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
    if let Some(f) = args.target_neurons {
        if !(0.0..=1.0).contains(&f) {
            bail!("--target-neurons {f}: expected a fraction of feed-forward neurons to keep in [0, 1]");
        }
    }
    let units = units_of(args);
    if units == Units::Heads && args.target_neurons.is_some() {
        bail!("--target-neurons needs --units neurons or both (--units heads masks heads only)");
    }
    if units == Units::Heads && args.uniform_neurons {
        bail!("--uniform-neurons needs --units neurons or both (--units heads masks heads only)");
    }
    if units == Units::Neurons && args.target_heads.is_some() {
        bail!("--target-heads needs --units heads or both (--units neurons masks neurons only)");
    }
    if units == Units::Both && args.target_heads.is_some() != args.target_neurons.is_some() {
        bail!("--units both: give both --target-heads and --target-neurons (budget mode), or neither (threshold mode)");
    }
    Ok(())
}

/// What the run masks: --units, else what the targets name.
fn units_of(args: &PruneArgs) -> Units {
    args.units
        .unwrap_or(match (args.target_heads, args.target_neurons) {
            (Some(_), Some(_)) => Units::Both,
            (None, Some(_)) => Units::Neurons,
            _ => Units::Heads,
        })
}

/// The neurons to keep (in all, or per layer with --uniform-neurons), checked against what
/// the model's layers have.
fn neuron_budget(args: &PruneArgs, per_layer: &[i64], intermediate: i64) -> Result<Option<usize>> {
    let layers = per_layer.len() as i64;
    let Some(f) = args.target_neurons else {
        if args.uniform_neurons && per_layer.windows(2).any(|w| w[0] != w[1]) {
            bail!(
                "--uniform-neurons without --target-neurons needs layers of one size; this model's layers keep {per_layer:?} neurons (give --target-neurons F)"
            );
        }
        return Ok(None);
    };
    if args.uniform_neurons {
        let keep = (f * intermediate as f64).round() as i64;
        if let Some((l, &have)) = per_layer.iter().enumerate().find(|(_, &n)| n < keep) {
            bail!(
                "--uniform-neurons --target-neurons {f} keeps {keep} of {intermediate} neurons in every layer, but layer {l} has only {have} left (this model's layers keep {per_layer:?})"
            );
        }
        return Ok(Some(keep as usize));
    }
    Ok(Some((f * (intermediate * layers) as f64).round() as usize))
}

/// Seconds of `runs` no-gradient passes over `batches` of each model, the two models in
/// alternation (masked, pruned, then pruned, masked, ...) so that a machine whose speed drifts
/// slows both alike; and each model's logits from its first pass.
///
/// The warm-up runs the batch with the most tokens (and the first one) of each model before
/// timing: that starts the thread pool, loads kernels and grows the allocator to the largest
/// shapes, which is all a warm-up is for.
fn time_both(
    masked: &dyn Network,
    mask: Masks,
    pruned: &dyn Network,
    batches: &[Batch],
    runs: u64,
) -> Result<(Vec<f64>, Vec<f64>, Tensor, Tensor)> {
    let largest = batches.iter().max_by_key(|b| b.input_ids.numel());
    for b in largest.into_iter().chain(batches.first()) {
        tch::no_grad(|| masked.forward_masked(&b.inputs(), mask, Default::default()))?;
        tch::no_grad(|| pruned.forward(&b.inputs(), None, Default::default()))?;
    }
    let (mut before, mut after) = (Vec::new(), Vec::new());
    let (mut masked_logits, mut pruned_logits) = (None, None);
    for r in 0..runs {
        for which in if r % 2 == 0 { [0, 1] } else { [1, 0] } {
            let start = Instant::now();
            if which == 0 {
                let logits = crate::eval::predict_masked(masked, batches, mask, None)?;
                before.push(start.elapsed().as_secs_f64());
                masked_logits.get_or_insert(logits);
            } else {
                let logits = predict(pruned, batches, None, None)?;
                after.push(start.elapsed().as_secs_f64());
                pruned_logits.get_or_insert(logits);
            }
        }
    }
    Ok((
        before,
        after,
        masked_logits.context("--timing-runs must be at least 1")?,
        pruned_logits.context("--timing-runs must be at least 1")?,
    ))
}

/// Refuses a minimum or budget the model's heads cannot meet (they would silently mean "mask
/// nothing").
fn validate_heads(args: &PruneArgs, heads_per_layer: &[i64], heads: i64) -> Result<()> {
    let min = args.min_heads_per_layer as i64;
    if min > heads {
        bail!("--min-heads-per-layer {min}: the model has only {heads} heads per layer");
    }
    if heads_per_layer.iter().all(|&h| h <= min) {
        bail!(
            "--min-heads-per-layer {min} leaves no head to mask: no layer has more than {min} heads (heads per layer {heads_per_layer:?})"
        );
    }
    if let Some(f) = args.target_heads {
        let total = heads * heads_per_layer.len() as i64;
        let keep = (f * total as f64).round() as i64;
        let floor: i64 = heads_per_layer.iter().map(|&h| h.min(min)).sum();
        if keep < floor {
            bail!(
                "--target-heads {f} keeps {keep} of {total} heads, but --min-heads-per-layer {min} keeps at least {floor}"
            );
        }
    }
    Ok(())
}

fn save_pruned(model: &Model, tokenizer_dir: &Path, dir: &Path) -> Result<()> {
    model.save(dir)?;
    // A token-id language-model run may use a model folder without tokenizer files.
    if let Ok(tok) = crate::model::tokenizer::TextTokenizer::from_dir(tokenizer_dir, 8) {
        tok.save_files(dir)?;
    }
    Ok(())
}

pub fn run(args: &PruneArgs, global: &GlobalArgs) -> Result<()> {
    validate(args)?;
    check_output_dir(&args.output_dir)?;
    if let Some(spec) = &args.model.model {
        let dir = crate::model_source::resolve_model(spec, global.quiet)?;
        ensure_not_input(&args.output_dir, RUN_FILES, "--model", &dir)?;
    }
    let start = Instant::now();
    let TaskSetup {
        device,
        mut model,
        data,
        data_dir,
        source,
        split_name,
        ..
    } = setup(&args.model, &args.data, global)?;
    if !data.has_labels() {
        bail!(
            "--split {split_name}: masking needs labels, and this split of {} has none",
            data_dir.display()
        );
    }
    model.vs.freeze();
    let units = units_of(args);
    if units != Units::Neurons {
        validate_heads(args, &model.net.heads_per_layer(), model.net.num_heads())?;
    }
    let intermediate = model.net.intermediate_size();
    let neuron_keep = neuron_budget(args, &model.net.neurons_per_layer(), intermediate)?;
    let out_dir = &args.output_dir;
    // The spec holds --metric, checked against the labels when the data was read.
    let metric = data.spec.default_metric().to_string();
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
        uniform_heads: args.uniform_heads,
        unit_heads: match args.prune_unit {
            PruneUnit::Head => 1,
            PruneUnit::Group => (heads / model.net.num_kv_heads().max(1)) as usize,
        },
        seed: args.model.seed,
        importance: args.importance.settings(false),
    };
    let estimator = Some(settings.importance.estimator);
    let run_batches = batches(
        &data,
        &args.data,
        args.data.batch_size as usize,
        estimator,
        device,
    );
    let batches = run_batches;
    // One tick per importance pass; at most one step per masked-amount of heads, plus the first.
    let max_steps =
        (total as f64 / (total as f64 * args.masking_amount).floor().max(1.0)).ceil() as u64 + 1;
    let bar = progress::Steps::new(max_steps, "masking", global.quiet);
    let masking_start = Instant::now();
    // Heads alone run the head-masking loop as before; neurons (alone or with heads) the
    // joint one.
    let (result, neurons) = if units == Units::Heads {
        let r = mask_heads(
            model.net.as_ref(),
            &data,
            &batches,
            &metric,
            settings,
            Some(&bar),
        )?;
        (r, None)
    } else {
        let r = mask_units(
            model.net.as_ref(),
            &data,
            &batches,
            &metric,
            settings,
            NeuronSettings {
                heads: units == Units::Both,
                keep: neuron_keep,
                uniform: args.uniform_neurons,
            },
            Some(&bar),
        )?;
        let rest = (
            r.neuron_mask,
            r.initial_neuron_importance,
            r.neurons_kept,
            r.step_neuron_masks,
        );
        (r.heads, Some(rest))
    };
    bar.finish();
    let masking_seconds = masking_start.elapsed().as_secs_f64();

    let head_mask = (units != Units::Neurons).then_some(&result.mask);
    let neuron_mask = neurons.as_ref().map(|n| &n.0);
    let pruned = crate::pruning::prune_units(&model, head_mask, neuron_mask)?;
    let mask_on_device = result.mask.to_device(device);
    let neurons_on_device = neuron_mask.map(|m| m.to_device(device));
    let run_masks = Masks {
        heads: Some(&mask_on_device),
        neurons: neurons_on_device.as_ref(),
    };
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
            Some(super::common::batches(
                &data,
                &args.data,
                bs as usize,
                estimator,
                device,
            ))
        };
        let tb = tb.as_deref().unwrap_or(&batches);
        // Before: the masked model at its full shapes (what masking alone gives); after: the
        // pruned model. Both without gradient, after a warm-up, in alternation.
        let (before, after, masked_logits, pruned_logits) = time_both(
            model.net.as_ref(),
            run_masks,
            pruned.net.as_ref(),
            tb,
            args.timing_runs,
        )?;
        checked.get_or_insert((masked_logits, pruned_logits));
        let n = data.len() as f64;
        let (b, a) = (Spread::of(&before), Spread::of(&after));
        let verdict = Verdict::of(&before, &after);
        timings.push(json!({
            "batch_size": bs,
            "runs": args.timing_runs,
            "seconds_before": b.median,
            "seconds_after": a.median,
            "seconds_before_spread": b,
            "seconds_after_spread": a,
            "examples_per_second_before": n / b.median,
            "examples_per_second_after": n / a.median,
            "examples_per_second_before_range": [n / b.max, n / b.min],
            "examples_per_second_after_range": [n / a.max, n / a.min],
            "speedup": b.median / a.median,
            "verdict": verdict,
        }));
    }
    let (masked_logits, pruned_logits) = checked.context("no timing pass ran")?;
    let pruned_metrics = score(&data, &pruned_logits);
    let pruned_score = pruned_metrics[&metric];
    let max_logit_diff = (&pruned_logits - &masked_logits)
        .abs()
        .max()
        .double_value(&[]);

    let staging = Staging::new(out_dir, RUN_FILES)?;
    let dir = staging.dir();
    save_pruned(&pruned, &model.dir, &dir.join("pruned_model"))?;
    write_npy(&dir.join("head_mask.npy"), &result.mask)?;
    if let Some((mask, importance, _, steps)) = &neurons {
        write_npy(&dir.join("neuron_mask.npy"), mask)?;
        write_npy(&dir.join("ffn_importance.npy"), importance)?;
        write_npy(&dir.join("masking_neuron_masks.npy"), steps)?;
    }
    // What the model of each step would weigh once pruned (the x axis of a
    // heads-against-neurons comparison).
    let step_parameters = (0..result.curve.len() as i64)
        .map(|i| {
            let heads = result.step_masks.get(i);
            let neurons = neurons.as_ref().map(|n| n.3.get(i));
            crate::pruning::parameters_kept(&model, Some(&heads), neurons.as_ref())
        })
        .collect::<Result<Vec<i64>>>()?;
    // Every step's mask, in the order of masking_curve.csv's rows.
    write_npy(&dir.join("masking_masks.npy"), &result.step_masks)?;
    write_npy(&dir.join("head_importance.npy"), &result.initial_importance)?;
    write_npy(
        &dir.join("head_ranks.npy"),
        &crate::importance::ranks(&result.initial_importance),
    )?;
    write_csv(
        &dir.join("masking_curve.csv"),
        &[
            "step",
            "heads_kept",
            "fraction_kept",
            "score",
            "importance_reestimated",
            "accepted",
            "neurons_kept",
            "parameters_kept",
        ],
        result.curve.iter().enumerate().map(|(i, s)| {
            vec![
                s.step.to_string(),
                s.heads_kept.to_string(),
                s.fraction_kept.to_string(),
                s.score.to_string(),
                s.reestimated.to_string(),
                s.accepted.to_string(),
                neurons
                    .as_ref()
                    .and_then(|n| n.2.get(i))
                    .map(|k| k.to_string())
                    .unwrap_or_default(),
                step_parameters[i].to_string(),
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
        "task": data.spec.name(),
        "split": split_name,
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
        "command": super::args::command_line(),
        "outputs": null,
    });
    // Outside json!, whose macro recursion this long object already nearly exhausts.
    let mut summary = summary;
    summary["source"] = source;
    summary["labels"] = json!(data.spec.labels);
    summary["settings"]["prune_unit"] = json!(args.prune_unit);
    summary["settings"]["uniform_heads"] = json!(args.uniform_heads);
    summary["kv_heads"] = json!(model.net.num_kv_heads());
    let neurons_per_layer = pruned.net.neurons_per_layer();
    let neurons_total = model.net.num_layers() * intermediate;
    let neurons_kept: i64 = neurons_per_layer.iter().sum();
    summary["units"] = json!(units);
    summary["target_neurons"] = json!(args.target_neurons);
    summary["settings"]["uniform_neurons"] = json!(args.uniform_neurons);
    summary["intermediate"] = json!(intermediate);
    summary["neurons_total"] = json!(neurons_total);
    summary["neurons_kept"] = json!(neurons_kept);
    summary["neuron_fraction_kept"] = json!(neurons_kept as f64 / neurons_total.max(1) as f64);
    summary["neurons_kept_per_layer"] = json!(neurons_per_layer);
    summary["pruned_neurons"] = pruned.config.pruned_neurons_json();
    summary["outputs"] = fingerprints(
        dir,
        &[
            "head_mask.npy",
            "head_importance.npy",
            "head_ranks.npy",
            "masking_curve.csv",
            "masking_masks.npy",
            "neuron_mask.npy",
            "ffn_importance.npy",
            "masking_neuron_masks.npy",
        ],
    )?;
    write_json(&dir.join("prune.json"), &summary)?;
    crate::report::build(dir, dir, out_dir)?;
    staging.commit()?;
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
        if neurons.is_some() {
            println!(
                "feed-forward neurons kept per layer: {neurons_per_layer:?} ({neurons_kept} of {neurons_total}, {:.0}%)",
                100.0 * neurons_kept as f64 / neurons_total.max(1) as f64
            );
        }
        println!(
            "{}: kept {kept} of {total} heads ({:.0}%); {metric} {:.4} -> masked {:.4}, pruned {:.4}; parameters {params_before} -> {params_after}",
            data.spec.name(),
            100.0 * kept as f64 / total as f64,
            result.original_score,
            result.final_score,
            pruned_score,
        );
        for t in &timings {
            let f = |k: &str| t[k].as_f64().unwrap_or(f64::NAN);
            let range = |k: &str| {
                format!(
                    "{:.1}-{:.1}",
                    t[k][0].as_f64().unwrap_or(f64::NAN),
                    t[k][1].as_f64().unwrap_or(f64::NAN)
                )
            };
            let verdict: Verdict = serde_json::from_value(t["verdict"].clone())?;
            println!(
                "batch {}, {} timed passes each: masked {:.1} examples/s (range {}), pruned {:.1} (range {}): {}",
                t["batch_size"],
                args.timing_runs,
                f("examples_per_second_before"),
                range("examples_per_second_before_range"),
                f("examples_per_second_after"),
                range("examples_per_second_after_range"),
                verdict.describe(f("speedup"))
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
