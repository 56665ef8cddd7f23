//! Pictures and reports people read: heatmaps of importance and entropy, the pruning curve,
//! and a report.md per run, rebuilt from a run's files alone.
pub mod attention;
pub mod markdown;
pub mod plots;

use crate::output::Fingerprints;
use crate::run_files::importance::ImportanceSummary;
use crate::run_files::prune::PruneSummary;
use crate::run_files::RunFile;
use anyhow::{anyhow, bail, Context, Result};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::path::{Path, PathBuf};
use tch::Kind;

/// A [layers, heads] matrix of finite numbers read from a run's .npy file.
pub fn read_matrix(path: &Path) -> Result<Vec<Vec<f64>>> {
    let t = crate::npy::read(path)?;
    if t.dim() != 2 || t.size().contains(&0) {
        bail!(
            "{}: expected a [layers, heads] matrix, got shape {:?}",
            path.display(),
            t.size()
        );
    }
    let t = t.to_kind(Kind::Double);
    crate::finite::ensure_finite(&t, "value", || format!("in {}", path.display()))?;
    Ok(Vec::try_from(t)?)
}

/// One point of a masking curve as masking_curve.csv stores it.
#[derive(Clone, Debug)]
pub struct CurvePoint {
    pub heads_kept: usize,
    pub fraction_kept: f64,
    pub score: f64,
    pub accepted: bool,
    /// Parameters of the step's model once pruned (runs before this column: None).
    pub parameters: Option<i64>,
}

pub fn read_curve(path: &Path) -> Result<Vec<CurvePoint>> {
    let mut reader =
        csv::Reader::from_path(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let headers = reader.headers()?.clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| anyhow!("{}: no column {name:?}", path.display()))
    };
    let (kept, frac, score, acc) = (
        col("heads_kept")?,
        col("fraction_kept")?,
        col("score")?,
        col("accepted")?,
    );
    let params = headers.iter().position(|h| h == "parameters_kept");
    let mut points = Vec::new();
    for (i, rec) in reader.records().enumerate() {
        let rec = rec.with_context(|| format!("{}: line {}", path.display(), i + 2))?;
        let field = |c: usize| rec.get(c).unwrap_or("");
        let bad = |what: &str| {
            anyhow!(
                "{}: line {}: {what} is not a number ({:?})",
                path.display(),
                i + 2,
                field(match what {
                    "heads_kept" => kept,
                    "fraction_kept" => frac,
                    _ => score,
                })
            )
        };
        let finite = |v: f64, what: &str| if v.is_finite() { Ok(v) } else { Err(bad(what)) };
        let point = CurvePoint {
            heads_kept: field(kept).parse().map_err(|_| bad("heads_kept"))?,
            fraction_kept: finite(
                field(frac).parse().map_err(|_| bad("fraction_kept"))?,
                "fraction_kept",
            )?,
            score: finite(field(score).parse().map_err(|_| bad("score"))?, "score")?,
            accepted: match field(acc) {
                "true" => true,
                "false" => false,
                other => bail!(
                    "{}: line {}: accepted {other:?} is not true or false",
                    path.display(),
                    i + 2
                ),
            },
            parameters: match params.map(field) {
                None | Some("") => None,
                Some(v) => Some(v.parse().map_err(|_| {
                    anyhow!(
                        "{}: line {}: parameters_kept is not a whole number ({v:?})",
                        path.display(),
                        i + 2
                    )
                })?),
            },
        };
        if !(0.0..=1.0).contains(&point.fraction_kept) {
            return Err(bad("fraction_kept"));
        }
        points.push(point);
    }
    if points.is_empty() {
        bail!("{}: no steps", path.display());
    }
    Ok(points)
}

/// What kind of run a folder holds.
pub enum RunKind {
    Importance,
    Prune,
}

pub fn run_kind(dir: &Path) -> Result<RunKind> {
    if !dir.is_dir() {
        bail!(
            "{}: no such folder (give the --output-dir of an importance or prune run)",
            dir.display()
        );
    }
    if dir.join("prune.json").is_file() {
        Ok(RunKind::Prune)
    } else if dir.join("importance.json").is_file() {
        Ok(RunKind::Importance)
    } else {
        bail!(
            "{}: no prune.json or importance.json (not a finished bertology run)",
            dir.display()
        )
    }
}

