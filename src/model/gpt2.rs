//! GPT2LMHeadModel and GPT2ForSequenceClassification (transformers' modeling_gpt2), and the
//! decoder stack they share with OpenAI GPT (`openai_gpt.rs`): Conv1D weights stored
//! [in, out], one fused `c_attn` holding q | k | v, causal self-attention combined with the
//! padding mask, and the language-model head tied to the token embedding `wte`.
//!
//! GPT-2's blocks are pre-LayerNorm with a final `ln_f`; GPT's are post-LayerNorm without one.
//! Attention goes through the shared `MultiHeadAttention` (fused projection), so head masks,
//! fused SDPA and the masked-head shortcut are the same code as BERT's.
use super::checkpoint::KeyLayout;
use super::config::{check_heads, check_sizes, Activation, ModelConfig};
use super::family::{Family, Held, SizeField};
use super::layers::{
    activate, embed, embedding_weight, layer_head_mask, mask_neurons, neuron_index, Conv1D,
    LayerNorm, MultiHeadAttention,
};
use super::network::{
    layer_param, min_value, ForwardOptions, HeadAxis, HeadUnit, Inputs, Masks, ModelOutput,
    Network, NetworkShape, Objective,
};
use anyhow::{bail, Result};
use serde::Deserialize;
use tch::{nn, Kind, Tensor};

/// GPT-2's size fields and the weights that hold them (Conv1D weights are [in, out]); `n_inner`
/// null is 4 × n_embd.
pub const SIZES: &[SizeField] = &[
    SizeField::new(
        "vocab_size",
        Some(d::vocab_size),
        Held::Dim("wte.weight", 0),
    ),
    SizeField::new("n_embd", Some(d::n_embd), Held::Dim("wte.weight", 1)),
    SizeField::new(
        "n_positions",
        Some(d::n_positions),
        Held::Dim("wpe.weight", 0),
    ),
    SizeField::new("n_inner", None, Held::Neurons("h.0.mlp.c_fc.weight", 1)),
    SizeField::new("n_layer", Some(d::n_layer), Held::Layers("h.")),
    SizeField::new("n_head", Some(d::n_head), Held::Bounded),
];

/// GPT2ForSequenceClassification: the family `--task <GLUE task>` builds.
pub static FAMILY: Family = Family {
    name: "gpt2",
    model_types: &["gpt2"],
    layout: KeyLayout {
        prefix: "transformer",
        head: "score.",
        optional: &["score."],
    },
    sizes: SIZES,
    build: |root, config| Ok(Box::new(build(root, config, Objective::Classification)?)),
};

/// GPT2LMHeadModel: the family `--task lm` builds. The head is tied to `wte`, so every GPT-2
/// checkpoint has it (a stored `lm_head.weight` is the same tensor and is ignored).
pub static LM_FAMILY: Family = Family {
    name: "gpt2",
    model_types: &["gpt2"],
    layout: KeyLayout {
        prefix: "transformer",
        head: "",
        optional: &[],
    },
    sizes: SIZES,
    build: |root, config| Ok(Box::new(build(root, config, Objective::CausalLm)?)),
};

/// GPT2Config's fields with transformers' defaults.
#[derive(Clone, Debug, Deserialize)]
pub struct Gpt2Config {
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
    #[serde(default)]
    pub n_inner: Option<i64>,
    #[serde(default = "d::activation_function")]
    pub activation_function: Activation,
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
    #[serde(default = "d::yes")]
    pub scale_attn_weights: bool,
    #[serde(default)]
    pub scale_attn_by_inverse_layer_idx: bool,
    /// Only changes how transformers handles half precision (scores in float32); our math
    /// is float32 throughout, so it needs nothing here.
    #[serde(default)]
    pub reorder_and_upcast_attn: bool,
    #[serde(default)]
    pub add_cross_attention: bool,
    #[serde(default)]
    pub pad_token_id: Option<i64>,
}

