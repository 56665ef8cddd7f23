//! The one interface the pipeline uses for every architecture.
//!
//! A trait object rather than an enum: adding an architecture is then one new file that
//! implements `Network` plus one line in `families.rs`, and no `match` elsewhere grows an arm.
//! Everything the pipeline does with a network goes through these methods, so eval,
//! importance, masking, pruning, fine-tuning and the reports never name an architecture.
use super::config::ModelConfig;
use anyhow::{bail, Result};
use tch::{Kind, Tensor};

/// Token ids, token type ids and attention mask, each [batch, seq] int64. Families without
/// token types ignore `token_type_ids`.
pub struct Inputs<'a> {
    pub input_ids: &'a Tensor,
    pub token_type_ids: &'a Tensor,
    pub attention_mask: &'a Tensor,
}

/// What a forward pass returns besides the logits, when asked for.
#[derive(Clone, Copy, Debug, Default)]
pub struct ForwardOptions {
    /// Dropout on (training).
    pub train: bool,
    /// Return every layer's attention probabilities [batch, heads_l, seq, seq].
    pub output_attentions: bool,
    /// Return the embeddings output and every layer's output [batch, seq, hidden].
    pub output_hidden_states: bool,
    /// With `output_attentions` (and not training): the probabilities are returned outside the
    /// autograd graph and the logits take the fused attention path, for callers that only read
    /// them (attention entropy beside head importance): same values, a cheaper backward pass.
    pub detached_attentions: bool,
}

impl ForwardOptions {
    /// What the attention layers return besides their context.
    pub fn probabilities(&self) -> Probabilities {
        match (
            self.output_attentions,
            self.detached_attentions && !self.train,
        ) {
            (false, _) => Probabilities::None,
            (true, false) => Probabilities::InGraph,
            (true, true) => Probabilities::Detached,
        }
    }
}

/// Whether (and how) an attention layer returns its probabilities.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probabilities {
    None,
    /// Part of the graph: gradients flow through them (the explicit, unfused path).
    InGraph,
    /// Values only, computed beside the fused path.
    Detached,
}

pub struct ModelOutput {
    /// [batch, num_labels] for classification; [batch, seq, vocab] for language models.
    pub logits: Tensor,
    pub attentions: Option<Vec<Tensor>>,
    pub hidden_states: Option<Vec<Tensor>>,
}

impl ModelOutput {
    /// Checks everything a forward pass returned that a command may write: the logits, every
    /// hidden state and every attention map. The error names the batch, the first example and
    /// which output went bad (the layer of a hidden state or attention).
    pub fn check_finite(&self, batch: usize, indices: &[usize]) -> Result<()> {
        let example = |t: &Tensor| {
            let row = crate::finite::first_bad(t).first().copied().unwrap_or(0) as usize;
            indices.get(row).copied().unwrap_or(row)
        };
        let named = |what: String, t: &Tensor| -> Result<()> {
            if crate::finite::all_finite(t) {
                return Ok(());
            }
            bail!(
                "non-finite {what} in batch {batch} (first at example {}): the model's weights, config or inputs make NaN or infinity",
                example(t)
            )
        };
        named("logits".into(), &self.logits)?;
        for (i, h) in self.hidden_states.iter().flatten().enumerate() {
            named(format!("hidden state {i}"), h)?;
        }
        for (i, a) in self.attentions.iter().flatten().enumerate() {
            named(format!("attention of layer {i}"), a)?;
        }
        Ok(())
    }
}

/// Where the heads of a layer sit inside one weight: physical pruning keeps the slices of the
/// surviving heads along `dim`. `blocks` > 1 for fused projections (q, k and v side by side
/// along `dim`, each `heads · head_dim` wide). `unit` says whose slices they are: query heads
/// (queries, the output projection) or key/value heads (keys and values, shared by a group
/// of query heads under grouped-query attention).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeadAxis {
    pub layer: i64,
    pub dim: i64,
    pub head_dim: i64,
    pub blocks: i64,
    pub unit: HeadUnit,
}

impl HeadAxis {
    /// Neurons of layer `layer`'s feed-forward block along `dim` (rows of the input
    /// projections and their biases, columns of the output projection).
    pub fn neuron(layer: i64, dim: i64) -> HeadAxis {
        HeadAxis {
            layer,
            dim,
            head_dim: 1,
            blocks: 1,
            unit: HeadUnit::Neuron,
        }
    }
}

