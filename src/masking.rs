//! Iterative head masking (run_bertology.py's mask_heads) with its defects fixed: it stops when
//! no head is left to mask, honours a minimum of heads per layer, offers baselines orders and a
//! budget mode, and re-estimates importance under the current mask (or not).
use crate::data::batch::Batch;
use crate::data::dataset::Dataset;
use crate::eval::{predict, score};
use crate::importance::{compute, Settings};
use crate::model::Network;
use crate::progress::Steps;
use anyhow::Result;
use tch::{Device, Kind, Tensor};

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Order {
    /// Least important heads first (the paper's method).
    Importance,
    /// Most important heads first (a baseline that should do worst).
    Reverse,
    /// Uniformly random order from --seed (a baseline).
    Random,
}

#[derive(Clone, Copy, Debug)]
pub enum Goal {
    /// Mask while the score stays at or above this fraction of the original score.
    Threshold(f64),
    /// Keep exactly this many heads, whatever the score.
    KeepHeads(usize),
}

/// What one masking decision removes.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum PruneUnit {
    /// One query head at a time (its key/value head stays while its group has another).
    Head,
    /// A whole key/value group: the key/value head and every query head that reads it
    /// (LLM-Pruner's unit). Without grouped-query attention a group is one head.
    Group,
}

#[derive(Clone, Copy, Debug)]
pub struct MaskingSettings {
    pub goal: Goal,
    /// Fraction of all heads masked per step (at least one head).
    pub amount: f64,
    pub min_heads_per_layer: usize,
    /// Query heads masked together (1, or a key/value group's size with `--prune-unit group`).
    pub unit_heads: usize,
    /// The same number of units masked in every layer at each step (and the budget per layer),
    /// so every layer keeps one shape.
    pub uniform_heads: bool,
    /// Re-estimate importance under the current mask after every step.
    pub reestimate: bool,
    pub order: Order,
    pub seed: i64,
    pub importance: Settings,
}

/// One point of the masking curve.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Step {
    pub step: usize,
    pub heads_kept: usize,
    pub fraction_kept: f64,
    pub score: f64,
    /// Whether importance was estimated under this step's mask.
    pub reestimated: bool,
    /// Whether this step's mask met the threshold (always true in budget mode).
    pub accepted: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The next step fell below the threshold; the last passing mask was kept.
    Threshold,
    /// No head could be masked any more (all masked, or every layer at its minimum).
    NoHeadsLeft,
    /// The budget was reached.
    Budget,
}

pub struct MaskingResult {
    pub original_score: f64,
    pub final_score: f64,
    /// [layers, heads], 1 keep, 0 masked.
    pub mask: Tensor,
    pub curve: Vec<Step>,
    /// The mask of each step of the curve, [steps, layers, heads] (the rejected last step of a
    /// threshold run included): for scoring every point again on other data.
    pub step_masks: Tensor,
    pub stop: StopReason,
    /// Importance of the unmasked model, as first estimated.
    pub initial_importance: Tensor,
}

