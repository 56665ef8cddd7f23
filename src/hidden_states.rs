//! Every layer's hidden states (and optionally attentions) of many inputs, gathered into
//! tensors in input order, ready to be written as safetensors for probing (Tenney et al. 2019).
//!
//! Names follow transformers' `output_hidden_states`: `hidden_states.0` is the embeddings'
//! output, `hidden_states.{i}` the output of layer i−1.
use crate::data::batch::Batch;
use crate::model::{ForwardOptions, Network};
use anyhow::{anyhow, bail, Result};
use indicatif::ProgressBar;
use tch::{Device, Kind, Tensor};

/// How each input's tokens are reduced.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Pool {
    /// The first token's vector ([CLS] / <s>): [inputs, hidden].
    Cls,
    /// The mean over non-padding tokens: [inputs, hidden].
    Mean,
    /// Every token, zero-padded to the longest input: [inputs, seq, hidden].
    None,
}

/// What to gather.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Indices into the hidden states (0 = embeddings … layers).
    pub layers: Vec<usize>,
    pub pool: Pool,
    pub attentions: bool,
}

/// Checks `--layers` against a model of `layers` layers; None means all of them.
pub fn resolve_layers(asked: &[usize], layers: i64) -> Result<Vec<usize>> {
    if asked.is_empty() {
        return Ok((0..=layers as usize).collect());
    }
    if let Some(&bad) = asked.iter().find(|&&l| l as i64 > layers) {
        bail!(
            "--layers {bad}: the model has hidden states 0 (embeddings) to {layers} (last layer)"
        );
    }
    let mut v = asked.to_vec();
    v.sort_unstable();
    v.dedup();
    Ok(v)
}

/// Runs every batch and returns named tensors on the CPU, rows in input order: the selected
/// hidden states, `lengths` [inputs], and with `pool none` or attentions `attention_mask`
/// [inputs, seq] and `attentions.{l}` [inputs, heads_l, seq, seq].
pub fn collect(
    net: &dyn Network,
    batches: &[Batch],
    inputs: usize,
    settings: &Settings,
    progress: Option<&ProgressBar>,
) -> Result<Vec<(String, Tensor)>> {
    let width = batches
        .iter()
        .map(|b| b.input_ids.size()[1])
        .max()
        .unwrap_or(0);
    let opts = ForwardOptions {
        output_attentions: settings.attentions,
        output_hidden_states: true,
        ..Default::default()
    };
    let mut hidden: Vec<Option<Tensor>> = (0..settings.layers.len()).map(|_| None).collect();
    let mut attentions: Vec<Option<Tensor>> = Vec::new();
    let mut mask = Tensor::zeros([inputs as i64, width], (Kind::Int64, Device::Cpu));
    let mut lengths = Tensor::zeros([inputs as i64], (Kind::Int64, Device::Cpu));
    tch::no_grad(|| -> Result<()> {
        for (n, b) in batches.iter().enumerate() {
            let out = net.forward(&b.inputs(), None, opts)?;
            out.check_finite(n, &b.indices)?;
            let states = out
                .hidden_states
                .ok_or_else(|| anyhow!("the model returned no hidden states"))?;
            let rows = Tensor::from_slice(&b.indices.iter().map(|&i| i as i64).collect::<Vec<_>>());
            let t = b.input_ids.size()[1];
            let m = b.attention_mask.to_device(Device::Cpu);
            let mf = m.to_kind(Kind::Float).unsqueeze(-1);
            for (slot, &i) in settings.layers.iter().enumerate() {
                let x = states
                    .get(i)
                    .ok_or_else(|| anyhow!("the model returned {} hidden states", states.len()))?
                    .to_device(Device::Cpu)
                    .to_kind(Kind::Float);
                let h = x.size()[2];
                let (pooled, shape): (Tensor, Vec<i64>) = match settings.pool {
                    Pool::Cls => (x.select(1, 0), vec![inputs as i64, h]),
                    Pool::Mean => (
                        (&x * &mf).sum_dim_intlist(1, false, Kind::Float)
                            / mf.sum_dim_intlist(1, false, Kind::Float),
                        vec![inputs as i64, h],
                    ),
                    Pool::None => {
                        // Zero the padding positions, then widen to the longest input.
                        let z = (&x * &mf).constant_pad_nd([0, 0, 0, width - t]);
                        (z, vec![inputs as i64, width, h])
                    }
                };
                let dst = hidden[slot].get_or_insert_with(|| {
                    Tensor::zeros(shape.as_slice(), (Kind::Float, Device::Cpu))
                });
                let _ = dst.index_copy_(0, &rows, &pooled);
            }
            if let Some(atts) = &out.attentions {
                if attentions.is_empty() {
                    attentions = (0..atts.len()).map(|_| None).collect();
                }
                // Padding rows (queries) and columns (keys) are zeroed, like the hidden states.
                let outer = mf.unsqueeze(1) * mf.view([-1, 1, 1, t]);
                for (l, a) in atts.iter().enumerate() {
                    let a = (a.to_device(Device::Cpu).to_kind(Kind::Float) * &outer)
                        .constant_pad_nd([0, width - t, 0, width - t]);
                    let heads = a.size()[1];
                    let dst = attentions[l].get_or_insert_with(|| {
                        Tensor::zeros(
                            [inputs as i64, heads, width, width],
                            (Kind::Float, Device::Cpu),
                        )
                    });
                    let _ = dst.index_copy_(0, &rows, &a);
                }
            }
            let padded = m.constant_pad_nd([0, width - t]);
            let _ = mask.index_copy_(0, &rows, &padded);
            let _ = lengths.index_copy_(0, &rows, &m.sum_dim_intlist(1, false, Kind::Int64));
            if let Some(p) = progress {
                p.inc(b.len() as u64);
            }
        }
        Ok(())
    })?;
    let mut named = Vec::new();
    for (slot, &i) in settings.layers.iter().enumerate() {
        if let Some(t) = hidden[slot].take() {
            named.push((format!("hidden_states.{i}"), t));
        }
    }
    for (l, a) in attentions.into_iter().enumerate() {
        if let Some(a) = a {
            named.push((format!("attentions.{l}"), a));
        }
    }
    if settings.pool == Pool::None || settings.attentions {
        named.push(("attention_mask".into(), mask));
    }
    named.push(("lengths".into(), lengths));
    Ok(named)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_are_checked_sorted_and_defaulted() {
        assert_eq!(resolve_layers(&[], 2).unwrap(), vec![0, 1, 2]);
        assert_eq!(resolve_layers(&[2, 0, 2], 6).unwrap(), vec![0, 2]);
        let e = resolve_layers(&[7], 6).unwrap_err().to_string();
        assert!(
            e.contains("--layers 7") && e.contains("0 (embeddings) to 6"),
            "{e}"
        );
    }
}