/// A run's summary as report reads it.
pub enum Summary {
    Prune(Box<RunFile<PruneSummary>>),
    Importance(Box<RunFile<ImportanceSummary>>),
}

impl Summary {
    /// The summary as written (for the table of every field).
    pub fn json(&self) -> &Value {
        match self {
            Summary::Prune(f) => &f.json,
            Summary::Importance(f) => &f.json,
        }
    }

    fn outputs(&self) -> Option<&Fingerprints> {
        match self {
            Summary::Prune(f) => f.data.outputs.as_ref(),
            Summary::Importance(f) => f.data.outputs.as_ref(),
        }
    }

    /// Key/value heads per layer (0: not recorded).
    fn kv_heads(&self) -> u64 {
        match self {
            Summary::Prune(f) => f.data.kv_heads,
            Summary::Importance(f) => f.data.kv_heads,
        }
    }
}

/// Reads a run's summary through its struct (prune.json or importance.json, by its name): a
/// file edited by hand or from another tool is refused with the field's name instead of drawn
/// from defaults.
pub fn read_summary(path: &Path) -> Result<Summary> {
    if path.file_name().is_some_and(|n| n == "prune.json") {
        Ok(Summary::Prune(Box::new(read_prune(path)?)))
    } else {
        Ok(Summary::Importance(Box::new(read_checked(path)?)))
    }
}

pub fn read_prune(path: &Path) -> Result<RunFile<PruneSummary>> {
    read_checked(path)
}

fn read_checked<T: DeserializeOwned>(path: &Path) -> Result<RunFile<T>> {
    let file = crate::run_files::read::<T>(path)?;
    if !file.json.get("task").is_some_and(Value::is_string) {
        bail!(
            "{}: no \"task\" field (not a bertology summary)",
            path.display()
        );
    }
    Ok(file)
}

/// The arrays and tables report reads; a summary lists their sizes and hashes in "outputs".
const RUN_ARRAYS: &[&str] = &[
    "head_importance.npy",
    "attn_entropy.npy",
    "head_ranks.npy",
    "head_mask.npy",
    "importance.csv",
    "masking_curve.csv",
];

/// Checks that the run's files belong to the run: the summary's fingerprints match (when it
/// records them) and every matrix has the same [layers, heads] shape.
fn check_run_files(dir: &Path, summary_path: &Path, summary: &Summary) -> Result<()> {
    if let Some(outputs) = summary.outputs() {
        for name in RUN_ARRAYS {
            let p = dir.join(name);
            match (outputs.get(*name), p.is_file()) {
                (Some(want), true) => {
                    let have = crate::output::fingerprint(&p)?;
                    if &have != want {
                        bail!(
                            "{}: not the file this run wrote ({} records {} bytes, hash {:?}); it was changed or comes from another run",
                            p.display(),
                            summary_path.display(),
                            want.bytes,
                            want.fnv1a64
                        );
                    }
                }
                (Some(_), false) => bail!(
                    "{}: missing ({} lists it)",
                    p.display(),
                    summary_path.display()
                ),
                (None, true) => bail!(
                    "{}: not written by this run ({} does not list it); it comes from another run",
                    p.display(),
                    summary_path.display()
                ),
                (None, false) => {}
            }
        }
    }
    let mut shape: Option<(String, usize, usize)> = None;
    for name in [
        "head_importance.npy",
        "attn_entropy.npy",
        "head_ranks.npy",
        "head_mask.npy",
    ] {
        let p = dir.join(name);
        if !p.is_file() {
            continue;
        }
        let m = read_matrix(&p)?;
        let s = (m.len(), m[0].len());
        if let Some((first, l, h)) = &shape {
            if (*l, *h) != s {
                bail!(
                    "{}: shape [{}, {}] but {first} is [{l}, {h}]; the files come from different runs",
                    p.display(),
                    s.0,
                    s.1
                );
            }
        } else {
            shape = Some((name.to_string(), s.0, s.1));
        }
    }
    let heads_total = match summary {
        Summary::Prune(f) => f.data.heads_total,
        Summary::Importance(_) => None,
    };
    if let (Some((first, l, h)), Some(total)) = (&shape, heads_total) {
        if (l * h) as u64 != total {
            bail!(
                "{}: [{l}, {h}] heads but {} says heads_total {total}; the files come from different runs",
                dir.join(first).display(),
                summary_path.display()
            );
        }
    }
    Ok(())
}

