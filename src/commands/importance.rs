//! `bertology importance`: head importance and attention entropy in one pass over the data.
use super::args::{GlobalArgs, ImportanceArgs, ImportanceOptions};
use super::common::{batches, read_head_mask, read_neuron_mask, TaskSetup};
use super::setup::setup;
use crate::eval::score;
use crate::importance::{compute_masked, ranks, HeadStats, Settings};
use crate::metrics::Metrics;
use crate::model::Masks;
use crate::output::{
    check_output_dir, ensure_not_input, fingerprints, head_table, write_csv, write_json, write_npy,
    Staging, RUN_FILES,
};
use crate::progress;
use crate::run_files::importance::{ImportanceSettings, ImportanceSummary, Quartiles};
use anyhow::{bail, Result};
use std::path::Path;
use std::time::Instant;
use tch::{Kind, Tensor};

impl ImportanceOptions {
    pub fn settings(&self, entropy: bool) -> Settings {
        Settings {
            estimator: self.estimator,
            layer_norm: !self.no_layer_norm,
            global_norm: !self.no_global_norm,
            entropy,
        }
    }
}

pub fn run(args: &ImportanceArgs, global: &GlobalArgs) -> Result<()> {
    check_output_dir(&args.output_dir)?;
    if let Some(m) = &args.head_mask {
        ensure_not_input(&args.output_dir, RUN_FILES, "--head-mask", m)?;
    }
    if let Some(m) = &args.neuron_mask {
        ensure_not_input(&args.output_dir, RUN_FILES, "--neuron-mask", m)?;
    }
    let mut s = setup(&args.model, &args.data, global)?;
    if !s.data.has_labels() {
        bail!(
            "--split {}: head importance needs labels, and this split of {} has none",
            s.split_name,
            s.data_dir.display()
        );
    }
    let masks = read_masks(args, &s)?;
    s.model.vs.freeze();
    let settings = args.importance.settings(!args.no_entropy);
    let start = Instant::now();
    let stats = measure(args, &s, &masks, settings, global.quiet)?;
    let seconds = start.elapsed().as_secs_f64();
    let metrics = score(&s.data, &stats.logits);
    crate::finite::ensure_finite(&stats.importance, "head importance", || {
        "after the last batch".into()
    })?;

    let out_dir = &args.output_dir;
    let staging = Staging::new(out_dir, RUN_FILES)?;
    let dir = staging.dir();
    let head_ranks = ranks(&stats.importance);
    write_arrays(dir, &s, &stats, &head_ranks, settings)?;
    write_table(dir, &s, &stats, &head_ranks, args.no_entropy)?;
    let summary = ImportanceSummary {
        outputs: Some(fingerprints(
            dir,
            &[
                "head_importance.npy",
                "attn_entropy.npy",
                "head_ranks.npy",
                "group_importance.npy",
                "importance.csv",
                "ffn_importance.npy",
            ],
        )?),
        ..summarize(args, &s, &stats, metrics, settings, seconds)?
    };
    write_json(&dir.join("importance.json"), &summary)?;
    crate::report::build(dir, dir, out_dir)?;
    staging.commit()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else if !global.quiet {
        print_result(args, &summary, &stats, settings);
    }
    Ok(())
}

/// --head-mask and --neuron-mask, checked against the model's shape.
fn read_masks(args: &ImportanceArgs, s: &TaskSetup) -> Result<(Option<Tensor>, Option<Tensor>)> {
    let net = s.model.net.as_ref();
    let (layers, heads) = (net.num_layers(), net.num_heads());
    let heads = args
        .head_mask
        .as_deref()
        .map(|p| read_head_mask(p, layers, heads))
        .transpose()?;
    let neurons = args
        .neuron_mask
        .as_deref()
        .map(|p| read_neuron_mask(p, layers, net.intermediate_size()))
        .transpose()?;
    Ok((heads, neurons))
}

