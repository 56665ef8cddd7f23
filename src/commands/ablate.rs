//! `bertology ablate`: the score of the model with each head masked alone (Michel et al.'s
//! Table 1: how many single heads hurt, how many help), and with each layer reduced to one head
//! (Table 2: is one head per layer enough?), in one process over the same batches.
use super::args::{AblateArgs, GlobalArgs};
use super::common::padding;
use super::setup::setup;
use crate::eval::{predict, score};
use crate::output::{check_output_dir, write_csv, write_json, write_npy, Staging, ABLATION_FILES};
use crate::progress;
use crate::run_files::ablation::{AblationSummary, BestHead};
use anyhow::{bail, Result};
use std::time::Instant;
use tch::{Kind, Tensor};

pub fn run(args: &AblateArgs, global: &GlobalArgs) -> Result<()> {
    check_output_dir(&args.output_dir)?;
    let s = setup(&args.model, &args.data, global)?;
    if !s.data.has_labels() {
        bail!(
            "--split {}: ablation needs labels, and this split of {} has none",
            s.split_name,
            s.data_dir.display()
        );
    }
    let net = s.model.net.as_ref();
    let (layers, heads) = (net.num_layers(), net.num_heads());
    let metric = s.data.spec.default_metric().to_string();
    let batches = s
        .data
        .batches(args.data.batch_size as usize, padding(&args.data), s.device);
    let kept = net.kept_heads();
    let present = |l: i64, h: i64| kept[l as usize].contains(&h);
    let evaluate = |mask: Option<&Tensor>| -> Result<f64> {
        let logits = tch::no_grad(|| predict(net, &batches, mask, None))?;
        score(&s.data, &logits)
            .get(&metric)
            .copied()
            .ok_or_else(|| anyhow::anyhow!("metric {metric} not computed"))
    };
    let start = Instant::now();
    let heads_present: i64 = kept.iter().map(|k| k.len() as i64).sum();
    let passes = 1 + heads_present + if args.single_head { heads_present } else { 0 };
    let bar = progress::bar(passes as u64, "ablating", global.quiet);
    let base = evaluate(None)?;
    bar.inc(1);
    let ones = || Tensor::ones([layers, heads], (Kind::Float, s.device));
    // Score with head (l, h) masked; NaN for heads the model no longer has.
    let mut without = vec![vec![f64::NAN; heads as usize]; layers as usize];
    for l in 0..layers {
        for h in (0..heads).filter(|&h| present(l, h)) {
            let mask = ones();
            let _ = mask.get(l).get(h).fill_(0.0);
            without[l as usize][h as usize] = evaluate(Some(&mask))?;
            bar.inc(1);
        }
    }
    // Score with layer l reduced to head h alone (the rest of the model intact).
    let mut alone = vec![vec![f64::NAN; heads as usize]; layers as usize];
    if args.single_head {
        for l in 0..layers {
            for h in (0..heads).filter(|&h| present(l, h)) {
                let mask = ones();
                let mut row = mask.get(l);
                let _ = row.fill_(0.0);
                let _ = row.get(h).fill_(1.0);
                alone[l as usize][h as usize] = evaluate(Some(&mask))?;
                bar.inc(1);
            }
        }
    }
    bar.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    // Higher scores are better for every metric the tool reports (1 / loss for language
    // models), so a drop is base − score.
    let drop = |v: &Vec<Vec<f64>>| -> Vec<Vec<f64>> {
        v.iter()
            .map(|r| r.iter().map(|x| base - x).collect())
            .collect()
    };
    // A change counts when it exceeds this share of the unmasked score.
    let tolerance = args.tolerance * base.abs();
    let count = |pred: &dyn Fn(f64) -> bool| {
        without
            .iter()
            .flatten()
            .filter(|x| x.is_finite() && pred(base - **x))
            .count()
    };
    let hurt = count(&|d| d > tolerance);
    let helped = count(&|d| d < -tolerance);
    let best_alone: Vec<Option<(i64, f64)>> = alone
        .iter()
        .map(|row| {
            row.iter()
                .enumerate()
                .filter(|(_, v)| v.is_finite())
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(h, v)| (h as i64, *v))
        })
        .collect();
    let staging = Staging::new(&args.output_dir, ABLATION_FILES)?;
    let dir = staging.dir();
    let matrix = |v: &Vec<Vec<f64>>| Tensor::from_slice(&v.concat()).view([layers, heads]);
    write_npy(&dir.join("ablation.npy"), &matrix(&drop(&without)))?;
    if args.single_head {
        write_npy(&dir.join("single_head.npy"), &matrix(&alone))?;
    }
    write_csv(
        &dir.join("ablation.csv"),
        &["layer", "head", "score_without", "drop", "score_alone"],
        (0..layers).flat_map(|l| {
            let (without, alone) = (&without, &alone);
            (0..heads).map(move |h| {
                let (w, a) = (
                    without[l as usize][h as usize],
                    alone[l as usize][h as usize],
                );
                let text = |v: f64| {
                    if v.is_finite() {
                        v.to_string()
                    } else {
                        String::new()
                    }
                };
                vec![
                    l.to_string(),
                    h.to_string(),
                    text(w),
                    text(base - w),
                    text(a),
                ]
            })
        }),
    )?;
    // Perplexity reads better than 1 / loss: exp(loss) = exp(1 / score).
    let ppl = |v: f64| (1.0 / v).exp();
    let lm = s.data.spec.is_language_model();
    let summary = AblationSummary {
        task: s.data.spec.name().to_string(),
        split: s.split_name.clone(),
        model: s.model.dir.display().to_string(),
        data_dir: s.data_dir.display().to_string(),
        source: s.source.clone(),
        examples: s.data.len(),
        tokens: s.data.tokens(),
        metric: metric.clone(),
        layers,
        heads,
        kv_heads: net.num_kv_heads(),
        score: base,
        tolerance: args.tolerance,
        heads_that_hurt_when_masked: hurt,
        heads_that_help_when_masked: helped,
        heads_ablated: heads_present,
        best_single_head_per_layer: best_alone
            .iter()
            .map(|b| b.map(|(head, score)| BestHead { head, score }))
            .collect(),
        seconds,
        command: super::args::command_line(),
        perplexity: lm.then(|| ppl(base)),
        // Null for heads the model no longer has.
        perplexity_without: lm.then(|| {
            without
                .iter()
                .map(|r| {
                    r.iter()
                        .map(|&v| Some(ppl(v)).filter(|p| p.is_finite()))
                        .collect()
                })
                .collect()
        }),
    };
    write_json(&dir.join("ablation.json"), &summary)?;
    // Language models: the change of perplexity, what people read; else the score's drop.
    let (title, shown, legend) = if lm {
        let rise: Vec<Vec<f64>> = without
            .iter()
            .map(|r| r.iter().map(|&v| ppl(v) - ppl(base)).collect())
            .collect();
        (
            format!(
                "Perplexity change when one head is masked (unmasked {:.2})",
                ppl(base)
            ),
            rise,
            "Δ perplexity",
        )
    } else {
        (
            format!("Score drop when one head is masked ({metric})"),
            drop(&without),
            "drop",
        )
    };
    crate::report::plots::heatmap(
        &dir.join("ablation"),
        &title,
        &shown,
        None,
        None,
        legend,
        grouping(heads, net.num_kv_heads()),
    )?;
    staging.commit()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else if !global.quiet {
        println!(
            "{} {}: {metric} {base:.4}; masking one head hurts for {hurt} and helps for {helped} of {heads_present} heads (by more than {} of the score); {:.1} s",
            s.data.spec.name(),
            s.split_name,
            args.tolerance,
            seconds
        );
        println!(
            "wrote {}/ablation.npy, ablation.csv, ablation.json and ablation.png",
            args.output_dir.display()
        );
    }
    Ok(())
}

/// Query heads per key/value group, for the picture's group lines.
fn grouping(heads: i64, kv_heads: i64) -> usize {
    if kv_heads > 0 && heads % kv_heads == 0 {
        (heads / kv_heads) as usize
    } else {
        1
    }
}
