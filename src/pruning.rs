//! Physical pruning: a new model whose layers keep only the unmasked heads and feed-forward
//! neurons. Every weight whose
//! size depends on the heads (the network says where, through `head_axis`) keeps the slices of
//! the surviving heads, and `pruned_heads` records the original indices, so the saved model
//! reloads at its new shapes here and in transformers. Query heads and key/value heads are
//! kept separately: under grouped-query attention a key/value head stays while any query head
//! of its group does.
use crate::model::{HeadAxis, HeadUnit, Model};
use anyhow::{anyhow, bail, Result};
use std::collections::HashMap;
use tch::{Device, Kind, Tensor};

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

/// The indices along `axis.dim` to keep: the kept heads' slices in each of the axis' blocks
/// (fused q/k/v weights hold three blocks side by side).
fn axis_index(axis: HeadAxis, old_kept: &[i64], new_kept: &[i64]) -> Vec<i64> {
    let rows = row_index(old_kept, new_kept, axis.head_dim);
    let width = old_kept.len() as i64 * axis.head_dim;
    (0..axis.blocks)
        .flat_map(|b| rows.iter().map(move |r| b * width + r))
        .collect()
}

/// Returns a copy of `model` without the heads that `mask` ([layers, heads], original head
/// indices, 1 keep, 0 remove) removes.
pub fn prune(model: &Model, mask: &Tensor) -> Result<Model> {
    prune_units(model, Some(mask), None)
}

/// 0/1 rows of a [layers, width] mask, checked against the model.
fn mask_rows(mask: &Tensor, what: &str, layers: i64, width: i64) -> Result<Vec<Vec<f32>>> {
    if mask.size() != [layers, width] {
        bail!(
            "{what} mask has shape {:?}, expected [{layers}, {width}]",
            mask.size()
        );
    }
    Ok(Vec::try_from(
        mask.to_device(Device::Cpu).to_kind(Kind::Float),
    )?)
}

/// Returns a copy of `model` without the heads `head_mask` removes ([layers, heads]) and the
/// intermediate neurons `neuron_mask` removes ([layers, intermediate]); both over original
/// indices, 1 keep, 0 remove; None removes nothing of that kind. A layer whose heads or
/// neurons are already pruned keeps its remaining ones where the mask says 1. When every layer
/// keeps as many neurons as the others, the config's intermediate size says so (the model
/// loads in transformers' own class); else `pruned_neurons` records each layer's.
pub fn prune_units(
    model: &Model,
    head_mask: Option<&Tensor>,
    neuron_mask: Option<&Tensor>,
) -> Result<Model> {
    let net = model.net.as_ref();
    let (layers, heads) = (net.num_layers(), net.num_heads());
    let intermediate = net.intermediate_size();
    let mut config = model.config.clone();
    if let Some(mask) = head_mask {
        let rows = mask_rows(mask, "head", layers, heads)?;
        for (l, row) in rows.iter().enumerate() {
            let removed: Vec<i64> = (0..heads).filter(|&h| row[h as usize] == 0.0).collect();
            config.add_pruned_heads(l as i64, &removed);
        }
    }
    // Neurons kept, in the original numbering of this model's config.
    let old_neurons = net.kept_neurons();
    let kept_neurons: Vec<Vec<i64>> = match neuron_mask {
        Some(mask) => {
            let rows = mask_rows(mask, "neuron", layers, intermediate)?;
            old_neurons
                .iter()
                .zip(&rows)
                .map(|(kept, row)| {
                    kept.iter()
                        .copied()
                        .filter(|&n| row[n as usize] != 0.0)
                        .collect()
                })
                .collect()
        }
        None => old_neurons.clone(),
    };
    if neuron_mask.is_some() {
        config.set_kept_neurons(&kept_neurons, intermediate, net.intermediate_field());
    }
    let pruned = model.empty_like(config)?;
    let kept = |m: &Model| [m.net.kept(HeadUnit::Query), m.net.kept(HeadUnit::KeyValue)];
    let (old_kept, new_kept) = (kept(model), kept(&pruned));
    let old: HashMap<String, Tensor> = model.vs.variables();
    let device = model.vs.device();
    tch::no_grad(|| -> Result<()> {
        for (name, var) in pruned.vs.variables() {
            let src = old
                .get(&name)
                .ok_or_else(|| anyhow!("pruned model has a variable {name} the original lacks"))?;
            let value = match pruned.net.head_axis(&name) {
                Some(axis) if src.size() != var.size() => {
                    let l = axis.layer as usize;
                    // Neurons may be renumbered in the pruned config: both lists are in the
                    // original model's numbering here.
                    let idx = match axis.unit {
                        HeadUnit::Query => axis_index(axis, &old_kept[0][l], &new_kept[0][l]),
                        HeadUnit::KeyValue => axis_index(axis, &old_kept[1][l], &new_kept[1][l]),
                        HeadUnit::Neuron => axis_index(axis, &old_neurons[l], &kept_neurons[l]),
                    };
                    src.index_select(axis.dim, &Tensor::from_slice(&idx).to_device(device))
                }
                _ if src.size() == var.size() => src.shallow_clone(),
                _ => bail!("unexpected shape change of {name}"),
            };
            var.shallow_clone().copy_(&value);
        }
        Ok(())
    })?;
    Ok(pruned)
}

