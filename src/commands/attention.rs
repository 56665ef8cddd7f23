//! `bertology attention`: what every head looks at over a split (statistics, heatmaps, a map of
//! the heads, report.md), or one example's attention as a self-contained HTML page.
use super::args::GlobalArgs;
use super::input::{load, Input, InputArgs};
use crate::attention::stats::HeadStatistics;
use crate::attention::viewer::{render, ViewerData};
use crate::attention::{analyse, map::classical_mds, stats, token_classes, Analysis};
use crate::importance::ranks;
use crate::model::ForwardOptions;
use crate::output::write_atomically;
use crate::output::{write_csv, write_json, Staging, ATTENTION_FILES, VIEWER_FILES};
use crate::progress;
use crate::report::{attention as report, read_matrix};
use crate::run_files::attention::{AttentionImportance, AttentionSettings, AttentionSummary};
use anyhow::{anyhow, bail, Result};
use clap::Args;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{Kind, Tensor};

#[derive(Args, Debug)]
pub struct AttentionArgs {
    #[command(flatten)]
    pub input: InputArgs,
    /// An importance or prune run folder: its head_importance.npy (and head_ranks.npy) are
    /// joined to the statistics, the map and the viewer.
    #[arg(long, value_name = "RUN_DIR")]
    pub importance: Option<PathBuf>,
    /// Skip the map of heads (pairwise distances between all heads: the costliest part).
    #[arg(long, conflicts_with = "map_queries")]
    pub no_map: bool,
    /// Query positions per example, spread evenly, on which heads are compared for the map
    /// (0: every token; the cost grows with heads² × this × tokens).
    #[arg(long, default_value_t = 16, value_name = "N")]
    pub map_queries: usize,
    /// Folder for the statistics, pictures and report.md, or for attention.html (with --text
    /// or --example).
    #[arg(long, default_value = "runs/attention")]
    pub output_dir: PathBuf,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Importance of every head and its rank (0 = most important), from a run folder.
pub struct Importance {
    pub values: Vec<Vec<f64>>,
    pub ranks: Vec<Vec<f64>>,
    pub dir: PathBuf,
}

pub fn read_importance(dir: &Path, layers: i64, heads: i64) -> Result<Importance> {
    if !dir.is_dir() {
        bail!(
            "--importance {}: no such folder (give the output folder of `bertology importance` or `prune`)",
            dir.display()
        );
    }
    let file = dir.join("head_importance.npy");
    if !file.is_file() {
        bail!(
            "--importance {}: no head_importance.npy (give the output folder of `bertology importance` or `prune`)",
            dir.display()
        );
    }
    let values = read_matrix(&file)?;
    if values.len() as i64 != layers || values.iter().any(|r| r.len() as i64 != heads) {
        bail!(
            "--importance {}: head_importance.npy is [{}, {}] but the model has [{layers}, {heads}] heads",
            dir.display(),
            values.len(),
            values.first().map_or(0, Vec::len)
        );
    }
    let flat: Vec<f32> = values.iter().flatten().map(|&v| v as f32).collect();
    let r = ranks(&Tensor::from_slice(&flat).view([layers, heads]));
    let ranks: Vec<Vec<f64>> = Vec::try_from(r.to_kind(Kind::Double))?;
    Ok(Importance {
        values,
        ranks,
        dir: dir.to_path_buf(),
    })
}

pub fn run(args: &AttentionArgs, global: &GlobalArgs) -> Result<()> {
    let viewer = !args.input.text.is_empty() || args.input.example.is_some();
    if viewer && args.input.text.len() > 1 {
        bail!(
            "--text: the viewer shows one example; {} were given",
            args.input.text.len()
        );
    }
    let out = &args.output_dir;
    if !viewer && (out.join("importance.json").is_file() || out.join("prune.json").is_file()) {
        bail!(
            "--output-dir {}: holds an importance or prune run, whose report.md this run would replace: choose another --output-dir",
            out.display()
        );
    }
    let input = load(&args.input, global)?;
    let (layers, heads) = (input.model.net.num_layers(), input.model.net.num_heads());
    let importance = args
        .importance
        .as_deref()
        .map(|d| read_importance(d, layers, heads))
        .transpose()?;
    // Written whole or not at all, and without files of an earlier run to mix with.
    let staging = Staging::new(
        out,
        if viewer {
            VIEWER_FILES
        } else {
            ATTENTION_FILES
        },
    )?;
    if viewer {
        viewer_page(&input, importance.as_ref(), staging, args, global)
    } else {
        statistics(&input, importance.as_ref(), staging, args, global)
    }
}

/// An importance matrix and its ranks, [layer][head].
type Matrices<'a> = (&'a [Vec<f64>], &'a [Vec<f64>]);

/// The importance and ranks matrices of an `--importance` run, as the report and viewer take
/// them.
fn matrices(importance: Option<&Importance>) -> Option<Matrices<'_>> {
    importance.map(|i| (i.values.as_slice(), i.ranks.as_slice()))
}

