//! GLUE as the hub publishes it (`nyu-mll/glue`): `<config>/<split>-NNNNN-of-NNNNN.parquet`,
//! the shards of a split concatenated in order, with the hub's column names and ClassLabel
//! integers (−1 where the split has no labels).
use super::glue::{Example, Label, Split, Task};
use super::table::{self, Table};
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};

/// The shards of `split` in a config folder, in order; every one of the N must be there.
pub fn shards(config_dir: &Path, split: &str) -> Result<Vec<PathBuf>> {
    let mut found: Vec<(usize, usize, PathBuf)> = Vec::new();
    let entries = std::fs::read_dir(config_dir)
        .map_err(|e| anyhow::anyhow!("{}: cannot list: {e}", config_dir.display()))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some((i, n)) = shard_index(&name, split) {
            found.push((i, n, entry.path()));
        }
    }
    if found.is_empty() {
        bail!(
            "{}: no parquet files for the {split} split (expected {split}-00000-of-NNNNN.parquet)",
            config_dir.display()
        );
    }
    found.sort();
    let total = found[0].1;
    for (expect, (i, n, path)) in found.iter().enumerate() {
        if *n != total {
            bail!(
                "{}: shard count {n} differs from the other shards' {total}",
                path.display()
            );
        }
        if *i != expect {
            bail!(
                "{}: shard {expect:05} of {total:05} of the {split} split is missing",
                config_dir.display()
            );
        }
    }
    if found.len() != total {
        bail!(
            "{}: shard {:05} of {total:05} of the {split} split is missing",
            config_dir.display(),
            found.len()
        );
    }
    Ok(found.into_iter().map(|(_, _, p)| p).collect())
}

/// `(index, count)` of a file named `<split>-NNNNN-of-NNNNN.parquet`.
fn shard_index(name: &str, split: &str) -> Option<(usize, usize)> {
    let rest = name.strip_prefix(split)?.strip_prefix('-')?;
    let rest = rest.strip_suffix(".parquet")?;
    let (i, n) = rest.split_once("-of-")?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(i) || !digits(n) {
        return None;
    }
    Some((i.parse().ok()?, n.parse().ok()?))
}

/// The config folder for `task` under `dir`: `dir/<config>` when it holds parquet files (`dir`
/// is the dataset's root), else `dir` itself when it does (`dir` is the config folder).
pub fn config_dir(dir: &Path, task: Task) -> Option<PathBuf> {
    let nested = dir.join(task.hub_config());
    let holds_parquet = |d: &Path| {
        std::fs::read_dir(d).is_ok_and(|entries| {
            entries
                .flatten()
                .any(|e| e.path().extension().is_some_and(|x| x == "parquet"))
        })
    };
    // Both must hold parquet: on a case-insensitive disk `data/glue/mrpc` is the TSV folder MRPC.
    if holds_parquet(&nested) {
        Some(nested)
    } else if holds_parquet(dir) {
        Some(dir.to_path_buf())
    } else {
        None
    }
}

/// Reads a split: its shards in order, into examples as the TSV reader gives them.
pub fn read(task: Task, config_dir: &Path, split: Split) -> Result<(Vec<Example>, Vec<PathBuf>)> {
    task.check_split(split)?;
    let files = shards(config_dir, task.hub_split(split))?;
    let mut all = Table::default();
    for f in &files {
        all.append(super::parquet::read(f)?)?;
    }
    if all.rows.is_empty() {
        bail!(
            "{}: the {} split has no rows",
            all.describe(),
            task.hub_split(split)
        );
    }
    Ok((examples(task, &all)?, files))
}

