//! BertForSequenceClassification in tch. Every struct mirrors the transformers module of the
//! same name and its variables carry the Hugging Face key names, so checkpoints map one to one.
//!
//! Head masks follow transformers: a [layers, heads] or per-example [batch, layers, heads] tensor
//! multiplies each layer's attention probabilities after softmax and dropout. Masks always index
//! the *original* heads of the config; a pruned layer picks the columns of its surviving heads.
use super::config::{Activation, BertConfig};
use anyhow::{bail, Result};
use tch::{nn, Kind, Tensor};

/// Token ids, token type ids and attention mask, each [batch, seq] int64.
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
}

pub struct BertOutput {
    /// [batch, num_labels]
    pub logits: Tensor,
    pub attentions: Option<Vec<Tensor>>,
    pub hidden_states: Option<Vec<Tensor>>,
}

/// nn.Linear: y = x Wᵀ + b, W of shape [out, in]. Built by hand so that a layer whose heads are
/// all pruned can have zero-sized weights, as transformers allows.
pub struct Linear {
    pub weight: Tensor,
    pub bias: Tensor,
}

impl Linear {
    fn new(p: nn::Path, inputs: i64, outputs: i64) -> Self {
        Linear {
            weight: p.zeros("weight", &[outputs, inputs]),
            bias: p.zeros("bias", &[outputs]),
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        x.linear(&self.weight, Some(&self.bias))
    }
}

/// nn.LayerNorm over the last dimension.
pub struct LayerNorm {
    pub weight: Tensor,
    pub bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    fn new(p: nn::Path, size: i64, eps: f64) -> Self {
        LayerNorm {
            weight: p.ones("weight", &[size]),
            bias: p.zeros("bias", &[size]),
            eps,
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let size = self.weight.size();
        x.layer_norm(&size, Some(&self.weight), Some(&self.bias), self.eps, true)
    }
}

fn activate(act: Activation, x: &Tensor) -> Tensor {
    match act {
        Activation::Gelu | Activation::GeluPython => x.gelu("none"),
        Activation::GeluNew | Activation::GeluPytorchTanh | Activation::GeluFast => x.gelu("tanh"),
        Activation::QuickGelu => x * (x * 1.702).sigmoid(),
        Activation::Relu => x.relu(),
        Activation::Relu6 => x.clamp(0.0, 6.0),
        Activation::Silu | Activation::Swish => x.silu(),
        Activation::Tanh => x.tanh(),
        Activation::Sigmoid => x.sigmoid(),
        Activation::Mish => x.mish(),
        Activation::Linear => x.shallow_clone(),
    }
}

/// BertEmbeddings: word + position + token type, then LayerNorm and dropout.
pub struct BertEmbeddings {
    word_embeddings: Tensor,
    position_embeddings: Tensor,
    token_type_embeddings: Tensor,
    layer_norm: LayerNorm,
    dropout: f64,
}

impl BertEmbeddings {
    fn new(p: nn::Path, c: &BertConfig) -> Self {
        BertEmbeddings {
            word_embeddings: (&p / "word_embeddings")
                .zeros("weight", &[c.vocab_size, c.hidden_size]),
            position_embeddings: (&p / "position_embeddings")
                .zeros("weight", &[c.max_position_embeddings, c.hidden_size]),
            token_type_embeddings: (&p / "token_type_embeddings")
                .zeros("weight", &[c.type_vocab_size, c.hidden_size]),
            layer_norm: LayerNorm::new(&p / "LayerNorm", c.hidden_size, c.layer_norm_eps),
            dropout: c.hidden_dropout_prob,
        }
    }