/// The number of parameters `prune_units` would leave for these masks, without building the
/// model: every weight whose size depends on heads or neurons keeps the kept units' share of
/// that axis. Lets a masking curve say what each step's model would weigh.
pub fn parameters_kept(
    model: &Model,
    head_mask: Option<&Tensor>,
    neuron_mask: Option<&Tensor>,
) -> Result<i64> {
    let net = model.net.as_ref();
    let layers = net.num_layers();
    let keep = |old: Vec<Vec<i64>>, mask: Option<&Tensor>, what, width| -> Result<Vec<Vec<i64>>> {
        let Some(mask) = mask else { return Ok(old) };
        let rows = mask_rows(mask, what, layers, width)?;
        Ok(old
            .into_iter()
            .zip(&rows)
            .map(|(kept, row)| {
                kept.into_iter()
                    .filter(|&u| row[u as usize] != 0.0)
                    .collect()
            })
            .collect())
    };
    let queries = keep(
        net.kept(HeadUnit::Query),
        head_mask,
        "head",
        net.num_heads(),
    )?;
    let neurons = keep(
        net.kept_neurons(),
        neuron_mask,
        "neuron",
        net.intermediate_size(),
    )?;
    // A key/value head stays while a query head of its group does.
    let kv: Vec<Vec<i64>> = queries
        .iter()
        .map(|q| {
            let mut g: Vec<i64> = q.iter().map(|&h| net.kv_group_of(h)).collect();
            g.dedup();
            g
        })
        .collect();
    let now = [
        net.kept(HeadUnit::Query),
        net.kept(HeadUnit::KeyValue),
        net.kept_neurons(),
    ];
    let mut total = 0i64;
    for (name, var) in model.vs.variables() {
        let n = var.numel() as i64;
        total += match net.head_axis(&name) {
            Some(axis) => {
                let l = axis.layer as usize;
                let (before, after) = match axis.unit {
                    HeadUnit::Query => (now[0][l].len(), queries[l].len()),
                    HeadUnit::KeyValue => (now[1][l].len(), kv[l].len()),
                    HeadUnit::Neuron => (now[2][l].len(), neurons[l].len()),
                };
                if before == 0 {
                    n
                } else {
                    n / before as i64 * after as i64
                }
            }
            None => n,
        };
    }
    Ok(total)
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

    #[test]
    fn fused_qkv_keeps_each_blocks_slices() {
        // Fused q|k|v of 3 heads (head_dim 2, width 6 each); keep heads 0 and 2.
        let axis = HeadAxis {
            layer: 0,
            dim: 1,
            head_dim: 2,
            blocks: 3,
            unit: HeadUnit::Query,
        };
        assert_eq!(
            axis_index(axis, &[0, 1, 2], &[0, 2]),
            vec![0, 1, 4, 5, 6, 7, 10, 11, 12, 13, 16, 17]
        );
    }
}
