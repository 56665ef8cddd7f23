//! A split of a task as the model reads it: examples tokenised once, labels (per example or
//! per token), and its batches.
use crate::data::batch::{batches_in_order, encode_examples, make_batches, Batch, Padding};
use crate::data::glue::{Example, Label, Split, Task};
use crate::data::spec::TaskSpec;
use crate::model::tokenizer::{Encoded, TextTokenizer};
use anyhow::Result;
use std::path::Path;
use tch::Device;

/// A split of a task, read and tokenised once per run.
pub struct Dataset {
    pub spec: TaskSpec,
    pub split: Split,
    pub examples: Vec<Example>,
    pub encoded: Vec<Encoded>,
    pub labels: Vec<Option<Label>>,
    pub pad_id: i64,
    /// Per-example token labels of a masked-LM dataset (-100 where not predicted).
    pub token_labels: Vec<Vec<i64>>,
}

impl Dataset {
    pub fn load(
        task: Task,
        dir: &Path,
        split: Split,
        subset: Option<usize>,
        tokenizer: &TextTokenizer,
    ) -> Result<Dataset> {
        let examples = task.read(dir, split, subset)?;
        Dataset::new(task.into(), split, examples, tokenizer)
    }

    /// Tokenises examples of any source.
    pub fn new(
        spec: TaskSpec,
        split: Split,
        examples: Vec<Example>,
        tokenizer: &TextTokenizer,
    ) -> Result<Dataset> {
        let encoded = encode_examples(tokenizer, &examples)?;
        let labels = examples.iter().map(|e| e.label).collect();
        Ok(Dataset {
            spec,
            split,
            examples,
            encoded,
            labels,
            pad_id: tokenizer.pad_id(),
            token_labels: Vec::new(),
        })
    }

    /// A language-model dataset: each block (or token-id line) is one example; a causal
    /// model's labels are its own ids, a masked model's come from `mlm` masking the blocks.
    pub fn language_model(
        task: Task,
        mut blocks: Vec<Vec<i64>>,
        pad_id: i64,
        mlm: Option<&crate::data::lm::MlmMasking>,
    ) -> Dataset {
        let n = blocks.len();
        let token_labels = match mlm {
            Some(m) => crate::data::lm::mask_examples(&mut blocks, m),
            None => Vec::new(),
        };
        Dataset {
            spec: task.into(),
            split: Split::Dev,
            examples: Vec::new(),
            encoded: blocks
                .into_iter()
                .map(|ids| Encoded {
                    type_ids: vec![0; ids.len()],
                    ids,
                })
                .collect(),
            labels: vec![None; n],
            pad_id,
            token_labels,
        }
    }

    pub fn len(&self) -> usize {
        self.encoded.len()
    }

    pub fn is_empty(&self) -> bool {
        self.encoded.is_empty()
    }

    /// Non-padding tokens over the whole split.
    pub fn tokens(&self) -> i64 {
        self.encoded.iter().map(|e| e.ids.len() as i64).sum()
    }

    /// Tokens a language model predicts in examples `indices`: all but the first of a causal
    /// example, the masked ones of a masked-LM example; None for other tasks.
    pub fn predicted_tokens(&self, indices: &[usize]) -> Option<i64> {
        match self.spec.glue {
            Some(Task::Lm) => Some(
                indices
                    .iter()
                    .map(|&i| (self.encoded[i].ids.len() as i64 - 1).max(0))
                    .sum(),
            ),
            Some(Task::Mlm) => Some(
                indices
                    .iter()
                    .map(|&i| self.token_labels[i].iter().filter(|&&l| l != -100).count() as i64)
                    .sum(),
            ),
            _ => None,
        }
    }

    pub fn has_labels(&self) -> bool {
        self.spec.is_language_model() || self.labels.iter().all(Option::is_some)
    }

    pub fn batches(&self, batch_size: usize, padding: Padding, device: Device) -> Vec<Batch> {
        let mut batches = make_batches(
            &self.encoded,
            &self.labels,
            batch_size,
            padding,
            self.pad_id,
            device,
        );
        self.add_token_labels(&mut batches);
        batches
    }

    /// A language model's labels are per token: the inputs themselves (causal) or the masked
    /// originals (MLM).
    pub fn add_token_labels(&self, batches: &mut [Batch]) {
        for b in batches {
            match self.spec.glue {
                Some(Task::Lm) => b.labels = Some(crate::data::lm::causal_labels(b)),
                Some(Task::Mlm) => {
                    b.labels = Some(crate::data::lm::batch_labels(b, &self.token_labels))
                }
                _ => {}
            }
        }
    }

    /// Batches in the file's order whatever the padding: for computations whose result depends
    /// on the order of batches (the anchor estimator's never-zeroed gradient).
    pub fn batches_in_file_order(
        &self,
        batch_size: usize,
        padding: Padding,
        device: Device,
    ) -> Vec<Batch> {
        let order: Vec<usize> = (0..self.encoded.len()).collect();
        let mut batches = batches_in_order(
            &self.encoded,
            &self.labels,
            &order,
            batch_size,
            padding,
            self.pad_id,
            device,
        );
        self.add_token_labels(&mut batches);
        batches
    }

    pub fn label_values(&self) -> Vec<f64> {
        self.labels
            .iter()
            .map(|l| l.map_or(f64::NAN, Label::as_f64))
            .collect()
    }
}
