//! The attention run's report: findings in numbers (what the heads do), a value-labelled
//! heatmap per statistic, the map of heads, and report.md.
use super::plots::{err, grid, render, Grid, FONT};
use crate::attention::stats::{HeadStatistics, NAMES};
use crate::metrics::spearman;
use crate::output::write_atomically;
use crate::run_files::attention::AttentionSummary;
use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// A head "puts most of its weight" on a kind of token when its mean attention there is above
/// this.
pub const MOST: f64 = 0.5;

/// The statistics that are fractions of the attention (the rest: entropy, distance).
const SHARES: [&str; 6] = [
    "first",
    "separator",
    "punctuation",
    "self",
    "previous",
    "next",
];

fn describe(name: &str) -> &'static str {
    match name {
        "first" => "the first token ([CLS] / <s>)",
        "separator" => "separator tokens ([SEP] / </s>)",
        "punctuation" => "punctuation",
        "self" => "the token itself",
        "previous" => "the previous token",
        "next" => "the next token",
        "entropy" => "entropy of the attention (nats)",
        "distance" => "attention distance (tokens)",
        _ => "?",
    }
}

/// The start and separator tokens of the run's inputs, so that the wording names the tokens
/// the model actually saw: GPT-2's first token is a word, and it has no separators.
#[derive(Clone, Debug, Default)]
pub struct SpecialTokens {
    /// The special token every input starts with ([CLS], <s>), if the tokenizer adds one.
    pub start: Option<String>,
    pub separators: Vec<String>,
}

impl SpecialTokens {
    /// What statistic `name` measures, with the actual tokens.
    pub fn describe(&self, name: &str) -> String {
        match name {
            "first" => match &self.start {
                Some(t) => format!("the first token ({t})"),
                None => "the first token (a text token: no start token)".into(),
            },
            "separator" if self.separators.is_empty() => {
                "separator tokens (the tokenizer adds none)".into()
            }
            "separator" => format!("separator tokens ({})", self.separators.join(" / ")),
            _ => describe(name).into(),
        }
    }
}

fn title(name: &str, tokens: &SpecialTokens) -> String {
    match name {
        "entropy" => "Mean attention entropy (nats)".into(),
        "distance" => "Mean attention distance (tokens)".into(),
        // Short forms where the report's wording would not fit over a picture.
        "first" if tokens.start.is_none() => "Mean attention to the first token".into(),
        "separator" if tokens.separators.is_empty() => {
            "Mean attention to separator tokens (none)".into()
        }
        _ => format!("Mean attention to {}", tokens.describe(name)),
    }
}

fn head_name(l: usize, h: usize) -> String {
    format!("{l}-{h}")
}

type Matrix<'a> = &'a [Vec<f64>];

/// Every present head's (layer, head) and value of `m`.
fn entries(m: Matrix, kept: &[Vec<i64>]) -> Vec<(usize, usize, f64)> {
    kept.iter()
        .enumerate()
        .flat_map(|(l, hs)| hs.iter().map(move |&h| (l, h as usize)))
        .map(|(l, h)| (l, h, m[l][h]))
        .filter(|e| e.2.is_finite())
        .collect()
}

fn extreme(e: &[(usize, usize, f64)], max: bool) -> Value {
    let pick = e.iter().copied().reduce(|a, b| {
        if (b.2 > a.2) == max && b.2 != a.2 {
            b
        } else {
            a
        }
    });
    match pick {
        Some((l, h, v)) => json!({ "head": head_name(l, h), "value": v }),
        None => Value::Null,
    }
}

