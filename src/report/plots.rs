//! SVG and PNG pictures with plotters. The font (DejaVu Sans) is compiled into the binary and
//! registered with plotters, so text renders the same on a bare machine with no fonts.
use super::CurvePoint;
use anyhow::{anyhow, Result};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::{Path, PathBuf};
use std::sync::Once;

pub(crate) const FONT: &str = "sans-serif";

pub(crate) fn ensure_font() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // The bundled font parses; failure here would be a build problem, not a user one.
        let _ = plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular());
        let _ = plotters::style::register_font(FONT, FontStyle::Bold, dejavu::sans::bold());
    });
}

pub(crate) fn err<E: std::fmt::Display>(path: &Path) -> impl Fn(E) -> anyhow::Error + '_ {
    move |e| {
        anyhow!(
            "{}: cannot draw: {}",
            path.display(),
            e.to_string().replace('\n', " ")
        )
    }
}

/// Draws the same picture to `stem.svg` and `stem.png` (through temp files and a rename).
pub(crate) fn render(
    stem: &Path,
    size: (u32, u32),
    svg_draw: impl FnOnce(DrawingArea<SVGBackend, Shift>) -> Result<()>,
    png_draw: impl FnOnce(DrawingArea<BitMapBackend, Shift>) -> Result<()>,
) -> Result<Vec<PathBuf>> {
    ensure_font();
    let svg = stem.with_extension("svg");
    let png = stem.with_extension("png");
    let svg_tmp = stem.with_extension("svg.tmp");
    let png_tmp = stem.with_extension("tmp.png");
    // Create both files first: a folder that cannot take them fails here with the system's
    // message, not inside plotters with a dump of its error types.
    for (tmp, fin) in [(&svg_tmp, &svg), (&png_tmp, &png)] {
        crate::output::fail_if_injected(fin)?;
        std::fs::File::create(tmp).map_err(|e| anyhow!("{}: cannot write: {e}", fin.display()))?;
    }
    svg_draw(SVGBackend::new(&svg_tmp, size).into_drawing_area())?;
    png_draw(BitMapBackend::new(&png_tmp, size).into_drawing_area())?;
    std::fs::rename(&svg_tmp, &svg).map_err(|e| anyhow!("{}: {e}", svg.display()))?;
    std::fs::rename(&png_tmp, &png).map_err(|e| anyhow!("{}: {e}", png.display()))?;
    Ok(vec![svg, png])
}

pub(crate) fn colour(v: f64, min: f64, max: f64) -> RGBColor {
    if !v.is_finite() {
        return RGBColor(128, 128, 128);
    }
    let t = if max > min {
        ((v - min) / (max - min)).clamp(0.0, 1.0)
    } else {
        0.5
    };
    ViridisRGB::get_color_normalized(t as f32, 0.0, 1.0)
}

/// Layers down, heads across; colour = value, each cell labelled with its rank (when given);
/// heads the mask removes are faded and kept ones framed; under grouped-query attention
/// (`group` query heads per key/value head) red lines separate the groups. A colour bar on the
/// right gives the scale.
pub fn heatmap(
    stem: &Path,
    title: &str,
    values: &[Vec<f64>],
    ranks: Option<&[Vec<f64>]>,
    mask: Option<&[Vec<f64>]>,
    legend: &str,
    group: usize,
) -> Result<Vec<PathBuf>> {
    let labels: Option<Vec<Vec<String>>> = ranks.map(|r| {
        r.iter()
            .map(|row| {
                row.iter()
                    .map(|v| format!("{}", v.round() as i64))
                    .collect()
            })
            .collect()
    });
    let note = match (ranks.is_some(), mask.is_some()) {
        (true, true) => "numbers: rank (0 = most important); faded: pruned, framed: kept",
        (true, false) => "numbers: rank (0 = most important)",
        (false, true) => "faded: pruned, framed: kept",
        (false, false) => "",
    };
    let grouped;
    let note = if group > 1 {
        grouped = format!(
            "{note}{}red lines: key/value groups of {group}",
            if note.is_empty() { "" } else { "; " }
        );
        grouped.as_str()
    } else {
        note
    };
    grid(
        stem,
        &Grid {
            title,
            note,
            values,
            labels: labels.as_deref(),
            mask,
            legend,
            scale: None,
            group,
        },
    )
}

