//! `bertology report`: pictures and report.md from a finished run's files.
use super::args::{GlobalArgs, ReportArgs};
use crate::output::{check_output_dir, Staging, COMPARE_FILES, REPORT_FILES};
use crate::report::{self, plots, read_curve, read_prune, CurvePoint};
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};

pub fn run(args: &ReportArgs, global: &GlobalArgs) -> Result<()> {
    if !args.compare.is_empty() {
        return compare(args, global);
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

/// One run of a comparison: its curve, and what tells it apart from the others.
struct Compared {
    label: String,
    units: String,
    order: String,
    points: Vec<CurvePoint>,
}

/// `report --compare`: the pruning curves of several prune runs in one picture.
fn compare(args: &ReportArgs, global: &GlobalArgs) -> Result<()> {
    check_output_dir(&args.output_dir)?;
    let mut runs = Vec::new();
    let mut metric = String::from("score");
    let mut threshold = None;
    for dir in &args.compare {
        if !dir.is_dir() {
            bail!("--compare {}: no such folder", dir.display());
        }
        let summary = read_prune(&dir.join("prune.json"))?.data;
        let order = summary.order_name();
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
        metric = if summary.metric.is_empty() {
            "score".into()
        } else {
            summary.metric.clone()
        };
        // A budget run (of heads or neurons) has no threshold to draw.
        if summary.target_heads.is_none() && summary.target_neurons.is_none() {
            threshold = summary.threshold;
        }
        runs.push(Compared {
            label,
            units: summary
                .units
                .map_or_else(|| "heads".into(), |u| crate::run_files::name_of(&u)),
            order,
            points: read_curve(&dir.join("masking_curve.csv"))?,
        });
    }
    // Heads against neurons compare at equal size, told apart by their units and order
    // (and the folder when those repeat); heads alone as a fraction of heads.
    let by_parameters = runs.iter().any(|r| r.units != "heads");
    let labels = if by_parameters {
        labels_by_units(&runs)
    } else {
        runs.iter().map(|r| r.label.clone()).collect()
    };
    let curves: Vec<(String, Vec<CurvePoint>)> = labels
        .into_iter()
        .zip(runs.into_iter().map(|r| r.points))
        .collect();
    let staging = Staging::new(&args.output_dir, COMPARE_FILES)?;
    plots::pruning_curve(
        &staging.dir().join("pruning_curve"),
        &curves,
        &metric,
        threshold,
        by_parameters,
    )?;
    staging.commit()?;
    print_pictures(&args.output_dir, args.json, global.quiet);
    Ok(())
}

/// "units, order", with the folder's label where that pair repeats.
fn labels_by_units(runs: &[Compared]) -> Vec<String> {
    let short: Vec<String> = runs
        .iter()
        .map(|r| format!("{}, {}", r.units, r.order))
        .collect();
    (0..runs.len())
        .map(|i| {
            let repeated = short.iter().filter(|s| **s == short[i]).count() > 1;
            if repeated {
                format!("{}, {}", runs[i].units, runs[i].label)
            } else {
                short[i].clone()
            }
        })
        .collect()
}

fn print_pictures(out_dir: &Path, json: bool, quiet: bool) {
    let pictures: Vec<PathBuf> = ["svg", "png"]
        .iter()
        .map(|e| out_dir.join("pruning_curve").with_extension(e))
        .collect();
    if json {
        println!("{}", serde_json::json!({ "pictures": pictures }));
    } else if !quiet {
        println!(
            "wrote {}",
            pictures
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
}
