//! LlamaForCausalLM and LlamaForSequenceClassification (transformers' modeling_llama), with
//! the two variants that differ from it in small ways: Mistral (a sliding attention window,
//! no biases) and Qwen2 (q/k/v biases, sliding windows on the layers `layer_types` names).
//!
//! Pre-RMSNorm decoder blocks, rotary positions (`rope_theta`, `rope_scaling` linear, dynamic
//! and llama3), a SwiGLU MLP (`down_proj(act(gate_proj(x)) · up_proj(x))`) and grouped-query
//! attention: `num_key_value_heads` key/value heads, query head h reading key/value head
//! h / (heads / kv_heads). Attention goes through the shared `MultiHeadAttention` with an
//! explicit query → key/value map, so head masks, the fused path and the masked-head shortcut
//! are the same code as every other family's, and query heads of a group can be pruned
//! unevenly.
//!
//! The head mask (transformers has none for these models) scales each query head's context
//! before `o_proj`, which is what BERT's `head_mask` on the probabilities amounts to; the
//! Python reference is a forward pre-hook on `o_proj` (scripts/reference/llama_head_mask.py).
use super::checkpoint::KeyLayout;
use super::config::{check_sizes, Activation, ModelConfig};
use super::family::{Family, Held, SizeField};
use super::gpt2::{causal_padding_mask, DecoderHead};
use super::layers::{
    activate, embed, embedding_weight, layer_head_mask, mask_neurons, neuron_index, Linear,
    MultiHeadAttention, RmsNorm, Rotary,
};
use super::network::{
    layer_param, ForwardOptions, HeadAxis, HeadUnit, Inputs, Masks, ModelOutput, Network,
    NetworkShape, Objective, RemoteCode,
};
use anyhow::{anyhow, bail, Result};
use serde::Deserialize;
use serde_json::Value;
use std::f64::consts::PI;
use tch::{nn, Device, Kind, Tensor};

/// The config's size fields and the weights that hold them, checked before anything is
/// allocated. The sizes have no default (a config without them is refused); rotary positions
/// are held by no weight, so they get a fixed bound.
pub const SIZES: &[SizeField] = &[
    SizeField::new("vocab_size", None, Held::Dim("embed_tokens.weight", 0)),
    SizeField::new("hidden_size", None, Held::Dim("embed_tokens.weight", 1)),
    SizeField::new(
        "intermediate_size",
        None,
        Held::Neurons("layers.0.mlp.gate_proj.weight", 0),
    ),
    SizeField::new("num_hidden_layers", None, Held::Layers("layers.")),
    SizeField::new("num_attention_heads", None, Held::Bounded),
    SizeField::new("num_key_value_heads", None, Held::Bounded),
    SizeField::new("head_dim", None, Held::Bounded),
    SizeField::new("max_position_embeddings", None, Held::AtMost(1 << 20)),
    SizeField::new("sliding_window", None, Held::AtMost(1 << 20)),
];

/// `*ForSequenceClassification`: the family `--task <GLUE task>` builds.
pub static FAMILY: Family = Family {
    name: "llama",
    model_types: &["llama", "mistral", "qwen2"],
    layout: KeyLayout {
        prefix: "model",
        head: "score.",
        optional: &["score."],
    },
    sizes: SIZES,
    build: |root, config| Ok(Box::new(build(root, config, Objective::Classification)?)),
};

/// `*ForCausalLM`: the family `--task lm` builds. `lm_head.weight` is its own tensor unless
/// `tie_word_embeddings`, when the head reuses `embed_tokens`; so every checkpoint counts as
/// having the head (an untied one without `lm_head.weight` fails as a missing weight).
pub static LM_FAMILY: Family = Family {
    name: "llama",
    model_types: &["llama", "mistral", "qwen2"],
    layout: KeyLayout {
        prefix: "model",
        head: "",
        optional: &[],
    },
    sizes: SIZES,
    build: |root, config| Ok(Box::new(build(root, config, Objective::CausalLm)?)),
};