/// A layers × heads picture: the one layout of every per-head heatmap (importance, entropy,
/// attention statistics).
pub(crate) struct Grid<'a> {
    pub title: &'a str,
    /// Said beside the head axis ("" for nothing).
    pub note: &'a str,
    /// Colour of each cell; a non-finite value (a pruned or unmeasured head) is light grey.
    pub values: &'a [Vec<f64>],
    /// Text in each cell.
    pub labels: Option<&'a [Vec<String>]>,
    /// 0: the head is faded (pruned); otherwise it is framed (kept).
    pub mask: Option<&'a [Vec<f64>]>,
    /// Caption of the colour bar.
    pub legend: &'a str,
    /// Fixed colour scale; `None`: from the smallest to the largest finite value.
    pub scale: Option<(f64, f64)>,
    /// Query heads per key/value group (1: none drawn).
    pub group: usize,
}

/// Draws `spec` to `stem.svg` and `stem.png`, 56 pixels a cell.
pub(crate) fn grid(stem: &Path, spec: &Grid) -> Result<Vec<PathBuf>> {
    let values = spec.values;
    let (layers, heads) = (values.len(), values.first().map_or(0, Vec::len));
    if layers > 1024 || heads > 1024 {
        anyhow::bail!(
            "{}: a [{layers}, {heads}] matrix is too large to draw as a heatmap",
            stem.display()
        );
    }
    let cell = 56u32;
    let size = (110 + cell * heads as u32 + 150, 110 + cell * layers as u32);
    let finite = || values.iter().flatten().copied().filter(|v| v.is_finite());
    let (min, max) = spec.scale.unwrap_or_else(|| match finite().next() {
        None => (0.0, 1.0),
        Some(_) => (
            finite().fold(f64::INFINITY, f64::min),
            finite().fold(f64::NEG_INFINITY, f64::max),
        ),
    });
    render(
        stem,
        size,
        |r| draw_grid(r, spec, (min, max), stem),
        |r| draw_grid(r, spec, (min, max), stem),
    )
}

fn draw_grid<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    spec: &Grid,
    (min, max): (f64, f64),
    stem: &Path,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let values = spec.values;
    let layers = values.len();
    let heads = values.first().map_or(0, Vec::len);
    let width = root.dim_in_pixel().0;
    let e = err(stem);
    root.fill(&WHITE).map_err(&e)?;
    // A long title over few heads gets a smaller font rather than being cut off.
    let font = 22f64.min((width - 150) as f64 / (0.62 * spec.title.chars().count() as f64));
    let (main, bar) = root.split_horizontally(width - 150);
    let mut chart = ChartBuilder::on(&main)
        .caption(spec.title, (FONT, font).into_font().style(FontStyle::Bold))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(56)
        .build_cartesian_2d(
            (0..heads as i32 - 1).into_segmented(),
            (0..layers as i32 - 1).into_segmented(),
        )
        .map_err(&e)?;
    let flip = |r: i32| layers as i32 - 1 - r;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(heads)
        .y_labels(layers)
        .x_desc(if spec.note.is_empty() {
            "head".to_string()
        } else {
            format!("head     ({})", spec.note)
        })
        .y_desc("layer")
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 15))
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(h) => h.to_string(),
            _ => String::new(),
        })
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(r) => flip(*r).to_string(),
            _ => String::new(),
        })
        .draw()
        .map_err(&e)?;
    let cell = |h: i32, r: i32| {
        [
            (SegmentValue::Exact(h), SegmentValue::Exact(r)),
            (SegmentValue::Exact(h + 1), SegmentValue::Exact(r + 1)),
        ]
    };
    for (l, row) in values.iter().enumerate() {
        let r = flip(l as i32);
        for (h, &v) in row.iter().enumerate() {
            let c = if v.is_finite() {
                colour(v, min, max)
            } else {
                RGBColor(230, 230, 230)
            };
            let h = h as i32;
            chart
                .draw_series(std::iter::once(Rectangle::new(cell(h, r), c.filled())))
                .map_err(&e)?;
            // Pruned heads are faded (a white veil), so their labels stay readable.
            let faded = spec.mask.is_some_and(|m| m[l][h as usize] == 0.0);
            if faded {
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        cell(h, r),
                        WHITE.mix(0.72).filled(),
                    )))
                    .map_err(&e)?;
            }
            let light =
                faded || (c.0 as f64 * 0.299 + c.1 as f64 * 0.587 + c.2 as f64 * 0.114) > 140.0;
            let ink = if light { BLACK } else { WHITE };
            if let Some(labels) = spec.labels {
                let style = TextStyle::from((FONT, 15).into_font())
                    .color(&ink)
                    .pos(Pos::new(HPos::Center, VPos::Center));
                chart
                    .draw_series(std::iter::once(Text::new(
                        labels[l][h as usize].clone(),
                        (SegmentValue::CenterOf(h), SegmentValue::CenterOf(r)),
                        style,
                    )))
                    .map_err(&e)?;
            }
        }
    }
    // Kept heads get a black frame when a mask is given.
    if let Some(m) = spec.mask {
        for (l, row) in m.iter().enumerate() {
            let r = flip(l as i32);
            for (h, &keep) in row.iter().enumerate() {
                if keep != 0.0 {
                    chart
                        .draw_series(std::iter::once(Rectangle::new(
                            cell(h as i32, r),
                            ShapeStyle::from(&BLACK).stroke_width(3),
                        )))
                        .map_err(&e)?;
                }
            }
        }
    }
    // Key/value groups: a red line between neighbouring groups, over every layer.
    if spec.group > 1 {
        for k in (spec.group..heads).step_by(spec.group) {
            let x = SegmentValue::Exact(k as i32);
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![
                        (x.clone(), SegmentValue::Exact(0)),
                        (x, SegmentValue::Exact(layers as i32)),
                    ],
                    ShapeStyle::from(&RED).stroke_width(4),
                )))
                .map_err(&e)?;
        }
    }
    colour_bar(&bar, min, max, spec.legend).map_err(&e)?;
    root.present().map_err(&e)?;
    Ok(())
}