/// A weight of a loop of layers, `<layers>.<index>.<param>` (e.g. `h.3.attn.c_attn.weight`
/// under `h`): the layer's index and the parameter's name inside the layer. `head_axis`
/// implementations read names through it.
pub fn layer_param<'a>(name: &'a str, layers: &str) -> Option<(i64, &'a str)> {
    let rest = name.strip_prefix(layers)?.strip_prefix('.')?;
    let (layer, param) = rest.split_once('.')?;
    Some((layer.parse().ok()?, param))
}

/// The kinds of units a layer has. Without grouped-query attention query and key/value heads
/// coincide (query head h has key/value head h); with it, key/value head g serves query heads
/// g·r … g·r + r − 1 (r = heads / kv_heads), as transformers' `repeat_kv`. `Neuron` is one
/// intermediate neuron of the feed-forward block (MLP): a row of its input projection(s) and
/// their biases, a column of its output projection (`head_dim` 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadUnit {
    Query,
    KeyValue,
    Neuron,
}

/// The masks a forward pass applies, both over the config's original units.
///
/// `heads` is [layers, heads] or per example [batch, layers, heads] and multiplies each head's
/// attention probabilities (after dropout), as transformers' `head_mask`. `neurons` is
/// [layers, intermediate] or per example [batch, layers, intermediate] and multiplies each
/// feed-forward block's activations (after the activation function, before the output
/// projection: BERT's `output.dense`, DistilBERT's `lin2`, GPT's `c_proj`, Llama's
/// `down_proj`), which is what a forward pre-hook on that projection does in transformers.
#[derive(Clone, Copy, Debug, Default)]
pub struct Masks<'a> {
    pub heads: Option<&'a Tensor>,
    pub neurons: Option<&'a Tensor>,
}

impl<'a> Masks<'a> {
    /// A head mask alone.
    pub fn heads(heads: Option<&'a Tensor>) -> Self {
        Masks {
            heads,
            neurons: None,
        }
    }

    /// Checks both masks' shapes against a model of `layers` layers, `heads` heads and
    /// `intermediate` neurons per layer (original counts), for a batch of `batch`.
    pub fn check(&self, batch: i64, layers: i64, heads: i64, intermediate: i64) -> Result<()> {
        if let Some(m) = self.heads {
            check_head_mask(m, batch, layers, heads)?;
        }
        if let Some(m) = self.neurons {
            check_neuron_mask(m, batch, layers, intermediate)?;
        }
        Ok(())
    }
}

/// The sizes the pipeline asks every network about.
#[derive(Clone, Copy, Debug)]
pub struct NetworkShape {
    /// Layers, and heads per layer before any pruning.
    pub layers: i64,
    pub heads: i64,
    /// Rows of the word embedding: token ids must stay below this.
    pub vocab_size: i64,
    /// The longest input the position embeddings allow.
    pub max_positions: i64,
    /// One output and a mean-squared-error loss (else classes and cross-entropy).
    pub regression: bool,
    /// Intermediate neurons of each feed-forward block before any pruning (what neuron masks
    /// index).
    pub intermediate: i64,
}

/// A Python modelling file for transformers and the `auto_map` entries that name its classes.
#[derive(Clone, Debug)]
pub struct RemoteCode {
    /// File name, e.g. `modeling_bertology.py`.
    pub file: &'static str,
    pub source: &'static str,
    /// (auto class, "module.Class").
    pub auto_map: Vec<(&'static str, String)>,
}

/// The modelling file that loads a model of transformers class `class` whose layers keep
/// different numbers of feed-forward neurons (`pruned_neurons`): `Bertology<class>`, the class
/// with each layer's MLP cut to its size (src/model/mlp_remote.py).
pub fn mlp_remote_code(class: &str, objective: Objective) -> RemoteCode {
    let auto = match objective {
        Objective::Classification => "AutoModelForSequenceClassification",
        Objective::CausalLm => "AutoModelForCausalLM",
        Objective::MaskedLm => "AutoModelForMaskedLM",
    };
    RemoteCode {
        file: "modeling_bertology.py",
        source: include_str!("mlp_remote.py"),
        auto_map: vec![(auto, format!("modeling_bertology.Bertology{class}"))],
    }
}

/// What a network's head predicts, and so what its loss is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Objective {
    /// One label (or score) per example.
    Classification,
    /// The next token at every position (GPT, GPT-2): labels [batch, seq] are the input ids,
    /// shifted inside the loss as transformers does; -100 is ignored.
    CausalLm,
    /// The original token at masked positions (BERT-style MLM): labels [batch, seq], -100
    /// everywhere but the masked positions.
    MaskedLm,
}

