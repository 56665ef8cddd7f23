//! Head importance |∂L/∂ξ| and attention entropy (Michel et al. 2019; run_bertology.py).
//!
//! ξ is a head mask of ones (or the current mask while masking) multiplying every head's
//! attention. The weights are frozen: only the mask's gradient is taken.
use crate::data::batch::Batch;
use crate::model::{ForwardOptions, Masks, Network};
use anyhow::Result;
use indicatif::ProgressBar;
use tch::{Device, Kind, Tensor};

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Estimator {
    /// E_x |∂L(x)/∂ξ|: the paper's definition, one backward per batch with a per-example mask;
    /// independent of the batch size.
    PerExample,
    /// Exactly run_bertology.py: batch-mean loss, the mask's gradient never zeroed between
    /// batches (it adds |Σ_{s≤t} g_s| after batch t). For reproducing old numbers.
    Anchor,
}

/// How importance is computed and normalised.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    pub estimator: Estimator,
    /// Divide each layer by its L2 norm (anchor default).
    pub layer_norm: bool,
    /// Min-max normalise over all heads (anchor default).
    pub global_norm: bool,
    /// Also compute attention entropy (needs explicit attention probabilities, slower).
    pub entropy: bool,
}

/// Result of one pass over the data.
pub struct HeadStats {
    /// [layers, heads] before normalisation (divided by the token count, or the example count
    /// for the per-example estimator).
    pub raw_importance: Tensor,
    /// [layers, heads] after the normalisations asked for.
    pub importance: Tensor,
    /// [layers, heads] mean entropy per non-padding query token (zeros when not computed).
    pub entropy: Tensor,
    /// Logits of every example (language models: [loss sum, tokens]), in the data's original
    /// order (for the score under this mask).
    pub logits: Tensor,
    /// Non-padding tokens seen.
    pub tokens: i64,
    /// [layers, intermediate] importance of every feed-forward neuron |∂L/∂m| (same estimator,
    /// denominator and normalisations as the heads'), when asked for; before and after
    /// normalisation.
    pub raw_neuron_importance: Option<Tensor>,
    pub neuron_importance: Option<Tensor>,
}

/// One mask whose gradient is taken: its value, and the running sums of the estimator.
struct Slot {
    base: Tensor,
    importance: Tensor,
    anchor_grad: Tensor,
}

impl Slot {
    fn new(mask: Option<&Tensor>, shape: [i64; 2], device: Device) -> Self {
        let base = match mask {
            Some(m) => m.to_device(device).to_kind(Kind::Float).detach(),
            None => Tensor::ones(shape, (Kind::Float, device)),
        };
        Slot {
            base,
            importance: Tensor::zeros(shape, (Kind::Double, device)),
            anchor_grad: Tensor::zeros(shape, (Kind::Double, device)),
        }
    }

    /// The mask of a pass: shared, or one row per example.
    fn leaf(&self, shared: bool, batch: i64) -> Tensor {
        if shared {
            self.base.copy()
        } else {
            let s = self.base.size();
            self.base
                .unsqueeze(0)
                .expand([batch, s[0], s[1]], false)
                .copy()
        }
        .set_requires_grad(true)
    }

    /// Adds a pass's gradient (`sizes`: the examples of each anchor batch stacked in it).
    fn accumulate(&mut self, grad: &Tensor, estimator: Estimator, shared: bool, sizes: &[i64]) {
        match estimator {
            Estimator::PerExample => {
                self.importance += grad.abs().sum_dim_intlist(0, false, Kind::Double)
            }
            Estimator::Anchor if shared => {
                self.anchor_grad += grad;
                self.importance += self.anchor_grad.abs();
            }
            Estimator::Anchor => {
                // Batch by batch, in order: the anchor's running gradient after each.
                let mut row = 0;
                for &n in sizes {
                    self.anchor_grad +=
                        grad.narrow(0, row, n)
                            .sum_dim_intlist(0, false, Kind::Double);
                    self.importance += self.anchor_grad.abs();
                    row += n;
                }
            }
        }
    }
}