/// Decimals that tell apart `labels` evenly spaced labels over a range of `span`.
fn decimals(span: f64, labels: usize) -> usize {
    let step = span / labels.max(1) as f64;
    if step.is_finite() && step > 0.0 {
        (-step.log10()).ceil().clamp(0.0, 8.0) as usize
    } else {
        2
    }
}

pub(crate) fn colour_bar<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    min: f64,
    max: f64,
    legend: &str,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let (lo, hi) = if max > min {
        (min, max)
    } else {
        (min - 0.5, max + 0.5)
    };
    let mut chart = ChartBuilder::on(area)
        .margin_top(34)
        .margin_bottom(56)
        .margin_right(30)
        .margin_left(10)
        .y_label_area_size(50)
        .caption(legend, (FONT, 15))
        .build_cartesian_2d(0f64..1f64, lo..hi)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .disable_x_axis()
        .y_labels(6)
        .label_style((FONT, 13))
        .y_label_formatter(&|v: &f64| format!("{v:.*}", decimals(hi - lo, 6)))
        .draw()?;
    let steps = 100;
    chart.draw_series((0..steps).map(|i| {
        let a = lo + (hi - lo) * i as f64 / steps as f64;
        let b = lo + (hi - lo) * (i + 1) as f64 / steps as f64;
        Rectangle::new([(0.0, a), (1.0, b)], colour((a + b) / 2.0, lo, hi).filled())
    }))?;
    Ok(())
}

