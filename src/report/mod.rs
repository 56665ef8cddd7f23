//! Pictures and reports people read: heatmaps of importance and entropy, the pruning curve,
//! and a report.md per run, rebuilt from a run's files alone.
pub mod attention;
pub mod markdown;
pub mod plots;

use anyhow::{anyhow, bail, Context, Result};
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

/// Whether a prune run's summary says it masked feed-forward neurons (alone or with heads).
pub fn prunes_neurons(summary: &serde_json::Value) -> bool {
    matches!(summary["units"].as_str(), Some("neurons" | "both"))
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

/// JSON types of the summary fields report reads: a file edited by hand or from another tool
/// is refused with the field's name instead of drawn from defaults.
const FIELD_TYPES: &[(&str, &str)] = &[
    ("task", "string"),
    ("split", "string"),
    ("model", "string"),
    ("data_dir", "string"),
    ("metric", "string"),
    ("command", "string"),
    ("examples", "count"),
    ("tokens", "count"),
    ("layers", "count"),
    ("heads", "count"),
    ("kv_heads", "count"),
    ("heads_total", "count"),
    ("heads_kept", "count"),
    ("parameters_before", "count"),
    ("parameters_after", "count"),
    ("score", "number or null"),
    ("original_score", "number"),
    ("masked_score", "number"),
    ("pruned_score", "number"),
    ("threshold", "number"),
    ("fraction_kept", "number"),
    ("target_heads", "number or null"),
    ("seconds", "number"),
    ("timing", "array"),
    ("heads_kept_per_layer", "array"),
    ("settings", "object"),
    ("outputs", "object"),
];

fn type_ok(v: &serde_json::Value, want: &str) -> bool {
    match want {
        "string" => v.is_string(),
        "count" => v.is_u64(),
        "number" => v.is_number(),
        "number or null" => v.is_number() || v.is_null(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        _ => false,
    }
}

fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Reads a run's summary and checks the types of the fields report uses.
pub fn read_summary(path: &Path) -> Result<serde_json::Value> {
    let v = read_json(path)?;
    let obj = v
        .as_object()
        .ok_or_else(|| anyhow!("{}: expected a JSON object", path.display()))?;
    for (field, want) in FIELD_TYPES {
        if let Some(x) = obj.get(*field) {
            if !type_ok(x, want) {
                bail!(
                    "{}: field {field:?} is {}, expected a {want} (the file was edited, or is not a bertology summary)",
                    path.display(),
                    json_type(x)
                );
            }
        }
    }
    if !obj.get("task").is_some_and(|t| t.is_string()) {
        bail!(
            "{}: no \"task\" field (not a bertology summary)",
            path.display()
        );
    }
    if let Some(order) = v["settings"].get("order") {
        if !order.is_string() {
            bail!(
                "{}: field \"settings.order\" is {}, expected a string",
                path.display(),
                json_type(order)
            );
        }
    }
    for (i, t) in v["timing"].as_array().into_iter().flatten().enumerate() {
        for key in [
            "examples_per_second_before",
            "examples_per_second_after",
            "speedup",
        ] {
            if !t[key].is_number() {
                bail!(
                    "{}: field \"timing[{i}].{key}\" is {}, expected a number",
                    path.display(),
                    json_type(&t[key])
                );
            }
        }
    }
    Ok(v)
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
fn check_run_files(dir: &Path, summary_path: &Path, summary: &serde_json::Value) -> Result<()> {
    if let Some(outputs) = summary["outputs"].as_object() {
        for name in RUN_ARRAYS {
            let p = dir.join(name);
            match (outputs.get(*name), p.is_file()) {
                (Some(want), true) => {
                    let have = crate::output::fingerprint(&p)?;
                    if &have != want {
                        bail!(
                            "{}: not the file this run wrote ({} records {} bytes, hash {}); it was changed or comes from another run",
                            p.display(),
                            summary_path.display(),
                            want["bytes"],
                            want["fnv1a64"]
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
    if let (Some((first, l, h)), Some(total)) = (&shape, summary["heads_total"].as_u64()) {
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
fn pruned_heads_mask(summary: &serde_json::Value) -> Option<Vec<Vec<f64>>> {
    let pruned = summary["pruned_heads"]
        .as_object()
        .filter(|p| !p.is_empty())?;
    let (layers, heads) = (summary["layers"].as_u64()?, summary["heads"].as_u64()?);
    let mut mask = vec![vec![1.0; heads as usize]; layers as usize];
    for (layer, removed) in pruned {
        let row = mask.get_mut(layer.parse::<usize>().ok()?)?;
        for h in removed.as_array()? {
            *row.get_mut(h.as_u64()? as usize)? = 0.0;
        }
    }
    Some(mask)
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
    let kv_heads = summary["kv_heads"].as_u64().unwrap_or(0) as usize;
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
    } else {
        pruned_heads_mask(&summary)
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
        let summary = read_summary(&dir.join("prune.json"))?;
        let points = read_curve(&curve)?;
        let label = summary["settings"]["order"]
            .as_str()
            .unwrap_or("importance")
            .to_string();
        // A run that masks neurons: its size, not a fraction of heads, is what moves.
        let by_parameters =
            prunes_neurons(&summary) && points.iter().all(|p| p.parameters.is_some());
        pictures.extend(plots::pruning_curve(
            &out.join("pruning_curve"),
            &[(label, points)],
            summary["metric"].as_str().unwrap_or("score"),
            summary["threshold"].as_f64().filter(|_| {
                summary["target_heads"].is_null() && summary["target_neurons"].is_null()
            }),
            by_parameters,
        )?);
    }
    markdown::write_report(dir, out, shown, &pictures)?;
    Ok(pictures)
}