/// Heads to mask next: up to `count` units (`unit` consecutive heads: one head, or a
/// key/value group's query heads) that still have an unmasked head, in the order's sequence
/// (a unit's importance is the sum over its unmasked heads), skipping units whose layer would
/// fall below the minimum; with `per_layer`, up to `count` units in each layer. Returns the
/// heads to mask.
#[allow(clippy::too_many_arguments)] // the step's whole description; one caller each.
pub fn select_heads(
    mask: &[Vec<f32>],
    importance: &[Vec<f32>],
    count: usize,
    min_per_layer: usize,
    order: Order,
    random_rank: &[usize],
    unit: usize,
    per_layer: bool,
) -> Vec<(usize, usize)> {
    let heads = mask.first().map_or(0, Vec::len);
    let unit = unit.clamp(1, heads.max(1));
    let units = heads / unit;
    let live = |l: usize, u: usize| (u * unit..(u + 1) * unit).filter(move |&h| mask[l][h] != 0.0);
    let weight = |&(l, u): &(usize, usize)| live(l, u).map(|h| importance[l][h]).sum::<f32>();
    let mut candidates: Vec<(usize, usize)> = (0..mask.len())
        .flat_map(|l| (0..units).map(move |u| (l, u)))
        .filter(|&(l, u)| live(l, u).next().is_some())
        .collect();
    match order {
        Order::Importance => {
            candidates.sort_by(|a, b| weight(a).total_cmp(&weight(b)).then(a.cmp(b)))
        }
        Order::Reverse => candidates.sort_by(|a, b| weight(b).total_cmp(&weight(a)).then(a.cmp(b))),
        Order::Random => candidates.sort_by_key(|&(l, u)| random_rank[l * units + u]),
    }
    let mut left: Vec<usize> = mask
        .iter()
        .map(|row| row.iter().filter(|&&m| m != 0.0).count())
        .collect();
    let mut chosen = Vec::new();
    let mut taken = 0;
    let mut taken_in = vec![0; mask.len()];
    for (l, u) in candidates {
        if taken == count && !per_layer {
            break;
        }
        if per_layer && taken_in[l] == count {
            continue;
        }
        let heads: Vec<usize> = live(l, u).collect();
        if left[l] >= min_per_layer + heads.len() {
            left[l] -= heads.len();
            taken += 1;
            taken_in[l] += 1;
            chosen.extend(heads.into_iter().map(|h| (l, h)));
        }
    }
    chosen
}

/// Units of heads the next step masks (per layer with `uniform_heads`): `--masking-amount`
/// of them in threshold mode; in budget mode as many but no more than reach the budget
/// (whole units: the budget is met at the first step that reaches it). 0: the budget is met.
fn head_units_to_mask(mask: &[Vec<f32>], settings: &MaskingSettings, heads: usize) -> usize {
    let layers = mask.len();
    let unit = settings.unit_heads.clamp(1, heads.max(1));
    let kept = |row: &Vec<f32>| row.iter().filter(|&&v| v != 0.0).count();
    if settings.uniform_heads {
        let per_step = (((heads / unit) as f64 * settings.amount) as usize).max(1);
        let now = mask.iter().map(kept).max().unwrap_or(0);
        match settings.goal {
            Goal::Threshold(_) => per_step,
            Goal::KeepHeads(keep) => {
                let keep = (keep as f64 / layers.max(1) as f64).round() as usize;
                per_step.min(now.saturating_sub(keep).div_ceil(unit))
            }
        }
    } else {
        let per_step = ((layers * (heads / unit)) as f64 * settings.amount) as usize;
        let now: usize = mask.iter().map(kept).sum();
        match settings.goal {
            Goal::Threshold(_) => per_step.max(1),
            Goal::KeepHeads(keep) => per_step.max(1).min(now.saturating_sub(keep).div_ceil(unit)),
        }
    }
}

fn to_rows(t: &Tensor) -> Vec<Vec<f32>> {
    Vec::try_from(t.to_device(Device::Cpu).to_kind(Kind::Float)).unwrap_or_default()
}