    fn forward(&self, input_ids: &Tensor, token_type_ids: &Tensor, train: bool) -> Tensor {
        let seq = input_ids.size()[1];
        let positions = Tensor::arange(seq, (Kind::Int64, input_ids.device())).unsqueeze(0);
        let x = Tensor::embedding(&self.word_embeddings, input_ids, -1, false, false)
            + Tensor::embedding(&self.position_embeddings, &positions, -1, false, false)
            + Tensor::embedding(
                &self.token_type_embeddings,
                token_type_ids,
                -1,
                false,
                false,
            );
        self.layer_norm.forward(&x).dropout(self.dropout, train)
    }
}

/// BertSelfAttention with `heads` heads left (fewer than the config's after pruning).
pub struct BertSelfAttention {
    query: Linear,
    key: Linear,
    value: Linear,
    heads: i64,
    head_dim: i64,
    dropout: f64,
}

impl BertSelfAttention {
    /// Returns the context [batch, queries, heads·head_dim] and, when asked, the probabilities.
    /// `queries` are the positions whose outputs are needed (all of `x`, or a prefix of it);
    /// keys and values always come from every position of `x`.
    // Out-of-place products on purpose: softmax's backward needs its output unmodified.
    #[allow(clippy::assign_op_pattern)]
    fn forward(
        &self,
        queries: &Tensor,
        x: &Tensor,
        additive_mask: &Tensor,
        head_mask: Option<&Tensor>,
        train: bool,
        want_probs: bool,
    ) -> (Tensor, Option<Tensor>) {
        let (b, t, tq) = (x.size()[0], x.size()[1], queries.size()[1]);
        if self.heads == 0 {
            let empty = x.new_zeros([b, tq, 0], (x.kind(), x.device()));
            let probs = want_probs.then(|| x.new_zeros([b, 0, tq, t], (x.kind(), x.device())));
            return (empty, probs);
        }
        let (context, probs) = if want_probs {
            let all: Vec<i64> = (0..self.heads).collect();
            let (q, k, v) = self.project(queries, x, &all);
            let scores =
                q.matmul(&k.transpose(-1, -2)) / (self.head_dim as f64).sqrt() + additive_mask;
            let mut probs = scores
                .softmax(-1, scores.kind())
                .dropout(self.dropout, train);
            if let Some(m) = head_mask {
                probs = probs * m;
            }
            (probs.matmul(&v), Some(probs))
        } else {
            // Fused attention; a per-head scalar mask on the probabilities equals the same mask
            // on that head's context, so the result and its gradient are unchanged.
            let p = if train { self.dropout } else { 0.0 };
            let silent = head_mask
                .filter(|m| m.requires_grad() && !train)
                .map(silent_heads)
                .unwrap_or_default();
            let mut ctx = if silent.iter().any(|&z| z) {
                // A head masked to 0 for every example passes no gradient into its attention,
                // only into its mask (∂L/∂ξ = Σ ∂L/∂(ξ·ctx) · ctx). Its attention is computed
                // outside the graph, so the backward pass skips it: same values and gradients,
                // less work once masking has removed heads.
                let live: Vec<i64> = (0..self.heads).filter(|&h| !silent[h as usize]).collect();
                let dead: Vec<i64> = (0..self.heads).filter(|&h| silent[h as usize]).collect();
                let mut parts = Vec::new();
                if !live.is_empty() {
                    parts.push(self.attend(queries, x, additive_mask, &live, p));
                }
                parts.push(tch::no_grad(|| {
                    self.attend(queries, x, additive_mask, &dead, p)
                }));
                // Back to the original head order.
                let mut back = vec![0i64; self.heads as usize];
                for (i, &h) in live.iter().chain(&dead).enumerate() {
                    back[h as usize] = i as i64;
                }
                let back = Tensor::from_slice(&back).to_device(x.device());
                Tensor::cat(&parts, 1).index_select(1, &back)
            } else {
                let all: Vec<i64> = (0..self.heads).collect();
                self.attend(queries, x, additive_mask, &all, p)
            };
            if let Some(m) = head_mask {
                ctx = ctx * m;
            }
            (ctx, None)
        };
        let context =
            context
                .transpose(1, 2)
                .contiguous()
                .view([b, tq, self.heads * self.head_dim]);
        (context, probs)
    }

    /// Fused attention of the heads `heads` (indices into this layer's heads):
    /// [batch, heads.len(), queries, head_dim].
    fn attend(
        &self,
        queries: &Tensor,
        x: &Tensor,
        additive_mask: &Tensor,
        heads: &[i64],
        dropout: f64,
    ) -> Tensor {
        let (q, k, v) = self.project(queries, x, heads);
        Tensor::scaled_dot_product_attention(
            &q,
            &k,
            &v,
            Some(additive_mask),
            dropout,
            false,
            None,
            false,
        )
    }

