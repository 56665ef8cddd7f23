//! Building blocks that several architectures share: linear and norm layers, activations,
//! multi-head self-attention with head masks, and the post-LayerNorm encoder layer of BERT and
//! its cousins (which differ only in the names of their weights).
//!
//! Head masks follow transformers: they multiply each layer's attention probabilities after
//! softmax and dropout, and always index the *original* heads of the config; a pruned layer
//! picks the columns of its surviving heads.
use super::config::Activation;
use super::network::{
    layer_neuron_mask, layer_param, padding_mask, ForwardOptions, HeadAxis, HeadUnit, Masks,
    Probabilities,
};
use anyhow::Result;
use tch::{nn, Kind, Tensor};

/// `p / "a" / "b" / "c"` for a dotted Hugging Face name "a.b.c".
pub fn at<'a>(p: &nn::Path<'a>, dotted: &str) -> nn::Path<'a> {
    let mut parts = dotted.split('.');
    let mut path = p.sub(parts.next().unwrap_or_default());
    for part in parts {
        path = path.sub(part);
    }
    path
}

/// nn.Linear: y = x Wᵀ + b, W of shape [out, in], with or without a bias (Llama's projections
/// have none). Built by hand so that a layer whose heads are all pruned can have zero-sized
/// weights, as transformers allows.
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
}

impl Linear {
    pub fn new(p: nn::Path, inputs: i64, outputs: i64) -> Self {
        Self::with_bias(p, inputs, outputs, true)
    }

    pub fn with_bias(p: nn::Path, inputs: i64, outputs: i64, bias: bool) -> Self {
        Linear {
            weight: p.zeros("weight", &[outputs, inputs]),
            bias: bias.then(|| p.zeros("bias", &[outputs])),
        }
    }