/// The fields LlamaConfig, MistralConfig and Qwen2Config share (each with its defaults, filled
/// in by `Variant::defaults`). The sizes have no default here: a config without them is
/// refused rather than read as a 7B model.
#[derive(Clone, Debug, Deserialize)]
pub struct LlamaConfig {
    pub vocab_size: i64,
    pub hidden_size: i64,
    pub intermediate_size: i64,
    pub num_hidden_layers: i64,
    pub num_attention_heads: i64,
    #[serde(default)]
    pub num_key_value_heads: Option<i64>,
    #[serde(default)]
    pub head_dim: Option<i64>,
    #[serde(default = "d::silu")]
    pub hidden_act: Activation,
    pub max_position_embeddings: i64,
    #[serde(default = "d::rms_norm_eps")]
    pub rms_norm_eps: f64,
    #[serde(default = "d::rope_theta")]
    pub rope_theta: f64,
    #[serde(default)]
    pub rope_scaling: Option<Value>,
    #[serde(default)]
    pub partial_rotary_factor: Option<f64>,
    #[serde(default)]
    pub attention_bias: bool,
    #[serde(default)]
    pub attention_dropout: f64,
    #[serde(default)]
    pub mlp_bias: bool,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default)]
    pub pad_token_id: Option<i64>,
    #[serde(default)]
    pub sliding_window: Option<i64>,
    #[serde(default)]
    pub use_sliding_window: bool,
    #[serde(default)]
    pub max_window_layers: Option<i64>,
    #[serde(default)]
    pub layer_types: Option<Vec<String>>,
    #[serde(default = "d::initializer_range")]
    pub initializer_range: f64,
}

mod d {
    use super::Activation;
    pub fn silu() -> Activation {
        Activation::Silu
    }
    pub fn rms_norm_eps() -> f64 {
        1e-6
    }
    pub fn rope_theta() -> f64 {
        10000.0
    }
    pub fn initializer_range() -> f64 {
        0.02
    }
}

/// The transformers class of a causal language model of `model_type` (`LlamaForCausalLM`,
/// `Qwen2ForCausalLM`, ...): the class a GGUF file converted to a Hugging Face folder names in
/// its config.json, so that no module outside `model` names an architecture's class.
pub fn causal_lm_class(model_type: &str) -> Result<&'static str> {
    Ok(Variant::of(model_type)?.class(Objective::CausalLm))
}

/// What a GGUF file of this family calls each weight (gguf-py's tensor map for llama and
/// qwen2): the whole-model modules, then the modules of block `blk.N.` (`model.layers.N.`).
pub const GGUF_MODULES: &[(&str, &str)] = &[
    ("token_embd", "model.embed_tokens"),
    ("output_norm", "model.norm"),
    ("output", "lm_head"),
];
pub const GGUF_BLOCK_MODULES: &[(&str, &str)] = &[
    ("attn_q", "self_attn.q_proj"),
    ("attn_k", "self_attn.k_proj"),
    ("attn_v", "self_attn.v_proj"),
    ("attn_output", "self_attn.o_proj"),
    ("ffn_gate", "mlp.gate_proj"),
    ("ffn_up", "mlp.up_proj"),
    ("ffn_down", "mlp.down_proj"),
    ("attn_norm", "input_layernorm"),
    ("ffn_norm", "post_attention_layernorm"),
];

/// The sizes a causal language model's weights follow from.
pub struct CausalLmSizes {
    pub vocab: usize,
    pub hidden: usize,
    pub intermediate: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// The LM head is the embedding (no `lm_head.weight`).
    pub tied: bool,
}

