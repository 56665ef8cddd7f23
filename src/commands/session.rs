//! Opening a model, the one way every command does it: resolve the folder (--model, else a
//! default), load it (refusing weights that are not finite, at --dtype), say on stderr what was
//! loaded, check it against the input length and read its tokenizer.
use super::args::{GlobalArgs, ModelArgs};
use super::common::{check_token_ids, pad_as_config};
use super::home::{base_model_dir, task_model_dir};
use crate::data::dataset::Dataset;
use crate::data::glue::{Example, Split, Task};
use crate::data::spec::TaskSpec;
use crate::device::Dtype;
use crate::model::tokenizer::TextTokenizer;
use crate::model::{LoadOptions, Model, TaskHead};
use crate::model_source::resolve_model;
use anyhow::{bail, Result};
use std::path::{Path, PathBuf};
use tch::Device;

/// Where a command's model comes from when --model is not given.
#[derive(Clone, Copy)]
pub enum Fallback {
    /// The GLUE task's fine-tuned default (None: own data, which has no default).
    Task(Option<Task>),
    /// The installed base model.
    Base,
}

/// A model folder resolved and the device chosen, before the model is loaded: a command may
/// read its data or check its outputs first (the data sizes a new classifier).
pub struct Located {
    pub dir: PathBuf,
    pub device: Device,
}

/// How a located model is loaded.
pub struct Load<'a> {
    pub global: &'a GlobalArgs,
    pub seed: i64,
    /// The head the task needs (its labels size a new classifier); None: what the checkpoint has.
    pub head: Option<TaskHead>,
    /// Warn about weights initialised rather than loaded even without --verbose: not where a
    /// new head is the point (finetune) or no head is used (attention, hidden states).
    pub warn_initialised: bool,
}

/// A loaded model with its folder, device and tokenizer `T`: a `TextTokenizer` for text
/// inputs, `Option<TextTokenizer>` for a language-model run (token ids need none), `()` where
/// nothing is tokenised.
pub struct ModelSession<T = TextTokenizer> {
    pub dir: PathBuf,
    pub device: Device,
    pub model: Model,
    pub tokenizer: T,
}

impl ModelSession {
    /// Chooses the device and resolves the folder: `model` (--model), else `fallback`.
    pub fn locate(model: Option<&str>, fallback: Fallback, global: &GlobalArgs) -> Result<Located> {
        let device = global.device.resolve()?;
        let dir = match (model, fallback) {
            (Some(spec), _) => resolve_model(spec, global.quiet)?,
            (None, Fallback::Base) => base_model_dir(),
            (None, Fallback::Task(task)) => task_default_dir(task)?,
        };
        Ok(Located { dir, device })
    }

    /// `locate` for a task command's --model and --seed: its fallback is the task's default.
    pub fn locate_for_task(
        args: &ModelArgs,
        task: Option<Task>,
        global: &GlobalArgs,
    ) -> Result<Located> {
        Self::locate(args.model.as_deref(), Fallback::Task(task), global)
    }

    /// Tokenises a split's `examples` into a dataset, padded as the model's config says, with
    /// every example's token ids checked against the model (`first`: the first example's
    /// number in its split, for messages).
    pub fn dataset(
        &self,
        spec: TaskSpec,
        split: Split,
        examples: Vec<Example>,
        first: usize,
    ) -> Result<Dataset> {
        let mut data = Dataset::new(spec, split, examples, &self.tokenizer)?;
        pad_as_config(&mut data, &self.model);
        check_token_ids(&data, self.model.net.vocab_size(), &self.dir, first)?;
        Ok(data)
    }
}

impl Located {
    /// Loads the model for text inputs of up to `max_len` tokens, checked against its position
    /// embeddings (None: 128, or the model's limit when that is lower).
    pub fn load(self, load: &Load, max_len: Option<u64>) -> Result<ModelSession> {
        let model = self.load_model(load)?;
        let max_len = match max_len {
            Some(n) => {
                check_max_seq_length(n as i64, &model)?;
                n as usize
            }
            None => model.net.max_positions().min(128) as usize,
        };
        let tokenizer = TextTokenizer::from_dir(&self.dir, max_len)?;
        Ok(self.into_session(model, tokenizer))
    }

