//! Tokenised examples into padded tensors. Sorting by length and padding each batch only to
//! its longest example skips most of the padding work; predictions are put back in file order
//! through each batch's `indices`.
use super::glue::{Example, Label};
use crate::model::tokenizer::{Encoded, TextTokenizer};
use crate::model::Inputs;
use anyhow::Result;
use tch::{Device, Kind, Tensor};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Padding {
    /// Pad each batch to its longest example (and sort by length when batching for eval).
    Longest,
    /// Pad every example to this length, as run_bertology.py does.
    Fixed(usize),
}

/// One batch on its device.
pub struct Batch {
    pub input_ids: Tensor,
    pub token_type_ids: Tensor,
    pub attention_mask: Tensor,
    /// Class indices (int64) or scores (float); None when the split has no labels.
    pub labels: Option<Tensor>,
    /// Positions of these examples in the original example list.
    pub indices: Vec<usize>,
    /// Non-padding tokens in the batch.
    pub tokens: i64,
}

impl Batch {
    pub fn inputs(&self) -> Inputs<'_> {
        Inputs {
            input_ids: &self.input_ids,
            token_type_ids: &self.token_type_ids,
            attention_mask: &self.attention_mask,
        }
    }

    pub fn len(&self) -> usize {
        self.indices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    /// Batches of the same width stacked into one (their rows in order).
    pub fn concat(batches: &[&Batch]) -> Batch {
        let cat = |f: fn(&Batch) -> &Tensor| {
            Tensor::cat(&batches.iter().map(|b| f(b)).collect::<Vec<_>>(), 0)
        };
        let labels: Option<Vec<&Tensor>> = batches.iter().map(|b| b.labels.as_ref()).collect();
        Batch {
            input_ids: cat(|b| &b.input_ids),
            token_type_ids: cat(|b| &b.token_type_ids),
            attention_mask: cat(|b| &b.attention_mask),
            labels: labels.map(|l| Tensor::cat(&l, 0)),
            indices: batches.iter().flat_map(|b| b.indices.clone()).collect(),
            tokens: batches.iter().map(|b| b.tokens).sum(),
        }
    }
}

/// Tokenises the examples once (in parallel inside the tokenizer).
pub fn encode_examples(tokenizer: &TextTokenizer, examples: &[Example]) -> Result<Vec<Encoded>> {
    let texts: Vec<(String, Option<String>)> = examples
        .iter()
        .map(|e| (e.text_a.clone(), e.text_b.clone()))
        .collect();
    tokenizer.encode_batch(&texts)
}

/// Order in which examples are batched: longest first when padding per batch (the biggest
/// batch runs first, so memory peaks early), file order otherwise.
pub fn batch_order(encoded: &[Encoded], padding: Padding) -> Vec<usize> {
    let mut order: Vec<usize> = (0..encoded.len()).collect();
    if padding == Padding::Longest {
        order.sort_by_key(|&i| std::cmp::Reverse(encoded[i].ids.len()));
    }
    order
}

/// Builds one batch from the examples at `indices`.
pub fn make_batch(
    encoded: &[Encoded],
    labels: &[Option<Label>],
    indices: &[usize],
    padding: Padding,
    pad_id: i64,
    device: Device,
) -> Batch {
    let longest = indices
        .iter()
        .map(|&i| encoded[i].ids.len())
        .max()
        .unwrap_or(0);
    let width = match padding {
        Padding::Longest => longest,
        Padding::Fixed(n) => n.max(longest),
    };
    let b = indices.len();
    let mut ids = vec![pad_id; b * width];
    let mut types = vec![0i64; b * width];
    let mut mask = vec![0i64; b * width];
    let mut tokens = 0;
    for (row, &i) in indices.iter().enumerate() {
        let e = &encoded[i];
        let n = e.ids.len();
        ids[row * width..row * width + n].copy_from_slice(&e.ids);
        types[row * width..row * width + n].copy_from_slice(&e.type_ids);
        mask[row * width..row * width + n].fill(1);
        tokens += n as i64;
    }
    let shape = [b as i64, width as i64];
    let to = |v: &[i64]| Tensor::from_slice(v).view(shape).to_device(device);
    let batch_labels: Option<Vec<Label>> = indices.iter().map(|&i| labels[i]).collect();
    let labels = batch_labels.map(|ls| match ls.first() {
        Some(Label::Score(_)) => {
            let v: Vec<f32> = ls.iter().map(|l| l.as_f64() as f32).collect();
            Tensor::from_slice(&v).to_device(device)
        }
        _ => {
            let v: Vec<i64> = ls.iter().map(|l| l.as_f64() as i64).collect();
            Tensor::from_slice(&v)
                .to_kind(Kind::Int64)
                .to_device(device)
        }
    });
    Batch {
        input_ids: to(&ids),
        token_type_ids: to(&types),
        attention_mask: to(&mask),
        labels,
        indices: indices.to_vec(),
        tokens,
    }
}

/// All batches of a pass, in `batch_order`.
pub fn make_batches(
    encoded: &[Encoded],
    labels: &[Option<Label>],
    batch_size: usize,
    padding: Padding,
    pad_id: i64,
    device: Device,
) -> Vec<Batch> {
    batches_in_order(
        encoded,
        labels,
        &batch_order(encoded, padding),
        batch_size,
        padding,
        pad_id,
        device,
    )
}

/// All batches of a pass, taking the examples in the order given.
pub fn batches_in_order(
    encoded: &[Encoded],
    labels: &[Option<Label>],
    order: &[usize],
    batch_size: usize,
    padding: Padding,
    pad_id: i64,
    device: Device,
) -> Vec<Batch> {
    order
        .chunks(batch_size.max(1))
        .map(|chunk| make_batch(encoded, labels, chunk, padding, pad_id, device))
        .collect()
}
