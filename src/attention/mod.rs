//! What the heads look at: per-head attention statistics, a map of the heads by how they
//! attend, and a self-contained HTML viewer of one example's attention. Everything goes
//! through the `Network` interface, so every family is covered.
pub mod map;
pub mod stats;
pub mod viewer;

use crate::data::batch::Batch;
use crate::model::tokenizer::{Encoded, TextTokenizer};
use crate::model::{ForwardOptions, Network};
use anyhow::{anyhow, Result};
use indicatif::ProgressBar;
use stats::{is_punctuation, Accumulator, HeadStatistics, TokenClasses};
use tch::{Kind, Tensor};

/// Which tokens of one example are separators and punctuation.
#[derive(Clone, Debug)]
pub struct ExampleClasses {
    pub separator: Vec<bool>,
    pub punctuation: Vec<bool>,
}

/// Classes of every example's tokens: separators by the tokenizer's special ids, punctuation
/// by token string.
pub fn token_classes(tok: &TextTokenizer, encoded: &[Encoded]) -> Result<Vec<ExampleClasses>> {
    let separators = tok.separator_ids()?;
    Ok(encoded
        .iter()
        .map(|e| ExampleClasses {
            separator: e.ids.iter().map(|id| separators.contains(id)).collect(),
            punctuation: tok
                .token_strings(&e.ids)
                .iter()
                .map(|s| is_punctuation(s))
                .collect(),
        })
        .collect())
}

/// The classes of a batch's examples as [batch, seq] tensors (padding: 0).
pub fn batch_classes(classes: &[ExampleClasses], batch: &Batch) -> TokenClasses {
    let (b, t) = (batch.len(), batch.input_ids.size()[1] as usize);
    let mut sep = vec![0f32; b * t];
    let mut punct = vec![0f32; b * t];
    for (row, &i) in batch.indices.iter().enumerate() {
        for (k, (&s, &p)) in classes[i]
            .separator
            .iter()
            .zip(&classes[i].punctuation)
            .enumerate()
            .take(t)
        {
            sep[row * t + k] = s as u8 as f32;
            punct[row * t + k] = p as u8 as f32;
        }
    }
    let shape = [b as i64, t as i64];
    TokenClasses {
        separator: Tensor::from_slice(&sep).view(shape),
        punctuation: Tensor::from_slice(&punct).view(shape),
    }
}

/// The result of one pass over the data.
pub struct Analysis {
    pub stats: HeadStatistics,
    /// [layers·heads]² mean JS distances between heads, when asked for.
    pub distances: Option<Vec<Vec<f64>>>,
}

/// One forward pass per batch, no gradient: statistics of every head and, with `map` (query
/// positions sampled per example, 0 for all), the pairwise distances between heads. `causal`: the model cannot attend to later tokens, so
/// "next token" is not measured.
pub fn analyse(
    net: &dyn Network,
    batches: &[Batch],
    classes: &[ExampleClasses],
    causal: bool,
    map: Option<usize>,
    progress: Option<&ProgressBar>,
) -> Result<Analysis> {
    crate::importance::ensure_some_head(net, "attention")?;
    let (layers, heads) = (net.num_layers(), net.num_heads());
    let kept = net.kept_heads();
    let mut acc = Accumulator::new(layers, heads, kept.clone(), causal);
    let mut dist = map.map(|q| map::DistanceAccumulator::new(layers, heads, &kept, q));
    let opts = ForwardOptions {
        output_attentions: true,
        ..Default::default()
    };
    tch::no_grad(|| -> Result<()> {
        for (n, b) in batches.iter().enumerate() {
            let out = net.forward(&b.inputs(), None, opts)?;
            out.check_finite(n, &b.indices)?;
            let attentions = out
                .attentions
                .ok_or_else(|| anyhow!("the model returned no attentions"))?;
            let attentions: Vec<Tensor> =
                attentions.iter().map(|a| a.to_kind(Kind::Float)).collect();
            acc.add(&attentions, &b.attention_mask, &batch_classes(classes, b))?;
            if let Some(d) = dist.as_mut() {
                d.add(&attentions, &b.attention_mask)?;
            }
            if let Some(p) = progress {
                p.inc(b.len() as u64);
            }
        }
        Ok(())
    })?;
    Ok(Analysis {
        stats: acc.finish(),
        distances: dist.map(|d| d.finish()),
    })
}
