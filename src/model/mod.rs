//! The model: config, the architectures behind one `Network` interface, checkpoint I/O,
//! tokenizer and where a model comes from.
//!
//! Each architecture is one file (`bert.rs`, `roberta.rs`, …) that mirrors transformers'
//! modules and key names and exports a `FAMILY`; `families.rs` lists them. Nothing outside
//! this folder names an architecture.
pub mod bert;
pub mod bpe;
pub mod checkpoint;
pub mod config;
pub mod distilbert;
pub mod electra;
pub mod families;
pub mod family;
pub mod gpt2;
pub mod layers;
pub mod llama;
pub mod masked_lm;
pub mod network;
pub mod openai_gpt;
pub mod preflight;
pub mod roberta;
pub mod tokenizer;

pub use network::{
    ForwardOptions, HeadAxis, HeadUnit, Inputs, Masks, ModelOutput, Network, NetworkShape,
    Objective, RemoteCode,
};

use anyhow::{anyhow, bail, Context, Result};
use config::ModelConfig;
use family::Family;
use std::path::{Path, PathBuf};
use tch::{nn::VarStore, Device};

/// A loaded checkpoint: its config, the variables and the network built over them.
pub struct Model {
    pub config: ModelConfig,
    pub vs: VarStore,
    pub net: Box<dyn Network>,
    pub family: &'static Family,
    pub dir: PathBuf,
    pub report: checkpoint::LoadReport,
}

/// How to load a model.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub device: Device,
    /// Seed for the weights a checkpoint lacks (task head, pooler).
    pub seed: i64,
    /// The task; sets the classifier's size and labels when the checkpoint has none.
    pub task: Option<TaskHead>,
}

/// What a task asks of the model's head: the objective and, for a classifier, its labels.
/// `data::spec::TaskSpec` and `data::glue::Task` convert into it (`.into()`), so the model
/// needs nothing from `data`.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskHead {
    /// The task's name, for messages (a GLUE task's, or "custom").
    pub name: String,
    pub objective: Objective,
    /// Class names in classifier order; empty for a regression.
    pub labels: Vec<String>,
    pub regression: bool,
}

impl TaskHead {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A causal or masked language-model task (--task lm / mlm).
    pub fn is_language_model(&self) -> bool {
        self.objective != Objective::Classification
    }

    /// Outputs of the classifier: 1 for regression, else the number of classes.
    pub fn num_outputs(&self) -> usize {
        if self.regression {
            1
        } else {
            self.labels.len()
        }
    }
}