/// Entropy of attention rows, −Σ_k p log p with 0·log 0 = 0: [batch, heads, queries]. The
/// log of a clamped p is vectorised (xlogy is not) and exact, as 0 times a finite log is 0.
fn entropy_of(probs: &Tensor) -> Tensor {
    -(probs * probs.clamp_min(1e-30).log()).sum_dim_intlist(-1, false, Kind::Float)
}

/// Examples per forward pass when anchor batches are run together, and for a language model
/// the most logits (examples × positions × vocabulary) such a pass may hold.
const GROUP_EXAMPLES: usize = 32;
const GROUP_LOGITS: i64 = 1 << 26;

/// Which batches run in one forward pass. The anchor's small batches (batch size 1 by default)
/// are stacked when they have the same width, as its padded inputs and token-id lines do: the
/// same gradients per batch from one backward pass instead of one pass each. Everything else
/// runs batch by batch.
fn groups(
    net: &dyn Network,
    batches: &[Batch],
    estimator: Estimator,
    max_examples: usize,
) -> Vec<Vec<usize>> {
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut size = 0;
    for (i, b) in batches.iter().enumerate() {
        let width = b.input_ids.size()[1];
        let fits = |group: &[usize], size: usize| {
            let examples = size + b.len();
            let logits = if net.objective().is_language_model() {
                examples as i64 * width * net.vocab_size()
            } else {
                0
            };
            estimator == Estimator::Anchor
                && batches[group[0]].input_ids.size()[1] == width
                && examples <= max_examples
                && logits <= GROUP_LOGITS
        };
        match out.last_mut() {
            Some(group) if fits(group, size) => {
                group.push(i);
                size += b.len();
            }
            _ => {
                out.push(vec![i]);
                size = b.len();
            }
        }
    }
    out
}

/// Errors when every head of every layer is pruned: there is no head mask to differentiate
/// (libtorch hands back an undefined gradient, which crashes the next operation), nothing to
/// rank and nothing to look at.
pub fn ensure_some_head(net: &dyn Network, what: &str) -> Result<()> {
    if net.heads_per_layer().iter().all(|&h| h == 0) {
        anyhow::bail!(
            "{what}: the model has no attention head left (every head of its {} layers is pruned): there is nothing to rank or show; eval and hidden-states still run it",
            net.num_layers()
        );
    }
    Ok(())
}

/// One pass: importance (and entropy) of every head under `mask` ([layers, heads], ones if None).
pub fn compute(
    net: &dyn Network,
    batches: &[Batch],
    mask: Option<&Tensor>,
    settings: Settings,
    progress: Option<&ProgressBar>,
) -> Result<HeadStats> {
    compute_in_groups(
        net,
        batches,
        Masks::heads(mask),
        false,
        settings,
        progress,
        GROUP_EXAMPLES,
    )
}

/// `compute` under a head mask and a neuron mask ([layers, intermediate], ones if None), with
/// the importance of every feed-forward neuron too when `neurons` (or a neuron mask is given):
/// the gradients of both masks come from the same backward pass.
pub fn compute_masked(
    net: &dyn Network,
    batches: &[Batch],
    masks: Masks,
    neurons: bool,
    settings: Settings,
    progress: Option<&ProgressBar>,
) -> Result<HeadStats> {
    compute_in_groups(
        net,
        batches,
        masks,
        neurons,
        settings,
        progress,
        GROUP_EXAMPLES,
    )
}