fn viewer_page(
    input: &Input,
    importance: Option<&Importance>,
    staging: Staging,
    args: &AttentionArgs,
    global: &GlobalArgs,
) -> Result<()> {
    let (dir, out_dir) = (staging.dir().to_path_buf(), args.output_dir.as_path());
    let net = input.model.net.as_ref();
    let per_head = example_attentions(input)?;
    let tokens = input.tokenizer.token_strings(&input.encoded[0].ids);
    let html = render(&ViewerData {
        title: &viewer_title(input),
        tokens: &tokens,
        attentions: &per_head,
        importance: matrices(importance),
        causal: net.is_causal(),
    })?;
    write_atomically(&dir.join("attention.html"), html.as_bytes())?;
    staging.commit()?;
    let path = out_dir.join("attention.html");
    let summary = json!({
        "model": input.model.dir.display().to_string(),
        "source": input.source,
        "example": input.indices[0],
        "tokens": tokens,
        "importance": importance.map(|i| i.dir.display().to_string()),
        "file": path.display().to_string(),
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else if !global.quiet {
        println!(
            "wrote {} ({} tokens, {} layers x {} heads)",
            path.display(),
            tokens.len(),
            net.num_layers(),
            net.num_heads()
        );
    }
    Ok(())
}

/// The first input's attention weights, [layer][head] (None for a pruned head), each the
/// flattened [query, key] matrix.
fn example_attentions(input: &Input) -> Result<Vec<Vec<Option<Vec<f32>>>>> {
    let net = input.model.net.as_ref();
    crate::importance::ensure_some_head(net, "attention")?;
    let batches = input.batches(1);
    let out = tch::no_grad(|| {
        net.forward(
            &batches[0].inputs(),
            None,
            ForwardOptions {
                output_attentions: true,
                ..Default::default()
            },
        )
    })?;
    out.check_finite(0, &input.indices)?;
    let attentions = out
        .attentions
        .ok_or_else(|| anyhow!("the model returned no attentions"))?;
    let kept = net.kept_heads();
    let mut per_head: Vec<Vec<Option<Vec<f32>>>> = Vec::new();
    for (l, a) in attentions.iter().enumerate() {
        let mut row = vec![None; net.num_heads() as usize];
        for (i, &h) in kept[l].iter().enumerate() {
            let w: Vec<f32> = Vec::try_from(
                a.get(0)
                    .get(i as i64)
                    .to_kind(Kind::Float)
                    .to_device(tch::Device::Cpu)
                    .flatten(0, -1),
            )?;
            row[h as usize] = Some(w);
        }
        per_head.push(row);
    }
    Ok(per_head)
}

/// The viewer's title: the model's folder name and the example's text(s).
fn viewer_title(input: &Input) -> String {
    let (a, b) = &input.texts[0];
    let mut title = format!(
        "Attention of {}: {a}",
        input
            .model
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default()
    );
    if let Some(b) = b {
        title += &format!(" / {b}");
    }
    title
}

fn statistics(
    input: &Input,
    importance: Option<&Importance>,
    staging: Staging,
    args: &AttentionArgs,
    global: &GlobalArgs,
) -> Result<()> {
    let (dir, out_dir) = (staging.dir().to_path_buf(), args.output_dir.as_path());
    let net = input.model.net.as_ref();
    let start = Instant::now();
    let analysis = analyse_input(input, args, global)?;
    let seconds = start.elapsed().as_secs_f64();
    let s = &analysis.stats;
    write_head_table(&dir, input, s, importance)?;
    let map_coords = match &analysis.distances {
        Some(d) => Some(write_map(&dir, out_dir, input, d)?),
        None => None,
    };
    let uniform_entropy = uniform_entropy(input, net.is_causal());
    let special = report::SpecialTokens {
        start: input.tokenizer.start_token()?,
        separators: input
            .tokenizer
            .token_strings(&input.tokenizer.separator_ids()?),
    };
    let findings = report::findings(
        s,
        matrices(importance),
        uniform_entropy,
        &net.kept_heads(),
        &special,
    );
    let summary = summary(
        input,
        &analysis,
        importance,
        uniform_entropy,
        findings,
        args,
        seconds,
    );
    write_json(&dir.join("attention.json"), &summary)?;
    let pictures = report::pictures(
        &dir,
        s,
        matrices(importance),
        map_coords.as_deref(),
        &special,
    )?;
    report::write_report(&dir, out_dir, &summary, &pictures)?;
    staging.commit()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else if !global.quiet {
        for line in report::finding_lines(&summary.findings) {
            println!("{line}");
        }
        println!(
            "{} examples, {} tokens, {:.1} s; wrote {}/attention_heads.csv, attention.json, report.md and pictures",
            input.len(),
            s.tokens,
            seconds,
            out_dir.display()
        );
    }
    Ok(())
}

/// One pass over the inputs: every head's statistics and, unless --no-map, the distances
/// between heads.
fn analyse_input(input: &Input, args: &AttentionArgs, global: &GlobalArgs) -> Result<Analysis> {
    let net = input.model.net.as_ref();
    let classes = token_classes(&input.tokenizer, &input.encoded)?;
    let batches = input.batches(args.input.batch_size as usize);
    let bar = progress::bar(input.len() as u64, "attention", global.quiet);
    // A decoder's query cannot see the next token: that statistic is reported as not measured.
    let causal = net.is_causal();
    let analysis = analyse(
        net,
        &batches,
        &classes,
        causal,
        (!args.no_map).then_some(args.map_queries),
        Some(&bar),
    )?;
    bar.finish_and_clear();
    Ok(analysis)
}

/// A number in the CSV files: six decimals, empty when not measured.
fn fmt(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.6}")
    } else {
        String::new()
    }
}