impl Model {
    pub fn load(dir: &Path, opts: &LoadOptions) -> Result<Model> {
        if !dir.is_dir() {
            bail!("{}: model folder does not exist", dir.display());
        }
        // Whatever the command, its outputs may not go into this folder.
        crate::output::note_model_input(dir);
        let config_path = dir.join("config.json");
        if !config_path.is_file() {
            bail!(
                "{}: missing (every model folder needs a config.json)",
                config_path.display()
            );
        }
        let mut config = ModelConfig::from_file(&config_path)?;
        let mut family =
            families::family_of(&config).map_err(|e| anyhow!("{}: {e}", config_path.display()))?;
        let files = checkpoint::weight_files(dir)?;
        preflight::check(&config_path, &config, family, &files)?;
        let keys = checkpoint::checkpoint_keys(&files)?;
        let head = family.layout.head;
        let has_head = keys
            .iter()
            .any(|k| checkpoint::canonical_key(k, family.layout.prefix).starts_with(head));
        // The head: a language-model task wants the family's LM head; with no task, a
        // checkpoint without a classifier whose family has an LM head (GPT-2) is a language
        // model.
        let lm = families::language_model_of(&config);
        let has_lm_head = lm.is_some_and(|lm| {
            keys.iter()
                .any(|k| checkpoint::canonical_key(k, lm.layout.prefix).starts_with(lm.layout.head))
        });
        match (opts.task.as_ref(), lm) {
            (Some(task), None) if task.is_language_model() => bail!(
                "{}: --task {}: model_type {:?} has no language-model head here (language models: {})",
                config_path.display(),
                task.name(),
                config.model_type(),
                families::language_models()
                    .iter()
                    .flat_map(|f| f.model_types.iter().copied())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            (Some(task), Some(lm)) if task.is_language_model() => {
                if !has_lm_head {
                    bail!(
                        "{}: --task {}: the checkpoint has no language-model head ({}* weights)",
                        files[0].display(),
                        task.name(),
                        lm.layout.head
                    );
                }
                family = lm
            }
            (None, Some(lm)) if !has_head && has_lm_head => family = lm,
            _ => {}
        }
        if let Some(task) = opts.task.as_ref().filter(|t| !t.is_language_model()) {
            let want = task.num_outputs() as i64;
            if !has_head {
                config.set_labels_for(task.regression, &task.labels);
            } else if config.num_labels() != want {
                bail!(
                    "{}: the model has {} outputs but the task {} needs {want}",
                    config_path.display(),
                    config.num_labels(),
                    task.name()
                );
            }
        }
        let model_type = config.model_type().to_string();
        let model = Self::build(config, family, &files, dir, opts.device, opts.seed).map_err(|e| {
            // Weights of another family fail on their first missing key; name the real cause.
            match families::foreign_family(&keys, family) {
                Some(other) => anyhow!(
                    "{}: its weights are named {}.* (a {} checkpoint), but {} says model_type {model_type:?}",
                    files[0].display(),
                    other.layout.prefix,
                    other.name,
                    config_path.display(),
                ),
                None => e,
            }
        })?;
        if let Some(task) = &opts.task {
            let want = task.objective;
            if model.net.objective() != want {
                let is = match model.net.objective() {
                    Objective::CausalLm => "a causal language model (use --task lm)",
                    Objective::MaskedLm => "a masked language model (use --task mlm)",
                    Objective::Classification => "a classifier",
                };
                bail!(
                    "{}: --task {}: {} is {is}",
                    config_path.display(),
                    task.name(),
                    model.net.hf_class(),
                );
            }
        }
        Ok(model)
    }

    /// Builds the family's network over a fresh VarStore and loads the weights of `files`.
    fn build(
        mut config: ModelConfig,
        family: &'static Family,
        files: &[PathBuf],
        dir: &Path,
        device: Device,
        seed: i64,
    ) -> Result<Model> {
        let config_path = dir.join("config.json");
        tch::manual_seed(seed);
        let vs = VarStore::new(device);
        let net = (family.build)(&vs.root(), &config)
            .map_err(|e| anyhow!("{}: {e}", config_path.display()))?;
        let report = checkpoint::load_into(&vs, files, family.layout)?;
        config.set_architecture(net.hf_class());
        Ok(Model {
            config,
            vs,
            net,
            family,
            dir: dir.to_path_buf(),
            report,
        })
    }

    /// A new model of the same family over `config` (e.g. with more heads pruned), its
    /// variables left at their initial values for the caller to fill.
    pub fn empty_like(&self, mut config: ModelConfig) -> Result<Model> {
        let mut vs = VarStore::new(self.vs.device());
        let net = (self.family.build)(&vs.root(), &config)?;
        if self.kind() != tch::Kind::Float {
            vs.set_kind(self.kind());
        }
        config.set_architecture(net.hf_class());
        Ok(Model {
            config,
            vs,
            net,
            family: self.family,
            dir: self.dir.clone(),
            report: checkpoint::LoadReport::default(),
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

    /// Saves config.json and model.safetensors in Hugging Face layout; a pruned model whose
    /// shapes transformers cannot express gets the network's modelling file beside them,
    /// named in `auto_map`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: cannot create", dir.display()))?;
        checkpoint::save_from(&self.vs, &dir.join(checkpoint::WEIGHTS_FILE))?;
        let mut config = self.config.clone();
        // Layers of different intermediate sizes need a modelling file in every family.
        let uneven = config.pruned_neurons()?.values().any(|n| !n.is_empty());
        let pruned = config.pruned_heads()?.values().any(|h| !h.is_empty())
            && (uneven || !self.net.express_pruned_heads(&mut config));
        let code = match self.net.remote_code() {
            Some(code) if pruned || uneven => Some(code),
            None if uneven => Some(network::mlp_remote_code(
                self.net.hf_class(),
                self.net.objective(),
            )),
            _ => None,
        };
        match code {
            Some(code) => {
                crate::output::write_atomically(&dir.join(code.file), code.source.as_bytes())?;
                config.set_auto_map(&code.auto_map);
            }
            None => config.remove_auto_map(),
        }
        crate::output::write_atomically(
            &dir.join("config.json"),
            config.to_json_string()?.as_bytes(),
        )
    }

    /// Converts the weights to `kind` (float32 or bfloat16); a no-op when they have it.
    pub fn set_kind(&mut self, kind: tch::Kind) {
        if self.kind() != kind {
            self.vs.set_kind(kind);
        }
    }

    /// The weights' precision (float32 unless converted).
    pub fn kind(&self) -> tch::Kind {
        self.vs
            .variables()
            .values()
            .map(|t| t.kind())
            .next()
            .unwrap_or(tch::Kind::Float)
    }

    pub fn num_parameters(&self) -> i64 {
        self.vs.variables().values().map(|t| t.numel() as i64).sum()
    }

    /// Overwrites the variables named in `file` (e.g. a classifier kept apart from its
    /// encoder); returns the names copied.
    pub fn overlay(&self, file: &Path) -> Result<Vec<String>> {
        checkpoint::overlay_from(&self.vs, file, self.family.layout)
    }
}
