//! `bertology report`: pictures and report.md from a finished run's files.
use crate::cli::{GlobalArgs, ReportArgs};
use crate::output::prepare_dir;
use crate::report::{self, plots, read_curve, read_json};
use anyhow::{bail, Result};

pub fn run(args: &ReportArgs, global: &GlobalArgs) -> Result<()> {
    if !args.compare.is_empty() {
        let mut runs = Vec::new();
        let mut metric = String::from("score");
        let mut threshold = None;
        for dir in &args.compare {
            let summary = read_json(&dir.join("prune.json"))?;
            let label = format!(
                "{} ({})",
                summary["settings"]["order"]
                    .as_str()
                    .unwrap_or("importance"),
                dir.file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default()
            );
            metric = summary["metric"].as_str().unwrap_or("score").to_string();
            if summary["target_heads"].is_null() {
                threshold = summary["threshold"].as_f64();
            }
            runs.push((label, read_curve(&dir.join("masking_curve.csv"))?));
        }
        let out = prepare_dir(&args.output_dir)?;
        let pictures = plots::pruning_curve(&out.join("pruning_curve"), &runs, &metric, threshold)?;
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
    let pictures = report::build(dir)?;
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