/// `compute_masked`, stacking at most `group_examples` examples of anchor batches per forward
/// pass.
fn compute_in_groups(
    net: &dyn Network,
    batches: &[Batch],
    masks: Masks,
    neurons: bool,
    settings: Settings,
    progress: Option<&ProgressBar>,
    group_examples: usize,
) -> Result<HeadStats> {
    ensure_some_head(net, "head importance")?;
    let (layers, heads) = (net.num_layers(), net.num_heads());
    let device = batches
        .first()
        .map_or(Device::Cpu, |b| b.input_ids.device());
    if let Some(m) = masks.neurons {
        crate::model::network::check_neuron_mask(m, 1, layers, net.intermediate_size())?;
    }
    let mut head_slot = Slot::new(masks.heads, [layers, heads], device);
    let mut neuron_slot = (neurons || masks.neurons.is_some())
        .then(|| Slot::new(masks.neurons, [layers, net.intermediate_size()], device));
    let entropy = Tensor::zeros([layers, heads], (Kind::Double, device));
    let mut tokens = 0i64;
    let mut examples = 0i64;
    let n: usize = batches.iter().map(Batch::len).sum();
    let mut order = Vec::with_capacity(n);
    let mut parts = Vec::with_capacity(batches.len());
    // Entropy only reads the probabilities: the gradient takes the fused path.
    let opts = ForwardOptions {
        train: false,
        output_attentions: settings.entropy,
        output_hidden_states: false,
        detached_attentions: true,
    };
    for group in groups(net, batches, settings.estimator, group_examples) {
        let first = group[0];
        let members: Vec<&Batch> = group.iter().map(|&i| &batches[i]).collect();
        for (&i, b) in group.iter().zip(&members) {
            crate::eval::check_inputs(net, b, i)?;
        }
        let joined;
        let b: &Batch = if members.len() == 1 {
            members[0]
        } else {
            joined = Batch::concat(&members);
            &joined
        };
        let labels = b
            .labels
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("head importance needs labels; this split has none"))?;
        let bsz = b.len() as i64;
        // One anchor batch takes the shared mask; anything else a mask per example, whose
        // gradient rows are then each example's own.
        let shared = settings.estimator == Estimator::Anchor && members.len() == 1;
        let xi = head_slot.leaf(shared, bsz);
        let xn = neuron_slot.as_ref().map(|s| s.leaf(shared, bsz));
        let pass_masks = Masks {
            heads: Some(&xi),
            neurons: xn.as_ref(),
        };
        let out = net.forward_masked(&b.inputs(), pass_masks, opts)?;
        crate::finite::check_logits(&out.logits, first, &b.indices)?;
        let loss = match settings.estimator {
            Estimator::PerExample => net.loss(&out.logits, labels, true),
            Estimator::Anchor if shared => net.loss(&out.logits, labels, false),
            // The sum of the anchor batches' own losses: each batch's rows only reach its loss.
            Estimator::Anchor => {
                let (num, den) = net.loss_parts(&out.logits, labels);
                let mut each = Vec::with_capacity(members.len());
                let mut row = 0;
                for m in &members {
                    let n = m.len() as i64;
                    each.push(
                        num.narrow(0, row, n).sum(num.kind())
                            / den.narrow(0, row, n).sum(den.kind()).clamp_min(1.0),
                    );
                    row += n;
                }
                Tensor::stack(&each, 0).sum(num.kind())
            }
        };
        let mut leaves = vec![&xi];
        leaves.extend(xn.as_ref());
        // A loss that does not depend on the masks (no kept head or neuron reads them) has no
        // autograd graph, and libtorch's engine dereferences the missing root (a segfault in
        // Engine::compute_dependencies, exit 139): its gradients are zero, as is an undefined
        // gradient (a mask that reached no node).
        let raw_grads: Vec<Tensor> = if loss.requires_grad() {
            Tensor::run_backward(&[&loss], &leaves, false, false)
        } else {
            leaves.iter().map(|l| l.zeros_like()).collect()
        };
        let mut grads =
            raw_grads
                .into_iter()
                .zip(&leaves)
                .map(|(g, l)| if g.defined() { g } else { l.zeros_like() });
        let sizes: Vec<i64> = members.iter().map(|m| m.len() as i64).collect();
        if let Some(grad) = grads.next() {
            let grad = grad.to_kind(Kind::Double);
            crate::finite::ensure_finite(&grad, "head-mask gradient", || {
                format!("in batch {first}")
            })?;
            head_slot.accumulate(&grad, settings.estimator, shared, &sizes);
        }
        if let (Some(slot), Some(grad)) = (neuron_slot.as_mut(), grads.next()) {
            let grad = grad.to_kind(Kind::Double);
            crate::finite::ensure_finite(&grad, "neuron-mask gradient", || {
                format!("in batch {first}")
            })?;
            slot.accumulate(&grad, settings.estimator, shared, &sizes);
        }
        if let Some(attentions) = &out.attentions {
            let query_mask = b.attention_mask.to_kind(Kind::Float).unsqueeze(1);
            for (l, probs) in attentions.iter().enumerate() {
                let h = tch::no_grad(|| {
                    (entropy_of(&probs.detach()) * &query_mask).sum_dim_intlist(
                        [0, 2].as_slice(),
                        false,
                        Kind::Double,
                    )
                });
                let kept = net.kept_head_indices(l, device);
                let row = entropy.get(l as i64);
                let updated = row.index_select(0, &kept) + h;
                let _ = row.shallow_clone().index_copy_(0, &kept, &updated);
            }
        }
        parts.push(
            net.summary(&out.logits, Some(labels))
                .detach()
                .to_device(Device::Cpu),
        );
        order.extend(b.indices.iter().map(|&i| i as i64));
        tokens += b.tokens;
        examples += bsz;
        if let Some(p) = progress {
            p.inc(b.len() as u64);
        }
    }
    // The anchor divides by tokens; the per-example estimator is a mean over examples.
    let denominator = match settings.estimator {
        Estimator::PerExample => examples.max(1),
        Estimator::Anchor => tokens.max(1),
    } as f64;
    let raw = head_slot.importance / denominator;
    let entropy = entropy / tokens.max(1) as f64;
    let normalised = normalise(&raw, settings.layer_norm, settings.global_norm);
    let neuron_raw = neuron_slot.map(|s| s.importance / denominator);
    let neuron_normalised = neuron_raw
        .as_ref()
        .map(|r| normalise(r, settings.layer_norm, settings.global_norm));
    let to_cpu = |t: Tensor| t.to_kind(Kind::Float).to_device(Device::Cpu);
    let stacked = Tensor::cat(&parts, 0);
    let index = Tensor::from_slice(&order);
    let logits = stacked.zeros_like().index_copy(0, &index, &stacked);
    Ok(HeadStats {
        raw_importance: raw.to_kind(Kind::Float).to_device(Device::Cpu),
        importance: normalised.to_kind(Kind::Float).to_device(Device::Cpu),
        entropy: entropy.to_kind(Kind::Float).to_device(Device::Cpu),
        logits,
        tokens,
        raw_neuron_importance: neuron_raw.map(to_cpu),
        neuron_importance: neuron_normalised.map(to_cpu),
    })
}