/// What the heads do, in numbers. Heads are named "layer-head".
pub fn findings(
    s: &HeadStatistics,
    importance: Option<(Matrix, Matrix)>,
    uniform_entropy: f64,
    kept: &[Vec<i64>],
    tokens: &SpecialTokens,
) -> Value {
    let heads_total: usize = kept.iter().map(Vec::len).sum();
    let mut most = serde_json::Map::new();
    for name in SHARES {
        let e = entries(s.get(name), kept);
        if e.is_empty() {
            most.insert(name.into(), json!({ "measured": false }));
            continue;
        }
        let mut over: Vec<&(usize, usize, f64)> = e.iter().filter(|x| x.2 > MOST).collect();
        over.sort_by(|a, b| b.2.total_cmp(&a.2));
        let mean = e.iter().map(|x| x.2).sum::<f64>() / e.len() as f64;
        most.insert(
            name.into(),
            json!({
                "heads_over_half": over.len(),
                "heads": over.iter().map(|x| head_name(x.0, x.1)).collect::<Vec<_>>(),
                "top": extreme(&e, true),
                "mean_over_heads": mean,
            }),
        );
    }
    let ent = entries(s.get("entropy"), kept);
    let dist = entries(s.get("distance"), kept);
    let mean =
        |e: &[(usize, usize, f64)]| e.iter().map(|x| x.2).sum::<f64>() / e.len().max(1) as f64;
    // Broad: more than 80 % of the entropy of uniform attention; focused: under 1 nat (about
    // the entropy of attention spread over fewer than three tokens).
    let broad = ent.iter().filter(|x| x.2 > 0.8 * uniform_entropy).count();
    let focused = ent.iter().filter(|x| x.2 < 1.0).count();
    let layers = s.values[0].len();
    let by_layer: serde_json::Map<String, Value> = NAMES
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let per: Vec<Option<f64>> = (0..layers)
                .map(|l| {
                    let v: Vec<f64> = kept[l]
                        .iter()
                        .map(|&h| s.values[i][l][h as usize])
                        .filter(|v| v.is_finite())
                        .collect();
                    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
                })
                .collect();
            (name.to_string(), json!(per))
        })
        .collect();
    let mut out = json!({
        "heads": heads_total,
        "threshold": MOST,
        "start_token": tokens.start,
        "separator_tokens": tokens.separators,
        "describe": NAMES.iter().map(|n| (n.to_string(), json!(tokens.describe(n)))).collect::<serde_json::Map<_, _>>(),
        "most_weight_on": most,
        "entropy": {
            "mean": mean(&ent),
            "uniform": uniform_entropy,
            "lowest": extreme(&ent, false),
            "highest": extreme(&ent, true),
            "broad_heads": broad,
            "focused_heads": focused,
        },
        "distance": {
            "mean": mean(&dist),
            "lowest": extreme(&dist, false),
            "highest": extreme(&dist, true),
        },
        "by_layer": by_layer,
    });
    if let Some((imp, ranks)) = importance {
        let mut rho = serde_json::Map::new();
        for name in NAMES {
            let pairs: Vec<(f64, f64)> = entries(s.get(name), kept)
                .iter()
                .map(|&(l, h, v)| (imp[l][h], v))
                .filter(|p| p.0.is_finite())
                .collect();
            let (a, b): (Vec<f64>, Vec<f64>) = pairs.into_iter().unzip();
            let r = if a.len() > 2 {
                spearman(&a, &b)
            } else {
                f64::NAN
            };
            rho.insert(name.into(), json!(r.is_finite().then_some(r)));
        }
        let mut top: Vec<(usize, usize)> = kept
            .iter()
            .enumerate()
            .flat_map(|(l, hs)| hs.iter().map(move |&h| (l, h as usize)))
            .collect();
        top.sort_by(|a, b| ranks[a.0][a.1].total_cmp(&ranks[b.0][b.1]));
        let top: Vec<Value> = top
            .iter()
            .take(5)
            .map(|&(l, h)| {
                json!({
                    "head": head_name(l, h),
                    "importance": imp[l][h],
                    "rank": ranks[l][h] as i64,
                    "does": behaviour(s, l, h, uniform_entropy, tokens),
                })
            })
            .collect();
        out["importance"] = json!({ "spearman": rho, "most_important": top });
    }
    out
}

/// One phrase for what a head mostly does.
fn behaviour(
    s: &HeadStatistics,
    l: usize,
    h: usize,
    uniform_entropy: f64,
    tokens: &SpecialTokens,
) -> String {
    let best = SHARES
        .iter()
        .map(|n| (n, s.get(n)[l][h]))
        .filter(|x| x.1.is_finite())
        .max_by(|a, b| a.1.total_cmp(&b.1));
    let e = s.get("entropy")[l][h];
    match best {
        Some((n, v)) if v > MOST => format!("{:.0} % on {}", 100.0 * v, tokens.describe(n)),
        _ if e > 0.8 * uniform_entropy => format!("broad (entropy {e:.2} nats)"),
        Some((n, v)) => format!(
            "mixed (most: {:.0} % on {}, entropy {e:.2} nats)",
            100.0 * v,
            tokens.describe(n)
        ),
        None => "pruned".into(),
    }
}