/// For a run on an already pruned model: 1 for the heads the model has, 0 for those its
/// `pruned_heads` removed (so the pictures fade them instead of ranking absent heads).
fn pruned_heads_mask(summary: &ImportanceSummary) -> Option<Vec<Vec<f64>>> {
    if summary.pruned_heads.is_empty() || summary.layers == 0 {
        return None;
    }
    let (layers, heads) = (summary.layers as usize, summary.heads as usize);
    let mut mask = vec![vec![1.0; heads]; layers];
    for (&layer, removed) in &summary.pruned_heads {
        let row = mask.get_mut(usize::try_from(layer).ok()?)?;
        for &h in removed {
            *row.get_mut(usize::try_from(h).ok()?)? = 0.0;
        }
    }
    Some(mask)
}

/// The pruning curve of a prune run's masking_curve.csv, drawn into `out`.
fn curve_picture(dir: &Path, curve: &Path, summary: &Summary, out: &Path) -> Result<Vec<PathBuf>> {
    let read;
    let prune = match summary {
        Summary::Prune(f) => &f.data,
        Summary::Importance(_) => {
            read = read_prune(&dir.join("prune.json"))?;
            &read.data
        }
    };
    let points = read_curve(curve)?;
    // A run that masks neurons: its size, not a fraction of heads, is what moves.
    let by_parameters = prune.prunes_neurons() && points.iter().all(|p| p.parameters.is_some());
    let metric = if prune.metric.is_empty() {
        "score"
    } else {
        &prune.metric
    };
    plots::pruning_curve(
        &out.join("pruning_curve"),
        &[(prune.order_name(), points)],
        metric,
        prune.drawn_threshold(),
        by_parameters,
    )
}

/// Renders every picture the run's files in `dir` allow and writes report.md into `out`
/// (`shown` is the folder's name in the report); returns the pictures.
pub fn build(dir: &Path, out: &Path, shown: &Path) -> Result<Vec<PathBuf>> {
    let summary_path = match run_kind(dir)? {
        RunKind::Prune => dir.join("prune.json"),
        RunKind::Importance => dir.join("importance.json"),
    };
    let summary = read_summary(&summary_path)?;
    check_run_files(dir, &summary_path, &summary)?;
    let mut pictures = Vec::new();
    let importance = dir.join("head_importance.npy");
    let ranks = dir.join("head_ranks.npy");
    // Query heads per key/value group (runs before grouped-query attention record none).
    let kv_heads = summary.kv_heads() as usize;
    let group_of = |values: &[Vec<f64>]| {
        let width = values.first().map_or(0, Vec::len);
        if kv_heads > 0 && width.is_multiple_of(kv_heads) {
            width / kv_heads
        } else {
            1
        }
    };
    let mask_file = dir.join("head_mask.npy");
    let mask = if mask_file.is_file() {
        Some(read_matrix(&mask_file)?)
    } else if let Summary::Importance(f) = &summary {
        pruned_heads_mask(&f.data)
    } else {
        None
    };
    if importance.is_file() {
        let values = read_matrix(&importance)?;
        let r = if ranks.is_file() {
            Some(read_matrix(&ranks)?)
        } else {
            None
        };
        pictures.extend(plots::heatmap(
            &out.join("importance"),
            "Head importance (normalised)",
            &values,
            r.as_deref(),
            mask.as_deref(),
            "importance",
            group_of(&values),
        )?);
    }
    let entropy = dir.join("attn_entropy.npy");
    if entropy.is_file() {
        let values = read_matrix(&entropy)?;
        pictures.extend(plots::heatmap(
            &out.join("entropy"),
            "Attention entropy (nats per token)",
            &values,
            None,
            mask.as_deref(),
            "entropy",
            group_of(&values),
        )?);
    }
    let neurons = dir.join("ffn_importance.npy");
    if neurons.is_file() {
        let values = read_matrix(&neurons)?;
        pictures.extend(plots::neuron_curves(
            &out.join("ffn_importance"),
            "Feed-forward neuron importance per layer (normalised)",
            &values,
        )?);
    }
    let curve = dir.join("masking_curve.csv");
    if curve.is_file() {
        pictures.extend(curve_picture(dir, &curve, &summary, out)?);
    }
    markdown::write_report(&summary, out, shown, &pictures)?;
    Ok(pictures)
}
