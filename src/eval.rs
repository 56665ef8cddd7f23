//! Evaluation: a dataset's batches run with no gradient, and scored.
use crate::data::batch::Batch;
use crate::data::dataset::Dataset;
use crate::metrics::Metrics;
use crate::model::Network;
use anyhow::Result;
use indicatif::ProgressBar;
use tch::{Device, Kind, Tensor};

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