/// The findings as sentences, for stdout and report.md.
pub fn finding_lines(f: &Value) -> Vec<String> {
    let mut lines = Vec::new();
    let heads = f["heads"].as_u64().unwrap_or(0);
    let kind = |name: &str| -> String {
        f["describe"][name]
            .as_str()
            .map_or_else(|| describe(name).to_string(), str::to_string)
    };
    for name in SHARES {
        let m = &f["most_weight_on"][name];
        if m["measured"] == json!(false) {
            lines.push(format!("- {}: not measured (causal model)", kind(name)));
            continue;
        }
        let list: Vec<&str> = m["heads"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).take(8).collect())
            .unwrap_or_default();
        let more = m["heads_over_half"].as_u64().unwrap_or(0) as usize;
        let names = if list.is_empty() {
            String::new()
        } else {
            format!(
                ": {}{}",
                list.join(", "),
                if more > list.len() { ", …" } else { "" }
            )
        };
        lines.push(format!(
            "- {more} of {heads} heads put more than half of their attention on {}{names} (strongest {} with {:.0} %; mean over heads {:.0} %)",
            kind(name),
            m["top"]["head"].as_str().unwrap_or("?"),
            100.0 * m["top"]["value"].as_f64().unwrap_or(f64::NAN),
            100.0 * m["mean_over_heads"].as_f64().unwrap_or(f64::NAN),
        ));
    }
    let e = &f["entropy"];
    lines.push(format!(
        "- Entropy: mean {:.2} nats (uniform attention would give {:.2}); {} heads are broad (> 80 % of uniform), {} focused (< 1 nat); lowest {} ({:.2}), highest {} ({:.2})",
        e["mean"].as_f64().unwrap_or(f64::NAN),
        e["uniform"].as_f64().unwrap_or(f64::NAN),
        e["broad_heads"],
        e["focused_heads"],
        e["lowest"]["head"].as_str().unwrap_or("?"),
        e["lowest"]["value"].as_f64().unwrap_or(f64::NAN),
        e["highest"]["head"].as_str().unwrap_or("?"),
        e["highest"]["value"].as_f64().unwrap_or(f64::NAN),
    ));
    let d = &f["distance"];
    lines.push(format!(
        "- Attention distance: mean {:.2} tokens; shortest {} ({:.2}), longest {} ({:.2})",
        d["mean"].as_f64().unwrap_or(f64::NAN),
        d["lowest"]["head"].as_str().unwrap_or("?"),
        d["lowest"]["value"].as_f64().unwrap_or(f64::NAN),
        d["highest"]["head"].as_str().unwrap_or("?"),
        d["highest"]["value"].as_f64().unwrap_or(f64::NAN),
    ));
    if let Some(imp) = f.get("importance") {
        let r = |n: &str| {
            imp["spearman"][n]
                .as_f64()
                .map_or("n/a".to_string(), |v| format!("{v:+.2}"))
        };
        lines.push(format!(
            "- Importance vs entropy: Spearman ρ = {}; vs attention to separators {}, first token {}, previous token {}, distance {}",
            r("entropy"),
            r("separator"),
            r("first"),
            r("previous"),
            r("distance"),
        ));
        let top: Vec<String> = imp["most_important"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|t| {
                        format!(
                            "{} ({})",
                            t["head"].as_str().unwrap_or("?"),
                            t["does"].as_str().unwrap_or("?")
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        lines.push(format!("- Most important heads: {}", top.join("; ")));
    }
    lines
}

/// Heatmaps of every statistic and, when computed, the map of heads; PNG and SVG each.
pub fn pictures(
    dir: &Path,
    s: &HeadStatistics,
    importance: Option<(Matrix, Matrix)>,
    map: Option<&[[f64; 2]]>,
    tokens: &SpecialTokens,
) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for name in NAMES {
        let m = s.get(name);
        if m.iter().flatten().all(|v| !v.is_finite()) {
            continue;
        }
        let share = SHARES.contains(&name);
        let labels: Vec<Vec<String>> = m
            .iter()
            .map(|r| {
                r.iter()
                    .map(|&v| match (v.is_finite(), share) {
                        (false, _) => String::new(),
                        (true, true) => format!("{:.0}", 100.0 * v),
                        (true, false) => format!("{v:.1}"),
                    })
                    .collect()
            })
            .collect();
        let note = if share {
            "numbers: % of attention"
        } else {
            "numbers: value"
        };
        out.extend(labelled_heatmap(
            &dir.join(format!("attention_{name}")),
            &title(name, tokens),
            m,
            &labels,
            note,
            if share { "share" } else { name },
            share,
        )?);
    }
    if let Some(xy) = map {
        out.extend(head_map(
            &dir.join("head_map"),
            xy,
            s.values[0].first().map_or(0, Vec::len),
            importance,
        )?);
    }
    Ok(out)
}

/// Layers down, heads across, each cell coloured and labelled with its value; shares use a
/// fixed 0–1 scale so pictures of different statistics compare at a glance.
fn labelled_heatmap(
    stem: &Path,
    title: &str,
    values: Matrix,
    labels: &[Vec<String>],
    note: &str,
    legend: &str,
    share: bool,
) -> Result<Vec<PathBuf>> {
    grid(
        stem,
        &Grid {
            title,
            note,
            values,
            labels: Some(labels),
            mask: None,
            legend,
            scale: share.then_some((0.0, 1.0)),
            group: 1,
        },
    )
}

/// Heads placed by classical MDS of their JS distances: colour = layer, area = importance.
fn head_map(
    stem: &Path,
    xy: &[[f64; 2]],
    heads: usize,
    importance: Option<(Matrix, Matrix)>,
) -> Result<Vec<PathBuf>> {
    let size = (900u32, 780u32);
    render(
        stem,
        size,
        |r| draw_map(r, xy, heads, importance, stem),
        |r| draw_map(r, xy, heads, importance, stem),
    )
}

fn draw_map<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    xy: &[[f64; 2]],
    heads: usize,
    importance: Option<(Matrix, Matrix)>,
    stem: &Path,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let e = err(stem);
    root.fill(&WHITE).map_err(&e)?;
    let pts: Vec<(usize, usize, f64, f64)> = xy
        .iter()
        .enumerate()
        .filter(|(_, p)| p[0].is_finite())
        .map(|(i, p)| (i / heads.max(1), i % heads.max(1), p[0], p[1]))
        .collect();
    let layers = pts.iter().map(|p| p.0 + 1).max().unwrap_or(1);
    let span = |f: fn(&(usize, usize, f64, f64)) -> f64| {
        if pts.is_empty() {
            // No head to place: an empty unit square, not a range from +inf to -inf (which
            // plotters tries to fill with grid lines for ever).
            return -1.0..1.0;
        }
        let lo = pts.iter().map(f).fold(f64::INFINITY, f64::min);
        let hi = pts.iter().map(f).fold(f64::NEG_INFINITY, f64::max);
        let pad = ((hi - lo) * 0.08).max(1e-3);
        (lo - pad)..(hi + pad)
    };
    let caption = if importance.is_some() {
        "Map of heads (JS distance, MDS): colour = layer, size = importance"
    } else {
        "Map of heads (JS distance between attention, MDS): colour = layer"
    };
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, (FONT, 20).into_font().style(FontStyle::Bold))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(span(|p| p.2), span(|p| p.3))
        .map_err(&e)?;
    chart
        .configure_mesh()
        .x_desc("MDS 1")
        .y_desc("MDS 2")
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 15))
        .light_line_style(RGBColor(238, 238, 238))
        .x_label_formatter(&|v| format!("{v:.2}"))
        .y_label_formatter(&|v| format!("{v:.2}"))
        .draw()
        .map_err(&e)?;
    let layer_colour = |l: usize| -> RGBColor {
        // Up to 12 layers: distinct categorical colours (neighbouring layers must not look
        // alike); deeper models: viridis from dark (first layer) to light (last).
        const DISTINCT: [(u8, u8, u8); 12] = [
            (31, 119, 180),
            (214, 39, 40),
            (44, 160, 44),
            (148, 103, 189),
            (255, 127, 14),
            (23, 190, 207),
            (140, 86, 75),
            (227, 119, 194),
            (127, 127, 127),
            (188, 189, 34),
            (57, 59, 121),
            (99, 121, 57),
        ];
        if layers <= DISTINCT.len() {
            let (r, g, b) = DISTINCT[l];
            return RGBColor(r, g, b);
        }
        let t = l as f32 / (layers - 1) as f32 * 0.9;
        ViridisRGB::get_color_normalized(t, 0.0, 1.0)
    };
    let radius = |l: usize, h: usize| -> i32 {
        match importance {
            Some((imp, _)) if imp[l][h].is_finite() => {
                (4.0 + 14.0 * imp[l][h].clamp(0.0, 1.0)) as i32
            }
            _ => 7,
        }
    };
    for l in 0..layers {
        let c = layer_colour(l);
        let series = chart
            .draw_series(
                pts.iter()
                    .filter(|p| p.0 == l)
                    .map(|p| Circle::new((p.2, p.3), radius(p.0, p.1), c.mix(0.8).filled())),
            )
            .map_err(&e)?;
        series
            .label(format!("layer {l}"))
            .legend(move |(x, y)| Circle::new((x + 8, y), 6, c.filled()));
    }
    // Label every head "layer-head" just right of its point.
    let style = TextStyle::from((FONT, 12).into_font())
        .color(&RGBColor(40, 40, 40))
        .pos(Pos::new(HPos::Left, VPos::Center));
    chart
        .draw_series(
            pts.iter()
                .map(|p| Text::new(format!("{}-{}", p.0, p.1), (p.2, p.3), style.clone())),
        )
        .map_err(&e)?;
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font((FONT, 14))
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(&e)?;
    root.present().map_err(&e)?;
    Ok(())
}

