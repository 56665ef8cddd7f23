//! report.md: settings, model, data, every number of the run's JSON, the pictures, and the
//! command line that reproduces the run.
use super::Summary;
use crate::output::write_bytes;
use crate::run_files::prune::PruneSummary;
use anyhow::Result;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Flattens JSON into (dotted key, value) rows; arrays of numbers stay on one row.
fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(map) => {
            for (k, x) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, x, out);
            }
        }
        Value::Array(items) if items.iter().any(|x| x.is_object()) => {
            for (i, x) in items.iter().enumerate() {
                flatten(&format!("{prefix}[{i}]"), x, out);
            }
        }
        Value::Null => out.push((prefix.to_string(), "—".into())),
        Value::String(s) => out.push((prefix.to_string(), s.clone())),
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

fn table(rows: &[(String, String)]) -> String {
    let mut s = String::from("| field | value |\n| --- | --- |\n");
    for (k, v) in rows {
        s += &format!("| `{k}` | {} |\n", v.replace('|', "\\|"));
    }
    s
}

/// Writes `out`/report.md from the run's summary; `shown` names the run's folder.
pub fn write_report(
    summary: &Summary,
    out: &Path,
    shown: &Path,
    pictures: &[PathBuf],
) -> Result<()> {
    let (kind, json_name) = match summary {
        Summary::Prune(_) => ("prune", "prune.json"),
        Summary::Importance(_) => ("importance", "importance.json"),
    };
    let mut md = match summary {
        Summary::Prune(f) => {
            let s = &f.data;
            header(
                kind,
                [&s.task, &s.split, &s.model, &s.data_dir],
                s.examples,
                s.command.as_deref(),
                shown,
            ) + &prune_lines(s)
        }
        Summary::Importance(f) => {
            let s = &f.data;
            header(
                kind,
                [&s.task, &s.split, &s.model, &s.data_dir],
                s.examples,
                s.command.as_deref(),
                shown,
            ) + &format!(
                "Unmasked {} {} over {} tokens.\n\n",
                or_else(&s.metric, "score"),
                s.score.map_or("null".into(), |v| format!("{v:.4}")),
                s.tokens
            )
        }
    };
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
    let mut rows = Vec::new();
    flatten("", summary.json(), &mut rows);
    md += &format!("## Every number in {json_name}\n\n");
    md += &table(&rows);
    write_bytes(&out.join("report.md"), md.as_bytes())
}

/// `text`, or `default` when it is empty (a field the summary lacks).
fn or_else<'a>(text: &'a str, default: &'a str) -> &'a str {
    if text.is_empty() {
        default
    } else {
        text
    }
}

/// The title and the lines on the model, the data and the command.
fn header(
    kind: &str,
    [task, split, model, data_dir]: [&String; 4],
    examples: usize,
    command: Option<&str>,
    shown: &Path,
) -> String {
    let mut md = format!(
        "# bertology {kind}: {} on {} ({})\n\n",
        or_else(task, "?"),
        or_else(split, "?"),
        shown.display()
    );
    md += &format!("- model: `{}`\n", or_else(model, "?"));
    md += &format!(
        "- data: `{}` ({examples} examples)\n",
        or_else(data_dir, "?")
    );
    if let Some(cmd) = command {
        md += &format!("- reproduce: `{cmd}`\n");
    }
    md.push('\n');
    md
}

/// What was kept, the scores, and the timing table.
fn prune_lines(s: &PruneSummary) -> String {
    let mut md = format!(
        "Kept **{} of {} heads** ({:.0}%). {} {:.4} → masked {:.4} → pruned {:.4} (threshold {}). Parameters {} → {}.\n\n",
        s.heads_kept,
        s.heads_total.map_or("?".into(), |t| t.to_string()),
        100.0 * s.fraction_kept,
        or_else(&s.metric, "score"),
        s.original_score,
        s.masked_score,
        s.pruned_score,
        s.threshold.map_or("null".into(), |t| format!("{t:.4}")),
        s.parameters_before,
        s.parameters_after,
    );
    if s.timing.is_empty() {
        return md;
    }
    md += "| batch size | masked, full shapes (examples/s) | pruned (examples/s) | median ratio | verdict |\n| --- | --- | --- | --- | --- |\n";
    let range = |r: Option<[f64; 2]>| match r {
        Some([lo, hi]) => format!(" ({lo:.1} to {hi:.1})"),
        None => String::new(),
    };
    for t in &s.timing {
        md += &format!(
            "| {} | {:.1}{} | {:.1}{} | {:.2}x | {} |\n",
            t.batch_size,
            t.examples_per_second_before,
            range(t.examples_per_second_before_range),
            t.examples_per_second_after,
            range(t.examples_per_second_after_range),
            t.speedup,
            t.verdict
                .map_or("—".into(), |v| crate::run_files::name_of(&v)
                    .replace('_', " "))
        );
    }
    md.push('\n');
    md
}