/// attention_heads.csv: a row per present head, its statistics and (--importance) its
/// importance and rank.
fn write_head_table(
    dir: &Path,
    input: &Input,
    s: &HeadStatistics,
    importance: Option<&Importance>,
) -> Result<()> {
    let net = input.model.net.as_ref();
    let (layers, heads) = (net.num_layers(), net.num_heads());
    let mut header: Vec<&str> = vec!["layer", "head"];
    header.extend(stats::NAMES);
    if importance.is_some() {
        header.extend(["importance", "importance_rank"]);
    }
    let kept = net.kept_heads();
    let present = |l: usize, h: usize| kept[l].contains(&(h as i64));
    let rows = (0..layers as usize)
        .flat_map(|l| (0..heads as usize).map(move |h| (l, h)))
        .filter(|&(l, h)| present(l, h))
        .map(|(l, h)| {
            let mut row = vec![l.to_string(), h.to_string()];
            row.extend(s.values.iter().map(|m| fmt(m[l][h])));
            if let Some(i) = importance {
                row.push(fmt(i.values[l][h]));
                row.push((i.ranks[l][h] as i64).to_string());
            }
            row
        });
    write_csv(&dir.join("attention_heads.csv"), &header, rows)
}

/// head_distances.npy and head_map.csv (the heads placed in the plane by their distances);
/// returns the map's coordinates.
fn write_map(dir: &Path, out_dir: &Path, input: &Input, d: &[Vec<f64>]) -> Result<Vec<[f64; 2]>> {
    let net = input.model.net.as_ref();
    let heads = net.num_heads();
    let n = d.len() as i64;
    let flat: Vec<f64> = d.iter().flatten().copied().collect();
    // NaN marks a pruned head's row and column (documented); between present heads every
    // distance must be finite.
    let kept = net.kept_heads();
    let present: Vec<i64> = kept
        .iter()
        .enumerate()
        .flat_map(|(l, hs)| hs.iter().map(move |&h| l as i64 * heads + h))
        .collect();
    let all = Tensor::from_slice(&flat).view([n, n]);
    let idx = Tensor::from_slice(&present);
    crate::finite::ensure_finite(
        &all.index_select(0, &idx).index_select(1, &idx),
        "distances between present heads",
        || format!("for {}", out_dir.join("head_distances.npy").display()),
    )?;
    crate::output::write_npy_with_absent_heads(&dir.join("head_distances.npy"), &all)?;
    let xy = classical_mds(d);
    write_csv(
        &dir.join("head_map.csv"),
        &["layer", "head", "x", "y"],
        xy.iter()
            .enumerate()
            .filter(|(_, p)| p[0].is_finite())
            .map(|(i, p)| {
                vec![
                    (i as i64 / heads).to_string(),
                    (i as i64 % heads).to_string(),
                    fmt(p[0]),
                    fmt(p[1]),
                ]
            }),
    )?;
    Ok(xy)
}