/// Every weight a `model_type` causal language model of these sizes must have, with its torch
/// shape (what a GGUF conversion checks before it writes anything).
pub fn causal_lm_weights(
    model_type: &str,
    z: &CausalLmSizes,
) -> Result<std::collections::BTreeMap<String, Vec<usize>>> {
    let variant = Variant::of(model_type)?;
    let (q_rows, kv_rows, hidden) = (z.heads * z.head_dim, z.kv_heads * z.head_dim, z.hidden);
    let mut w = std::collections::BTreeMap::new();
    w.insert("model.embed_tokens.weight".into(), vec![z.vocab, hidden]);
    w.insert("model.norm.weight".into(), vec![hidden]);
    if !z.tied {
        w.insert("lm_head.weight".into(), vec![z.vocab, hidden]);
    }
    for l in 0..z.layers {
        let p = |s: &str| format!("model.layers.{l}.{s}");
        w.insert(p("self_attn.q_proj.weight"), vec![q_rows, hidden]);
        w.insert(p("self_attn.k_proj.weight"), vec![kv_rows, hidden]);
        w.insert(p("self_attn.v_proj.weight"), vec![kv_rows, hidden]);
        w.insert(p("self_attn.o_proj.weight"), vec![hidden, q_rows]);
        w.insert(p("mlp.gate_proj.weight"), vec![z.intermediate, hidden]);
        w.insert(p("mlp.up_proj.weight"), vec![z.intermediate, hidden]);
        w.insert(p("mlp.down_proj.weight"), vec![hidden, z.intermediate]);
        w.insert(p("input_layernorm.weight"), vec![hidden]);
        w.insert(p("post_attention_layernorm.weight"), vec![hidden]);
        if variant == Variant::Qwen2 {
            w.insert(p("self_attn.q_proj.bias"), vec![q_rows]);
            w.insert(p("self_attn.k_proj.bias"), vec![kv_rows]);
            w.insert(p("self_attn.v_proj.bias"), vec![kv_rows]);
        }
    }
    Ok(w)
}

/// How Mistral and Qwen2 differ from Llama.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    Llama,
    Mistral,
    Qwen2,
}

impl Variant {
    fn of(model_type: &str) -> Result<Self> {
        Ok(match model_type {
            "llama" => Variant::Llama,
            "mistral" => Variant::Mistral,
            "qwen2" => Variant::Qwen2,
            other => bail!("model_type {other:?} is not a Llama-family model"),
        })
    }

    /// Defaults of the transformers config class where they differ between the three.
    fn defaults(self) -> Vec<(&'static str, Value)> {
        match self {
            Variant::Llama => vec![("max_position_embeddings", 2048.into())],
            Variant::Mistral => vec![
                ("max_position_embeddings", (4096 * 32).into()),
                ("num_key_value_heads", 8.into()),
                ("sliding_window", 4096.into()),
            ],
            Variant::Qwen2 => vec![
                ("max_position_embeddings", 32768.into()),
                ("sliding_window", 4096.into()),
                ("max_window_layers", 28.into()),
            ],
        }
    }

    fn class(self, objective: Objective) -> &'static str {
        let lm = objective == Objective::CausalLm;
        match (self, lm) {
            (Variant::Llama, true) => "LlamaForCausalLM",
            (Variant::Llama, false) => "LlamaForSequenceClassification",
            (Variant::Mistral, true) => "MistralForCausalLM",
            (Variant::Mistral, false) => "MistralForSequenceClassification",
            (Variant::Qwen2, true) => "Qwen2ForCausalLM",
            (Variant::Qwen2, false) => "Qwen2ForSequenceClassification",
        }
    }

    /// Biases of (q, k, v) and of o_proj and the MLP.
    fn biases(self, c: &LlamaConfig) -> (bool, bool, bool) {
        match self {
            Variant::Llama => (c.attention_bias, c.attention_bias, c.mlp_bias),
            Variant::Mistral => (false, false, false),
            Variant::Qwen2 => (true, false, false),
        }
    }

    /// The attention window of each layer (None: the whole causal past). Mistral slides in
    /// every layer when `sliding_window` is set; Qwen2 only with `use_sliding_window`, in the
    /// layers `layer_types` names (by default those from `max_window_layers` on); `layer_types`
    /// in a config decides for any variant.
    fn windows(self, c: &LlamaConfig) -> Result<Vec<Option<i64>>> {
        let layers = c.num_hidden_layers as usize;
        let window = match self {
            Variant::Llama => c.sliding_window,
            Variant::Mistral => c.sliding_window,
            Variant::Qwen2 => c.sliding_window.filter(|_| c.use_sliding_window),
        };
        if let Some(w) = window {
            if w <= 0 {
                bail!("sliding_window must be positive, got {w}");
            }
        }
        if let Some(types) = &c.layer_types {
            if types.len() != layers {
                bail!(
                    "layer_types has {} entries; expected one per layer ({layers}, num_hidden_layers)",
                    types.len()
                );
            }
            return types
                .iter()
                .map(|t| match t.as_str() {
                    "full_attention" => Ok(None),
                    "sliding_attention" => Ok(window),
                    other => bail!(
                        "layer_types: {other:?} is not supported (full_attention or sliding_attention)"
                    ),
                })
                .collect();
        }
        Ok(match self {
            Variant::Llama => vec![None; layers],
            Variant::Mistral => vec![window; layers],
            Variant::Qwen2 => {
                let from = c.max_window_layers.unwrap_or(28).max(0) as usize;
                (0..layers)
                    .map(|i| if i >= from { window } else { None })
                    .collect()
            }
        })
    }
}