/// Score against the fraction of heads pruned, one line per run; the threshold as a dashed
/// line and the chosen point (the last accepted step) marked on each line.
///
/// With `by_parameters`, the x axis is what each step's model would weigh once pruned
/// (millions of parameters): runs that prune heads, neurons or both then compare at equal size.
pub fn pruning_curve(
    stem: &Path,
    runs: &[(String, Vec<CurvePoint>)],
    metric: &str,
    threshold: Option<f64>,
    by_parameters: bool,
) -> Result<Vec<PathBuf>> {
    let size = (900u32, 560u32);
    // A language model's score is 1 / loss; people read perplexity (exp of the loss).
    let perplexity = metric == "inverse_loss";
    // Perplexity that grows by orders of magnitude as heads go is drawn on a log scale (the
    // y values are then log10 of perplexity, labelled as perplexity).
    let spread = runs
        .iter()
        .flat_map(|(_, c)| c.iter().map(|p| (1.0 / p.score).exp()))
        .filter(|v| v.is_finite() && *v > 0.0)
        .fold((f64::INFINITY, 0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let log_y = perplexity && spread.1 > 10.0 * spread.0;
    let shown = |score: f64| {
        if log_y {
            (1.0 / score).exp().log10()
        } else if perplexity {
            (1.0 / score).exp()
        } else {
            score
        }
    };
    let runs: Vec<(String, Vec<CurvePoint>)> = runs
        .iter()
        .map(|(label, c)| {
            let points = c
                .iter()
                .map(|p| CurvePoint {
                    score: shown(p.score),
                    ..p.clone()
                })
                .collect();
            (label.clone(), points)
        })
        .collect();
    let runs = runs.as_slice();
    let metric = if log_y {
        "perplexity (log scale, lower is better)"
    } else if perplexity {
        "perplexity (lower is better)"
    } else {
        metric
    };
    let scores: Vec<f64> = runs
        .iter()
        .flat_map(|(_, c)| c.iter().map(|p| p.score))
        .collect();
    let original = runs
        .first()
        .and_then(|(_, c)| c.first())
        .map_or(1.0, |p| p.score);
    let line = threshold.map(|t| {
        if log_y {
            // In log10: perplexity ≤ original^(1/t)  ⇔  log ≤ log(original) / t.
            original / t
        } else if perplexity {
            // 1/loss ≥ t / original loss  ⇔  perplexity ≤ original^(1/t).
            original.powf(1.0 / t)
        } else {
            t * original
        }
    });
    let lo = scores
        .iter()
        .copied()
        .chain(line)
        .fold(f64::INFINITY, f64::min);
    let hi = scores
        .iter()
        .copied()
        .chain(line)
        .fold(f64::NEG_INFINITY, f64::max);
    let pad = ((hi - lo) * 0.1).max(0.01);
    let x = |p: &CurvePoint| match (by_parameters, p.parameters) {
        (true, Some(n)) => Ok(n as f64 / 1e6),
        (true, None) => Err(anyhow!(
            "a masking_curve.csv without parameters_kept (an older run: prune again)"
        )),
        (false, _) => Ok(1.0 - p.fraction_kept),
    };
    let xs = runs
        .iter()
        .flat_map(|(_, c)| c.iter().map(x))
        .collect::<Result<Vec<f64>>>()?;
    let x_range = if by_parameters {
        let lo = xs.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let pad = ((hi - lo) * 0.04).max(0.01);
        (lo - pad, hi + pad)
    } else {
        (0.0, 1.0)
    };
    let spec = Curve {
        runs,
        metric,
        threshold,
        line,
        lo: lo - pad,
        hi: hi + pad,
        by_parameters,
        x_range,
        log_y,
    };
    render(
        stem,
        size,
        |r| draw_curve(r, &spec, stem),
        |r| draw_curve(r, &spec, stem),
    )
}

struct Curve<'a> {
    runs: &'a [(String, Vec<CurvePoint>)],
    metric: &'a str,
    threshold: Option<f64>,
    line: Option<f64>,
    lo: f64,
    hi: f64,
    by_parameters: bool,
    x_range: (f64, f64),
    /// y values are log10 of what the labels show.
    log_y: bool,
}

fn draw_curve<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    s: &Curve,
    stem: &Path,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let Curve {
        runs,
        metric,
        threshold,
        line,
        lo,
        hi,
        by_parameters,
        x_range: (x0, x1),
        log_y,
    } = *s;
    let x_of = |p: &CurvePoint| {
        if by_parameters {
            p.parameters.unwrap_or(0) as f64 / 1e6
        } else {
            1.0 - p.fraction_kept
        }
    };
    {
        let e = err(stem);
        root.fill(&WHITE).map_err(&e)?;
        let mut chart: ChartContext<_, Cartesian2d<RangedCoordf64, RangedCoordf64>> =
            ChartBuilder::on(&root)
                .caption(
                    if by_parameters {
                        format!("{metric} against the pruned model's size")
                    } else {
                        format!("{metric} as heads are pruned")
                    },
                    (FONT, 22).into_font().style(FontStyle::Bold),
                )
                .margin(16)
                .x_label_area_size(48)
                .y_label_area_size(64)
                .build_cartesian_2d(x0..x1, lo..hi)
                .map_err(&e)?;
        chart
            .configure_mesh()
            .x_desc(if by_parameters {
                "parameters kept (millions)"
            } else {
                "fraction of heads pruned"
            })
            .y_desc(metric)
            .label_style((FONT, 15))
            .axis_desc_style((FONT, 16))
            .x_label_formatter(&|v| {
                if by_parameters {
                    format!("{v:.1}")
                } else {
                    format!("{:.0}%", v * 100.0)
                }
            })
            .y_label_formatter(&|v| {
                if log_y {
                    let x = 10f64.powf(*v);
                    if x >= 1e4 {
                        format!("{:.0}k", x / 1e3)
                    } else if x >= 10.0 {
                        format!("{x:.0}")
                    } else {
                        format!("{x:.1}")
                    }
                } else if hi - lo >= 5.0 {
                    format!("{v:.1}")
                } else {
                    format!("{v:.3}")
                }
            })
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(&e)?;
        if let Some(y) = line {
            chart
                .draw_series(DashedLineSeries::new(
                    vec![(x0, y), (x1, y)],
                    8,
                    6,
                    ShapeStyle::from(&RGBColor(120, 120, 120)).stroke_width(2),
                ))
                .map_err(&e)?
                .label(if metric.starts_with("perplexity") {
                    format!(
                        "threshold: 1/loss {:.2} x original",
                        threshold.unwrap_or(0.0)
                    )
                } else {
                    format!("threshold {:.2} x original", threshold.unwrap_or(0.0))
                })
                .legend(|(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], RGBColor(120, 120, 120))
                });
        }
        for (i, (label, points)) in runs.iter().enumerate() {
            let c = Palette99::pick(i).to_rgba();
            let xy: Vec<(f64, f64)> = points.iter().map(|p| (x_of(p), p.score)).collect();
            chart
                .draw_series(LineSeries::new(xy.clone(), c.stroke_width(2)))
                .map_err(&e)?
                .label(label.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2))
                });
            chart
                .draw_series(xy.iter().map(|&p| Circle::new(p, 3, c.filled())))
                .map_err(&e)?;
            // The chosen step's label, unless so many runs would crowd them.
            if let Some(chosen) = points
                .iter()
                .rev()
                .find(|p| p.accepted)
                .filter(|_| runs.len() <= 3)
            {
                let at = (x_of(chosen), chosen.score);
                chart
                    .draw_series([Circle::new(at, 8, c.stroke_width(3))])
                    .map_err(&e)?;
                // Keep the label inside the plot: to the left of points on the right half.
                let h = if at.0 > (x0 + x1) / 2.0 {
                    HPos::Right
                } else {
                    HPos::Left
                };
                let style = TextStyle::from((FONT, 14).into_font())
                    .color(&BLACK)
                    .pos(Pos::new(h, VPos::Bottom));
                chart
                    .draw_series([Text::new(
                        if by_parameters {
                            format!("  {:.2}M  ", at.0)
                        } else {
                            format!("  kept {} heads  ", chosen.heads_kept)
                        },
                        at,
                        style,
                    )])
                    .map_err(&e)?;
            }
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .label_font((FONT, 15))
            // Scores fall as heads go, perplexity rises: the legend where the lines are not.
            .position(if metric.starts_with("perplexity") {
                SeriesLabelPosition::UpperLeft
            } else {
                SeriesLabelPosition::LowerLeft
            })
            .draw()
            .map_err(&e)?;
        root.present().map_err(&e)?;
    }
    Ok(())
}