impl Objective {
    pub fn is_language_model(self) -> bool {
        self != Objective::Classification
    }
}

/// A transformer with a task head whose attention heads can be masked, measured and pruned.
pub trait Network {
    /// Logits, and attentions / hidden states when asked, under a head mask and a neuron mask
    /// (see `Masks`), both always over the config's original units.
    fn forward_masked(
        &self,
        inputs: &Inputs,
        masks: Masks,
        opts: ForwardOptions,
    ) -> Result<ModelOutput>;

    /// `forward_masked` with a head mask alone: [layers, heads] or per example
    /// [batch, layers, heads], always over the config's original heads; it multiplies each
    /// head's attention probabilities after dropout, as in transformers.
    fn forward(
        &self,
        inputs: &Inputs,
        head_mask: Option<&Tensor>,
        opts: ForwardOptions,
    ) -> Result<ModelOutput> {
        self.forward_masked(inputs, Masks::heads(head_mask), opts)
    }

    fn shape(&self) -> NetworkShape;

    /// Original indices of the heads each layer still has.
    fn kept_heads(&self) -> Vec<Vec<i64>>;

    /// Original indices of the intermediate neurons each layer's feed-forward block still has.
    fn kept_neurons(&self) -> Vec<Vec<i64>>;

    /// The config.json field that sets every layer's intermediate size (`intermediate_size`,
    /// DistilBERT's `hidden_dim`, GPT-2's `n_inner`), or None when the architecture has none
    /// (OpenAI GPT: always 4 · n_embd). A model whose layers all keep the same number of
    /// neurons is saved with this field set, so transformers' own class loads it.
    fn intermediate_field(&self) -> Option<&'static str>;

    /// The transformers class this network mirrors (written to `architectures`).
    fn hf_class(&self) -> &'static str;

    /// Where heads sit in the variable `name` (a VarStore name), for physical pruning; None for
    /// weights that do not depend on the number of heads.
    fn head_axis(&self, name: &str) -> Option<HeadAxis>;

    /// A modelling file to save beside a pruned model whose shapes transformers' own class
    /// cannot express (named in config.json's `auto_map`, loaded with trust_remote_code).
    fn remote_code(&self) -> Option<RemoteCode> {
        None
    }

    /// Rewrites a pruned model's `config` so that transformers' own class expresses its heads
    /// without a modelling file, when the family's config can say it (the same shape in every
    /// layer); returns whether it did. Families whose transformers classes read
    /// `pruned_heads` themselves need nothing.
    fn express_pruned_heads(&self, _config: &mut ModelConfig) -> bool {
        false
    }

    /// What the head predicts (classification unless a family says otherwise).
    fn objective(&self) -> Objective {
        Objective::Classification
    }

    /// Whether a query can only see itself and earlier tokens (decoders), whatever the task head.
    fn is_causal(&self) -> bool {
        false
    }

    /// The task head's loss as transformers computes it: cross-entropy for classification, MSE
    /// for regression, the mean token cross-entropy for language models. `sum` adds the
    /// examples' losses instead of averaging them (a language-model example's loss is the mean
    /// over its own tokens).
    fn loss(&self, logits: &Tensor, labels: &Tensor, sum: bool) -> Tensor {
        let reduction = if sum {
            tch::Reduction::Sum
        } else {
            tch::Reduction::Mean
        };
        if self.objective().is_language_model() {
            let (losses, counted) = token_losses(logits, labels, self.objective());
            return if sum {
                (losses.sum_dim_intlist(-1, false, losses.kind())
                    / counted
                        .sum_dim_intlist(-1, false, losses.kind())
                        .clamp_min(1.0))
                .sum(losses.kind())
            } else {
                losses.sum(losses.kind()) / counted.sum(losses.kind()).clamp_min(1.0)
            };
        }
        // In float32 whatever the model's precision, as transformers' losses upcast.
        let logits = logits.to_kind(Kind::Float);
        if self.is_regression() {
            logits
                .squeeze_dim(-1)
                .mse_loss(&labels.to_kind(logits.kind()), reduction)
        } else {
            logits.cross_entropy_loss::<Tensor>(labels, None, reduction, -100, 0.0)
        }
    }

