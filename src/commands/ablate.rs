//! `bertology ablate`: the score of the model with each head masked alone (Michel et al.'s
//! Table 1: how many single heads hurt, how many help), and with each layer reduced to one head
//! (Table 2: is one head per layer enough?), in one process over the same batches.
use super::args::{AblateArgs, GlobalArgs};
use super::common::{padding, TaskSetup};
use super::setup::setup;
use crate::eval::{predict, score};
use crate::output::{check_output_dir, write_csv, write_json, write_npy, Staging, ABLATION_FILES};
use crate::progress;
use crate::run_files::ablation::{AblationSummary, BestHead};
use anyhow::{bail, Result};
use std::path::Path;
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
    let scores = ablate(&s, args, global)?;
    let counts = Counts::of(&scores, args.tolerance);
    let staging = Staging::new(&args.output_dir, ABLATION_FILES)?;
    let dir = staging.dir();
    write_tables(dir, &scores, args.single_head)?;
    let summary = summary(&s, args, &scores, &counts);
    write_json(&dir.join("ablation.json"), &summary)?;
    picture(dir, &s, &scores)?;
    staging.commit()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else if !global.quiet {
        let Scores {
            metric,
            base,
            heads_present,
            seconds,
            ..
        } = &scores;
        let Counts { hurt, helped, .. } = counts;
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

/// What an ablation run measured.
struct Scores {
    metric: String,
    layers: i64,
    heads: i64,
    /// The unmasked model's score.
    base: f64,
    /// [layer][head]: the score with that head masked; NaN for heads the model no longer has.
    without: Vec<Vec<f64>>,
    /// [layer][head]: the score with the layer reduced to that head (NaN without --single-head).
    alone: Vec<Vec<f64>>,
    heads_present: i64,
    seconds: f64,
}

impl Scores {
    /// How much masking each head lowers the score. Higher scores are better for every metric
    /// the tool reports (1 / loss for language models), so a drop is base − score.
    fn drop(&self) -> Vec<Vec<f64>> {
        self.without
            .iter()
            .map(|r| r.iter().map(|x| self.base - x).collect())
            .collect()
    }
}

/// Scores the model unmasked, with each present head masked alone and (--single-head) with
/// each layer reduced to each of its heads, all over the same batches.
fn ablate(s: &TaskSetup, args: &AblateArgs, global: &GlobalArgs) -> Result<Scores> {
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
    // Each present head's score with `mask_of(l, h)` (NaN for heads the model no longer has).
    let each_head = |mask_of: &dyn Fn(i64, i64) -> Tensor| -> Result<Vec<Vec<f64>>> {
        let mut scores = vec![vec![f64::NAN; heads as usize]; layers as usize];
        for l in 0..layers {
            for h in (0..heads).filter(|&h| present(l, h)) {
                scores[l as usize][h as usize] = evaluate(Some(&mask_of(l, h)))?;
                bar.inc(1);
            }
        }
        Ok(scores)
    };
    let ones = || Tensor::ones([layers, heads], (Kind::Float, s.device));
    // Score with head (l, h) masked.
    let without = each_head(&|l, h| {
        let mask = ones();
        let _ = mask.get(l).get(h).fill_(0.0);
        mask
    })?;
    // Score with layer l reduced to head h alone (the rest of the model intact).
    let alone = if args.single_head {
        each_head(&|l, h| {
            let mask = ones();
            let mut row = mask.get(l);
            let _ = row.fill_(0.0);
            let _ = row.get(h).fill_(1.0);
            mask
        })?
    } else {
        vec![vec![f64::NAN; heads as usize]; layers as usize]
    };
    bar.finish_and_clear();
    Ok(Scores {
        metric,
        layers,
        heads,
        base,
        without,
        alone,
        heads_present,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// What the summary counts: heads whose masking hurts or helps by more than the tolerance, and
/// the best head of each layer kept alone.
struct Counts {
    hurt: usize,
    helped: usize,
    best_alone: Vec<Option<(i64, f64)>>,
}

impl Counts {
    fn of(scores: &Scores, tolerance: f64) -> Counts {
        let base = scores.base;
        // A change counts when it exceeds this share of the unmasked score.
        let tolerance = tolerance * base.abs();
        let count = |pred: &dyn Fn(f64) -> bool| {
            scores
                .without
                .iter()
                .flatten()
                .filter(|x| x.is_finite() && pred(base - **x))
                .count()
        };
        let best_alone = scores
            .alone
            .iter()
            .map(|row| {
                row.iter()
                    .enumerate()
                    .filter(|(_, v)| v.is_finite())
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .map(|(h, v)| (h as i64, *v))
            })
            .collect();
        Counts {
            hurt: count(&|d| d > tolerance),
            helped: count(&|d| d < -tolerance),
            best_alone,
        }
    }
}

/// ablation.npy (the drops), single_head.npy (--single-head) and ablation.csv.
fn write_tables(dir: &Path, scores: &Scores, single_head: bool) -> Result<()> {
    let Scores {
        layers,
        heads,
        base,
        without,
        alone,
        ..
    } = scores;
    let (layers, heads, base) = (*layers, *heads, *base);
    let matrix = |v: &Vec<Vec<f64>>| Tensor::from_slice(&v.concat()).view([layers, heads]);
    write_npy(&dir.join("ablation.npy"), &matrix(&scores.drop()))?;
    if single_head {
        write_npy(&dir.join("single_head.npy"), &matrix(alone))?;
    }
    write_csv(
        &dir.join("ablation.csv"),
        &["layer", "head", "score_without", "drop", "score_alone"],
        (0..layers).flat_map(|l| {
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
    )
}

/// ablation.json.
fn summary(s: &TaskSetup, args: &AblateArgs, scores: &Scores, counts: &Counts) -> AblationSummary {
    let Scores {
        metric,
        layers,
        heads,
        base,
        without,
        heads_present,
        seconds,
        ..
    } = scores;
    let base = *base;
    // Perplexity reads better than 1 / loss: exp(loss) = exp(1 / score).
    let ppl = |v: f64| (1.0 / v).exp();
    let lm = s.data.spec.is_language_model();
    AblationSummary {
        task: s.data.spec.name().to_string(),
        split: s.split_name.clone(),
        model: s.model.dir.display().to_string(),
        data_dir: s.data_dir.display().to_string(),
        source: s.source.clone(),
        examples: s.data.len(),
        tokens: s.data.tokens(),
        metric: metric.clone(),
        layers: *layers,
        heads: *heads,
        kv_heads: s.model.net.num_kv_heads(),
        score: base,
        tolerance: args.tolerance,
        heads_that_hurt_when_masked: counts.hurt,
        heads_that_help_when_masked: counts.helped,
        heads_ablated: *heads_present,
        best_single_head_per_layer: counts
            .best_alone
            .iter()
            .map(|b| b.map(|(head, score)| BestHead { head, score }))
            .collect(),
        seconds: *seconds,
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
    }
}

/// ablation.png: language models, the change of perplexity (what people read); else the
/// score's drop.
fn picture(dir: &Path, s: &TaskSetup, scores: &Scores) -> Result<()> {
    let Scores {
        metric,
        heads,
        base,
        without,
        ..
    } = scores;
    let base = *base;
    let (title, shown, legend) = if s.data.spec.is_language_model() {
        let ppl = |v: f64| (1.0 / v).exp();
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
            scores.drop(),
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
        grouping(*heads, s.model.net.num_kv_heads()),
    )?;
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