    /// Queries (from `queries`), keys and values (from `x`) of the heads `heads`, each
    /// [batch, heads.len(), length, head_dim]. A subset of heads uses the matching weight rows.
    fn project(&self, queries: &Tensor, x: &Tensor, heads: &[i64]) -> (Tensor, Tensor, Tensor) {
        let n = heads.len() as i64;
        let rows = (n != self.heads).then(|| {
            let rows: Vec<i64> = heads
                .iter()
                .flat_map(|h| h * self.head_dim..(h + 1) * self.head_dim)
                .collect();
            Tensor::from_slice(&rows).to_device(x.device())
        });
        let split = |l: &Linear, input: &Tensor| {
            let y = match &rows {
                None => l.forward(input),
                Some(r) => input.linear(
                    &l.weight.index_select(0, r),
                    Some(&l.bias.index_select(0, r)),
                ),
            };
            let (b, len) = (input.size()[0], input.size()[1]);
            y.view([b, len, n, self.head_dim]).transpose(1, 2)
        };
        (
            split(&self.query, queries),
            split(&self.key, x),
            split(&self.value, x),
        )
    }
}

/// For a mask shaped [batch or 1, heads, 1, 1]: whether each head is 0 for every example.
fn silent_heads(mask: &Tensor) -> Vec<bool> {
    let zero = mask.detach().eq(0.0).all_dim(0, false).flatten(0, -1);
    Vec::try_from(zero.to_device(tch::Device::Cpu)).unwrap_or_default()
}

/// BertLayer: attention (self + output), intermediate, output.
pub struct BertLayer {
    attention: BertSelfAttention,
    attention_output: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
    act: Activation,
    dropout: f64,
    /// Original indices of the heads this layer still has; None when it has them all.
    kept_heads: Option<Tensor>,
}

impl BertLayer {
    fn new(p: nn::Path, c: &BertConfig, index: i64) -> Self {
        let kept = c.kept_heads(index);
        let heads = kept.len() as i64;
        let inner = heads * c.head_dim();
        let att = &p / "attention";
        let sa = &att / "self";
        let out = &att / "output";
        BertLayer {
            attention: BertSelfAttention {
                query: Linear::new(&sa / "query", c.hidden_size, inner),
                key: Linear::new(&sa / "key", c.hidden_size, inner),
                value: Linear::new(&sa / "value", c.hidden_size, inner),
                heads,
                head_dim: c.head_dim(),
                dropout: c.attention_probs_dropout_prob,
            },
            attention_output: Linear::new(&out / "dense", inner, c.hidden_size),
            attention_norm: LayerNorm::new(&out / "LayerNorm", c.hidden_size, c.layer_norm_eps),
            intermediate: Linear::new(
                &p / "intermediate" / "dense",
                c.hidden_size,
                c.intermediate_size,
            ),
            output: Linear::new(&p / "output" / "dense", c.intermediate_size, c.hidden_size),
            output_norm: LayerNorm::new(
                &p / "output" / "LayerNorm",
                c.hidden_size,
                c.layer_norm_eps,
            ),
            act: c.hidden_act,
            dropout: c.hidden_dropout_prob,
            kept_heads: (heads != c.num_attention_heads)
                .then(|| Tensor::from_slice(&kept).to_device(p.device())),
        }
    }

    /// This layer's slice of a [L, H] or [B, L, H] mask, shaped to broadcast over probabilities.
    fn layer_mask(&self, mask: &Tensor, index: i64) -> Tensor {
        let m = match mask.dim() {
            2 => mask.get(index).unsqueeze(0),
            _ => mask.select(1, index),
        };
        let m = match &self.kept_heads {
            Some(kept) => m.index_select(1, kept),
            None => m,
        };
        m.view([-1, self.attention.heads, 1, 1])
    }

    /// The layer's output at every position, or only at the first (`cls_only`: all a
    /// classifier reads from the last layer).
    fn forward(
        &self,
        x: &Tensor,
        additive_mask: &Tensor,
        head_mask: Option<&Tensor>,
        index: i64,
        opts: ForwardOptions,
        cls_only: bool,
    ) -> (Tensor, Option<Tensor>) {
        let layer_mask = head_mask.map(|m| self.layer_mask(m, index));
        let queries = if cls_only {
            x.narrow(1, 0, 1)
        } else {
            x.shallow_clone()
        };
        let (context, probs) = self.attention.forward(
            &queries,
            x,
            additive_mask,
            layer_mask.as_ref(),
            opts.train,
            opts.output_attentions,
        );
        let attended = self.attention_norm.forward(
            &(self
                .attention_output
                .forward(&context)
                .dropout(self.dropout, opts.train)
                + &queries),
        );
        let inner = activate(self.act, &self.intermediate.forward(&attended));
        let out = self.output_norm.forward(
            &(self
                .output
                .forward(&inner)
                .dropout(self.dropout, opts.train)
                + &attended),
        );
        (out, probs)
    }
}

/// BertForSequenceClassification: bert (embeddings, encoder, pooler), dropout, classifier.
pub struct BertForSequenceClassification {
    embeddings: BertEmbeddings,
    layers: Vec<BertLayer>,
    pooler: Linear,
    classifier: Linear,
    classifier_dropout: f64,
    num_layers: i64,
    num_heads: i64,
    regression: bool,
}

impl BertForSequenceClassification {
    /// Creates the variables under `root` (the VarStore root). Weights start at zero except the
    /// classifier, which gets transformers' init (normal, std initializer_range; zero bias) so a
    /// checkpoint without one is ready to fine-tune.
    pub fn new(root: &nn::Path, c: &BertConfig) -> Self {
        let bert = root / "bert";
        let cls = root / "classifier";
        let classifier = Linear {
            weight: cls.var(
                "weight",
                &[c.num_labels(), c.hidden_size],
                nn::Init::Randn {
                    mean: 0.0,
                    stdev: c.initializer_range,
                },
            ),
            bias: cls.zeros("bias", &[c.num_labels()]),
        };
        BertForSequenceClassification {
            embeddings: BertEmbeddings::new(&bert / "embeddings", c),
            layers: (0..c.num_hidden_layers)
                .map(|i| BertLayer::new(&bert / "encoder" / "layer" / i, c, i))
                .collect(),
            pooler: Linear::new(&bert / "pooler" / "dense", c.hidden_size, c.hidden_size),
            classifier,
            classifier_dropout: c.classifier_dropout_prob(),
            num_layers: c.num_hidden_layers,
            num_heads: c.num_attention_heads,
            regression: c.is_regression(),
        }
    }