    /// Each example's share of a batch's loss as (numerator, denominator), both [batch]: the
    /// batch's `loss` (sum = false) is Σ numerator / Σ denominator over its examples (a
    /// language model's token losses and token count; one loss and 1 for a classifier). Lets
    /// several batches run as one while each keeps its own loss.
    fn loss_parts(&self, logits: &Tensor, labels: &Tensor) -> (Tensor, Tensor) {
        if self.objective().is_language_model() {
            let (losses, counted) = token_losses(logits, labels, self.objective());
            return (
                losses.sum_dim_intlist(-1, false, losses.kind()),
                counted.sum_dim_intlist(-1, false, losses.kind()),
            );
        }
        let logits = logits.to_kind(Kind::Float);
        let each = if self.is_regression() {
            logits
                .squeeze_dim(-1)
                .mse_loss(&labels.to_kind(logits.kind()), tch::Reduction::None)
        } else {
            logits.cross_entropy_loss::<Tensor>(labels, None, tch::Reduction::None, -100, 0.0)
        };
        let ones = each.ones_like();
        (each, ones)
    }

    /// What the pipeline keeps of a batch's logits to score the pass later: classification
    /// logits as they are; for language models each example's summed token loss and its
    /// number of predicted tokens, [batch, 2] (whole-split [batch, seq, vocab] logits would
    /// not fit in memory).
    fn summary(&self, logits: &Tensor, labels: Option<&Tensor>) -> Tensor {
        match labels {
            Some(labels) if self.objective().is_language_model() => {
                let (losses, counted) = token_losses(logits, labels, self.objective());
                let kind = losses.kind();
                Tensor::stack(
                    &[
                        losses.sum_dim_intlist(-1, false, kind),
                        counted.sum_dim_intlist(-1, false, kind),
                    ],
                    1,
                )
            }
            _ => logits.to_kind(loss_kind(logits.kind())),
        }
    }

    fn num_layers(&self) -> i64 {
        self.shape().layers
    }

    fn num_heads(&self) -> i64 {
        self.shape().heads
    }

    fn is_regression(&self) -> bool {
        self.shape().regression
    }

    fn vocab_size(&self) -> i64 {
        self.shape().vocab_size
    }

    fn max_positions(&self) -> i64 {
        self.shape().max_positions
    }

    /// Key/value heads per layer before pruning: `heads` unless queries share them.
    fn num_kv_heads(&self) -> i64 {
        self.num_heads()
    }

    /// The key/value head (group) that original query head `head` reads.
    fn kv_group_of(&self, head: i64) -> i64 {
        head / (self.num_heads() / self.num_kv_heads().max(1)).max(1)
    }

    /// Original indices of the key/value heads each layer still has: those a kept query head
    /// reads (a group goes only when all its query heads are gone).
    fn kept_kv_heads(&self) -> Vec<Vec<i64>> {
        self.kept_heads()
            .iter()
            .map(|heads| {
                let mut kv: Vec<i64> = heads.iter().map(|&h| self.kv_group_of(h)).collect();
                kv.dedup();
                kv
            })
            .collect()
    }

    /// The original heads of `unit` each layer still has.
    fn kept(&self, unit: HeadUnit) -> Vec<Vec<i64>> {
        match unit {
            HeadUnit::Query => self.kept_heads(),
            HeadUnit::KeyValue => self.kept_kv_heads(),
            HeadUnit::Neuron => self.kept_neurons(),
        }
    }

    /// Intermediate neurons per layer before pruning (what neuron masks index).
    fn intermediate_size(&self) -> i64 {
        self.shape().intermediate
    }

    /// Number of intermediate neurons each layer still has.
    fn neurons_per_layer(&self) -> Vec<i64> {
        self.kept_neurons().iter().map(|k| k.len() as i64).collect()
    }

    /// Number of heads each layer still has.
    fn heads_per_layer(&self) -> Vec<i64> {
        self.kept_heads().iter().map(|k| k.len() as i64).collect()
    }

    /// Original indices of the heads layer `layer` still has, as an int64 tensor on `device`.
    fn kept_head_indices(&self, layer: usize, device: tch::Device) -> Tensor {
        Tensor::from_slice(&self.kept_heads()[layer]).to_device(device)
    }
}