/// Rotary frequencies as transformers' `ROPE_INIT_FUNCTIONS` compute them, in float32.
#[derive(Clone, Debug)]
enum RopeScaling {
    Default,
    Linear {
        factor: f64,
    },
    Dynamic {
        factor: f64,
    },
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_positions: f64,
    },
}

impl RopeScaling {
    fn from_config(c: &LlamaConfig) -> Result<Self> {
        let Some(scaling) = c.rope_scaling.as_ref().filter(|v| !v.is_null()) else {
            return Ok(RopeScaling::Default);
        };
        let kind = scaling
            .get("rope_type")
            .or_else(|| scaling.get("type"))
            .and_then(Value::as_str)
            .ok_or_else(|| {
                anyhow!("rope_scaling: expected a \"rope_type\" (or \"type\") string")
            })?;
        let number = |name: &str| -> Result<f64> {
            scaling
                .get(name)
                .and_then(Value::as_f64)
                .ok_or_else(|| anyhow!("rope_scaling: {kind} scaling needs a number {name:?}"))
        };
        Ok(match kind {
            "default" => RopeScaling::Default,
            "linear" => RopeScaling::Linear {
                factor: number("factor")?,
            },
            "dynamic" => RopeScaling::Dynamic {
                factor: number("factor")?,
            },
            "llama3" => RopeScaling::Llama3 {
                factor: number("factor")?,
                low_freq_factor: number("low_freq_factor")?,
                high_freq_factor: number("high_freq_factor")?,
                original_max_positions: number("original_max_position_embeddings")?,
            },
            other => bail!(
                "rope_scaling type {other:?} is not supported (supported: linear, dynamic, llama3)"
            ),
        })
    }
}

/// The rotary embedding of a model: its base, dimension and scaling.
struct RotaryEmbedding {
    base: f64,
    dim: i64,
    scaling: RopeScaling,
    max_positions: i64,
}

impl RotaryEmbedding {
    /// 1 / base^(2i / dim), in `kind` (float32 as `_compute_default_rope_parameters`).
    fn default_inv_freq(base: f64, dim: i64, kind: Kind) -> Tensor {
        let exponents = Tensor::arange_start_step(0, dim, 2, (Kind::Int64, Device::Cpu))
            .to_kind(kind)
            / dim as f64;
        Tensor::pow_scalar(base, &exponents).reciprocal()
    }

