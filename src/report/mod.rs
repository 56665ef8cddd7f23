//! Pictures and reports people read: heatmaps of importance and entropy, the pruning curve,
//! and a report.md per run, rebuilt from a run's files alone.
pub mod attention;
pub mod markdown;
pub mod plots;

use anyhow::{anyhow, bail, Context, Result};
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// A [layers, heads] matrix read from a run's .npy file.
pub fn read_matrix(path: &Path) -> Result<Vec<Vec<f64>>> {
    let t = Tensor::read_npy(path)
        .map_err(|e| anyhow!("{}: not a readable .npy file: {e}", path.display()))?;
    if t.dim() != 2 {
        bail!(
            "{}: expected a [layers, heads] matrix, got shape {:?}",
            path.display(),
            t.size()
        );
    }
    Ok(Vec::try_from(t.to_kind(Kind::Double))?)
}

/// One point of a masking curve as masking_curve.csv stores it.
#[derive(Clone, Debug)]
pub struct CurvePoint {
    pub heads_kept: usize,
    pub fraction_kept: f64,
    pub score: f64,
    pub accepted: bool,
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
    let mut points = Vec::new();
    for (i, rec) in reader.records().enumerate() {
        let rec = rec.with_context(|| format!("{}: line {}", path.display(), i + 2))?;
        let field = |c: usize| rec.get(c).unwrap_or("");
        let bad =
            |what: &str| anyhow!("{}: line {}: {what} is not a number", path.display(), i + 2);
        points.push(CurvePoint {
            heads_kept: field(kept).parse().map_err(|_| bad("heads_kept"))?,
            fraction_kept: field(frac).parse().map_err(|_| bad("fraction_kept"))?,
            score: field(score).parse().map_err(|_| bad("score"))?,
            accepted: field(acc) == "true",
        });
    }
    if points.is_empty() {
        bail!("{}: no steps", path.display());
    }
    Ok(points)
}

pub fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    serde_json::from_str(&text).map_err(|e| anyhow!("{}: malformed JSON: {e}", path.display()))
}

/// What kind of run a folder holds.
pub enum RunKind {
    Importance,
    Prune,
}

pub fn run_kind(dir: &Path) -> Result<RunKind> {
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

/// Renders every picture the run's files allow and writes report.md; returns the pictures.
pub fn build(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut pictures = Vec::new();
    let importance = dir.join("head_importance.npy");
    let ranks = dir.join("head_ranks.npy");
    let mask_file = dir.join("head_mask.npy");
    let mask = if mask_file.is_file() {
        Some(read_matrix(&mask_file)?)
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
            &dir.join("importance"),
            "Head importance (normalised)",
            &values,
            r.as_deref(),
            mask.as_deref(),
            "importance",
        )?);
    }
    let entropy = dir.join("attn_entropy.npy");
    if entropy.is_file() {
        let values = read_matrix(&entropy)?;
        pictures.extend(plots::heatmap(
            &dir.join("entropy"),
            "Attention entropy (nats per token)",
            &values,
            None,
            mask.as_deref(),
            "entropy",
        )?);
    }
    let curve = dir.join("masking_curve.csv");
    if curve.is_file() {
        let summary = read_json(&dir.join("prune.json"))?;
        let points = read_curve(&curve)?;
        let label = summary["settings"]["order"]
            .as_str()
            .unwrap_or("importance")
            .to_string();
        pictures.extend(plots::pruning_curve(
            &dir.join("pruning_curve"),
            &[(label, points)],
            summary["metric"].as_str().unwrap_or("score"),
            summary["threshold"]
                .as_f64()
                .filter(|_| summary["target_heads"].is_null()),
        )?);
    }
    markdown::write_report(dir, &pictures)?;
    Ok(pictures)
}