    /// Loads a model for a language-model run, with the folder's tokenizer when it has one.
    pub fn load_lm(self, load: &Load) -> Result<ModelSession<Option<TextTokenizer>>> {
        let model = self.load_model(load)?;
        // Any length: the run's blocks are cut from the text by a tokenizer of its own.
        let tokenizer = TextTokenizer::from_dir(&self.dir, 8).ok();
        Ok(self.into_session(model, tokenizer))
    }

    /// The checkpoint as saved, for describing it: no finite check (a damaged one is described
    /// too), no --dtype, nothing said on stderr.
    pub fn load_as_saved(self, seed: i64) -> Result<ModelSession<()>> {
        let opts = LoadOptions {
            device: self.device,
            seed,
            task: None,
        };
        let model = Model::load(&self.dir, &opts)?;
        Ok(self.into_session(model, ()))
    }

    fn load_model(&self, load: &Load) -> Result<Model> {
        let opts = LoadOptions {
            device: self.device,
            seed: load.seed,
            task: load.head.clone(),
        };
        let model = load_model(&self.dir, &opts, load.global.dtype)?;
        if load.warn_initialised || load.global.verbose {
            log_load(&model, load.global);
        }
        Ok(model)
    }

    fn into_session<T>(self, model: Model, tokenizer: T) -> ModelSession<T> {
        ModelSession {
            dir: self.dir,
            device: self.device,
            model,
            tokenizer,
        }
    }
}

/// The default model of a task command: the GLUE task's fine-tuned model.
fn task_default_dir(task: Option<Task>) -> Result<PathBuf> {
    let Some(task) = task else {
        bail!(
            "--data-file needs --model: there is no default model for your own data (make one with `bertology finetune --data-file FILE --output-dir DIR`)"
        );
    };
    let dir = task_model_dir(task);
    if !dir.join("config.json").is_file() {
        bail!(
            "no default model for {}: {} does not exist (run `bertology finetune --task {}` or pass --model)",
            task.name(),
            dir.display(),
            task.name()
        );
    }
    Ok(dir)
}

/// What stderr says about a loaded model: the warning about weights initialised rather than
/// loaded (unless --quiet), and with --verbose the load report.
fn log_load(model: &Model, global: &GlobalArgs) {
    if global.quiet {
        return;
    }
    if let Some(w) = model.init_warning() {
        eprintln!("{w}");
    }
    if global.verbose {
        let net = model.net.as_ref();
        eprintln!(
            "loaded {}: {} ({}), heads per layer {:?}, vocabulary {}, up to {} tokens, {} parameters",
            model.dir.display(),
            net.hf_class(),
            model.config.model_type(),
            net.heads_per_layer(),
            net.vocab_size(),
            net.max_positions(),
            model.num_parameters()
        );
        if !model.report.unexpected.is_empty() {
            eprintln!(
                "checkpoint weights not used: {}",
                model.report.unexpected.join(", ")
            );
        }
    }
}

/// Loads a model a command will run, refusing weights that hold NaN or infinity (they would
/// turn every result into NaN).
fn load_model(dir: &Path, opts: &LoadOptions, dtype: Dtype) -> Result<Model> {
    let mut model = Model::load(dir, opts)?;
    let mut vars: Vec<(String, tch::Tensor)> = model.vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, t) in &vars {
        if !crate::finite::all_finite(t) {
            bail!(
                "{}: weight {name} holds NaN or infinity; the checkpoint is damaged",
                dir.display()
            );
        }
    }
    model.set_kind(dtype.kind());
    Ok(model)
}

/// --max-seq-length may not exceed the positions the model's embeddings hold.
fn check_max_seq_length(max_seq_length: i64, model: &Model) -> Result<()> {
    if max_seq_length > model.net.max_positions() {
        bail!(
            "--max-seq-length {max_seq_length} exceeds the {} tokens the model's position embeddings hold",
            model.net.max_positions()
        );
    }
    Ok(())
}
