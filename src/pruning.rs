//! Physical pruning: a new model whose layers keep only the unmasked heads. Query, key and value
//! lose the rows of the removed heads, the attention output dense layer their columns, and
//! `pruned_heads` records the original indices, so the saved model reloads at its new shapes
//! here and in transformers.
use crate::model::bert::BertForSequenceClassification;
use crate::model::{checkpoint::LoadReport, Model};
use anyhow::{bail, Result};
use std::collections::HashMap;
use tch::{nn::VarStore, Device, Kind, Tensor};

/// Position of each kept head inside a layer's current (possibly already pruned) weights.
fn row_index(old_kept: &[i64], new_kept: &[i64], head_dim: i64) -> Vec<i64> {
    new_kept
        .iter()
        .flat_map(|h| {
            let p = old_kept
                .iter()
                .position(|k| k == h)
                .expect("new heads are a subset") as i64;
            (p * head_dim..(p + 1) * head_dim).collect::<Vec<_>>()
        })
        .collect()
}

/// Returns a copy of `model` without the heads that `mask` ([layers, heads], original head
/// indices, 1 keep, 0 remove) removes.
pub fn prune(model: &Model, mask: &Tensor) -> Result<Model> {
    let c = &model.config;
    let (layers, heads) = (c.num_hidden_layers, c.num_attention_heads);
    if mask.size() != [layers, heads] {
        bail!(
            "head mask has shape {:?}, expected [{layers}, {heads}]",
            mask.size()
        );
    }
    let rows: Vec<Vec<f32>> = Vec::try_from(mask.to_device(Device::Cpu).to_kind(Kind::Float))?;
    let mut config = c.clone();
    for (l, row) in rows.iter().enumerate() {
        let removed: Vec<i64> = (0..heads).filter(|&h| row[h as usize] == 0.0).collect();
        config.add_pruned_heads(l as i64, &removed);
    }
    let device = model.vs.device();
    let vs = VarStore::new(device);
    let net = BertForSequenceClassification::new(&vs.root(), &config);
    let old: HashMap<String, Tensor> = model.vs.variables();
    let head_dim = c.head_dim();
    tch::no_grad(|| -> Result<()> {
        for (name, var) in vs.variables() {
            let src = &old[&name];
            let value = if src.size() == var.size() {
                src.shallow_clone()
            } else {
                let layer: i64 = name
                    .split('.')
                    .nth(3)
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| anyhow::anyhow!("unexpected shape change of {name}"))?;
                let idx = row_index(&c.kept_heads(layer), &config.kept_heads(layer), head_dim);
                let idx = Tensor::from_slice(&idx).to_device(device);
                let dim = if name.ends_with("attention.output.dense.weight") {
                    1
                } else {
                    0
                };
                src.index_select(dim, &idx)
            };
            var.shallow_clone().copy_(&value);
        }
        Ok(())
    })?;
    Ok(Model {
        config,
        vs,
        net,
        dir: model.dir.clone(),
        report: LoadReport::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_of_kept_heads_in_already_pruned_weights() {
        // Layer had heads 0, 2, 3 (head 1 pruned before); now keep 0 and 3; head_dim 2.
        assert_eq!(row_index(&[0, 2, 3], &[0, 3], 2), vec![0, 1, 4, 5]);
        assert!(row_index(&[0, 1], &[], 4).is_empty());
    }
}