/// Runs the masking loop on `data` (already batched in `batches`), watching `metric`.
pub fn mask_heads(
    net: &dyn Network,
    data: &Dataset,
    batches: &[Batch],
    metric: &str,
    settings: MaskingSettings,
    progress: Option<&Steps>,
) -> Result<MaskingResult> {
    let (layers, heads) = (net.num_layers() as usize, net.num_heads() as usize);
    let total = layers * heads;
    let score_of = |logits: &Tensor| -> Result<f64> {
        let m = score(data, logits);
        m.get(metric)
            .copied()
            .ok_or_else(|| anyhow::anyhow!("metric {metric} not computed"))
    };
    let tick = |msg: String| {
        if let Some(p) = progress {
            p.step(msg);
        }
    };
    let stats = compute(net, batches, None, settings.importance, None)?;
    let original_score = score_of(&stats.logits)?;
    let initial_importance = stats.importance.shallow_clone();
    let mut importance = to_rows(&stats.importance);
    // Heads a pruned checkpoint no longer has start masked.
    let mut mask: Vec<Vec<f32>> = (0..layers)
        .map(|l| {
            let kept: Vec<i64> = net.kept_heads()[l].clone();
            (0..heads)
                .map(|h| if kept.contains(&(h as i64)) { 1.0 } else { 0.0 })
                .collect()
        })
        .collect();
    let kept_now = |m: &Vec<Vec<f32>>| m.iter().flatten().filter(|&&v| v != 0.0).count();
    let unit = settings.unit_heads.clamp(1, heads.max(1));
    let total_units = layers * (heads / unit);
    let random_rank: Vec<usize> = {
        tch::manual_seed(settings.seed);
        let perm: Vec<i64> = Vec::try_from(Tensor::randperm(
            total_units as i64,
            (Kind::Int64, Device::Cpu),
        ))?;
        let mut rank = vec![0; total_units];
        for (r, &i) in perm.iter().enumerate() {
            rank[i as usize] = r;
        }
        rank
    };
    let mut curve = vec![Step {
        step: 0,
        heads_kept: kept_now(&mask),
        fraction_kept: kept_now(&mask) as f64 / total as f64,
        score: original_score,
        reestimated: true,
        accepted: true,
    }];
    let mut step_masks = vec![mask.concat()];
    tick(format!("unmasked {metric} {original_score:.4}"));
    let device = batches
        .first()
        .map_or(Device::Cpu, |b| b.input_ids.device());
    let mut final_score = original_score;
    let stop = loop {
        let count = head_units_to_mask(&mask, &settings, heads);
        if count == 0 {
            break StopReason::Budget;
        }
        let chosen = select_heads(
            &mask,
            &importance,
            count,
            settings.min_heads_per_layer,
            settings.order,
            &random_rank,
            unit,
            settings.uniform_heads,
        );
        if chosen.is_empty() {
            break StopReason::NoHeadsLeft;
        }
        let mut next = mask.clone();
        for &(l, h) in &chosen {
            next[l][h] = 0.0;
        }
        let next_tensor = Tensor::from_slice(&next.concat())
            .view([layers as i64, heads as i64])
            .to_device(device);
        let (logits, new_importance) = if settings.reestimate {
            let s = compute(net, batches, Some(&next_tensor), settings.importance, None)?;
            (s.logits, Some(to_rows(&s.importance)))
        } else {
            (predict(net, batches, Some(&next_tensor), None)?, None)
        };
        let s = score_of(&logits)?;
        let accepted = match settings.goal {
            Goal::Threshold(t) => s >= t * original_score,
            Goal::KeepHeads(_) => true,
        };
        step_masks.push(next.concat());
        curve.push(Step {
            step: curve.len(),
            heads_kept: kept_now(&next),
            fraction_kept: kept_now(&next) as f64 / total as f64,
            score: s,
            reestimated: settings.reestimate,
            accepted,
        });
        tick(format!(
            "step {}: {} heads kept, {metric} {s:.4}",
            curve.len() - 1,
            kept_now(&next)
        ));
        if !accepted {
            break StopReason::Threshold;
        }
        mask = next;
        final_score = s;
        if let Some(imp) = new_importance {
            importance = imp;
        }
    };
    Ok(MaskingResult {
        original_score,
        final_score,
        mask: Tensor::from_slice(&mask.concat()).view([layers as i64, heads as i64]),
        step_masks: Tensor::from_slice(&step_masks.concat()).view([
            step_masks.len() as i64,
            layers as i64,
            heads as i64,
        ]),
        curve,
        stop,
        initial_importance,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(rows: &[&[f32]]) -> Vec<Vec<f32>> {
        rows.iter().map(|r| r.to_vec()).collect()
    }

    #[test]
    fn selection_respects_order_mask_and_minimum() {
        let mask = grid(&[&[1.0, 1.0, 1.0], &[1.0, 0.0, 1.0]]);
        let imp = grid(&[&[0.5, 0.1, 0.9], &[0.2, 0.0, 0.3]]);
        let none = vec![0; 6];
        // Least important unmasked first; the masked head (1,1) is skipped.
        assert_eq!(
            select_heads(&mask, &imp, 2, 0, Order::Importance, &none, 1, false),
            vec![(0, 1), (1, 0)]
        );
        assert_eq!(
            select_heads(&mask, &imp, 2, 0, Order::Reverse, &none, 1, false),
            vec![(0, 2), (0, 0)]
        );
        // Layer 1 has two heads left; with a minimum of 2 none of them can go.
        assert_eq!(
            select_heads(&mask, &imp, 3, 2, Order::Importance, &none, 1, false),
            vec![(0, 1)]
        );
        // Random order follows the given ranks: (1,2) has rank 0, (1,1) is masked, (1,0) rank 2.
        let rank = vec![5, 4, 3, 2, 1, 0];
        assert_eq!(
            select_heads(&mask, &imp, 2, 0, Order::Random, &rank, 1, false),
            vec![(1, 2), (1, 0)]
        );
        // Groups of two heads: a group's importance is the sum over its unmasked heads, and
        // masking it masks all of them.
        let mask4 = grid(&[&[1.0, 1.0, 1.0, 0.0], &[1.0, 1.0, 1.0, 1.0]]);
        let imp4 = grid(&[&[0.3, 0.3, 0.5, 9.0], &[0.1, 0.2, 0.4, 0.4]]);
        assert_eq!(
            select_heads(&mask4, &imp4, 1, 0, Order::Importance, &none, 2, false),
            vec![(1, 0), (1, 1)]
        );
        assert_eq!(
            select_heads(&mask4, &imp4, 2, 0, Order::Importance, &none, 2, false),
            vec![(1, 0), (1, 1), (0, 2)]
        );
        // A minimum of 2 per layer: layer 1 loses one group of two, layer 0 its one-head
        // remnant of a group; no further group fits.
        assert_eq!(
            select_heads(&mask4, &imp4, 4, 2, Order::Importance, &none, 2, false),
            vec![(1, 0), (1, 1), (0, 2)]
        );
        let all_masked = grid(&[&[0.0, 0.0, 0.0], &[0.0, 0.0, 0.0]]);
        assert!(
            select_heads(&all_masked, &imp, 2, 0, Order::Importance, &none, 1, false).is_empty()
        );
        // Per layer: the least important unit of each layer, not the two least important.
        assert_eq!(
            select_heads(&mask4, &imp4, 1, 0, Order::Importance, &none, 2, true),
            vec![(1, 0), (1, 1), (0, 2)]
        );
        assert_eq!(
            select_heads(&mask, &imp, 1, 0, Order::Importance, &none, 1, true),
            vec![(0, 1), (1, 0)]
        );
    }

    #[test]
    fn uniform_budgets_count_per_layer() {
        let settings = |goal, uniform_heads| MaskingSettings {
            goal,
            amount: 0.34,
            min_heads_per_layer: 0,
            unit_heads: 3,
            uniform_heads,
            reestimate: true,
            order: Order::Importance,
            seed: 0,
            importance: crate::importance::Settings {
                estimator: crate::importance::Estimator::PerExample,
                layer_norm: true,
                global_norm: true,
                entropy: false,
            },
        };
        // Two layers of nine heads in groups of three.
        let full = vec![vec![1.0; 9]; 2];
        // Keep 4 of 9 per layer (8 of 18): two groups go from each layer, one per step.
        let keep = settings(Goal::KeepHeads(8), true);
        assert_eq!(head_units_to_mask(&full, &keep, 9), 1);
        let mut one_gone = full.clone();
        for row in &mut one_gone {
            row[..3].fill(0.0);
        }
        assert_eq!(head_units_to_mask(&one_gone, &keep, 9), 1);
        let mut two_gone = one_gone.clone();
        for row in &mut two_gone {
            row[3..6].fill(0.0);
        }
        assert_eq!(head_units_to_mask(&two_gone, &keep, 9), 0);
        // Over all heads: 34 % of 6 groups is 2 per step, until 8 heads are left.
        let all = settings(Goal::KeepHeads(8), false);
        assert_eq!(head_units_to_mask(&full, &all, 9), 2);
        assert_eq!(head_units_to_mask(&two_gone, &all, 9), 0);
        assert_eq!(
            head_units_to_mask(&full, &settings(Goal::Threshold(0.9), true), 9),
            1
        );
    }
}

/// What a joint masking run masks: heads, feed-forward neurons, or both.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Units {
    Heads,
    Neurons,
    Both,
}

/// How feed-forward neurons are masked beside (or instead of) heads.
#[derive(Clone, Copy, Debug)]
pub struct NeuronSettings {
    /// Mask heads too (with `MaskingSettings`' unit, minimum and budget).
    pub heads: bool,
    /// Budget mode: neurons to keep in all (uniform: in each layer). None: the threshold.
    pub keep: Option<usize>,
    /// The same number of neurons in every layer: each step masks as many in each layer.
    pub uniform: bool,
}

/// A joint run's result: the heads' (as `mask_heads` gives, all ones when heads are not
/// masked) and the neurons'.
pub struct UnitsResult {
    pub heads: MaskingResult,
    /// [layers, intermediate], 1 keep, 0 masked (over the original neurons).
    pub neuron_mask: Tensor,
    /// Importance of every neuron of the unmasked model, as first estimated.
    pub initial_neuron_importance: Tensor,
    /// Neurons kept after each step of the curve.
    pub neurons_kept: Vec<usize>,
    /// [steps, layers, intermediate]: every step's neuron mask, as `heads.step_masks`.
    pub step_neuron_masks: Tensor,
}

/// Neurons to mask next in layer-free order: up to `count` live neurons in the order's
/// sequence (importance: least important first).
fn select_neurons(
    mask: &[Vec<f32>],
    importance: &[Vec<f32>],
    count: usize,
    order: Order,
    random_rank: &[usize],
) -> Vec<(usize, usize)> {
    let n = mask.first().map_or(0, Vec::len);
    let mut live: Vec<(usize, usize)> = (0..mask.len())
        .flat_map(|l| (0..n).map(move |i| (l, i)))
        .filter(|&(l, i)| mask[l][i] != 0.0)
        .collect();
    sort_units(&mut live, importance, order, random_rank, n);
    live.truncate(count);
    live
}

fn sort_units(
    units: &mut [(usize, usize)],
    importance: &[Vec<f32>],
    order: Order,
    random_rank: &[usize],
    n: usize,
) {
    let w = |&(l, i): &(usize, usize)| importance[l][i];
    match order {
        Order::Importance => units.sort_by(|a, b| w(a).total_cmp(&w(b)).then(a.cmp(b))),
        Order::Reverse => units.sort_by(|a, b| w(b).total_cmp(&w(a)).then(a.cmp(b))),
        Order::Random => units.sort_by_key(|&(l, i)| random_rank[l * n + i]),
    }
}

/// `per_layer[l]` live neurons of each layer l, in the order's sequence within the layer.
fn select_neurons_uniform(
    mask: &[Vec<f32>],
    importance: &[Vec<f32>],
    per_layer: &[usize],
    order: Order,
    random_rank: &[usize],
) -> Vec<(usize, usize)> {
    let n = mask.first().map_or(0, Vec::len);
    let mut chosen = Vec::new();
    for (l, row) in mask.iter().enumerate() {
        let mut live: Vec<(usize, usize)> =
            (0..n).filter(|&i| row[i] != 0.0).map(|i| (l, i)).collect();
        sort_units(&mut live, importance, order, random_rank, n);
        live.truncate(per_layer[l]);
        chosen.extend(live);
    }
    chosen
}

fn random_ranks(seed: i64, total: usize) -> Result<Vec<usize>> {
    tch::manual_seed(seed);
    let perm: Vec<i64> = Vec::try_from(Tensor::randperm(total as i64, (Kind::Int64, Device::Cpu)))?;
    let mut rank = vec![0; total];
    for (r, &i) in perm.iter().enumerate() {
        rank[i as usize] = r;
    }
    Ok(rank)
}

/// Iterative masking of feed-forward neurons, alone or with heads: every step masks
/// `amount` of all neurons (uniform: of each layer's) and, with heads, `amount` of the heads,
/// by the same order; importance of both comes from one backward pass per step. The threshold
/// rule is `mask_heads`' (the last step whose score stays at or above the threshold times the
/// original); in budget mode each kind stops at its budget.
pub fn mask_units(
    net: &dyn Network,
    data: &Dataset,
    batches: &[Batch],
    metric: &str,
    settings: MaskingSettings,
    neurons: NeuronSettings,
    progress: Option<&Steps>,
) -> Result<UnitsResult> {
    use crate::importance::compute_masked;
    use crate::model::Masks;
    let (layers, heads) = (net.num_layers() as usize, net.num_heads() as usize);
    let n = net.intermediate_size() as usize;
    let total_heads = layers * heads;
    let score_of = |logits: &Tensor| -> Result<f64> {
        score(data, logits)
            .get(metric)
            .copied()
            .ok_or_else(|| anyhow::anyhow!("metric {metric} not computed"))
    };
    let tick = |msg: String| {
        if let Some(p) = progress {
            p.step(msg);
        }
    };
    let device = batches
        .first()
        .map_or(Device::Cpu, |b| b.input_ids.device());
    let grid = |rows: &Vec<Vec<f32>>, w: usize| {
        Tensor::from_slice(&rows.concat())
            .view([layers as i64, w as i64])
            .to_device(device)
    };
    let pass = |hm: &Vec<Vec<f32>>, nm: &Vec<Vec<f32>>| {
        let (h, m) = (grid(hm, heads), grid(nm, n));
        let masks = Masks {
            heads: Some(&h),
            neurons: Some(&m),
        };
        compute_masked(net, batches, masks, true, settings.importance, None)
    };
    let mut head_mask: Vec<Vec<f32>> = net
        .kept_heads()
        .iter()
        .map(|k| {
            (0..heads)
                .map(|h| f32::from(k.contains(&(h as i64))))
                .collect()
        })
        .collect();
    let mut neuron_mask: Vec<Vec<f32>> = net
        .kept_neurons()
        .iter()
        .map(|k| (0..n).map(|i| f32::from(k.contains(&(i as i64)))).collect())
        .collect();
    let stats = pass(&head_mask, &neuron_mask)?;
    let original_score = score_of(&stats.logits)?;
    let initial_importance = stats.importance.shallow_clone();
    let initial_neuron_importance = stats
        .neuron_importance
        .as_ref()
        .map(|t| t.shallow_clone())
        .unwrap_or_else(|| Tensor::zeros([layers as i64, n as i64], (Kind::Float, Device::Cpu)));
    let mut head_imp = to_rows(&stats.importance);
    let mut neuron_imp = to_rows(&initial_neuron_importance);
    let kept = |m: &Vec<Vec<f32>>| m.iter().flatten().filter(|&&v| v != 0.0).count();
    let unit = settings.unit_heads.clamp(1, heads.max(1));
    let head_units = layers * (heads / unit);
    let neurons_per_step = ((layers * n) as f64 * settings.amount) as usize;
    let neurons_per_step = neurons_per_step.max(1);
    let per_layer_step = ((n as f64 * settings.amount) as usize).max(1);
    let head_rank = random_ranks(settings.seed, head_units)?;
    let neuron_rank = random_ranks(settings.seed.wrapping_add(1), layers * n)?;
    let budget = matches!(settings.goal, Goal::KeepHeads(_)) || neurons.keep.is_some();
    let frac = |hm: &Vec<Vec<f32>>, nm: &Vec<Vec<f32>>| {
        if neurons.heads {
            kept(hm) as f64 / total_heads as f64
        } else {
            kept(nm) as f64 / (layers * n).max(1) as f64
        }
    };
    let mut curve = vec![Step {
        step: 0,
        heads_kept: kept(&head_mask),
        fraction_kept: frac(&head_mask, &neuron_mask),
        score: original_score,
        reestimated: true,
        accepted: true,
    }];
    let mut neurons_kept = vec![kept(&neuron_mask)];
    let mut step_heads = vec![head_mask.concat()];
    let mut step_neurons = vec![neuron_mask.concat()];
    tick(format!("unmasked {metric} {original_score:.4}"));
    let mut final_score = original_score;
    let stop = loop {
        if !neurons.heads && !budget && !neurons.uniform && kept(&neuron_mask) == 0 {
            break StopReason::NoHeadsLeft;
        }
        // Heads: as mask_heads, up to their budget.
        let head_count = if neurons.heads {
            head_units_to_mask(&head_mask, &settings, heads)
        } else {
            0
        };
        let chosen_heads = if head_count > 0 {
            select_heads(
                &head_mask,
                &head_imp,
                head_count,
                settings.min_heads_per_layer,
                settings.order,
                &head_rank,
                unit,
                settings.uniform_heads,
            )
        } else {
            Vec::new()
        };
        let chosen_neurons = if neurons.uniform {
            let counts: Vec<usize> = neuron_mask
                .iter()
                .map(|r| {
                    let now = r.iter().filter(|&&v| v != 0.0).count();
                    match neurons.keep {
                        Some(keep) => per_layer_step.min(now.saturating_sub(keep)),
                        None => per_layer_step.min(now),
                    }
                })
                .collect();
            select_neurons_uniform(
                &neuron_mask,
                &neuron_imp,
                &counts,
                settings.order,
                &neuron_rank,
            )
        } else {
            let now = kept(&neuron_mask);
            let count = match neurons.keep {
                Some(keep) => neurons_per_step.min(now.saturating_sub(keep)),
                None => neurons_per_step,
            };
            select_neurons(
                &neuron_mask,
                &neuron_imp,
                count,
                settings.order,
                &neuron_rank,
            )
        };
        if chosen_heads.is_empty() && chosen_neurons.is_empty() {
            break if budget {
                StopReason::Budget
            } else {
                StopReason::NoHeadsLeft
            };
        }
        let (mut next_heads, mut next_neurons) = (head_mask.clone(), neuron_mask.clone());
        for &(l, h) in &chosen_heads {
            next_heads[l][h] = 0.0;
        }
        for &(l, i) in &chosen_neurons {
            next_neurons[l][i] = 0.0;
        }
        let (logits, new_imp) = if settings.reestimate {
            let s = pass(&next_heads, &next_neurons)?;
            let ni = s.neuron_importance.as_ref().map(to_rows);
            (s.logits, Some((to_rows(&s.importance), ni)))
        } else {
            let (h, m) = (grid(&next_heads, heads), grid(&next_neurons, n));
            let masks = Masks {
                heads: Some(&h),
                neurons: Some(&m),
            };
            (
                crate::eval::predict_masked(net, batches, masks, None)?,
                None,
            )
        };
        let s = score_of(&logits)?;
        let accepted = match settings.goal {
            Goal::Threshold(t) if !budget => s >= t * original_score,
            _ => true,
        };
        curve.push(Step {
            step: curve.len(),
            heads_kept: kept(&next_heads),
            fraction_kept: frac(&next_heads, &next_neurons),
            score: s,
            reestimated: settings.reestimate,
            accepted,
        });
        neurons_kept.push(kept(&next_neurons));
        step_heads.push(next_heads.concat());
        step_neurons.push(next_neurons.concat());
        tick(format!(
            "step {}: {} heads, {} neurons kept, {metric} {s:.4}",
            curve.len() - 1,
            kept(&next_heads),
            kept(&next_neurons)
        ));
        if !accepted {
            break StopReason::Threshold;
        }
        head_mask = next_heads;
        neuron_mask = next_neurons;
        final_score = s;
        if let Some((hi, ni)) = new_imp {
            head_imp = hi;
            if let Some(ni) = ni {
                neuron_imp = ni;
            }
        }
    };
    Ok(UnitsResult {
        heads: MaskingResult {
            original_score,
            final_score,
            mask: Tensor::from_slice(&head_mask.concat()).view([layers as i64, heads as i64]),
            step_masks: Tensor::from_slice(&step_heads.concat()).view([
                step_heads.len() as i64,
                layers as i64,
                heads as i64,
            ]),
            curve,
            stop,
            initial_importance,
        },
        neuron_mask: Tensor::from_slice(&neuron_mask.concat()).view([layers as i64, n as i64]),
        initial_neuron_importance,
        neurons_kept,
        step_neuron_masks: Tensor::from_slice(&step_neurons.concat()).view([
            step_neurons.len() as i64,
            layers as i64,
            n as i64,
        ]),
    })
}