    /// The frequencies for an input of `len` positions (dynamic scaling depends on it).
    fn inv_freq(&self, len: i64, kind: Kind) -> Tensor {
        match self.scaling {
            RopeScaling::Default => Self::default_inv_freq(self.base, self.dim, kind),
            RopeScaling::Linear { factor } => {
                Self::default_inv_freq(self.base, self.dim, kind) / factor
            }
            RopeScaling::Dynamic { factor } => {
                // `_compute_dynamic_ntk_parameters` for a fresh model: the base grows once the
                // input is longer than max_position_embeddings. (transformers caches the
                // largest length seen so far; a fresh load equals it.)
                let max = self.max_positions as f64;
                let seq = (len as f64).max(max);
                let dim = self.dim as f64;
                let base =
                    self.base * ((factor * seq / max) - (factor - 1.0)).powf(dim / (dim - 2.0));
                Self::default_inv_freq(base, self.dim, kind)
            }
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_positions: old,
            } => {
                let inv_freq = Self::default_inv_freq(self.base, self.dim, kind);
                let low_freq_wavelen = old / low_freq_factor;
                let high_freq_wavelen = old / high_freq_factor;
                let wavelen = inv_freq.reciprocal() * (2.0 * PI);
                let scaled =
                    inv_freq.where_self(&wavelen.le(low_freq_wavelen), &(&inv_freq / factor));
                let smooth = ((wavelen.reciprocal() * old) - low_freq_factor)
                    / (high_freq_factor - low_freq_factor);
                let smoothed =
                    (smooth.ones_like() - &smooth) * &scaled / factor + &smooth * &scaled;
                let medium = wavelen
                    .lt(high_freq_wavelen)
                    .logical_not()
                    .logical_and(&wavelen.gt(low_freq_wavelen).logical_not());
                smoothed.where_self(&medium, &scaled)
            }
        }
    }

    /// cos and sin [len, dim] of positions 0..len (`cat(freqs, freqs)`), computed in float32
    /// and cast to `kind` as transformers does; in float64 when `kind` is (transformers'
    /// float32 angles would cap a float64 run's precision at float32's).
    fn rotary(&self, len: i64, kind: Kind, device: Device) -> Rotary {
        let angles = if kind == Kind::Double {
            Kind::Double
        } else {
            Kind::Float
        };
        let inv_freq = self.inv_freq(len, angles).to_device(device);
        let positions = Tensor::arange(len, (angles, device));
        let freqs = positions.outer(&inv_freq);
        let emb = Tensor::cat(&[&freqs, &freqs], -1);
        Rotary {
            cos: emb.cos().to_kind(kind),
            sin: emb.sin().to_kind(kind),
        }
    }
}

/// The sizes a block needs.
#[derive(Clone, Copy, Debug)]
struct Dims {
    hidden: i64,
    heads: i64,
    kv_heads: i64,
    head_dim: i64,
    intermediate: i64,
    act: Activation,
    eps: f64,
    attention_dropout: f64,
}

/// LlamaDecoderLayer: `input_layernorm`, `self_attn` (q/k/v/o_proj), `post_attention_layernorm`,
/// `mlp` (gate/up/down_proj).
struct DecoderLayer {
    input_layernorm: RmsNorm,
    attention: MultiHeadAttention,
    o_proj: Linear,
    post_attention_layernorm: RmsNorm,
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
    act: Activation,
    window: Option<i64>,
    kept: Vec<i64>,
    kept_index: Option<Tensor>,
    neurons: Vec<i64>,
    neuron_index: Option<Tensor>,
}

impl DecoderLayer {
    fn new(
        p: &nn::Path,
        dims: Dims,
        biases: (bool, bool, bool),
        window: Option<i64>,
        kept: Vec<i64>,
        neurons: Vec<i64>,
    ) -> Self {
        let (qkv_bias, o_bias, mlp_bias) = biases;
        let width = neurons.len() as i64;
        // Query head h reads key/value head h / group of the original layout; the layer keeps
        // the key/value heads its kept query heads read, in order.
        let group = dims.heads / dims.kv_heads;
        let mut kv: Vec<i64> = kept.iter().map(|h| h / group).collect();
        kv.dedup();
        let kv_of: Vec<i64> = kept
            .iter()
            .map(|h| kv.partition_point(|&g| g < h / group) as i64)
            .collect();
        let attn = p / "self_attn";
        let mut attention = MultiHeadAttention::grouped(
            &attn,
            ["q_proj", "k_proj", "v_proj"],
            dims.hidden,
            dims.head_dim,
            kv_of,
            kv.len() as i64,
            qkv_bias,
        );
        attention.dropout = dims.attention_dropout;
        let heads = kept.len() as i64;
        let mlp = p / "mlp";
        DecoderLayer {
            input_layernorm: RmsNorm::new(p / "input_layernorm", dims.hidden, dims.eps),
            attention,
            o_proj: Linear::with_bias(&attn / "o_proj", heads * dims.head_dim, dims.hidden, o_bias),
            post_attention_layernorm: RmsNorm::new(
                p / "post_attention_layernorm",
                dims.hidden,
                dims.eps,
            ),
            gate_proj: Linear::with_bias(&mlp / "gate_proj", dims.hidden, width, mlp_bias),
            up_proj: Linear::with_bias(&mlp / "up_proj", dims.hidden, width, mlp_bias),
            down_proj: Linear::with_bias(&mlp / "down_proj", width, dims.hidden, mlp_bias),
            act: dims.act,
            window,
            kept_index: (heads != dims.heads)
                .then(|| Tensor::from_slice(&kept).to_device(p.device())),
            kept,
            neuron_index: neuron_index(&neurons, dims.intermediate, p.device()),
            neurons,
        }
    }

