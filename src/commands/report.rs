//! `bertology report`: pictures and report.md from a finished run's files.
use super::args::{GlobalArgs, ReportArgs};
use crate::output::{check_output_dir, Staging, COMPARE_FILES, REPORT_FILES};
use crate::report::{self, plots, read_curve, read_summary};
use anyhow::{bail, Result};

pub fn run(args: &ReportArgs, global: &GlobalArgs) -> Result<()> {
    if !args.compare.is_empty() {
        let mut runs = Vec::new();
        let mut metric = String::from("score");
        let mut threshold = None;
        let mut units_seen: Vec<(String, String, String)> = Vec::new();
        check_output_dir(&args.output_dir)?;
        for dir in &args.compare {
            if !dir.is_dir() {
                bail!("--compare {}: no such folder", dir.display());
            }
            let summary = read_summary(&dir.join("prune.json"))?;
            let order = summary["settings"]["order"]
                .as_str()
                .unwrap_or("importance");
            let name = dir
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            // The folder's name only when it says more than the order.
            let label = if name == order {
                name
            } else {
                format!("{order} ({name})")
            };
            let units = summary["units"].as_str().unwrap_or("heads").to_string();
            units_seen.push((units, order.to_string(), label.clone()));
            metric = summary["metric"].as_str().unwrap_or("score").to_string();
            // A budget run (of heads or neurons) has no threshold to draw.
            if summary["target_heads"].is_null() && summary["target_neurons"].is_null() {
                threshold = summary["threshold"].as_f64();
            }
            runs.push((label, read_curve(&dir.join("masking_curve.csv"))?));
        }
        // Heads against neurons compare at equal size, told apart by their units and order
        // (and the folder when those repeat); heads alone as a fraction of heads.
        let by_parameters = units_seen.iter().any(|(u, _, _)| u != "heads");
        if by_parameters {
            let short: Vec<String> = units_seen
                .iter()
                .map(|(units, order, _)| format!("{units}, {order}"))
                .collect();
            for (i, (label, _)) in runs.iter_mut().enumerate() {
                let repeated = short.iter().filter(|s| **s == short[i]).count() > 1;
                *label = if repeated {
                    format!("{}, {}", units_seen[i].0, units_seen[i].2)
                } else {
                    short[i].clone()
                };
            }
        }
        let staging = Staging::new(&args.output_dir, COMPARE_FILES)?;
        plots::pruning_curve(
            &staging.dir().join("pruning_curve"),
            &runs,
            &metric,
            threshold,
            by_parameters,
        )?;
        staging.commit()?;
        let pictures: Vec<_> = ["svg", "png"]
            .iter()
            .map(|e| args.output_dir.join("pruning_curve").with_extension(e))
            .collect();
        if args.json {
            println!("{}", serde_json::json!({ "pictures": pictures }));
        } else if !global.quiet {
            println!(
                "wrote {}",
                pictures
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        return Ok(());
    }
    let Some(dir) = &args.run_dir else {
        bail!("give a RUN_DIR or --compare RUN_DIR...")
    };
    report::run_kind(dir)?;
    let staging = Staging::new(dir, REPORT_FILES)?;
    let staged = report::build(dir, staging.dir(), dir)?;
    staging.commit()?;
    // The pictures were drawn in the staging folder; name them where they now are.
    let pictures: Vec<_> = staged
        .iter()
        .filter_map(|p| p.file_name())
        .map(|name| dir.join(name))
        .collect();
    if args.json {
        println!(
            "{}",
            serde_json::json!({ "report": dir.join("report.md"), "pictures": pictures })
        );
    } else if !global.quiet {
        println!(
            "wrote {}/report.md and {} pictures",
            dir.display(),
            pictures.len()
        );
    }
    Ok(())
}