/// Feed-forward neuron importance per layer as box plots on a log scale (importance is heavy
/// tailed: a few neurons matter a great deal, most very little): for each layer a box from the
/// 25th to the 75th percentile with the median, whiskers from the 1st to the 99th percentile,
/// and the layer's most important neuron as a dot. Layers of different sizes after pruning
/// compare directly.
pub fn neuron_curves(stem: &Path, title: &str, rows: &[Vec<f64>]) -> Result<Vec<PathBuf>> {
    let size = (900u32, 560u32);
    // Quantiles of log10 importance per layer; zeros (masked neurons) sit at the floor.
    let positive: Vec<f64> = rows
        .iter()
        .flatten()
        .copied()
        .filter(|v| v.is_finite() && *v > 0.0)
        .collect();
    let max = positive.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let min = positive.iter().copied().fold(f64::INFINITY, f64::min);
    let (max, min) = if max.is_finite() {
        (max, min)
    } else {
        (1.0, 1e-3)
    };
    let floor = min.max(max * 1e-6);
    let boxes: Vec<[f64; 6]> = rows
        .iter()
        .map(|r| {
            let mut v: Vec<f64> = r
                .iter()
                .map(|x| {
                    if x.is_finite() {
                        x.max(floor).log10()
                    } else {
                        floor.log10()
                    }
                })
                .collect();
            v.sort_by(|a, b| a.total_cmp(b));
            let q = |f: f64| {
                if v.is_empty() {
                    f64::NAN
                } else {
                    v[((v.len() - 1) as f64 * f).round() as usize]
                }
            };
            [q(0.01), q(0.25), q(0.5), q(0.75), q(0.99), q(1.0)]
        })
        .collect();
    let (lo, hi) = (floor.log10() - 0.1, max.log10() + 0.1);
    render(
        stem,
        size,
        |r| draw_neurons(r, title, &boxes, (lo, hi), stem),
        |r| draw_neurons(r, title, &boxes, (lo, hi), stem),
    )
}