/// report.md: what the heads do (the findings), the pictures, and the run's settings; written
/// into `dir`, titled with `shown` (the output folder `dir` is staged for).
pub fn write_report(
    dir: &Path,
    shown: &Path,
    summary: &AttentionSummary,
    pictures: &[PathBuf],
) -> Result<()> {
    let src = &summary.source;
    let mut md = format!(
        "# bertology attention: {} on {} ({})\n\n",
        src["task"].as_str().unwrap_or("texts"),
        src["split"].as_str().unwrap_or("command line"),
        shown.display()
    );
    md += &format!("- model: `{}`\n", summary.model);
    md += &format!(
        "- data: `{}` ({} examples, {} query tokens; padding excluded)\n",
        src["data_dir"].as_str().unwrap_or("--text"),
        summary.examples,
        summary.tokens
    );
    if let Some(importance) = &summary.importance {
        md += &format!("- importance: `{}`\n", importance.run);
    }
    if summary.causal {
        md += "- causal model: a query cannot see later tokens, so attention to the next token is not measured\n";
    }
    let f = &summary.findings;
    if f["start_token"].is_null() {
        md += "- first token: the text's own first token (the tokenizer adds no start token such as [CLS])\n";
    }
    if f["separator_tokens"].as_array().is_some_and(Vec::is_empty) {
        md += "- separators: none (the tokenizer puts no separator token between or after the texts)\n";
    }
    md += &format!("- reproduce: `{}`\n", summary.command);
    md += "\n## What the heads do\n\nHeads are named layer-head (both from 0). Shares are means over every non-padding query token of the attention weight on that kind of key.\n\n";
    for line in finding_lines(&summary.findings) {
        md += &line;
        md.push('\n');
    }
    md += "\n## Pictures\n\n";
    for p in pictures
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
    {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        md += &format!("![{name}]({name})\n\n");
    }
    md += "## Files\n\n- `attention_heads.csv`: one row per head, every statistic (and importance and its rank when given)\n- `attention.json`: the statistics as [layer][head] matrices, the findings and the settings\n";
    if summary.map {
        md += &format!("- `head_distances.npy`: [layers·heads]² mean Jensen–Shannon distances (sqrt of the divergence, natural log) between heads on the same query tokens ({} query positions per example, spread evenly; 0 = all); `head_map.csv`: the 2-D MDS coordinates\n", summary.settings.map_queries);
    }
    write_atomically(&dir.join("report.md"), md.as_bytes())
}