    fn forward(
        &self,
        x: &Tensor,
        mask: &Tensor,
        rope: &Rotary,
        masks: Masks,
        index: i64,
        opts: ForwardOptions,
    ) -> (Tensor, Option<Tensor>) {
        let layer_mask = masks
            .heads
            .map(|m| layer_head_mask(m, index, self.kept_index.as_ref()));
        let h = self.input_layernorm.forward(x);
        let (context, probs) = self.attention.forward(
            &h,
            &h,
            mask,
            layer_mask.as_ref(),
            opts.train,
            opts.probabilities(),
            Some(rope),
        );
        let h = self.o_proj.forward(&context) + x;
        let n = self.post_attention_layernorm.forward(&h);
        let inner = mask_neurons(
            activate(self.act, &self.gate_proj.forward(&n)) * self.up_proj.forward(&n),
            masks.neurons,
            index,
            self.neuron_index.as_ref(),
        );
        let mlp = self.down_proj.forward(&inner);
        (mlp + h, probs)
    }
}

/// LlamaForCausalLM / LlamaForSequenceClassification and the Mistral and Qwen2 classes.
pub struct LlamaModel {
    embed_tokens: Tensor,
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
    /// The untied `lm_head.weight` (None: tied to `embed_tokens`, or a classifier).
    lm_head: Option<Tensor>,
    head: DecoderHead,
    rotary: RotaryEmbedding,
    dims: Dims,
    layers_count: i64,
    vocab: i64,
    max_positions: i64,
    class: &'static str,
}

/// The model of `config` for `objective`.
pub fn build(root: &nn::Path, config: &ModelConfig, objective: Objective) -> Result<LlamaModel> {
    let variant = Variant::of(config.model_type())?;
    let c: LlamaConfig = config
        .typed_with_defaults(&variant.defaults())
        .map_err(|e| {
            // serde says "missing field `x`"; say which model needs it.
            let text = e.to_string();
            match text.split_once("missing field `") {
                Some((_, rest)) => anyhow!(
                    "missing field {} (a {} config needs it)",
                    rest.split('`').next().unwrap_or(rest),
                    config.model_type()
                ),
                None => e,
            }
        })?;
    let heads = c.num_attention_heads;
    let kv_heads = c.num_key_value_heads.unwrap_or(heads);
    check_sizes(&[
        ("hidden_size", c.hidden_size),
        ("intermediate_size", c.intermediate_size),
        ("num_hidden_layers", c.num_hidden_layers),
        ("num_attention_heads", heads),
        ("num_key_value_heads", kv_heads),
        ("vocab_size", c.vocab_size),
        ("max_position_embeddings", c.max_position_embeddings),
    ])?;
    if heads % kv_heads != 0 {
        bail!(
            "num_attention_heads {heads} is not a multiple of num_key_value_heads {kv_heads} (each key/value head serves a whole group of query heads)"
        );
    }
    let head_dim = match c.head_dim {
        Some(d) => d,
        None => {
            if c.hidden_size % heads != 0 {
                bail!(
                    "hidden_size {} is not a multiple of num_attention_heads {heads} (and no head_dim is given)",
                    c.hidden_size
                );
            }
            c.hidden_size / heads
        }
    };
    check_sizes(&[("head_dim", head_dim)])?;
    if head_dim % 2 != 0 {
        bail!("head_dim {head_dim} must be even (rotary embeddings rotate halves)");
    }
    if let Some(f) = c.partial_rotary_factor.filter(|&f| f != 1.0) {
        bail!("partial_rotary_factor {f} is not supported (Llama-family models rotate the whole head)");
    }
    let scaling = RopeScaling::from_config(&c)?;
    let scaling_factor = match scaling {
        RopeScaling::Dynamic { factor } if factor > 1.0 => Some(factor),
        _ => None,
    };
    config.check_pruned_heads(c.num_hidden_layers, heads)?;
    let dims = Dims {
        hidden: c.hidden_size,
        heads,
        kv_heads,
        head_dim,
        intermediate: c.intermediate_size,
        act: c.hidden_act,
        eps: c.rms_norm_eps,
        attention_dropout: c.attention_dropout,
    };
    let class = variant.class(objective);
    let head = DecoderHead::new(
        root,
        config,
        objective,
        c.hidden_size,
        c.vocab_size,
        c.initializer_range,
        c.pad_token_id,
        class,
    )?;
    let base = root / "model";
    let biases = variant.biases(&c);
    let windows = variant.windows(&c)?;
    let layers_path = &base / "layers";
    let neurons = config.kept_neurons(c.num_hidden_layers, c.intermediate_size)?;
    let layers = config
        .kept_heads(c.num_hidden_layers, heads)
        .into_iter()
        .zip(windows)
        .zip(neurons)
        .enumerate()
        .map(|(i, ((kept, window), neurons))| {
            DecoderLayer::new(&(&layers_path / i), dims, biases, window, kept, neurons)
        })
        .collect();
    let lm_head = (objective == Objective::CausalLm && !c.tie_word_embeddings)
        .then(|| (root / "lm_head").zeros("weight", &[c.vocab_size, c.hidden_size]));
    Ok(LlamaModel {
        embed_tokens: embedding_weight(&base / "embed_tokens", c.vocab_size, c.hidden_size),
        layers,
        norm: RmsNorm::new(&base / "norm", c.hidden_size, c.rms_norm_eps),
        lm_head,
        head,
        rotary: RotaryEmbedding {
            base: c.rope_theta,
            dim: head_dim,
            scaling,
            max_positions: c.max_position_embeddings,
        },
        dims,
        layers_count: c.num_hidden_layers,
        vocab: c.vocab_size,
        // Rotary positions have no table to run off; the pipeline keeps inputs within the
        // trained length, or the length dynamic scaling stretches it to.
        max_positions: match scaling_factor {
            Some(f) => (c.max_position_embeddings as f64 * f) as i64,
            None => c.max_position_embeddings,
        },
        class,
    })
}

