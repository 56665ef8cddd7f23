//! report.md: settings, model, data, every number of the run's JSON, the pictures, and the
//! command line that reproduces the run.
use super::read_summary;
use crate::output::write_bytes;
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

fn number(v: &Value) -> String {
    match v.as_f64() {
        Some(x) if v.is_f64() => format!("{x:.4}"),
        _ => v.to_string(),
    }
}

/// Writes `out`/report.md from the summary in `dir`; `shown` names the run's folder.
pub fn write_report(dir: &Path, out: &Path, shown: &Path, pictures: &[PathBuf]) -> Result<()> {
    let (kind, json_name) = if dir.join("prune.json").is_file() {
        ("prune", "prune.json")
    } else {
        ("importance", "importance.json")
    };
    let summary = read_summary(&dir.join(json_name))?;
    let mut md = format!(
        "# bertology {kind}: {} on {} ({})\n\n",
        summary["task"].as_str().unwrap_or("?"),
        summary["split"].as_str().unwrap_or("?"),
        shown.display()
    );
    md += &format!("- model: `{}`\n", summary["model"].as_str().unwrap_or("?"));
    md += &format!(
        "- data: `{}` ({} examples)\n",
        summary["data_dir"].as_str().unwrap_or("?"),
        summary["examples"]
    );
    if let Some(cmd) = summary["command"].as_str() {
        md += &format!("- reproduce: `{cmd}`\n");
    }
    md.push('\n');
    if kind == "prune" {
        md += &format!(
            "Kept **{} of {} heads** ({:.0}%). {} {} → masked {} → pruned {} (threshold {}). Parameters {} → {}.\n\n",
            summary["heads_kept"],
            summary["heads_total"],
            100.0 * summary["fraction_kept"].as_f64().unwrap_or(0.0),
            summary["metric"].as_str().unwrap_or("score"),
            number(&summary["original_score"]),
            number(&summary["masked_score"]),
            number(&summary["pruned_score"]),
            number(&summary["threshold"]),
            summary["parameters_before"],
            summary["parameters_after"],
        );
        if let Some(timing) = summary["timing"].as_array() {
            md += "| batch size | masked, full shapes (examples/s) | pruned (examples/s) | median ratio | verdict |\n| --- | --- | --- | --- | --- |\n";
            let range = |v: &Value| match (v[0].as_f64(), v[1].as_f64()) {
                (Some(lo), Some(hi)) => format!(" ({lo:.1} to {hi:.1})"),
                _ => String::new(),
            };
            for t in timing {
                md += &format!(
                    "| {} | {:.1}{} | {:.1}{} | {:.2}x | {} |\n",
                    t["batch_size"],
                    t["examples_per_second_before"].as_f64().unwrap_or(0.0),
                    range(&t["examples_per_second_before_range"]),
                    t["examples_per_second_after"].as_f64().unwrap_or(0.0),
                    range(&t["examples_per_second_after_range"]),
                    t["speedup"].as_f64().unwrap_or(0.0),
                    t["verdict"].as_str().unwrap_or("—").replace('_', " ")
                );
            }
            md.push('\n');
        }
    } else {
        md += &format!(
            "Unmasked {} {} over {} tokens.\n\n",
            summary["metric"].as_str().unwrap_or("score"),
            number(&summary["score"]),
            summary["tokens"]
        );
    }
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
    flatten("", &summary, &mut rows);
    md += &format!("## Every number in {json_name}\n\n");
    md += &table(&rows);
    write_bytes(&out.join("report.md"), md.as_bytes())
}
