//! `bertology prune`: iterative masking, physical pruning, honest timing, the saved model.
use super::args::{GlobalArgs, PruneArgs};
use super::common::{batches, TaskSetup};
use super::setup::setup;
use crate::data::batch::Batch;
use crate::eval::{predict, score};
use crate::masking::{
    mask_heads, mask_units, Goal, MaskingResult, MaskingSettings, NeuronSettings, PruneUnit, Units,
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
use crate::run_files::prune::{PruneSettings, PruneSummary, TimingRow};
use anyhow::{bail, Context, Result};
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

/// What masking found: the heads' result and, when neurons were masked, theirs.
struct Masked {
    heads: MaskingResult,
    neurons: Option<NeuronMasks>,
    settings: MaskingSettings,
    seconds: f64,
}

/// The neuron half of a joint masking run.
struct NeuronMasks {
    /// [layers, intermediate], 1 keep, 0 masked.
    mask: Tensor,
    importance: Tensor,
    /// Neurons kept at each step of the curve.
    kept: Vec<usize>,
    /// The mask of each step, [steps, layers, intermediate].
    steps: Tensor,
}

/// The pruned model checked against the masked one.
struct Checked {
    timing: Vec<TimingRow>,
    pruned_metrics: crate::metrics::Metrics,
    pruned_score: f64,
    max_logit_diff: f64,
}

pub fn run(args: &PruneArgs, global: &GlobalArgs) -> Result<()> {
    validate(args)?;
    check_output_dir(&args.output_dir)?;
    // Refused before anything loads; the session resolves --model again (from the cache).
    if let Some(spec) = &args.model.model {
        let dir = crate::model_source::resolve_model(spec, global.quiet)?;
        ensure_not_input(&args.output_dir, RUN_FILES, "--model", &dir)?;
    }
    let start = Instant::now();
    let s = load(args, global)?;
    let settings = masking_settings(args, &s.model);
    let batches = batches(
        &s.data,
        &args.data,
        args.data.batch_size as usize,
        Some(settings.importance.estimator),
        s.device,
    );
    let masked = mask(args, &s, settings, &batches, global.quiet)?;
    let head_mask = (units_of(args) != Units::Neurons).then_some(&masked.heads.mask);
    let neuron_mask = masked.neurons.as_ref().map(|n| &n.mask);
    let pruned = crate::pruning::prune_units(&s.model, head_mask, neuron_mask)?;
    let checked = check_pruned(args, &s, &masked, &pruned, &batches)?;

    let out_dir = &args.output_dir;
    let staging = Staging::new(out_dir, RUN_FILES)?;
    let dir = staging.dir();
    save_pruned(&pruned, &s.model.dir, &dir.join("pruned_model"))?;
    write_masking_files(dir, &s.model, &masked)?;
    let summary = summarize(args, &s, masked, &pruned, checked, start)?;
    let summary = PruneSummary {
        outputs: Some(fingerprints(
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
        )?),
        ..summary
    };
    write_json(&dir.join("prune.json"), &summary)?;
    crate::report::build(dir, dir, out_dir)?;
    staging.commit()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else if !global.quiet {
        print_result(args, &summary, start);
    }
    Ok(())
}

/// The model and data, checked for what masking needs.
fn load(args: &PruneArgs, global: &GlobalArgs) -> Result<TaskSetup> {
    let mut s = setup(&args.model, &args.data, global)?;
    if !s.data.has_labels() {
        bail!(
            "--split {}: masking needs labels, and this split of {} has none",
            s.split_name,
            s.data_dir.display()
        );
    }
    s.model.vs.freeze();
    if units_of(args) != Units::Neurons {
        validate_heads(
            args,
            &s.model.net.heads_per_layer(),
            s.model.net.num_heads(),
        )?;
    }
    Ok(s)
}

fn masking_settings(args: &PruneArgs, model: &Model) -> MaskingSettings {
    let (layers, heads) = (model.net.num_layers(), model.net.num_heads());
    let total = (layers * heads) as usize;
    MaskingSettings {
        goal: match args.target_heads {
            Some(f) => Goal::KeepHeads((f * total as f64).round() as usize),
            None => Goal::Threshold(args.masking_threshold),
        },
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
    }
}

/// Runs the masking loop: heads alone as before, neurons (alone or with heads) jointly.
fn mask(
    args: &PruneArgs,
    s: &TaskSetup,
    settings: MaskingSettings,
    batches: &[Batch],
    quiet: bool,
) -> Result<Masked> {
    let net = s.model.net.as_ref();
    // The spec holds --metric, checked against the labels when the data was read.
    let metric = s.data.spec.default_metric();
    let units = units_of(args);
    let neuron_keep = neuron_budget(args, &net.neurons_per_layer(), net.intermediate_size())?;
    let total = (net.num_layers() * net.num_heads()) as f64;
    // One tick per importance pass; at most one step per masked-amount of heads, plus the first.
    let max_steps = (total / (total * args.masking_amount).floor().max(1.0)).ceil() as u64 + 1;
    let bar = progress::Steps::new(max_steps, "masking", quiet);
    let start = Instant::now();
    let (heads, neurons) = if units == Units::Heads {
        let r = mask_heads(net, &s.data, batches, metric, settings, Some(&bar))?;
        (r, None)
    } else {
        let neuron_settings = NeuronSettings {
            heads: units == Units::Both,
            keep: neuron_keep,
            uniform: args.uniform_neurons,
        };
        let r = mask_units(
            net,
            &s.data,
            batches,
            metric,
            settings,
            neuron_settings,
            Some(&bar),
        )?;
        let neurons = NeuronMasks {
            mask: r.neuron_mask,
            importance: r.initial_neuron_importance,
            kept: r.neurons_kept,
            steps: r.step_neuron_masks,
        };
        (r.heads, Some(neurons))
    };
    bar.finish();
    Ok(Masked {
        heads,
        neurons,
        settings,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Times the masked model against the pruned one at every --timing-batch-sizes, and scores the
/// pruned model. The first timed batch size is the run's own batches: their timed passes give
/// the masked and pruned logits, so nothing is evaluated twice.
fn check_pruned(
    args: &PruneArgs,
    s: &TaskSetup,
    masked: &Masked,
    pruned: &Model,
    batches: &[Batch],
) -> Result<Checked> {
    let heads_on_device = masked.heads.mask.to_device(s.device);
    let neurons_on_device = masked.neurons.as_ref().map(|n| n.mask.to_device(s.device));
    let run_masks = Masks {
        heads: Some(&heads_on_device),
        neurons: neurons_on_device.as_ref(),
    };
    let mut timing_sizes = args.timing_batch_sizes.clone();
    if timing_sizes.is_empty() {
        timing_sizes.push(args.data.batch_size);
    }
    let estimator = Some(masked.settings.importance.estimator);
    let mut timing = Vec::new();
    let mut logits: Option<(Tensor, Tensor)> = None;
    for &bs in &timing_sizes {
        let own = bs == args.data.batch_size;
        let other = (!own).then(|| batches_of(s, &args.data, bs, estimator));
        let tb = other.as_deref().unwrap_or(batches);
        // Before: the masked model at its full shapes (what masking alone gives); after: the
        // pruned model. Both without gradient, after a warm-up, in alternation.
        let (before, after, masked_logits, pruned_logits) = time_both(
            s.model.net.as_ref(),
            run_masks,
            pruned.net.as_ref(),
            tb,
            args.timing_runs,
        )?;
        logits.get_or_insert((masked_logits, pruned_logits));
        timing.push(TimingRow::of(bs, s.data.len(), &before, &after));
    }
    let (masked_logits, pruned_logits) = logits.context("no timing pass ran")?;
    let pruned_metrics = score(&s.data, &pruned_logits);
    let pruned_score = pruned_metrics[s.data.spec.default_metric()];
    let max_logit_diff = (&pruned_logits - &masked_logits)
        .abs()
        .max()
        .double_value(&[]);
    Ok(Checked {
        timing,
        pruned_metrics,
        pruned_score,
        max_logit_diff,
    })
}

fn batches_of(
    s: &TaskSetup,
    data_args: &super::args::DataArgs,
    batch_size: u64,
    estimator: Option<crate::importance::Estimator>,
) -> Vec<Batch> {
    batches(&s.data, data_args, batch_size as usize, estimator, s.device)
}

/// The masks, importance and curve of the masking run (the files report reads).
fn write_masking_files(dir: &Path, model: &Model, masked: &Masked) -> Result<()> {
    let result = &masked.heads;
    write_npy(&dir.join("head_mask.npy"), &result.mask)?;
    if let Some(n) = &masked.neurons {
        write_npy(&dir.join("neuron_mask.npy"), &n.mask)?;
        write_npy(&dir.join("ffn_importance.npy"), &n.importance)?;
        write_npy(&dir.join("masking_neuron_masks.npy"), &n.steps)?;
    }
    // Every step's mask, in the order of masking_curve.csv's rows.
    write_npy(&dir.join("masking_masks.npy"), &result.step_masks)?;
    write_npy(&dir.join("head_importance.npy"), &result.initial_importance)?;
    write_npy(
        &dir.join("head_ranks.npy"),
        &crate::importance::ranks(&result.initial_importance),
    )?;
    write_curve(&dir.join("masking_curve.csv"), model, masked)
}

fn write_curve(path: &Path, model: &Model, masked: &Masked) -> Result<()> {
    let result = &masked.heads;
    // What the model of each step would weigh once pruned (the x axis of a
    // heads-against-neurons comparison).
    let step_parameters = (0..result.curve.len() as i64)
        .map(|i| {
            let heads = result.step_masks.get(i);
            let neurons = masked.neurons.as_ref().map(|n| n.steps.get(i));
            crate::pruning::parameters_kept(model, Some(&heads), neurons.as_ref())
        })
        .collect::<Result<Vec<i64>>>()?;
    write_csv(
        path,
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
                masked
                    .neurons
                    .as_ref()
                    .and_then(|n| n.kept.get(i))
                    .map(|k| k.to_string())
                    .unwrap_or_default(),
                step_parameters[i].to_string(),
            ]
        }),
    )
}

/// prune.json without its "outputs" (the fingerprints of the files written beside it).
fn summarize(
    args: &PruneArgs,
    s: &TaskSetup,
    masked: Masked,
    pruned: &Model,
    checked: Checked,
    start: Instant,
) -> Result<PruneSummary> {
    let (model, net) = (&s.model, s.model.net.as_ref());
    let total = (net.num_layers() * net.num_heads()) as u64;
    let heads_per_layer = pruned.net.heads_per_layer();
    let kept: i64 = heads_per_layer.iter().sum();
    let neurons_per_layer = pruned.net.neurons_per_layer();
    let neurons_total = net.num_layers() * net.intermediate_size();
    let neurons_kept: i64 = neurons_per_layer.iter().sum();
    Ok(PruneSummary {
        task: s.data.spec.name().to_string(),
        split: s.split_name.clone(),
        model: model.dir.display().to_string(),
        data_dir: s.data_dir.display().to_string(),
        source: s.source.clone(),
        labels: s.data.spec.labels.clone(),
        examples: s.data.len(),
        metric: s.data.spec.default_metric().to_string(),
        original_score: masked.heads.original_score,
        masked_score: masked.heads.final_score,
        pruned_score: checked.pruned_score,
        pruned_metrics: checked.pruned_metrics,
        max_abs_logit_diff_pruned_vs_masked: checked.max_logit_diff,
        threshold: Some(args.masking_threshold),
        target_heads: args.target_heads,
        target_neurons: args.target_neurons,
        units: Some(units_of(args)),
        stop: Some(masked.heads.stop),
        heads_total: Some(total),
        heads_kept: kept as u64,
        fraction_kept: kept as f64 / total as f64,
        layers_without_heads: (0..heads_per_layer.len())
            .filter(|&l| heads_per_layer[l] == 0)
            .collect(),
        heads_kept_per_layer: heads_per_layer,
        kv_heads: net.num_kv_heads() as u64,
        head_mask: Vec::<Vec<f32>>::try_from(&masked.heads.mask)?,
        pruned_heads: pruned.config.pruned_heads()?,
        parameters_before: model.num_parameters() as u64,
        parameters_after: pruned.num_parameters() as u64,
        intermediate: net.intermediate_size(),
        neurons_total,
        neurons_kept,
        neuron_fraction_kept: neurons_kept as f64 / neurons_total.max(1) as f64,
        neurons_kept_per_layer: neurons_per_layer,
        pruned_neurons: pruned.config.pruned_neurons()?,
        timing: checked.timing,
        settings: settings_of(args, &masked.settings, s.device),
        curve: masked.heads.curve,
        masking_seconds: masked.seconds,
        seconds: start.elapsed().as_secs_f64(),
        pruned_model: args.output_dir.join("pruned_model").display().to_string(),
        command: Some(super::args::command_line()),
        outputs: None,
    })
}

fn settings_of(args: &PruneArgs, m: &MaskingSettings, device: tch::Device) -> PruneSettings {
    PruneSettings {
        estimator: Some(m.importance.estimator),
        layer_norm: m.importance.layer_norm,
        global_norm: m.importance.global_norm,
        masking_amount: args.masking_amount,
        min_heads_per_layer: args.min_heads_per_layer,
        reestimate: m.reestimate,
        order: Some(m.order),
        prune_unit: Some(args.prune_unit),
        uniform_heads: args.uniform_heads,
        uniform_neurons: args.uniform_neurons,
        seed: args.model.seed,
        batch_size: args.data.batch_size,
        max_seq_length: args.data.max_seq_length,
        pad_to_max_length: args.data.pad_to_max_length,
        data_subset: args.data.data_subset,
        timing_runs: args.timing_runs,
        threads: tch::get_num_threads(),
        device: format!("{device:?}"),
    }
}

fn print_result(args: &PruneArgs, summary: &PruneSummary, start: Instant) {
    let s = summary;
    if !s.layers_without_heads.is_empty() {
        eprintln!(
            "note: layers {:?} lost every head; transformers 4.57 cannot run such a layer (use --min-heads-per-layer 1 for models it must load)",
            s.layers_without_heads
        );
    }
    println!("Final head mask (1 kept, 0 pruned; layers down, heads across)");
    let mask = Tensor::from_slice2(&s.head_mask);
    print!("{}", head_table(&mask.to_kind(Kind::Float), 0));
    if s.prunes_neurons() {
        println!(
            "feed-forward neurons kept per layer: {:?} ({} of {}, {:.0}%)",
            s.neurons_kept_per_layer,
            s.neurons_kept,
            s.neurons_total,
            100.0 * s.neuron_fraction_kept
        );
    }
    println!(
        "{}: kept {} of {} heads ({:.0}%); {} {:.4} -> masked {:.4}, pruned {:.4}; parameters {} -> {}",
        s.task,
        s.heads_kept,
        s.heads_total.unwrap_or_default(),
        100.0 * s.fraction_kept,
        s.metric,
        s.original_score,
        s.masked_score,
        s.pruned_score,
        s.parameters_before,
        s.parameters_after,
    );
    for t in &s.timing {
        let range = |r: Option<[f64; 2]>| {
            let [lo, hi] = r.unwrap_or([f64::NAN; 2]);
            format!("{lo:.1}-{hi:.1}")
        };
        let verdict = t.verdict.map(|v| v.describe(t.speedup)).unwrap_or_default();
        println!(
            "batch {}, {} timed passes each: masked {:.1} examples/s (range {}), pruned {:.1} (range {}): {verdict}",
            t.batch_size,
            args.timing_runs,
            t.examples_per_second_before,
            range(t.examples_per_second_before_range),
            t.examples_per_second_after,
            range(t.examples_per_second_after_range),
        );
    }
    println!(
        "wrote {}/pruned_model, head_mask.npy, masking_curve.csv, prune.json ({:.0} s)",
        args.output_dir.display(),
        start.elapsed().as_secs_f64()
    );
}