impl Network for LlamaModel {
    fn forward_masked(
        &self,
        inputs: &Inputs,
        masks: Masks,
        opts: ForwardOptions,
    ) -> Result<ModelOutput> {
        let (b, t) = inputs.input_ids.size2()?;
        masks.check(
            b,
            self.layers_count,
            self.dims.heads,
            self.dims.intermediate,
        )?;
        let mut x = embed(&self.embed_tokens, inputs.input_ids);
        let rope = self.rotary.rotary(t, x.kind(), x.device());
        let full = causal_padding_mask(inputs.attention_mask, x.kind(), None);
        let window = self.layers.iter().find_map(|l| l.window);
        let sliding = window.map(|w| causal_padding_mask(inputs.attention_mask, x.kind(), Some(w)));
        let mut hidden_states = opts.output_hidden_states.then(Vec::new);
        let mut attentions = opts.output_attentions.then(Vec::new);
        for (i, layer) in self.layers.iter().enumerate() {
            if let Some(all) = hidden_states.as_mut() {
                all.push(x.shallow_clone());
            }
            let mask = match (layer.window, &sliding) {
                (Some(_), Some(s)) => s,
                _ => &full,
            };
            let (out, probs) = layer.forward(&x, mask, &rope, masks, i as i64, opts);
            x = out;
            if let (Some(all), Some(p)) = (attentions.as_mut(), probs) {
                all.push(p);
            }
        }
        // transformers records the last layer's output after the final norm.
        x = self.norm.forward(&x);
        if let Some(all) = hidden_states.as_mut() {
            all.push(x.shallow_clone());
        }
        let lm_weight = self.lm_head.as_ref().unwrap_or(&self.embed_tokens);
        let logits = self.head.forward(&x, lm_weight, inputs.input_ids);
        Ok(ModelOutput {
            logits,
            attentions,
            hidden_states,
        })
    }

    fn shape(&self) -> NetworkShape {
        NetworkShape {
            layers: self.layers_count,
            heads: self.dims.heads,
            vocab_size: self.vocab,
            max_positions: self.max_positions,
            regression: self.head.is_regression(),
            intermediate: self.dims.intermediate,
        }
    }

