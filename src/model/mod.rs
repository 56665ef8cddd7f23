//! The model: config, BERT network, checkpoint I/O, tokenizer and where a model comes from.
pub mod bert;
pub mod checkpoint;
pub mod config;
pub mod source;
pub mod tokenizer;

use crate::data::spec::TaskSpec;
use anyhow::{bail, Context, Result};
use bert::BertForSequenceClassification;
use config::BertConfig;
use std::path::{Path, PathBuf};
use tch::{nn::VarStore, Device, Tensor};

/// A loaded checkpoint: its config, the variables and the network built over them.
pub struct Model {
    pub config: BertConfig,
    pub vs: VarStore,
    pub net: BertForSequenceClassification,
    pub dir: PathBuf,
    pub report: checkpoint::LoadReport,
}

/// How to load a model.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub device: Device,
    /// Seed for the weights a checkpoint lacks (classifier, pooler).
    pub seed: i64,
    /// The task; sets the classifier's size and labels when the checkpoint has none.
    pub task: Option<TaskSpec>,
}

impl Model {
    pub fn load(dir: &Path, opts: &LoadOptions) -> Result<Model> {
        if !dir.is_dir() {
            bail!("{}: model folder does not exist", dir.display());
        }
        let config_path = dir.join("config.json");
        if !config_path.is_file() {
            bail!(
                "{}: missing (every model folder needs a config.json)",
                config_path.display()
            );
        }
        let mut config = BertConfig::from_file(&config_path)?;
        let files = checkpoint::weight_files(dir)?;
        let keys = checkpoint::checkpoint_keys(&files)?;
        let has_classifier = keys.iter().any(|k| k.starts_with("classifier."));
        if let Some(task) = &opts.task {
            let want = task.num_outputs() as i64;
            if !has_classifier {
                config.set_labels_for(task);
            } else if config.num_labels() != want {
                bail!(
                    "{}: the model has {} outputs but the task {} needs {want}",
                    config_path.display(),
                    config.num_labels(),
                    task.name()
                );
            }
        }
        tch::manual_seed(opts.seed);
        let vs = VarStore::new(opts.device);
        let net = BertForSequenceClassification::new(&vs.root(), &config);
        let report = checkpoint::load_into(&vs, &files)?;
        // transformers initialises a missing pooler like any linear layer: normal, zero bias.
        for name in &report.initialised {
            if name.contains("pooler") {
                let vars = vs.variables();
                let var = &vars[name];
                tch::no_grad(|| {
                    if name.ends_with("weight") {
                        let init = Tensor::randn(var.size(), (var.kind(), var.device()))
                            * config.initializer_range;
                        var.shallow_clone().copy_(&init);
                    }
                });
            }
        }
        if config.architectures.is_none()
            || !config
                .architectures
                .as_ref()
                .is_some_and(|a| a.iter().any(|s| s == "BertForSequenceClassification"))
        {
            config.architectures = Some(vec!["BertForSequenceClassification".into()]);
        }
        Ok(Model {
            config,
            vs,
            net,
            dir: dir.to_path_buf(),
            report,
        })
    }

    /// One warning line about weights initialised rather than loaded, if any.
    pub fn init_warning(&self) -> Option<String> {
        if self.report.initialised.is_empty() {
            return None;
        }
        Some(format!(
            "warning: {} has no {}; initialised from the seed (fine-tune before trusting its outputs)",
            self.dir.display(),
            self.report.initialised.join(", ")
        ))
    }

    /// Saves config.json and model.safetensors in Hugging Face layout.
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create", dir.display()))?;
        checkpoint::save_from(&self.vs, &dir.join(checkpoint::WEIGHTS_FILE))?;
        write_atomically(
            &dir.join("config.json"),
            self.config.to_json_string()?.as_bytes(),
        )
    }

    pub fn num_parameters(&self) -> i64 {
        self.vs.variables().values().map(|t| t.numel() as i64).sum()
    }
}

/// Writes a file through a temp file and a rename, so readers never see half of it.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, bytes).with_context(|| format!("{}: cannot write", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("{}: cannot rename into place", path.display()))
}