mod d {
    use super::Activation;
    pub fn vocab_size() -> i64 {
        50257
    }
    pub fn n_positions() -> i64 {
        1024
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
    pub fn activation_function() -> Activation {
        Activation::GeluNew
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
    pub fn yes() -> bool {
        true
    }
}

/// The shapes and rates a decoder stack needs, whichever family's config they come from.
#[derive(Clone, Copy, Debug)]
pub struct DecoderDims {
    pub vocab: i64,
    pub positions: i64,
    pub hidden: i64,
    pub layers: i64,
    pub heads: i64,
    pub inner: i64,
    /// The config field of `inner` (GPT-2's `n_inner`; GPT has none: always 4 · n_embd).
    pub inner_field: Option<&'static str>,
    pub act: Activation,
    pub resid_dropout: f64,
    pub embd_dropout: f64,
    pub attn_dropout: f64,
    pub eps: f64,
    /// GPT-2: LayerNorm before attention and MLP, and a final `ln_f`. GPT: after, none.
    pub pre_norm: bool,
    pub scale_attn_weights: bool,
    pub scale_by_inverse_layer_idx: bool,
}

impl DecoderDims {
    fn head_dim(&self) -> i64 {
        self.hidden / self.heads
    }
}

/// GPT2Block / GPT's Block: `ln_1`, `attn` (c_attn, c_proj), `ln_2`, `mlp` (c_fc, c_proj).
struct DecoderBlock {
    ln_1: LayerNorm,
    attention: MultiHeadAttention,
    attn_proj: Conv1D,
    ln_2: LayerNorm,
    c_fc: Conv1D,
    mlp_proj: Conv1D,
    dims: DecoderDims,
    kept: Vec<i64>,
    kept_index: Option<Tensor>,
    neurons: Vec<i64>,
    neuron_index: Option<Tensor>,
}

impl DecoderBlock {
    fn new(p: &nn::Path, dims: DecoderDims, index: i64, kept: Vec<i64>, neurons: Vec<i64>) -> Self {
        let heads = kept.len() as i64;
        let width = neurons.len() as i64;
        let head_dim = dims.head_dim();
        let attn = p / "attn";
        let mut attention = MultiHeadAttention::fused(&attn, dims.hidden, heads, head_dim);
        attention.dropout = dims.attn_dropout;
        let mut divisor = if dims.scale_attn_weights {
            (head_dim as f64).sqrt()
        } else {
            1.0
        };
        if dims.scale_by_inverse_layer_idx {
            divisor *= (index + 1) as f64;
        }
        attention.score_divisor = divisor;
        let mlp = p / "mlp";
        DecoderBlock {
            ln_1: LayerNorm::new(p / "ln_1", dims.hidden, dims.eps),
            attention,
            attn_proj: Conv1D::new(&attn / "c_proj", heads * head_dim, dims.hidden),
            ln_2: LayerNorm::new(p / "ln_2", dims.hidden, dims.eps),
            c_fc: Conv1D::new(&mlp / "c_fc", dims.hidden, width),
            mlp_proj: Conv1D::new(&mlp / "c_proj", width, dims.hidden),
            kept_index: (heads != dims.heads)
                .then(|| Tensor::from_slice(&kept).to_device(p.device())),
            kept,
            neuron_index: neuron_index(&neurons, dims.inner, p.device()),
            neurons,
            dims,
        }
    }

    fn attend(
        &self,
        x: &Tensor,
        mask: &Tensor,
        layer_mask: Option<&Tensor>,
        opts: ForwardOptions,
    ) -> (Tensor, Option<Tensor>) {
        let (context, probs) = self.attention.forward(
            x,
            x,
            mask,
            layer_mask,
            opts.train,
            opts.probabilities(),
            None,
        );
        let out = self
            .attn_proj
            .forward(&context)
            .dropout(self.dims.resid_dropout, opts.train);
        (out, probs)
    }

    fn mlp(&self, x: &Tensor, neuron_mask: Option<&Tensor>, index: i64, train: bool) -> Tensor {
        let inner = mask_neurons(
            activate(self.dims.act, &self.c_fc.forward(x)),
            neuron_mask,
            index,
            self.neuron_index.as_ref(),
        );
        self.mlp_proj
            .forward(&inner)
            .dropout(self.dims.resid_dropout, train)
    }

    fn forward(
        &self,
        x: &Tensor,
        mask: &Tensor,
        masks: Masks,
        index: i64,
        opts: ForwardOptions,
    ) -> (Tensor, Option<Tensor>) {
        let layer_mask = masks
            .heads
            .map(|m| layer_head_mask(m, index, self.kept_index.as_ref()));
        let neurons = masks.neurons;
        if self.dims.pre_norm {
            let (a, probs) = self.attend(&self.ln_1.forward(x), mask, layer_mask.as_ref(), opts);
            let h = a + x;
            let out = self.mlp(&self.ln_2.forward(&h), neurons, index, opts.train) + &h;
            (out, probs)
        } else {
            let (a, probs) = self.attend(x, mask, layer_mask.as_ref(), opts);
            let n = self.ln_1.forward(&(x + a));
            let out = self
                .ln_2
                .forward(&(&n + self.mlp(&n, neurons, index, opts.train)));
            (out, probs)
        }
    }
}

/// The transformer of GPT and GPT-2 under `transformer.`: token and position embeddings, the
/// blocks under `h`, and GPT-2's `ln_f`.
pub struct Decoder {
    tokens: Tensor,
    positions: Tensor,
    blocks: Vec<DecoderBlock>,
    ln_f: Option<LayerNorm>,
    pub dims: DecoderDims,
    /// VarStore name prefix of block i: `{prefix}.{i}.`.
    prefix: String,
}

/// What a decoder pass returns.
pub struct DecoderOutput {
    pub last: Tensor,
    pub attentions: Option<Vec<Tensor>>,
    pub hidden_states: Option<Vec<Tensor>>,
}

/// [batch, 1, seq, seq]: 0 where a query may attend to a key (not in its future and not
/// padding), the most negative float elsewhere. transformers adds −∞ instead of −max to keys
/// that are both (they differ only for rows with no visible key, which right padding never
/// makes). With a sliding `window` (Mistral, Qwen2), query i also sees only keys j with
/// i − j < window, as transformers' `sliding_window_overlay`.
pub fn causal_padding_mask(attention_mask: &Tensor, kind: Kind, window: Option<i64>) -> Tensor {
    let (b, t) = (attention_mask.size()[0], attention_mask.size()[1]);
    let device = attention_mask.device();
    let mut causal = Tensor::ones([t, t], (Kind::Bool, device)).tril(0);
    if let Some(w) = window {
        causal = causal.triu(1 - w);
    }
    let keys = attention_mask.ne(0).view([b, 1, 1, t]);
    let allowed = causal.view([1, 1, t, t]).logical_and(&keys);
    Tensor::zeros([b, 1, t, t], (kind, device)).masked_fill(&allowed.logical_not(), min_value(kind))
}

impl Decoder {
    /// `tokens`/`positions`: the embedding names under `base` (`wte`/`wpe` or
    /// `tokens_embed`/`positions_embed`).
    pub fn new(
        base: &nn::Path,
        names: [&str; 2],
        dims: DecoderDims,
        kept: Vec<Vec<i64>>,
        neurons: Vec<Vec<i64>>,
    ) -> Self {
        let h = base / "h";
        let blocks = kept
            .into_iter()
            .zip(neurons)
            .enumerate()
            .map(|(i, (k, n))| DecoderBlock::new(&(&h / i), dims, i as i64, k, n))
            .collect();
        Decoder {
            tokens: embedding_weight(base / names[0], dims.vocab, dims.hidden),
            positions: embedding_weight(base / names[1], dims.positions, dims.hidden),
            blocks,
            ln_f: dims
                .pre_norm
                .then(|| LayerNorm::new(base / "ln_f", dims.hidden, dims.eps)),
            prefix: h.components().collect::<Vec<_>>().join("."),
            dims,
        }
    }

    pub fn kept_heads(&self) -> Vec<Vec<i64>> {
        self.blocks.iter().map(|b| b.kept.clone()).collect()
    }

    pub fn kept_neurons(&self) -> Vec<Vec<i64>> {
        self.blocks.iter().map(|b| b.neurons.clone()).collect()
    }

    /// The token embedding, which the language-model head reuses.
    pub fn token_embedding(&self) -> &Tensor {
        &self.tokens
    }

    /// Heads sit in c_attn's output columns (three blocks: q, k, v) and in the attention
    /// c_proj's input rows; Conv1D stores [in, out], the transpose of nn.Linear.
    pub fn head_axis(&self, name: &str) -> Option<HeadAxis> {
        let (layer, param) = layer_param(name, &self.prefix)?;
        let axis = |dim, blocks| {
            Some(HeadAxis {
                layer,
                dim,
                head_dim: self.dims.head_dim(),
                blocks,
                // Fused q | k | v: each head owns its key and value.
                unit: HeadUnit::Query,
            })
        };
        // Neurons: c_fc's output columns and bias, the MLP c_proj's input rows.
        let neuron = |dim| Some(HeadAxis::neuron(layer, dim));
        match param {
            "attn.c_attn.weight" => axis(1, 3),
            "attn.c_attn.bias" => axis(0, 3),
            "attn.c_proj.weight" => axis(0, 1),
            "mlp.c_fc.weight" => neuron(1),
            "mlp.c_fc.bias" => neuron(0),
            "mlp.c_proj.weight" => neuron(0),
            _ => None,
        }
    }

    pub fn forward(
        &self,
        inputs: &Inputs,
        masks: Masks,
        opts: ForwardOptions,
    ) -> Result<DecoderOutput> {
        let (b, t) = inputs.input_ids.size2()?;
        masks.check(b, self.dims.layers, self.dims.heads, self.dims.inner)?;
        if t > self.dims.positions {
            bail!(
                "inputs of {t} tokens exceed the model's {} positions",
                self.dims.positions
            );
        }
        // Token types are ignored: GPT-2's tokenizer gives none, and transformers would add
        // their *token* embeddings if given any.
        let ids = Tensor::arange(t, (Kind::Int64, inputs.input_ids.device())).unsqueeze(0);
        let mut x = (embed(&self.tokens, inputs.input_ids) + embed(&self.positions, &ids))
            .dropout(self.dims.embd_dropout, opts.train);
        let mask = causal_padding_mask(inputs.attention_mask, x.kind(), None);
        let mut hidden_states = opts.output_hidden_states.then(Vec::new);
        let mut attentions = opts.output_attentions.then(Vec::new);
        for (i, block) in self.blocks.iter().enumerate() {
            if let Some(all) = hidden_states.as_mut() {
                all.push(x.shallow_clone());
            }
            let (out, probs) = block.forward(&x, &mask, masks, i as i64, opts);
            x = out;
            if let (Some(all), Some(p)) = (attentions.as_mut(), probs) {
                all.push(p);
            }
        }
        if let Some(ln_f) = &self.ln_f {
            x = ln_f.forward(&x);
        }
        if let Some(all) = hidden_states.as_mut() {
            all.push(x.shallow_clone());
        }
        Ok(DecoderOutput {
            last: x,
            attentions,
            hidden_states,
        })
    }
}

/// The task head on top of a decoder: the tied language-model head, or GPT's sequence
/// classification head `score` (no bias) read at each example's last non-padding token.
pub enum DecoderHead {
    Lm,
    Classify {
        /// nn.Linear(hidden, labels, bias=False).weight
        score: Tensor,
        pad_token_id: i64,
        regression: bool,
    },
}

impl DecoderHead {
    /// The head for `objective`; classification needs `pad_token_id` to find last tokens,
    /// and batches are padded with it, so it must be a token id of the `vocab`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        root: &nn::Path,
        config: &ModelConfig,
        objective: Objective,
        hidden: i64,
        vocab: i64,
        std: f64,
        pad_token_id: Option<i64>,
        class: &str,
    ) -> Result<Self> {
        match objective {
            Objective::Classification => {
                let Some(pad_token_id) = pad_token_id else {
                    bail!(
                        "pad_token_id is not set; {class} needs it to find each example's last token (set it in config.json, e.g. to the eos_token_id)"
                    );
                };
                if !(0..vocab).contains(&pad_token_id) {
                    bail!(
                        "pad_token_id {pad_token_id} is outside the vocabulary 0..{vocab} (vocab_size); {class} pads with it, so it must be a token id"
                    );
                }
                let score = (root / "score").var(
                    "weight",
                    &[config.num_labels(), hidden],
                    nn::Init::Randn {
                        mean: 0.0,
                        stdev: std,
                    },
                );
                Ok(DecoderHead::Classify {
                    score,
                    pad_token_id,
                    regression: config.is_regression(),
                })
            }
            Objective::CausalLm => Ok(DecoderHead::Lm),
            Objective::MaskedLm => bail!("{class} has no masked language-model head"),
        }
    }

    /// Logits from the last hidden states: [batch, seq, vocab] for the LM head, [batch,
    /// labels] for classification.
    pub fn forward(&self, last: &Tensor, tokens: &Tensor, input_ids: &Tensor) -> Tensor {
        match self {
            DecoderHead::Lm => last.linear::<Tensor>(tokens, None),
            DecoderHead::Classify {
                score,
                pad_token_id,
                ..
            } => {
                // transformers: the rightmost token that is not padding (argmax of
                // position · [id ≠ pad]; position 0 when all are padding).
                let t = input_ids.size()[1];
                let positions = Tensor::arange(t, (Kind::Int64, input_ids.device()));
                let last_token = (positions * input_ids.ne(*pad_token_id).to_kind(Kind::Int64))
                    .argmax(-1, false);
                let hidden = last.size()[2];
                let index = last_token.view([-1, 1, 1]).expand([-1, 1, hidden], false);
                let pooled = last.gather(1, &index, false).squeeze_dim(1);
                pooled.linear::<Tensor>(score, None)
            }
        }
    }

    pub fn objective(&self) -> Objective {
        match self {
            DecoderHead::Lm => Objective::CausalLm,
            DecoderHead::Classify { .. } => Objective::Classification,
        }
    }

    pub fn is_regression(&self) -> bool {
        matches!(
            self,
            DecoderHead::Classify {
                regression: true,
                ..
            }
        )
    }
}

/// A decoder with its head: GPT2LMHeadModel, GPT2ForSequenceClassification,
/// OpenAIGPTLMHeadModel, … (`class` is the transformers class it mirrors).
pub struct DecoderModel {
    pub decoder: Decoder,
    pub head: DecoderHead,
    pub class: &'static str,
}

/// GPT2LMHeadModel or GPT2ForSequenceClassification, by `objective`.
pub fn build(root: &nn::Path, config: &ModelConfig, objective: Objective) -> Result<DecoderModel> {
    let c: Gpt2Config = config.typed()?;
    check_sizes(&[
        ("n_embd", c.n_embd),
        ("n_layer", c.n_layer),
        ("n_head", c.n_head),
        ("vocab_size", c.vocab_size),
        ("n_positions", c.n_positions),
    ])?;
    if let Some(inner) = c.n_inner {
        check_sizes(&[("n_inner", inner)])?;
    }
    check_heads("n_embd", c.n_embd, "n_head", c.n_head)?;
    if c.add_cross_attention {
        bail!("add_cross_attention is not supported (encoder-decoder GPT-2)");
    }
    config.check_pruned_heads(c.n_layer, c.n_head)?;
    let dims = DecoderDims {
        vocab: c.vocab_size,
        positions: c.n_positions,
        hidden: c.n_embd,
        layers: c.n_layer,
        heads: c.n_head,
        inner: c.n_inner.unwrap_or(4 * c.n_embd),
        inner_field: Some("n_inner"),
        act: c.activation_function,
        resid_dropout: c.resid_pdrop,
        embd_dropout: c.embd_pdrop,
        attn_dropout: c.attn_pdrop,
        eps: c.layer_norm_epsilon,
        pre_norm: true,
        scale_attn_weights: c.scale_attn_weights,
        scale_by_inverse_layer_idx: c.scale_attn_by_inverse_layer_idx,
    };
    let class: &'static str = match objective {
        Objective::Classification => "GPT2ForSequenceClassification",
        _ => "GPT2LMHeadModel",
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
            ["wte", "wpe"],
            dims,
            config.kept_heads(c.n_layer, c.n_head),
            config.kept_neurons(c.n_layer, dims.inner)?,
        ),
        head,
        class,
    })
}