/// The anchor's normalisations: each layer divided by its L2 norm (+1e-20), then min-max over
/// all heads. Unlike the anchor, a constant matrix is left as it is instead of becoming NaN.
pub fn normalise(raw: &Tensor, layer: bool, global: bool) -> Tensor {
    let mut x = raw.shallow_clone();
    if layer {
        let norm = x
            .pow_tensor_scalar(2)
            .sum_dim_intlist(-1, true, x.kind())
            .sqrt();
        x = &x / (norm + 1e-20);
    }
    if global {
        let (min, max) = (x.min(), x.max());
        let range = (&max - &min).double_value(&[]);
        if range > 0.0 {
            x = (&x - min) / range;
        }
    }
    x
}

/// Rank of every head, 0 = most important; ties keep the lower flat index first.
pub fn ranks(importance: &Tensor) -> Tensor {
    let flat: Vec<f32> =
        Vec::try_from(importance.flatten(0, -1).to_kind(Kind::Float)).unwrap_or_default();
    let mut order: Vec<usize> = (0..flat.len()).collect();
    order.sort_by(|&a, &b| flat[b].total_cmp(&flat[a]).then(a.cmp(&b)));
    let mut ranks = vec![0i64; flat.len()];
    for (r, &i) in order.iter().enumerate() {
        ranks[i] = r as i64;
    }
    Tensor::from_slice(&ranks).view(importance.size().as_slice())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stacked_anchor_batches_keep_each_batch_its_own_loss_and_gradient() {
        use crate::data::batch::Padding;
        use crate::data::dataset::Dataset;
        use crate::data::glue::Task;
        use crate::data::lm::MlmMasking;
        use crate::model::{LoadOptions, Model};
        // A masked LM: each example has its own number of predicted tokens, so a batch's loss
        // (mean over its predicted tokens) is not the mean of its examples' losses.
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-bert-mlm");
        let options = LoadOptions {
            device: Device::Cpu,
            seed: 0,
            task: Some(Task::Mlm.into()),
        };
        let mut model = Model::load(&dir, &options).unwrap();
        model.vs.freeze();
        let blocks: Vec<Vec<i64>> = (0..11)
            .map(|i| (0..12).map(|j| (i * 7 + j * 3) % 50 + 5).collect())
            .collect();
        let masking = MlmMasking {
            mask_id: 4,
            special: vec![0],
            vocab_size: 64,
            seed: 3,
            probability: 0.3,
        };
        let data = Dataset::language_model(Task::Mlm, blocks, 0, Some(&masking));
        // Batches of 3 (the last of 2), stacked 2 batches per pass or one at a time.
        let batches = data.batches_in_file_order(3, Padding::Longest, Device::Cpu);
        assert_eq!(batches.len(), 4);
        let settings = Settings {
            estimator: Estimator::Anchor,
            layer_norm: false,
            global_norm: false,
            entropy: true,
        };
        let net = model.net.as_ref();
        let none = Masks::default();
        let alone = compute_in_groups(net, &batches, none, true, settings, None, 1).unwrap();
        let stacked = compute_in_groups(net, &batches, none, true, settings, None, 6).unwrap();
        let scale = alone.raw_importance.abs().max().double_value(&[]);
        assert!(scale > 0.0);
        for (a, b) in [
            (&alone.raw_importance, &stacked.raw_importance),
            (&alone.entropy, &stacked.entropy),
            (&alone.logits, &stacked.logits),
            (
                alone.raw_neuron_importance.as_ref().unwrap(),
                stacked.raw_neuron_importance.as_ref().unwrap(),
            ),
        ] {
            let d = (a - b).abs().max().double_value(&[]);
            assert!(d <= 1e-5 * scale.max(1.0), "{d}");
        }
        // The other estimator on the same batches gives other numbers: the check can tell.
        let per_example = Settings {
            estimator: Estimator::PerExample,
            ..settings
        };
        let other = compute_in_groups(net, &batches, none, false, per_example, None, 6).unwrap();
        assert!(other.raw_neuron_importance.is_none());
        let d = (&alone.raw_importance - &other.raw_importance)
            .abs()
            .max()
            .double_value(&[]);
        assert!(d > 1e-3 * scale, "{d}");
    }

    #[test]
    fn normalisation_as_the_anchor_and_constant_guard() {
        let raw = Tensor::from_slice(&[3.0f64, 4.0, 0.0, 2.0]).view([2, 2]);
        let layer = normalise(&raw, true, false);
        let v: Vec<f64> = Vec::try_from(layer.flatten(0, -1)).unwrap();
        assert!(
            (v[0] - 0.6).abs() < 1e-12
                && (v[1] - 0.8).abs() < 1e-12
                && v[2] == 0.0
                && (v[3] - 1.0).abs() < 1e-12
        );
        let both: Vec<f64> = Vec::try_from(normalise(&raw, true, true).flatten(0, -1)).unwrap();
        assert_eq!(both[2], 0.0);
        assert!((both[3] - 1.0).abs() < 1e-12 && (both[0] - 0.6).abs() < 1e-12);
        let constant = Tensor::ones([2, 2], (Kind::Double, Device::Cpu));
        let c: Vec<f64> = Vec::try_from(normalise(&constant, false, true).flatten(0, -1)).unwrap();
        assert!(c.iter().all(|x| *x == 1.0));
    }

    #[test]
    fn ranks_put_the_most_important_first() {
        let imp = Tensor::from_slice(&[0.1f32, 0.9, 0.5, 0.9]).view([2, 2]);
        let r: Vec<i64> = Vec::try_from(ranks(&imp).flatten(0, -1)).unwrap();
        assert_eq!(r, vec![3, 0, 2, 1]);
    }

    #[test]
    fn entropy_of_uniform_and_one_hot_rows() {
        let p =
            Tensor::from_slice(&[0.25f32, 0.25, 0.25, 0.25, 1.0, 0.0, 0.0, 0.0]).view([1, 1, 2, 4]);
        let h: Vec<f32> = Vec::try_from(entropy_of(&p).flatten(0, -1)).unwrap();
        assert!((h[0] - 4f32.ln()).abs() < 1e-6);
        assert_eq!(h[1], 0.0);
    }
}