    pub fn num_layers(&self) -> i64 {
        self.num_layers
    }

    pub fn num_heads(&self) -> i64 {
        self.num_heads
    }

    pub fn is_regression(&self) -> bool {
        self.regression
    }

    /// Original indices of the heads layer `layer` still has, as an int64 tensor.
    pub fn kept_head_indices(&self, layer: usize) -> Tensor {
        let l = &self.layers[layer];
        match &l.kept_heads {
            Some(k) => k.shallow_clone(),
            None => Tensor::arange(
                self.num_heads,
                (Kind::Int64, l.attention.query.weight.device()),
            ),
        }
    }

    /// Number of heads each layer still has.
    pub fn heads_per_layer(&self) -> Vec<i64> {
        self.layers.iter().map(|l| l.attention.heads).collect()
    }

    pub fn forward(
        &self,
        inputs: &Inputs,
        head_mask: Option<&Tensor>,
        opts: ForwardOptions,
    ) -> Result<BertOutput> {
        let (b, _) = inputs.input_ids.size2()?;
        if let Some(m) = head_mask {
            let ok = match m.size().as_slice() {
                [l, h] => *l == self.num_layers && *h == self.num_heads,
                [mb, l, h] => *mb == b && *l == self.num_layers && *h == self.num_heads,
                _ => false,
            };
            if !ok {
                bail!(
                    "head mask has shape {:?}; expected [{l}, {h}] or [{b}, {l}, {h}]",
                    m.size(),
                    l = self.num_layers,
                    h = self.num_heads
                );
            }
        }
        let mut x = self
            .embeddings
            .forward(inputs.input_ids, inputs.token_type_ids, opts.train);
        let kind = x.kind();
        // (1 - mask) · finfo.min, broadcast over heads and queries, as transformers' eager path.
        let additive_mask: Tensor =
            (inputs.attention_mask.to_kind(kind).neg() + 1.0).view([b, 1, 1, -1]) * min_value(kind);
        let mut hidden_states = opts.output_hidden_states.then(|| vec![x.shallow_clone()]);
        let mut attentions = opts.output_attentions.then(Vec::new);
        // The classifier reads only [CLS] of the last layer; unless every position's output is
        // asked for, that layer computes just [CLS] (same values, a sixth less work for MiniLM).
        let cls_only_last = !opts.output_hidden_states && !opts.output_attentions;
        let last = self.layers.len().saturating_sub(1);
        for (i, layer) in self.layers.iter().enumerate() {
            let cls_only = cls_only_last && i == last;
            let (out, probs) =
                layer.forward(&x, &additive_mask, head_mask, i as i64, opts, cls_only);
            x = out;
            if let (Some(all), Some(p)) = (attentions.as_mut(), probs) {
                all.push(p);
            }
            if let Some(all) = hidden_states.as_mut() {
                all.push(x.shallow_clone());
            }
        }
        let pooled = self.pooler.forward(&x.select(1, 0)).tanh();
        let logits = self
            .classifier
            .forward(&pooled.dropout(self.classifier_dropout, opts.train));
        Ok(BertOutput {
            logits,
            attentions,
            hidden_states,
        })
    }

    /// Loss as transformers computes it: cross-entropy for classification, MSE for regression.
    /// `sum` adds the examples' losses instead of averaging them (per-example gradients).
    pub fn loss(&self, logits: &Tensor, labels: &Tensor, sum: bool) -> Tensor {
        let reduction = if sum {
            tch::Reduction::Sum
        } else {
            tch::Reduction::Mean
        };
        if self.regression {
            logits
                .squeeze_dim(-1)
                .mse_loss(&labels.to_kind(logits.kind()), reduction)
        } else {
            logits.cross_entropy_loss::<Tensor>(labels, None, reduction, -100, 0.0)
        }
    }
}

fn min_value(kind: Kind) -> f64 {
    match kind {
        Kind::Half => -65504.0,
        Kind::BFloat16 => -3.3895313892515355e38,
        Kind::Double => f64::MIN,
        _ => f32::MIN as f64,
    }
}