/// What uniform attention would give, averaged over query tokens: ln(n) over an input's n
/// tokens, or for a causal model ln(i + 1) at query i (it sees only i + 1 keys).
fn uniform_entropy(input: &Input, causal: bool) -> f64 {
    let tokens: f64 = input.encoded.iter().map(|e| e.ids.len() as f64).sum();
    input
        .encoded
        .iter()
        .map(|e| {
            let n = e.ids.len();
            if causal {
                (1..=n).map(|k| (k as f64).ln()).sum::<f64>()
            } else {
                n as f64 * (n as f64).ln()
            }
        })
        .sum::<f64>()
        / tokens.max(1.0)
}

/// attention.json.
fn summary(
    input: &Input,
    analysis: &Analysis,
    importance: Option<&Importance>,
    uniform_entropy: f64,
    findings: serde_json::Value,
    args: &AttentionArgs,
    seconds: f64,
) -> AttentionSummary {
    let s = &analysis.stats;
    AttentionSummary {
        model: input.model.dir.display().to_string(),
        source: input.source.clone(),
        examples: input.len(),
        tokens: s.tokens,
        layers: input.model.net.num_layers(),
        heads: input.model.net.num_heads(),
        causal: s.causal,
        next_token: if s.causal {
            "not measured: a causal model cannot attend to the next token"
        } else {
            "measured"
        }
        .into(),
        uniform_entropy,
        statistics: stats::NAMES
            .iter()
            .zip(&s.values)
            .map(|(name, m)| (name.to_string(), nan_to_null(m)))
            .collect(),
        importance: importance.map(|i| AttentionImportance {
            run: i.dir.display().to_string(),
            values: i.values.clone(),
        }),
        findings,
        map: analysis.distances.is_some(),
        settings: AttentionSettings {
            batch_size: args.input.batch_size,
            max_seq_length: args.input.max_seq_length.unwrap_or(128),
            data_subset: args.input.data_subset,
            seed: args.input.model.seed,
            map_queries: args.map_queries,
        },
        device: format!("{:?}", input.device),
        seconds,
        command: super::args::command_line(),
    }
}

/// JSON has no NaN: pruned heads and unmeasured statistics become null.
fn nan_to_null(m: &[Vec<f64>]) -> Vec<Vec<Option<f64>>> {
    m.iter()
        .map(|r| r.iter().map(|v| v.is_finite().then_some(*v)).collect())
        .collect()
}
