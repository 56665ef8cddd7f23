//! OpenAIGPTLMHeadModel and OpenAIGPTForSequenceClassification (transformers' modeling_openai):
//! the GPT-2 decoder (`gpt2.rs`) with post-LayerNorm blocks, no final LayerNorm, embeddings
//! named `tokens_embed`/`positions_embed`, and the activation chosen by `afn` from GPT's own
//! table (where "gelu" is the tanh approximation).
use super::checkpoint::KeyLayout;
use super::config::{check_heads, check_sizes, Activation, ModelConfig};
use super::family::{Family, Held, SizeField};
use super::gpt2::{Decoder, DecoderDims, DecoderHead, DecoderModel};
use super::network::Objective;
use anyhow::{bail, Result};
use serde::Deserialize;
use tch::nn;

/// OpenAI GPT's size fields and the weights that hold them (the MLP is 4 × n_embd, no field).
pub const SIZES: &[SizeField] = &[
    SizeField::new(
        "vocab_size",
        Some(d::vocab_size),
        Held::Dim("tokens_embed.weight", 0),
    ),
    SizeField::new(
        "n_embd",
        Some(d::n_embd),
        Held::Dim("tokens_embed.weight", 1),
    ),
    SizeField::new(
        "n_positions",
        Some(d::n_positions),
        Held::Dim("positions_embed.weight", 0),
    ),
    SizeField::new("n_layer", Some(d::n_layer), Held::Layers("h.")),
    SizeField::new("n_head", Some(d::n_head), Held::Bounded),
];

/// OpenAIGPTForSequenceClassification (`--task <GLUE task>`).
pub static FAMILY: Family = Family {
    name: "openai-gpt",
    model_types: &["openai-gpt"],
    layout: KeyLayout {
        prefix: "transformer",
        head: "score.",
        optional: &["score."],
    },
    sizes: SIZES,
    build: |root, config| Ok(Box::new(build(root, config, Objective::Classification)?)),
};

/// OpenAIGPTLMHeadModel (`--task lm`); its head is tied to `tokens_embed`.
pub static LM_FAMILY: Family = Family {
    name: "openai-gpt",
    model_types: &["openai-gpt"],
    layout: KeyLayout {
        prefix: "transformer",
        head: "",
        optional: &[],
    },
    sizes: SIZES,
    build: |root, config| Ok(Box::new(build(root, config, Objective::CausalLm)?)),
};

/// OpenAIGPTConfig's fields with transformers' defaults.
#[derive(Clone, Debug, Deserialize)]
pub struct OpenAiGptConfig {
    #[serde(default = "d::vocab_size")]
    pub vocab_size: i64,
    #[serde(default = "d::n_positions")]
    pub n_positions: i64,
    #[serde(default = "d::n_embd")]
    pub n_embd: i64,
    #[serde(default = "d::n_layer")]
    pub n_layer: i64,
    #[serde(default = "d::n_head")]
    pub n_head: i64,
    #[serde(default = "d::afn")]
    pub afn: String,
    #[serde(default = "d::dropout")]
    pub resid_pdrop: f64,
    #[serde(default = "d::dropout")]
    pub embd_pdrop: f64,
    #[serde(default = "d::dropout")]
    pub attn_pdrop: f64,
    #[serde(default = "d::layer_norm_epsilon")]
    pub layer_norm_epsilon: f64,
    #[serde(default = "d::initializer_range")]
    pub initializer_range: f64,
    #[serde(default)]
    pub pad_token_id: Option<i64>,
}

mod d {
    pub fn vocab_size() -> i64 {
        40478
    }
    pub fn n_positions() -> i64 {
        512
    }
    pub fn n_embd() -> i64 {
        768
    }
    pub fn n_layer() -> i64 {
        12
    }
    pub fn n_head() -> i64 {
        12
    }
    pub fn afn() -> String {
        "gelu".into()
    }
    pub fn dropout() -> f64 {
        0.1
    }
    pub fn layer_norm_epsilon() -> f64 {
        1e-5
    }
    pub fn initializer_range() -> f64 {
        0.02
    }
}

/// modeling_openai's ACT_FNS: its "gelu" is gelu_new.
fn activation(afn: &str) -> Result<Activation> {
    Ok(match afn {
        "gelu" => Activation::GeluNew,
        "relu" => Activation::Relu,
        "silu" | "swish" => Activation::Silu,
        other => bail!("afn {other:?} is not one of GPT's activations (gelu, relu, silu, swish)"),
    })
}

pub fn build(root: &nn::Path, config: &ModelConfig, objective: Objective) -> Result<DecoderModel> {
    let c: OpenAiGptConfig = config.typed()?;
    check_sizes(&[
        ("n_embd", c.n_embd),
        ("n_layer", c.n_layer),
        ("n_head", c.n_head),
        ("vocab_size", c.vocab_size),
        ("n_positions", c.n_positions),
    ])?;
    check_heads("n_embd", c.n_embd, "n_head", c.n_head)?;
    config.check_pruned_heads(c.n_layer, c.n_head)?;
    let dims = DecoderDims {
        vocab: c.vocab_size,
        positions: c.n_positions,
        hidden: c.n_embd,
        layers: c.n_layer,
        heads: c.n_head,
        inner: 4 * c.n_embd,
        inner_field: None,
        act: activation(&c.afn)?,
        resid_dropout: c.resid_pdrop,
        embd_dropout: c.embd_pdrop,
        attn_dropout: c.attn_pdrop,
        eps: c.layer_norm_epsilon,
        pre_norm: false,
        scale_attn_weights: true,
        scale_by_inverse_layer_idx: false,
    };
    let class: &'static str = match objective {
        Objective::Classification => "OpenAIGPTForSequenceClassification",
        _ => "OpenAIGPTLMHeadModel",
    };
    let head = DecoderHead::new(
        root,
        config,
        objective,
        c.n_embd,
        c.vocab_size,
        c.initializer_range,
        c.pad_token_id,
        class,
    )?;
    Ok(DecoderModel {
        decoder: Decoder::new(
            &(root / "transformer"),
            ["tokens_embed", "positions_embed"],
            dims,
            config.kept_heads(c.n_layer, c.n_head),
            config.kept_neurons(c.n_layer, 4 * c.n_embd)?,
        ),
        head,
        class,
    })
}