/// The task's examples from a table in the hub's columns.
pub fn examples(task: Task, t: &Table) -> Result<Vec<Example>> {
    check_label_names(task, t)?;
    let (a, b) = task.hub_text_columns();
    let a = t.column(a, "")?;
    let b = b.map(|b| t.column(b, "")).transpose()?;
    let label = t.column("label", "")?;
    let mut out = Vec::with_capacity(t.rows.len());
    for row in 0..t.rows.len() {
        let cell = &t.rows[row][label];
        let bad = |what: &str| -> anyhow::Error {
            anyhow::anyhow!(
                "{}: row {}: label {} {what}",
                t.describe(),
                row + 1,
                cell_text(cell)
            )
        };
        let label = match (task.is_regression(), cell) {
            (_, table::Cell::Int(-1)) | (_, table::Cell::Null) => None,
            (true, table::Cell::Float(v)) if !(*v as f32).is_finite() => {
                return Err(bad("is not a finite number (STS-B scores are 0 to 5)"))
            }
            (true, table::Cell::Float(v)) => Some(Label::Score(*v as f32)),
            (true, table::Cell::Int(v)) => Some(Label::Score(*v as f32)),
            (false, table::Cell::Int(v)) => {
                Some(Label::Class(task.class_from_hub(*v).ok_or_else(|| {
                    bad(&format!(
                        "is outside the {} classes 0..{} ({})",
                        task.name(),
                        task.hub_label_names().len() - 1,
                        task.hub_label_names().join(", ")
                    ))
                })?))
            }
            (regression, c) => {
                return Err(bad(&format!(
                    "has type {}, expected {}",
                    c.type_name(),
                    if regression {
                        "a float score"
                    } else {
                        "an integer class (ClassLabel)"
                    }
                )))
            }
        };
        out.push(Example {
            text_a: t.text(row, a)?,
            text_b: b.map(|b| t.text(row, b)).transpose()?,
            label,
        });
    }
    Ok(out)
}

fn cell_text(c: &table::Cell) -> String {
    match c {
        table::Cell::Int(v) => v.to_string(),
        table::Cell::Float(v) => v.to_string(),
        table::Cell::Str(s) => format!("{s:?}"),
        other => other.type_name().to_string(),
    }
}

/// When a file carries the `datasets` features, its ClassLabel names must be the hub's for
/// the task: a file of another task (or another label order) would otherwise score silently
/// wrong.
fn check_label_names(task: Task, t: &Table) -> Result<()> {
    let Some(names) = t
        .hf_metadata
        .as_ref()
        .and_then(|m| m.pointer("/info/features/label/names"))
        .and_then(|n| n.as_array())
    else {
        return Ok(());
    };
    let names: Vec<&str> = names.iter().filter_map(|n| n.as_str()).collect();
    if names != task.hub_label_names() {
        bail!(
            "{}: label names {} in its `huggingface` metadata, but the hub's {} has {}",
            t.describe(),
            names.join(", "),
            task.hub_config(),
            task.hub_label_names().join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_names() {
        assert_eq!(
            shard_index("train-00001-of-00003.parquet", "train"),
            Some((1, 3))
        );
        assert_eq!(
            shard_index("validation_matched-00000-of-00001.parquet", "validation"),
            None
        );
        assert_eq!(shard_index("train-0-of-x.parquet", "train"), None);
        let dir = tempfile::tempdir().unwrap();
        for n in ["test-00000-of-00002.parquet", "test-00001-of-00002.parquet"] {
            std::fs::write(dir.path().join(n), b"").unwrap();
        }
        let got = shards(dir.path(), "test").unwrap();
        assert!(got[0].ends_with("test-00000-of-00002.parquet") && got.len() == 2);
        std::fs::remove_file(dir.path().join("test-00001-of-00002.parquet")).unwrap();
        let e = shards(dir.path(), "test").unwrap_err().to_string();
        assert!(e.contains("00001 of 00002") && e.contains("missing"), "{e}");
    }

    #[test]
    fn mnli_labels_follow_names_not_indices() {
        // The hub's 0 (entailment) is transformers' 1; its 2 (contradiction) is 0.
        assert_eq!(Task::Mnli.class_from_hub(0), Some(1));
        assert_eq!(Task::Mnli.class_from_hub(2), Some(0));
        assert_eq!(Task::Mrpc.class_from_hub(1), Some(1));
        assert_eq!(Task::Mrpc.class_from_hub(2), None);
    }
}