fn draw_neurons<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    title: &str,
    boxes: &[[f64; 6]],
    (lo, hi): (f64, f64),
    stem: &Path,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let e = err(stem);
    root.fill(&WHITE).map_err(&e)?;
    let layers = boxes.len().max(1) as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 22).into_font().style(FontStyle::Bold))
        .margin(16)
        .x_label_area_size(52)
        .y_label_area_size(72)
        .build_cartesian_2d(-0.6f64..layers - 0.4, lo..hi)
        .map_err(&e)?;
    let step = (layers / 15.0).ceil().max(1.0) as usize;
    chart
        .configure_mesh()
        .x_desc("layer   (box: 25th-75th percentile, line: median, whiskers: 1st-99th, dot: the top neuron)")
        .y_desc("importance (log scale)")
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 16))
        .x_labels(boxes.len().div_ceil(step) + 1)
        .x_label_formatter(&|v| {
            let l = v.round();
            if (v - l).abs() < 1e-6 && l >= 0.0 && (l as usize).is_multiple_of(step) {
                format!("{l:.0}")
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|v| {
            let x = 10f64.powf(*v);
            if x >= 0.01 {
                format!("{x:.2}")
            } else {
                format!("{x:.0e}")
            }
        })
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(&e)?;
    let blue = RGBColor(49, 104, 142);
    let w = 0.32;
    for (l, b) in boxes.iter().enumerate() {
        if b.iter().any(|v| !v.is_finite()) {
            continue;
        }
        let x = l as f64;
        let [p1, q1, med, q3, p99, top] = *b;
        let thin = ShapeStyle::from(&RGBColor(90, 90, 90)).stroke_width(1);
        chart
            .draw_series([
                PathElement::new(vec![(x, p1), (x, q1)], thin),
                PathElement::new(vec![(x, q3), (x, p99)], thin),
                PathElement::new(vec![(x - w / 2.0, p1), (x + w / 2.0, p1)], thin),
                PathElement::new(vec![(x - w / 2.0, p99), (x + w / 2.0, p99)], thin),
            ])
            .map_err(&e)?;
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(x - w, q1), (x + w, q3)],
                blue.mix(0.35).filled(),
            )))
            .map_err(&e)?;
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(x - w, q1), (x + w, q3)],
                ShapeStyle::from(&blue).stroke_width(1),
            )))
            .map_err(&e)?;
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(x - w, med), (x + w, med)],
                ShapeStyle::from(&BLACK).stroke_width(2),
            )))
            .map_err(&e)?;
        chart
            .draw_series(std::iter::once(Circle::new(
                (x, top),
                3,
                ShapeStyle::from(&RGBColor(200, 60, 40)).filled(),
            )))
            .map_err(&e)?;
    }
    root.present().map_err(&e)?;
    Ok(())
}