/// Per-token cross-entropy [batch, positions] (0 where ignored) and which tokens count (1/0),
/// for logits [batch, seq, vocab] and labels [batch, seq] with -100 ignored. Causal language
/// models predict token t+1 at position t, so logits drop the last position and labels the
/// first, as transformers' ForCausalLMLoss.
pub fn token_losses(logits: &Tensor, labels: &Tensor, objective: Objective) -> (Tensor, Tensor) {
    let (logits, labels) = match objective {
        Objective::CausalLm => {
            let t = logits.size()[1];
            (
                logits.narrow(1, 0, (t - 1).max(0)),
                labels.narrow(1, 1, (t - 1).max(0)),
            )
        }
        _ => (logits.shallow_clone(), labels.shallow_clone()),
    };
    let (b, t) = (labels.size()[0], labels.size()[1]);
    let v = logits.size()[2];
    // Upcast as transformers' loss does (logits.float()); float64 stays (a float64 run is for
    // comparing beyond float32's rounding).
    let kind = loss_kind(logits.kind());
    let losses = logits
        .reshape([b * t, v])
        .to_kind(kind)
        .cross_entropy_loss::<Tensor>(
            &labels.reshape([b * t]),
            None,
            tch::Reduction::None,
            -100,
            0.0,
        )
        .view([b, t]);
    let counted = labels.ne(-100).to_kind(kind);
    (losses, counted)
}

/// The precision of losses and summaries: float32, or float64 for float64 outputs.
pub fn loss_kind(kind: Kind) -> Kind {
    if kind == Kind::Double {
        Kind::Double
    } else {
        Kind::Float
    }
}

/// Checks a head mask's shape against the model: [layers, heads] or [batch, layers, heads].
pub fn check_head_mask(mask: &Tensor, batch: i64, layers: i64, heads: i64) -> Result<()> {
    let ok = match mask.size().as_slice() {
        [l, h] => *l == layers && *h == heads,
        [b, l, h] => *b == batch && *l == layers && *h == heads,
        _ => false,
    };
    if !ok {
        bail!(
            "head mask has shape {:?}; expected [{layers}, {heads}] or [{batch}, {layers}, {heads}]",
            mask.size()
        );
    }
    Ok(())
}

/// Checks a neuron mask's shape against the model: [layers, intermediate] or
/// [batch, layers, intermediate].
pub fn check_neuron_mask(mask: &Tensor, batch: i64, layers: i64, intermediate: i64) -> Result<()> {
    let ok = match mask.size().as_slice() {
        [l, n] => *l == layers && *n == intermediate,
        [b, l, n] => *b == batch && *l == layers && *n == intermediate,
        _ => false,
    };
    if !ok {
        bail!(
            "neuron mask has shape {:?}; expected [{layers}, {intermediate}] or [{batch}, {layers}, {intermediate}] (layers, intermediate neurons)",
            mask.size()
        );
    }
    Ok(())
}

/// Layer `index`'s slice of a [L, N] or [B, L, N] neuron mask over the original neurons,
/// keeping those in `kept` (None: all), shaped [batch or 1, 1, kept] to broadcast over a
/// feed-forward block's activations [batch, seq, kept].
pub fn layer_neuron_mask(mask: &Tensor, index: i64, kept: Option<&Tensor>) -> Tensor {
    let m = match mask.dim() {
        2 => mask.get(index).unsqueeze(0),
        _ => mask.select(1, index),
    };
    let m = match kept {
        Some(kept) => m.index_select(1, kept),
        None => m,
    };
    m.unsqueeze(1)
}

/// The most negative finite value of a float kind: what transformers adds to masked scores.
pub fn min_value(kind: Kind) -> f64 {
    match kind {
        Kind::Half => -65504.0,
        Kind::BFloat16 => -3.3895313892515355e38,
        Kind::Double => f64::MIN,
        _ => f32::MIN as f64,
    }
}

/// (1 − mask) · finfo.min as [batch, 1, 1, keys]: broadcast over heads and queries, as
/// transformers' eager attention adds it.
pub fn padding_mask(attention_mask: &Tensor, kind: Kind) -> Tensor {
    let b = attention_mask.size()[0];
    (attention_mask.to_kind(kind).neg() + 1.0).view([b, 1, 1, -1]) * min_value(kind)
}