impl Network for DecoderModel {
    fn forward_masked(
        &self,
        inputs: &Inputs,
        masks: Masks,
        opts: ForwardOptions,
    ) -> Result<ModelOutput> {
        let out = self.decoder.forward(inputs, masks, opts)?;
        let logits = self
            .head
            .forward(&out.last, self.decoder.token_embedding(), inputs.input_ids);
        Ok(ModelOutput {
            logits,
            attentions: out.attentions,
            hidden_states: out.hidden_states,
        })
    }

    fn shape(&self) -> NetworkShape {
        NetworkShape {
            layers: self.decoder.dims.layers,
            heads: self.decoder.dims.heads,
            vocab_size: self.decoder.dims.vocab,
            max_positions: self.decoder.dims.positions,
            regression: self.head.is_regression(),
            intermediate: self.decoder.dims.inner,
        }
    }

    fn kept_heads(&self) -> Vec<Vec<i64>> {
        self.decoder.kept_heads()
    }

    fn kept_neurons(&self) -> Vec<Vec<i64>> {
        self.decoder.kept_neurons()
    }

    fn intermediate_field(&self) -> Option<&'static str> {
        self.decoder.dims.inner_field
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

    fn head_axis(&self, name: &str) -> Option<HeadAxis> {
        self.decoder.head_axis(name)
    }
}
