//! Where a command's data comes from, and what was read: GLUE TSV folders, GLUE parquet in the
//! hub's layout (a local folder or a dataset in the Hugging Face cache), or one's own file.
use super::custom::{self, Columns, ModelLabels, RawSplit};
use super::glue::{resolve_data_dir, Example, Split, Task};
use super::glue_parquet;
use super::hub_cache::{find_dataset, CachedDataset};
use super::spec::TaskSpec;
use anyhow::{bail, Result};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// The data flags of a command, as plain values.
#[derive(Clone, Debug, Default)]
pub struct SourceRequest {
    pub task: Option<Task>,
    pub data_dir: Option<PathBuf>,
    pub dataset: Option<String>,
    pub data_file: Option<PathBuf>,
    pub columns: Option<Columns>,
    /// Fine-tuning on a data file: its dev file, else the fraction of rows held out.
    pub dev_file: Option<PathBuf>,
    pub dev_fraction: f64,
    pub metric: Option<String>,
}

#[derive(Clone, Debug)]
pub enum Source {
    /// GLUE's TSV files in a task folder.
    GlueTsv { task: Task, dir: PathBuf },
    /// GLUE in the hub's parquet layout: a config folder, from the cache or not.
    GlueParquet {
        task: Task,
        dir: PathBuf,
        hub: Option<CachedDataset>,
    },
    /// One's own file.
    File { path: PathBuf, columns: Columns },
}

/// The examples of each part asked for, the task they make, and a record of what was read.
pub struct Loaded {
    pub spec: TaskSpec,
    pub parts: Vec<Vec<Example>>,
    pub record: Value,
    /// The folder or file read, for messages and reports.
    pub location: PathBuf,
}

impl Source {
    /// Picks the source the flags name; `home` is where the default GLUE folder may be;
    /// `quiet` hides download progress.
    pub fn resolve(req: &SourceRequest, home: &Path, quiet: bool) -> Result<Source> {
        if let Some(path) = &req.data_file {
            let columns = req.columns.clone().unwrap_or(Columns {
                text: "text".into(),
                text_pair: None,
                label: None,
            });
            return Ok(Source::File {
                path: path.clone(),
                columns,
            });
        }
        let Some(task) = req.task else {
            bail!("--task is needed (a GLUE task), or --data-file with your own data");
        };
        if let Some(spec) = &req.dataset {
            let hub = find_dataset(spec, task.hub_config(), quiet)?;
            let Some(dir) = glue_parquet::config_dir(&hub.snapshot, task) else {
                bail!(
                    "--dataset {spec}: {} has no {} folder of parquet files",
                    hub.snapshot.display(),
                    task.hub_config()
                );
            };
            return Ok(Source::GlueParquet {
                task,
                dir,
                hub: Some(hub),
            });
        }
        if let Some(dir) = &req.data_dir {
            if !dir.is_dir() {
                bail!("--data-dir {}: no such folder", dir.display());
            }
            if let Some(config) = glue_parquet::config_dir(dir, task) {
                return Ok(Source::GlueParquet {
                    task,
                    dir: config,
                    hub: None,
                });
            }
        }
        Ok(Source::GlueTsv {
            task,
            dir: resolve_data_dir(task, req.data_dir.as_deref(), home)?,
        })
    }

    /// Reads `splits` (for a data file: the file, and for a second part its dev file or
    /// held-out rows); `model` says what the model's labels are, for a data file's labels.
    pub fn load(
        &self,
        req: &SourceRequest,
        splits: &[Split],
        model: &ModelLabels,
    ) -> Result<Loaded> {
        let metric = req.metric.as_deref();
        match self {
            Source::GlueTsv { task, dir } => {
                let spec = TaskSpec::glue(*task, metric)?;
                let mut parts = Vec::new();
                let mut files = Vec::new();
                for &split in splits {
                    parts.push(task.read(dir, split, None)?);
                    files.push(dir.join(task.file_name(split)).display().to_string());
                }
                Ok(Loaded {
                    spec,
                    parts,
                    record: json!({"kind": "glue-tsv", "dir": dir.display().to_string(), "files": files}),
                    location: dir.clone(),
                })
            }
            Source::GlueParquet { task, dir, hub } => {
                let spec = TaskSpec::glue(*task, metric)?;
                let mut parts = Vec::new();
                let mut files = Vec::new();
                for &split in splits {
                    let (examples, read) = glue_parquet::read(*task, dir, split)?;
                    parts.push(examples);
                    files.extend(read.iter().map(|f| f.display().to_string()));
                }
                let mut record = json!({
                    "kind": if hub.is_some() { "hub-cache" } else { "parquet" },
                    "dir": dir.display().to_string(),
                    "config": task.hub_config(),
                    "splits": splits.iter().map(|&s| task.hub_split(s)).collect::<Vec<_>>(),
                    "files": files,
                });
                if let Some(h) = hub {
                    record["dataset"] = json!(h.id);
                    record["revision"] = json!(h.revision);
                    record["commit"] = json!(h.commit);
                }
                Ok(Loaded {
                    spec,
                    parts,
                    record,
                    location: dir.clone(),
                })
            }
            Source::File { path, columns } => {
                let main = custom::read(path, columns)?;
                let raw: Vec<RawSplit> = match splits.len() {
                    1 => vec![main],
                    2 => match &req.dev_file {
                        Some(dev) => vec![main, custom::read(dev, columns)?],
                        None => {
                            let (train, dev) = custom::hold_out(&main, req.dev_fraction)?;
                            vec![train, dev]
                        }
                    },
                    n => bail!("internal: {n} parts asked of a data file"),
                };
                let refs: Vec<&RawSplit> = raw.iter().collect();
                let (spec, parts) = custom::resolve(&refs, model, metric)?;
                let mut files = vec![path.display().to_string()];
                if let (2, Some(dev)) = (splits.len(), &req.dev_file) {
                    files.push(dev.display().to_string());
                }
                let record = json!({
                    "kind": "file",
                    "files": files,
                    "dev_fraction": (splits.len() == 2 && req.dev_file.is_none()).then_some(req.dev_fraction),
                    "text_column": columns.text,
                    "text_pair_column": columns.text_pair,
                    "label_column": raw[0].label_column,
                });
                Ok(Loaded {
                    spec,
                    parts,
                    record,
                    location: path.clone(),
                })
            }
        }
    }

    /// The GLUE task, for GLUE sources.
    pub fn glue_task(&self) -> Option<Task> {
        match self {
            Source::GlueTsv { task, .. } | Source::GlueParquet { task, .. } => Some(*task),
            Source::File { .. } => None,
        }
    }
}
