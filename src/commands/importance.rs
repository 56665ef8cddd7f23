//! `bertology importance`: head importance and attention entropy in one pass over the data.
use super::args::{GlobalArgs, ImportanceArgs, ImportanceOptions};
use super::common::{batches, read_head_mask, read_neuron_mask, TaskSetup};
use super::setup::setup;
use crate::eval::score;
use crate::importance::{compute_masked, ranks, Settings};
use crate::model::Masks;
use crate::output::{
    check_output_dir, ensure_not_input, fingerprints, head_table, write_csv, write_json, write_npy,
    Staging, RUN_FILES,
};
use crate::progress;
use anyhow::{bail, Result};
use serde_json::json;
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
            "--split {split_name}: head importance needs labels, and this split of {} has none",
            data_dir.display()
        );
    }
    let (layers, heads) = (model.net.num_layers(), model.net.num_heads());
    let mask = args
        .head_mask
        .as_deref()
        .map(|p| read_head_mask(p, layers, heads))
        .transpose()?;
    let neuron_mask = args
        .neuron_mask
        .as_deref()
        .map(|p| read_neuron_mask(p, layers, model.net.intermediate_size()))
        .transpose()?;
    let with_neurons = args.neurons || neuron_mask.is_some();
    let out_dir = &args.output_dir;
    model.vs.freeze();
    let settings = args.importance.settings(!args.no_entropy);
    let start = Instant::now();
    let batches = batches(
        &data,
        &args.data,
        args.data.batch_size as usize,
        Some(settings.estimator),
        device,
    );
    let bar = progress::bar(data.len() as u64, "importance", global.quiet);
    let masks = Masks {
        heads: mask.as_ref(),
        neurons: neuron_mask.as_ref(),
    };
    let stats = compute_masked(
        model.net.as_ref(),
        &batches,
        masks,
        with_neurons,
        settings,
        Some(&bar),
    )?;
    bar.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    let metrics = score(&data, &stats.logits);
    crate::finite::ensure_finite(&stats.importance, "head importance", || {
        "after the last batch".into()
    })?;
    let head_ranks = ranks(&stats.importance);

    let staging = Staging::new(out_dir, RUN_FILES)?;
    let dir = staging.dir();
    write_npy(&dir.join("head_importance.npy"), &stats.importance)?;
    // Without entropy there is no entropy file (zeros would read as a result).
    if settings.entropy {
        write_npy(&dir.join("attn_entropy.npy"), &stats.entropy)?;
    }
    write_npy(&dir.join("head_ranks.npy"), &head_ranks)?;
    if let Some(n) = &stats.neuron_importance {
        crate::finite::ensure_finite(n, "neuron importance", || "after the last batch".into())?;
        write_npy(&dir.join("ffn_importance.npy"), n)?;
    }
    // Grouped-query attention: a key/value group's importance is the sum over its query heads
    // (what masking a whole group with --prune-unit group ranks by).
    let kv_heads = model.net.num_kv_heads();
    let group_size = heads / kv_heads.max(1);
    if kv_heads < heads {
        let groups = stats
            .importance
            .view([layers, kv_heads, group_size])
            .sum_dim_intlist(-1, false, Kind::Float);
        write_npy(&dir.join("group_importance.npy"), &groups)?;
    }
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
                if args.no_entropy {
                    String::new()
                } else {
                    ent[i].to_string()
                },
                rk[i].to_string(),
            ]);
            row
        }),
    )?;
    let summary = json!({
        "task": data.spec.name(),
        "split": split_name,
        "model": model.dir.display().to_string(),
        "data_dir": data_dir.display().to_string(),
        "source": source,
        "labels": data.spec.labels,
        "examples": data.len(),
        "tokens": stats.tokens,
        "layers": layers,
        "heads": heads,
        // Key/value heads per layer: fewer than heads under grouped-query attention, where
        // query head h reads key/value group h / (heads / kv_heads).
        "kv_heads": kv_heads,
        // The model's own pruned heads (transformers' format): the report fades them.
        "pruned_heads": model.config.pruned_heads()?,
        "settings": {
            "estimator": settings.estimator,
            "layer_norm": settings.layer_norm,
            "global_norm": settings.global_norm,
            "entropy": settings.entropy,
            "head_mask": args.head_mask.as_ref().map(|p| p.display().to_string()),
            "batch_size": args.data.batch_size,
            "max_seq_length": args.data.max_seq_length,
            "pad_to_max_length": args.data.pad_to_max_length,
            "data_subset": args.data.data_subset,
            "seed": args.model.seed,
        },
        "metrics": metrics,
        "score": metrics.get(data.spec.default_metric()),
        "metric": data.spec.default_metric(),
        "device": format!("{device:?}"),
        "seconds": seconds,
        "command": super::args::command_line(),
        "outputs": fingerprints(dir, &["head_importance.npy", "attn_entropy.npy", "head_ranks.npy", "group_importance.npy", "importance.csv", "ffn_importance.npy"])?,
    });
    let mut summary = summary;
    summary["intermediate"] = json!(model.net.intermediate_size());
    summary["neurons_per_layer"] = json!(model.net.neurons_per_layer());
    summary["settings"]["neurons"] = json!(with_neurons);
    summary["settings"]["neuron_mask"] =
        json!(args.neuron_mask.as_ref().map(|p| p.display().to_string()));
    if let Some(n) = &stats.neuron_importance {
        // Per layer: how the importance spreads over its neurons (normalised values).
        let rows: Vec<Vec<f32>> = Vec::try_from(n)?;
        let spread: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                let mut v = r.clone();
                v.sort_by(|a, b| a.total_cmp(b));
                let q = |f: f64| v[((v.len() - 1) as f64 * f).round() as usize];
                json!({"min": q(0.0), "q25": q(0.25), "median": q(0.5), "q75": q(0.75), "max": q(1.0)})
            })
            .collect();
        summary["neuron_importance_per_layer"] = json!(spread);
    }
    write_json(&dir.join("importance.json"), &summary)?;
    crate::report::build(dir, dir, out_dir)?;
    staging.commit()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else if !global.quiet {
        println!("Head importance (normalised; layers down, heads across)");
        print!("{}", head_table(&stats.importance, 3));
        if settings.entropy {
            println!("Attention entropy (nats per token)");
            print!("{}", head_table(&stats.entropy, 3));
        }
        let m: Vec<String> = metrics.iter().map(|(k, v)| format!("{k} {v:.4}")).collect();
        println!(
            "{} {} examples, {} tokens, {:.1} s; unmasked {}",
            data.spec.name(),
            data.len(),
            stats.tokens,
            seconds,
            m.join(", ")
        );
        if let Some(spread) = summary["neuron_importance_per_layer"].as_array() {
            println!("Feed-forward neuron importance per layer (normalised: min, median, max)");
            for (l, s) in spread.iter().enumerate() {
                println!(
                    "layer {l}: {:.3} {:.3} {:.3}",
                    s["min"].as_f64().unwrap_or(f64::NAN),
                    s["median"].as_f64().unwrap_or(f64::NAN),
                    s["max"].as_f64().unwrap_or(f64::NAN)
                );
            }
        }
        println!(
            "wrote {}/head_importance.npy, {}head_ranks.npy, {}importance.csv, importance.json, report.md and pictures",
            out_dir.display(),
            if settings.entropy { "attn_entropy.npy, " } else { "" },
            if with_neurons { "ffn_importance.npy, " } else { "" }
        );
    }
    Ok(())
}
