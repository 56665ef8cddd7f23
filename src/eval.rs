//! Evaluation: a task's examples tokenised once, batched, run with no gradient, and scored.
use crate::data::batch::{batches_in_order, encode_examples, make_batches, Batch, Padding};
use crate::data::glue::{Example, Label, Split, Task};
use crate::data::spec::TaskSpec;
use crate::metrics::Metrics;
use crate::model::tokenizer::{Encoded, TextTokenizer};
use crate::model::Network;
use anyhow::Result;
use indicatif::ProgressBar;
use std::path::Path;
use tch::{Device, Kind, Tensor};

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

/// Checks that a batch's token ids index the model's embedding rows and fit its positions:
/// libtorch would otherwise stop deep inside an embedding lookup.
pub fn check_inputs(net: &dyn Network, b: &Batch, batch: usize) -> Result<()> {
    let width = b.input_ids.size().get(1).copied().unwrap_or(0);
    if width > net.max_positions() {
        anyhow::bail!(
            "batch {batch}: {width} tokens per example, but the model's position embeddings hold {}",
            net.max_positions()
        );
    }
    if b.input_ids.numel() > 0 {
        let (lo, hi) = (
            b.input_ids.min().int64_value(&[]),
            b.input_ids.max().int64_value(&[]),
        );
        if lo < 0 || hi >= net.vocab_size() {
            anyhow::bail!(
                "batch {batch}: token id {} outside the model's {} embedding rows; the tokenizer does not belong to this checkpoint",
                if lo < 0 { lo } else { hi },
                net.vocab_size()
            );
        }
    }
    Ok(())
}

/// Logits [examples, outputs] on the CPU, in the dataset's original order (for language
/// models, each example's [loss sum, tokens]: `Network::summary`).
pub fn predict(
    net: &dyn Network,
    batches: &[Batch],
    head_mask: Option<&Tensor>,
    progress: Option<&ProgressBar>,
) -> Result<Tensor> {
    predict_masked(
        net,
        batches,
        crate::model::Masks::heads(head_mask),
        progress,
    )
}

/// `predict` under a head mask and a neuron mask.
pub fn predict_masked(
    net: &dyn Network,
    batches: &[Batch],
    masks: crate::model::Masks,
    progress: Option<&ProgressBar>,
) -> Result<Tensor> {
    let n: usize = batches.iter().map(Batch::len).sum();
    let mut order = Vec::with_capacity(n);
    let mut parts = Vec::with_capacity(batches.len());
    tch::no_grad(|| -> Result<()> {
        for (i, b) in batches.iter().enumerate() {
            check_inputs(net, b, i)?;
            let out = net.forward_masked(&b.inputs(), masks, Default::default())?;
            crate::finite::check_logits(&out.logits, i, &b.indices)?;
            parts.push(
                net.summary(&out.logits, b.labels.as_ref())
                    .to_device(Device::Cpu),
            );
            order.extend(b.indices.iter().map(|&i| i as i64));
            if let Some(p) = progress {
                p.inc(b.len() as u64);
            }
        }
        Ok(())
    })?;
    let stacked = Tensor::cat(&parts, 0);
    // Scatter rows back to file order.
    let index = Tensor::from_slice(&order);
    let out = stacked.zeros_like();
    Ok(out.index_copy(0, &index, &stacked))
}

/// Class predictions (argmax) and, for regression, the scores.
pub fn predictions(logits: &Tensor, regression: bool) -> (Vec<i64>, Vec<f64>) {
    if regression {
        let scores: Vec<f64> =
            Vec::try_from(logits.select(1, 0).to_kind(Kind::Double)).unwrap_or_default();
        (vec![0; scores.len()], scores)
    } else {
        let preds: Vec<i64> = Vec::try_from(logits.argmax(-1, false)).unwrap_or_default();
        (preds, Vec::new())
    }
}

/// The task's metrics for these logits.
pub fn score(data: &Dataset, logits: &Tensor) -> Metrics {
    if data.spec.is_language_model() {
        return lm_metrics(logits);
    }
    let (preds, scores) = predictions(logits, data.spec.is_regression());
    data.spec.compute(&preds, &scores, &data.label_values())
}

/// Mean token loss over the whole pass (Σ losses / Σ tokens, so it does not depend on how the
/// examples are batched), its perplexity and inverse (the score masking watches), and the
/// number of predicted tokens, from per-example [loss sum, tokens] rows.
pub fn lm_metrics(summary: &Tensor) -> Metrics {
    let sums = summary
        .to_kind(Kind::Double)
        .sum_dim_intlist(0, false, Kind::Double);
    let (loss_sum, tokens) = (sums.double_value(&[0]), sums.double_value(&[1]));
    let loss = loss_sum / tokens.max(1.0);
    let mut m = Metrics::new();
    m.insert("loss".into(), loss);
    m.insert("perplexity".into(), loss.exp());
    m.insert("inverse_loss".into(), 1.0 / loss);
    m.insert("tokens".into(), tokens);
    m
}