    fn num_kv_heads(&self) -> i64 {
        self.dims.kv_heads
    }

    fn kept_heads(&self) -> Vec<Vec<i64>> {
        self.layers.iter().map(|l| l.kept.clone()).collect()
    }

    fn kept_neurons(&self) -> Vec<Vec<i64>> {
        self.layers.iter().map(|l| l.neurons.clone()).collect()
    }

    fn intermediate_field(&self) -> Option<&'static str> {
        Some("intermediate_size")
    }

    fn objective(&self) -> Objective {
        self.head.objective()
    }

    fn is_causal(&self) -> bool {
        true
    }

    fn hf_class(&self) -> &'static str {
        self.class
    }

    /// transformers' Llama classes have one head count for every layer; a pruned model loads
    /// through subclasses that cut each layer to its heads (src/model/llama_remote.py).
    fn remote_code(&self) -> Option<RemoteCode> {
        let module = "modeling_bertology";
        let class = |auto: &'static str, suffix: &str| {
            let base = self.class.split("For").next().unwrap_or(self.class);
            (auto, format!("{module}.Bertology{base}For{suffix}"))
        };
        Some(RemoteCode {
            file: "modeling_bertology.py",
            source: concat!(
                include_str!("llama_remote.py"),
                include_str!("mlp_remote.py")
            ),
            auto_map: vec![
                class("AutoModelForCausalLM", "CausalLM"),
                class(
                    "AutoModelForSequenceClassification",
                    "SequenceClassification",
                ),
            ],
        })
    }

    /// A model whose every layer keeps K key/value heads, each serving G query heads, is a
    /// plain config of K·G heads over K key/value heads (head_dim given, since it no longer
    /// divides hidden_size): transformers' own class loads it and maps query head q to key/value
    /// head q / G, as the kept heads in order do here.
    fn express_pruned_heads(&self, config: &mut ModelConfig) -> bool {
        let shapes: Vec<Option<(usize, usize)>> = self
            .kept_heads()
            .iter()
            .map(|q| {
                let mut sizes: Vec<usize> = Vec::new();
                let mut last = None;
                for g in q.iter().map(|&h| self.kv_group_of(h)) {
                    match sizes.last_mut() {
                        Some(n) if last == Some(g) => *n += 1,
                        _ => sizes.push(1),
                    }
                    last = Some(g);
                }
                let g = *sizes.first()?;
                sizes.iter().all(|&n| n == g).then_some((sizes.len(), g))
            })
            .collect();
        match shapes.first() {
            Some(&Some((k, g))) if shapes.iter().all(|s| *s == Some((k, g))) => {
                config.set_uniform_heads((k * g) as i64, k as i64, self.dims.head_dim);
                true
            }
            _ => false,
        }
    }

    /// Query heads sit in q_proj's rows and o_proj's columns, key/value heads in k_proj's and
    /// v_proj's rows (weights and biases).
    fn head_axis(&self, name: &str) -> Option<HeadAxis> {
        let (layer, param) = layer_param(name, "model.layers")?;
        let axis = |dim, unit| {
            Some(HeadAxis {
                layer,
                dim,
                head_dim: self.dims.head_dim,
                blocks: 1,
                unit,
            })
        };
        let neuron = |dim| Some(HeadAxis::neuron(layer, dim));
        match param {
            "self_attn.q_proj.weight" | "self_attn.q_proj.bias" => axis(0, HeadUnit::Query),
            "self_attn.k_proj.weight"
            | "self_attn.k_proj.bias"
            | "self_attn.v_proj.weight"
            | "self_attn.v_proj.bias" => axis(0, HeadUnit::KeyValue),
            "self_attn.o_proj.weight" => axis(1, HeadUnit::Query),
            // Neurons: rows of gate_proj and up_proj (and their biases), columns of down_proj.
            "mlp.gate_proj.weight"
            | "mlp.gate_proj.bias"
            | "mlp.up_proj.weight"
            | "mlp.up_proj.bias" => neuron(0),
            "mlp.down_proj.weight" => neuron(1),
            _ => None,
        }
    }
}