    /// A freshly initialised task-head layer as transformers makes it: weight normal with
    /// std `std`, zero bias (used when a checkpoint has no such head).
    pub fn initialised(p: nn::Path, inputs: i64, outputs: i64, std: f64) -> Self {
        Linear {
            weight: p.var(
                "weight",
                &[outputs, inputs],
                nn::Init::Randn {
                    mean: 0.0,
                    stdev: std,
                },
            ),
            bias: Some(p.zeros("bias", &[outputs])),
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.linear(&self.weight, self.bias.as_ref())
    }

    /// The output rows `rows` only (a subset of heads).
    pub fn forward_rows(&self, x: &Tensor, rows: &Tensor) -> Tensor {
        x.linear(
            &self.weight.index_select(0, rows),
            self.bias.as_ref().map(|b| b.index_select(0, rows)).as_ref(),
        )
    }
}

/// RMSNorm (Llama, Mistral, Qwen2): x / √(mean(x²) + eps) · weight, the statistics in float32
/// and the product in the input's precision, as transformers' LlamaRMSNorm.
pub struct RmsNorm {
    pub weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    pub fn new(p: nn::Path, size: i64, eps: f64) -> Self {
        RmsNorm {
            weight: p.ones("weight", &[size]),
            eps,
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        let kind = x.kind();
        // float32 at least (transformers upcasts half precision; float64 stays).
        let stats = if kind == Kind::Double {
            kind
        } else {
            Kind::Float
        };
        let h = x.to_kind(stats);
        let variance = h.pow_tensor_scalar(2).mean_dim(-1, true, stats);
        let normed = h * (variance + self.eps).rsqrt();
        &self.weight * normed.to_kind(kind)
    }
}

/// nn.LayerNorm over the last dimension.
pub struct LayerNorm {
    pub weight: Tensor,
    pub bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    pub fn new(p: nn::Path, size: i64, eps: f64) -> Self {
        LayerNorm {
            weight: p.ones("weight", &[size]),
            bias: p.zeros("bias", &[size]),
            eps,
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        let size = self.weight.size();
        x.layer_norm(&size, Some(&self.weight), Some(&self.bias), self.eps, true)
    }
}

/// An nn.Embedding weight [rows, dim] named `weight` under `p`.
pub fn embedding_weight(p: nn::Path, rows: i64, dim: i64) -> Tensor {
    p.zeros("weight", &[rows, dim])
}

pub fn embed(weight: &Tensor, ids: &Tensor) -> Tensor {
    Tensor::embedding(weight, ids, -1, false, false)
}

pub fn activate(act: Activation, x: &Tensor) -> Tensor {
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

/// transformers' Conv1D (GPT, GPT-2): y = x W + b with W stored [in, out], the transpose of
/// nn.Linear's.
pub struct Conv1D {
    pub weight: Tensor,
    pub bias: Tensor,
}

impl Conv1D {
    pub fn new(p: nn::Path, inputs: i64, outputs: i64) -> Self {
        Conv1D {
            weight: p.zeros("weight", &[inputs, outputs]),
            bias: p.zeros("bias", &[outputs]),
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.matmul(&self.weight) + &self.bias
    }
}

/// Where queries, keys and values come from: three nn.Linear (BERT and its kin), or one fused
/// Conv1D whose output columns are q | k | v side by side (GPT, GPT-2's `c_attn`).
pub enum Projection {
    Separate {
        query: Linear,
        key: Linear,
        value: Linear,
    },
    Fused(Conv1D),
}

/// Multi-head self-attention with `heads` heads left (fewer than the config's after pruning).
/// One implementation for both projection layouts, so head masks, the fused fast path and the
/// masked-head shortcut behave identically in every family.
pub struct MultiHeadAttention {
    pub projection: Projection,
    pub heads: i64,
    pub head_dim: i64,
    pub dropout: f64,
    /// Scores are divided by this: √head_dim, or GPT-2's variants (no scaling, or also by the
    /// layer's index + 1).
    pub score_divisor: f64,
    /// Key/value heads of this layer: `heads` unless queries share them (grouped-query
    /// attention).
    pub kv_heads: i64,
    /// Grouped-query attention: for each of this layer's query heads, the row among this
    /// layer's key/value heads that it reads (an explicit map, since pruning can leave the
    /// groups uneven). None: head h has key/value head h.
    pub kv_of: Option<Vec<i64>>,
    /// Softmax in float32 whatever the input's precision (the Llama family's eager attention).
    pub softmax_in_float32: bool,
}

/// Rotary position embeddings for positions 0..len: `cos` and `sin` [len, head_dim], applied
/// to queries and keys as transformers' `apply_rotary_pos_emb` (halves rotated).
pub struct Rotary {
    pub cos: Tensor,
    pub sin: Tensor,
}

impl Rotary {
    /// x [batch, heads, len, head_dim] rotated by each position's angles.
    pub fn apply(&self, x: &Tensor) -> Tensor {
        let len = x.size()[2];
        let d = x.size()[3];
        let (cos, sin) = (self.cos.narrow(0, 0, len), self.sin.narrow(0, 0, len));
        let x1 = x.narrow(-1, 0, d / 2);
        let x2 = x.narrow(-1, d / 2, d - d / 2);
        let rotated = Tensor::cat(&[x2.neg(), x1], -1);
        x * cos + rotated * sin
    }
}

/// Weight rows of `heads` (each `head_dim` rows), as an index tensor.
fn head_rows(heads: &[i64], head_dim: i64, device: tch::Device) -> Tensor {
    let rows: Vec<i64> = heads
        .iter()
        .flat_map(|h| h * head_dim..(h + 1) * head_dim)
        .collect();
    Tensor::from_slice(&rows).to_device(device)
}

impl MultiHeadAttention {
    pub fn new(p: &nn::Path, names: [&str; 3], hidden: i64, heads: i64, head_dim: i64) -> Self {
        let inner = heads * head_dim;
        MultiHeadAttention {
            projection: Projection::Separate {
                query: Linear::new(at(p, names[0]), hidden, inner),
                key: Linear::new(at(p, names[1]), hidden, inner),
                value: Linear::new(at(p, names[2]), hidden, inner),
            },
            heads,
            head_dim,
            dropout: 0.0,
            score_divisor: (head_dim as f64).sqrt(),
            kv_heads: heads,
            kv_of: None,
            softmax_in_float32: false,
        }
    }

    /// Grouped-query attention (Llama family): `kv_of[i]` is the key/value row query head i
    /// reads; q/k/v biases only when `qkv_bias`.
    pub fn grouped(
        p: &nn::Path,
        names: [&str; 3],
        hidden: i64,
        head_dim: i64,
        kv_of: Vec<i64>,
        kv_heads: i64,
        qkv_bias: bool,
    ) -> Self {
        let heads = kv_of.len() as i64;
        MultiHeadAttention {
            projection: Projection::Separate {
                query: Linear::with_bias(at(p, names[0]), hidden, heads * head_dim, qkv_bias),
                key: Linear::with_bias(at(p, names[1]), hidden, kv_heads * head_dim, qkv_bias),
                value: Linear::with_bias(at(p, names[2]), hidden, kv_heads * head_dim, qkv_bias),
            },
            heads,
            head_dim,
            dropout: 0.0,
            score_divisor: (head_dim as f64).sqrt(),
            kv_heads,
            kv_of: Some(kv_of),
            softmax_in_float32: true,
        }
    }

    /// Attention over one fused Conv1D `c_attn` [hidden, 3 · heads · head_dim] under `p`.
    pub fn fused(p: &nn::Path, hidden: i64, heads: i64, head_dim: i64) -> Self {
        MultiHeadAttention {
            projection: Projection::Fused(Conv1D::new(p / "c_attn", hidden, 3 * heads * head_dim)),
            heads,
            head_dim,
            dropout: 0.0,
            score_divisor: (head_dim as f64).sqrt(),
            kv_heads: heads,
            kv_of: None,
            softmax_in_float32: false,
        }
    }

    /// The scale SDPA needs: None for the default 1/√head_dim (bit-identical to before).
    fn sdpa_scale(&self) -> Option<f64> {
        let default = (self.head_dim as f64).sqrt();
        (self.score_divisor != default).then(|| 1.0 / self.score_divisor)
    }

    /// Returns the context [batch, queries, heads·head_dim] and, when asked, the probabilities.
    /// `queries` are the positions whose outputs are needed (all of `x`, or a prefix of it);
    /// keys and values always come from every position of `x`. `layer_mask` is
    /// [batch or 1, heads, 1, 1] over this layer's heads. `rope` rotates queries and keys.
    // Out-of-place products on purpose: softmax's backward needs its output unmodified.
    #[allow(clippy::assign_op_pattern, clippy::too_many_arguments)]
    pub fn forward(
        &self,
        queries: &Tensor,
        x: &Tensor,
        additive_mask: &Tensor,
        layer_mask: Option<&Tensor>,
        train: bool,
        probabilities: Probabilities,
        rope: Option<&Rotary>,
    ) -> (Tensor, Option<Tensor>) {
        let (b, t, tq) = (x.size()[0], x.size()[1], queries.size()[1]);
        if self.heads == 0 {
            let empty = x.new_zeros([b, tq, 0], (x.kind(), x.device()));
            let probs = (probabilities != Probabilities::None)
                .then(|| x.new_zeros([b, 0, tq, t], (x.kind(), x.device())));
            return (empty, probs);
        }
        let (context, probs) = if probabilities == Probabilities::InGraph {
            let all: Vec<i64> = (0..self.heads).collect();
            let (q, k, v) = self.project(queries, x, &all, rope);
            let scores = q.matmul(&k.transpose(-1, -2)) / self.score_divisor + additive_mask;
            let mut probs = self.softmax(&scores).dropout(self.dropout, train);
            if let Some(m) = layer_mask {
                let m = m.to_kind(probs.kind());
                probs = probs * m;
            }
            (probs.matmul(&v), Some(probs))
        } else {
            // Fused attention; a per-head scalar mask on the probabilities equals the same mask
            // on that head's context, so the result and its gradient are unchanged.
            let p = if train { self.dropout } else { 0.0 };
            let silent = layer_mask
                .filter(|m| m.requires_grad() && !train)
                .map(silent_heads)
                .unwrap_or_default();
            let detached = probabilities == Probabilities::Detached;
            let all: Vec<i64> = (0..self.heads).collect();
            let mut probs = None;
            let mut ctx = if silent.iter().any(|&z| z) {
                // A head masked to 0 for every example passes no gradient into its attention,
                // only into its mask (∂L/∂ξ = Σ ∂L/∂(ξ·ctx) · ctx). Its attention is computed
                // outside the graph, so the backward pass skips it: same values and gradients,
                // less work once masking has removed heads.
                let live: Vec<i64> = (0..self.heads).filter(|&h| !silent[h as usize]).collect();
                let dead: Vec<i64> = (0..self.heads).filter(|&h| silent[h as usize]).collect();
                let mut parts = Vec::new();
                if !live.is_empty() {
                    let (q, k, v) = self.project(queries, x, &live, rope);
                    parts.push(self.attend(&q, &k, &v, additive_mask, p));
                }
                parts.push(tch::no_grad(|| {
                    let (q, k, v) = self.project(queries, x, &dead, rope);
                    self.attend(&q, &k, &v, additive_mask, p)
                }));
                if detached {
                    let (q, k, _) = tch::no_grad(|| self.project(x, x, &all, rope));
                    probs = Some(self.detached_probabilities(&q, &k, additive_mask, layer_mask));
                }
                // Back to the original head order.
                let mut back = vec![0i64; self.heads as usize];
                for (i, &h) in live.iter().chain(&dead).enumerate() {
                    back[h as usize] = i as i64;
                }
                let back = Tensor::from_slice(&back).to_device(x.device());
                Tensor::cat(&parts, 1).index_select(1, &back)
            } else {
                let (q, k, v) = self.project(queries, x, &all, rope);
                if detached {
                    // Every query's row, also when only the first token's output is needed.
                    let q_all = if tq == t {
                        q.shallow_clone()
                    } else {
                        tch::no_grad(|| self.project(x, x, &all, rope).0)
                    };
                    probs =
                        Some(self.detached_probabilities(&q_all, &k, additive_mask, layer_mask));
                }
                self.attend(&q, &k, &v, additive_mask, p)
            };
            if let Some(m) = layer_mask {
                let m = m.to_kind(ctx.kind());
                ctx = ctx * m;
            }
            (ctx, probs)
        };
        let context =
            context
                .transpose(1, 2)
                .contiguous()
                .view([b, tq, self.heads * self.head_dim]);
        (context, probs)
    }

    /// Fused attention of projected heads: [batch, heads, queries, head_dim].
    fn attend(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        additive_mask: &Tensor,
        dropout: f64,
    ) -> Tensor {
        Tensor::scaled_dot_product_attention(
            q,
            k,
            v,
            Some(additive_mask),
            dropout,
            false,
            self.sdpa_scale(),
            false,
        )
    }

    /// The probabilities the explicit path would return (after the head mask), outside the
    /// graph: values for statistics, no backward cost. `q` covers every query position.
    fn detached_probabilities(
        &self,
        q: &Tensor,
        k: &Tensor,
        additive_mask: &Tensor,
        layer_mask: Option<&Tensor>,
    ) -> Tensor {
        tch::no_grad(|| {
            let scores = q.detach().matmul(&k.detach().transpose(-1, -2)) / self.score_divisor
                + additive_mask;
            let probs = self.softmax(&scores);
            match layer_mask {
                Some(m) => probs * m.detach().to_kind(scores.kind()),
                None => probs,
            }
        })
    }

    /// Softmax over keys, in float32 for the Llama family when the scores are half precision
    /// (back to the scores' precision).
    fn softmax(&self, scores: &Tensor) -> Tensor {
        if self.softmax_in_float32 && matches!(scores.kind(), Kind::BFloat16 | Kind::Half) {
            scores.softmax(-1, Kind::Float).to_kind(scores.kind())
        } else {
            scores.softmax(-1, scores.kind())
        }
    }

    /// Queries (from `queries`), keys and values (from `x`) of the heads `heads`, each
    /// [batch, heads.len(), length, head_dim]: a subset of heads uses the matching weight rows;
    /// shared key/value heads are projected once and repeated for each query head that reads
    /// them (transformers' `repeat_kv`, through the explicit map).
    fn project(
        &self,
        queries: &Tensor,
        x: &Tensor,
        heads: &[i64],
        rope: Option<&Rotary>,
    ) -> (Tensor, Tensor, Tensor) {
        let device = x.device();
        let n = heads.len() as i64;
        let heads_view = |y: Tensor, input: &Tensor, n: i64| {
            let (b, len) = (input.size()[0], input.size()[1]);
            y.view([b, len, n, self.head_dim]).transpose(1, 2)
        };
        let (q, k, v, repeat) = match &self.projection {
            Projection::Separate { query, key, value } => {
                // The key/value heads these query heads read, and each query head's row among
                // them.
                let (kv, repeat) = match &self.kv_of {
                    None => (heads.to_vec(), None),
                    Some(kv_of) => {
                        let mut kv: Vec<i64> = heads.iter().map(|&h| kv_of[h as usize]).collect();
                        kv.sort_unstable();
                        kv.dedup();
                        let at: Vec<i64> = heads
                            .iter()
                            .map(|&h| kv.partition_point(|&g| g < kv_of[h as usize]) as i64)
                            .collect();
                        (kv, Some(Tensor::from_slice(&at).to_device(device)))
                    }
                };
                let split = |l: &Linear, input: &Tensor, subset: &[i64], total: i64| {
                    let y = if subset.len() as i64 == total {
                        l.forward(input)
                    } else {
                        l.forward_rows(input, &head_rows(subset, self.head_dim, device))
                    };
                    heads_view(y, input, subset.len() as i64)
                };
                (
                    split(query, queries, heads, self.heads),
                    split(key, x, &kv, self.kv_heads),
                    split(value, x, &kv, self.kv_heads),
                    repeat,
                )
            }
            Projection::Fused(c) => {
                let rows = (n != self.heads).then(|| head_rows(heads, self.head_dim, device));
                // Block `i` (0 q, 1 k, 2 v) holds this layer's heads at columns i · width + ….
                let width = self.heads * self.head_dim;
                let block = |i: i64, input: &Tensor| {
                    let (w, bias) = match &rows {
                        None => (
                            c.weight.narrow(1, i * width, width),
                            c.bias.narrow(0, i * width, width),
                        ),
                        Some(r) => {
                            let cols = r + i * width;
                            (
                                c.weight.index_select(1, &cols),
                                c.bias.index_select(0, &cols),
                            )
                        }
                    };
                    heads_view(input.matmul(&w) + bias, input, n)
                };
                (block(0, queries), block(1, x), block(2, x), None)
            }
        };
        let (q, k) = match rope {
            Some(r) => (r.apply(&q), r.apply(&k)),
            None => (q, k),
        };
        match repeat {
            // `at` is the identity when each of these query heads reads a key/value head of
            // its own (ascending heads, sorted key/value rows).
            Some(at) if at.size()[0] != k.size()[1] => {
                (q, k.index_select(1, &at), v.index_select(1, &at))
            }
            _ => (q, k, v),
        }
    }
}

/// For a mask shaped [batch or 1, heads, 1, 1]: whether each head is 0 for every example.
fn silent_heads(mask: &Tensor) -> Vec<bool> {
    let zero = mask.detach().eq(0.0).all_dim(0, false).flatten(0, -1);
    Vec::try_from(zero.to_device(tch::Device::Cpu)).unwrap_or_default()
}

/// Layer `index`'s slice of a [L, H] or [B, L, H] mask over the original heads, keeping the
/// heads in `kept` (None: all), shaped [batch or 1, kept heads, 1, 1] to broadcast over
/// probabilities.
pub fn layer_head_mask(mask: &Tensor, index: i64, kept: Option<&Tensor>) -> Tensor {
    let m = match mask.dim() {
        2 => mask.get(index).unsqueeze(0),
        _ => mask.select(1, index),
    };
    let m = match kept {
        Some(kept) => m.index_select(1, kept),
        None => m,
    };
    // Not view([-1, heads, 1, 1]): with zero heads left the batch size cannot be inferred.
    let rows = m.size()[0];
    m.view([rows, -1, 1, 1])
}

/// Hugging Face names of an encoder layer's weights, relative to the layer.
pub struct EncoderLayerNames {
    pub qkv: [&'static str; 3],
    pub attention_output: &'static str,
    pub attention_norm: &'static str,
    pub intermediate: &'static str,
    pub output: &'static str,
    pub output_norm: &'static str,
}

/// Sizes and rates of an encoder layer.
#[derive(Clone, Copy, Debug)]
pub struct EncoderDims {
    pub hidden: i64,
    pub heads: i64,
    pub head_dim: i64,
    pub intermediate: i64,
    pub act: Activation,
    pub layer_norm_eps: f64,
    /// Dropout on the attention probabilities.
    pub attention_dropout: f64,
    /// Dropout after the attention output projection (0 for DistilBERT, which has none).
    pub attention_output_dropout: f64,
    /// Dropout after the feed-forward output.
    pub output_dropout: f64,
}

/// A post-LayerNorm transformer encoder layer: attention, output projection, residual and
/// norm; feed-forward, residual and norm. BertLayer and DistilBERT's TransformerBlock.
pub struct EncoderLayer {
    pub attention: MultiHeadAttention,
    attention_output: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
    dims: EncoderDims,
    /// Original indices of the heads this layer still has.
    pub kept: Vec<i64>,
    kept_index: Option<Tensor>,
    /// Original indices of the intermediate neurons this layer still has.
    pub neurons: Vec<i64>,
    neuron_index: Option<Tensor>,
}

/// The original neurons `kept` as an index tensor, or None when all `total` are kept.
pub fn neuron_index(kept: &[i64], total: i64, device: tch::Device) -> Option<Tensor> {
    (kept.len() as i64 != total).then(|| Tensor::from_slice(kept).to_device(device))
}

/// The activations of a feed-forward block times layer `index`'s slice of the neuron mask.
pub fn mask_neurons(
    inner: Tensor,
    mask: Option<&Tensor>,
    index: i64,
    kept: Option<&Tensor>,
) -> Tensor {
    match mask {
        Some(m) => inner * layer_neuron_mask(m, index, kept),
        None => inner,
    }
}

impl EncoderLayer {
    pub fn new(
        p: &nn::Path,
        names: &EncoderLayerNames,
        dims: EncoderDims,
        kept: Vec<i64>,
        neurons: Vec<i64>,
    ) -> Self {
        let heads = kept.len() as i64;
        let width = neurons.len() as i64;
        let inner = heads * dims.head_dim;
        let mut attention =
            MultiHeadAttention::new(p, names.qkv, dims.hidden, heads, dims.head_dim);
        attention.dropout = dims.attention_dropout;
        EncoderLayer {
            attention,
            attention_output: Linear::new(at(p, names.attention_output), inner, dims.hidden),
            attention_norm: LayerNorm::new(
                at(p, names.attention_norm),
                dims.hidden,
                dims.layer_norm_eps,
            ),
            intermediate: Linear::new(at(p, names.intermediate), dims.hidden, width),
            output: Linear::new(at(p, names.output), width, dims.hidden),
            output_norm: LayerNorm::new(at(p, names.output_norm), dims.hidden, dims.layer_norm_eps),
            kept_index: (heads != dims.heads)
                .then(|| Tensor::from_slice(&kept).to_device(p.device())),
            kept,
            neuron_index: neuron_index(&neurons, dims.intermediate, p.device()),
            neurons,
            dims,
        }
    }

    /// The layer's output at every position, or only at the first (`first_only`: all a
    /// first-token classifier reads from the last layer).
    pub fn forward(
        &self,
        x: &Tensor,
        additive_mask: &Tensor,
        masks: Masks,
        index: i64,
        opts: ForwardOptions,
        first_only: bool,
    ) -> (Tensor, Option<Tensor>) {
        let layer_mask = masks
            .heads
            .map(|m| layer_head_mask(m, index, self.kept_index.as_ref()));
        let queries = if first_only {
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
            opts.probabilities(),
            None,
        );
        let attended = self.attention_norm.forward(
            &(self
                .attention_output
                .forward(&context)
                .dropout(self.dims.attention_output_dropout, opts.train)
                + &queries),
        );
        let inner = mask_neurons(
            activate(self.dims.act, &self.intermediate.forward(&attended)),
            masks.neurons,
            index,
            self.neuron_index.as_ref(),
        );
        let out = self.output_norm.forward(
            &(self
                .output
                .forward(&inner)
                .dropout(self.dims.output_dropout, opts.train)
                + &attended),
        );
        (out, probs)
    }
}

/// A stack of encoder layers with the shared forward loop: hidden states and attentions on
/// request, and the last layer for the first token only when that is all the head reads.
pub struct Encoder {
    pub layers: Vec<EncoderLayer>,
    /// VarStore name prefix of layer i: `{prefix}.{i}.` (for `head_axis`).
    prefix: String,
    names: &'static EncoderLayerNames,
    head_dim: i64,
    /// Heads per layer before pruning (what head masks index).
    heads: i64,
    /// Intermediate neurons per layer before pruning (what neuron masks index).
    pub intermediate: i64,
}

/// What an encoder pass returns: the last layer's output (all positions, or the first only)
/// and what was asked for.
pub struct EncoderOutput {
    pub last: Tensor,
    pub attentions: Option<Vec<Tensor>>,
    pub hidden_states: Option<Vec<Tensor>>,
}

impl Encoder {
    /// `layers_path` is the path whose children `0`, `1`, … are the layers; `kept[i]` the
    /// original heads layer i still has, `neurons[i]` its original intermediate neurons.
    pub fn new(
        layers_path: &nn::Path,
        names: &'static EncoderLayerNames,
        dims: EncoderDims,
        kept: Vec<Vec<i64>>,
        neurons: Vec<Vec<i64>>,
    ) -> Self {
        let layers = kept
            .into_iter()
            .zip(neurons)
            .enumerate()
            .map(|(i, (k, n))| EncoderLayer::new(&(layers_path / i), names, dims, k, n))
            .collect();
        Encoder {
            layers,
            prefix: layers_path.components().collect::<Vec<_>>().join("."),
            names,
            head_dim: dims.head_dim,
            heads: dims.heads,
            intermediate: dims.intermediate,
        }
    }

    pub fn kept_heads(&self) -> Vec<Vec<i64>> {
        self.layers.iter().map(|l| l.kept.clone()).collect()
    }

    pub fn kept_neurons(&self) -> Vec<Vec<i64>> {
        self.layers.iter().map(|l| l.neurons.clone()).collect()
    }

    /// Head axes of this encoder's weights: q/k/v rows, attention output columns.
    pub fn head_axis(&self, name: &str) -> Option<HeadAxis> {
        let (layer, param) = layer_param(name, &self.prefix)?;
        let axis = |dim, unit| {
            Some(HeadAxis {
                layer,
                dim,
                head_dim: self.head_dim,
                blocks: 1,
                unit,
            })
        };
        let n = self.names;
        if param.starts_with(&format!("{}.", n.qkv[0])) {
            return axis(0, HeadUnit::Query);
        }
        if n.qkv[1..]
            .iter()
            .any(|kv| param.starts_with(&format!("{kv}.")))
        {
            return axis(0, HeadUnit::KeyValue);
        }
        if param == format!("{}.weight", n.attention_output) {
            return axis(1, HeadUnit::Query);
        }
        // Neurons: rows of the intermediate projection and its bias, columns of the output's.
        let neuron = |dim| Some(HeadAxis::neuron(layer, dim));
        if param.starts_with(&format!("{}.", n.intermediate)) {
            return neuron(0);
        }
        if param == format!("{}.weight", n.output) {
            return neuron(1);
        }
        None
    }

    /// Runs every layer over the embeddings, attending to the tokens `attention_mask` marks.
    /// `first_only_last`: the head reads only the first position of the last layer, so unless
    /// every position's output is asked for, that layer computes just it (same values, a sixth
    /// less work for a 6-layer model).
    pub fn forward(
        &self,
        embeddings: Tensor,
        attention_mask: &Tensor,
        masks: Masks,
        opts: ForwardOptions,
        first_only_last: bool,
    ) -> Result<EncoderOutput> {
        let batch = embeddings.size()[0];
        masks.check(
            batch,
            self.layers.len() as i64,
            self.heads,
            self.intermediate,
        )?;
        let additive_mask = &padding_mask(attention_mask, embeddings.kind());
        let mut x = embeddings;
        let mut hidden_states = opts.output_hidden_states.then(|| vec![x.shallow_clone()]);
        let mut attentions = opts.output_attentions.then(Vec::new);
        // Detached probabilities cover every query anyway (computed beside the graph).
        let first_only_last = first_only_last
            && !opts.output_hidden_states
            && opts.probabilities() != Probabilities::InGraph;
        let last = self.layers.len().saturating_sub(1);
        for (i, layer) in self.layers.iter().enumerate() {
            let first_only = first_only_last && i == last;
            let (out, probs) = layer.forward(&x, additive_mask, masks, i as i64, opts, first_only);
            x = out;
            if let (Some(all), Some(p)) = (attentions.as_mut(), probs) {
                all.push(p);
            }
            if let Some(all) = hidden_states.as_mut() {
                all.push(x.shallow_clone());
            }
        }
        Ok(EncoderOutput {
            last: x,
            attentions,
            hidden_states,
        })
    }
}

/// Sinusoidal position embeddings as transformers' `create_sinusoidal_embeddings`: sin on even
/// columns, cos on odd ones, of pos / 10000^(2⌊j/2⌋/dim).
pub fn sinusoidal_positions(rows: i64, dim: i64) -> Tensor {
    let mut out = vec![0f32; (rows * dim) as usize];
    for pos in 0..rows {
        for j in 0..dim {
            let angle = pos as f64 / 10000f64.powf(2.0 * (j / 2) as f64 / dim as f64);
            let v = if j % 2 == 0 { angle.sin() } else { angle.cos() };
            out[(pos * dim + j) as usize] = v as f32;
        }
    }
    Tensor::from_slice(&out)
        .view([rows, dim])
        .to_kind(Kind::Float)
}