/// Whether neuron importance is measured: asked for, or under a --neuron-mask.
fn with_neurons(args: &ImportanceArgs) -> bool {
    args.neurons || args.neuron_mask.is_some()
}

/// One pass over the data under the masks: importance, entropy, logits.
fn measure(
    args: &ImportanceArgs,
    s: &TaskSetup,
    masks: &(Option<Tensor>, Option<Tensor>),
    settings: Settings,
    quiet: bool,
) -> Result<HeadStats> {
    let batches = batches(
        &s.data,
        &args.data,
        args.data.batch_size as usize,
        Some(settings.estimator),
        s.device,
    );
    let bar = progress::bar(s.data.len() as u64, "importance", quiet);
    let masks = Masks {
        heads: masks.0.as_ref(),
        neurons: masks.1.as_ref(),
    };
    let stats = compute_masked(
        s.model.net.as_ref(),
        &batches,
        masks,
        with_neurons(args),
        settings,
        Some(&bar),
    )?;
    bar.finish_and_clear();
    Ok(stats)
}

fn write_arrays(
    dir: &Path,
    s: &TaskSetup,
    stats: &HeadStats,
    head_ranks: &Tensor,
    settings: Settings,
) -> Result<()> {
    write_npy(&dir.join("head_importance.npy"), &stats.importance)?;
    // Without entropy there is no entropy file (zeros would read as a result).
    if settings.entropy {
        write_npy(&dir.join("attn_entropy.npy"), &stats.entropy)?;
    }
    write_npy(&dir.join("head_ranks.npy"), head_ranks)?;
    if let Some(n) = &stats.neuron_importance {
        crate::finite::ensure_finite(n, "neuron importance", || "after the last batch".into())?;
        write_npy(&dir.join("ffn_importance.npy"), n)?;
    }
    // Grouped-query attention: a key/value group's importance is the sum over its query heads
    // (what masking a whole group with --prune-unit group ranks by).
    let net = s.model.net.as_ref();
    let (layers, heads, kv_heads) = (net.num_layers(), net.num_heads(), net.num_kv_heads());
    if kv_heads < heads {
        let groups = stats
            .importance
            .view([layers, kv_heads, heads / kv_heads.max(1)])
            .sum_dim_intlist(-1, false, Kind::Float);
        write_npy(&dir.join("group_importance.npy"), &groups)?;
    }
    Ok(())
}

/// importance.csv: one row per head.
fn write_table(
    dir: &Path,
    s: &TaskSetup,
    stats: &HeadStats,
    head_ranks: &Tensor,
    no_entropy: bool,
) -> Result<()> {
    let (heads, kv_heads) = (s.model.net.num_heads(), s.model.net.num_kv_heads());
    let group_size = heads / kv_heads.max(1);
    let flat = |t: &Tensor| -> Vec<f64> {
        Vec::try_from(t.to_kind(Kind::Double).flatten(0, -1)).unwrap_or_default()
    };
    let (imp, raw, ent) = (
        flat(&stats.importance),
        flat(&stats.raw_importance),
        flat(&stats.entropy),
    );
    let rk: Vec<i64> = Vec::try_from(head_ranks.flatten(0, -1))?;
    // Under grouped-query attention a kv_group column follows head (absent otherwise, so the
    // file of every other model keeps its columns).
    let grouped = kv_heads < heads;
    let header: Vec<&str> = ["layer", "head", "kv_group", "importance"]
        .into_iter()
        .filter(|&c| grouped || c != "kv_group")
        .chain(["raw_importance", "entropy", "rank"])
        .collect();
    write_csv(
        &dir.join("importance.csv"),
        &header,
        (0..imp.len()).map(|i| {
            let (layer, head) = (i as i64 / heads, i as i64 % heads);
            let mut row = vec![layer.to_string(), head.to_string()];
            if grouped {
                row.push((head / group_size).to_string());
            }
            row.extend([
                imp[i].to_string(),
                raw[i].to_string(),
                if no_entropy {
                    String::new()
                } else {
                    ent[i].to_string()
                },
                rk[i].to_string(),
            ]);
            row
        }),
    )
}

/// importance.json without its "outputs" (the fingerprints of the files beside it).
fn summarize(
    args: &ImportanceArgs,
    s: &TaskSetup,
    stats: &HeadStats,
    metrics: Metrics,
    settings: Settings,
    seconds: f64,
) -> Result<ImportanceSummary> {
    let net = s.model.net.as_ref();
    let path = |p: &Option<std::path::PathBuf>| p.as_ref().map(|p| p.display().to_string());
    // Per layer: how the importance spreads over its neurons (normalised values).
    let spread = match &stats.neuron_importance {
        Some(n) => Some(
            Vec::<Vec<f32>>::try_from(n)?
                .iter()
                .map(|r| Quartiles::of(r))
                .collect(),
        ),
        None => None,
    };
    Ok(ImportanceSummary {
        task: s.data.spec.name().to_string(),
        split: s.split_name.clone(),
        model: s.model.dir.display().to_string(),
        data_dir: s.data_dir.display().to_string(),
        source: s.source.clone(),
        labels: s.data.spec.labels.clone(),
        examples: s.data.len(),
        tokens: stats.tokens as u64,
        layers: net.num_layers() as u64,
        heads: net.num_heads() as u64,
        kv_heads: net.num_kv_heads() as u64,
        pruned_heads: s.model.config.pruned_heads()?,
        settings: ImportanceSettings {
            estimator: Some(settings.estimator),
            layer_norm: settings.layer_norm,
            global_norm: settings.global_norm,
            entropy: settings.entropy,
            neurons: with_neurons(args),
            head_mask: path(&args.head_mask),
            neuron_mask: path(&args.neuron_mask),
            batch_size: args.data.batch_size,
            max_seq_length: args.data.max_seq_length,
            pad_to_max_length: args.data.pad_to_max_length,
            data_subset: args.data.data_subset,
            seed: args.model.seed,
        },
        score: metrics.get(s.data.spec.default_metric()).copied(),
        metrics,
        metric: s.data.spec.default_metric().to_string(),
        device: format!("{:?}", s.device),
        seconds,
        command: Some(super::args::command_line()),
        outputs: None,
        intermediate: net.intermediate_size(),
        neurons_per_layer: net.neurons_per_layer(),
        neuron_importance_per_layer: spread,
    })
}

fn print_result(
    args: &ImportanceArgs,
    summary: &ImportanceSummary,
    stats: &HeadStats,
    settings: Settings,
) {
    println!("Head importance (normalised; layers down, heads across)");
    print!("{}", head_table(&stats.importance, 3));
    if settings.entropy {
        println!("Attention entropy (nats per token)");
        print!("{}", head_table(&stats.entropy, 3));
    }
    let m: Vec<String> = summary
        .metrics
        .iter()
        .map(|(k, v)| format!("{k} {v:.4}"))
        .collect();
    println!(
        "{} {} examples, {} tokens, {:.1} s; unmasked {}",
        summary.task,
        summary.examples,
        stats.tokens,
        summary.seconds,
        m.join(", ")
    );
    if let Some(spread) = &summary.neuron_importance_per_layer {
        println!("Feed-forward neuron importance per layer (normalised: min, median, max)");
        for (l, s) in spread.iter().enumerate() {
            println!("layer {l}: {:.3} {:.3} {:.3}", s.min, s.median, s.max);
        }
    }
    println!(
        "wrote {}/head_importance.npy, {}head_ranks.npy, {}importance.csv, importance.json, report.md and pictures",
        args.output_dir.display(),
        if settings.entropy { "attn_entropy.npy, " } else { "" },
        if with_neurons(args) { "ffn_importance.npy, " } else { "" }
    );
}
