//! DistilBertForSequenceClassification (transformers' modeling_distilbert). Word and position
//! embeddings only (no token types); TransformerBlocks with `q_lin/k_lin/v_lin/out_lin`,
//! `sa_layer_norm`, `ffn.lin1/lin2`, `output_layer_norm` and no dropout after the attention
//! output; the head `pre_classifier` → ReLU → dropout → `classifier` on the first token.
use super::checkpoint::KeyLayout;
use super::config::{check_heads, check_sizes, Activation, ModelConfig};
use super::family::{Family, Held, SizeField};
use super::layers::{
    embed, embedding_weight, sinusoidal_positions, Encoder, EncoderDims, EncoderLayerNames,
    LayerNorm, Linear,
};
use super::network::{ForwardOptions, HeadAxis, Inputs, Masks, ModelOutput, Network, NetworkShape};
use anyhow::Result;
use serde::Deserialize;
use tch::{nn, Kind, Tensor};

/// DistilBERT's size fields and the weights that hold them (nn.Linear weights are [out, in]).
pub const SIZES: &[SizeField] = &[
    SizeField::new(
        "vocab_size",
        Some(d::vocab_size),
        Held::Dim("embeddings.word_embeddings.weight", 0),
    ),
    SizeField::new(
        "max_position_embeddings",
        Some(d::max_position_embeddings),
        Held::Dim("embeddings.position_embeddings.weight", 0),
    ),
    SizeField::new(
        "dim",
        Some(d::dim),
        Held::Dim("embeddings.word_embeddings.weight", 1),
    ),
    SizeField::new(
        "hidden_dim",
        Some(d::hidden_dim),
        Held::Neurons("transformer.layer.0.ffn.lin1.weight", 0),
    ),
    SizeField::new(
        "n_layers",
        Some(d::n_layers),
        Held::Layers("transformer.layer."),
    ),
    SizeField::new("n_heads", Some(d::n_heads), Held::Bounded),
    SizeField::new("pad_token_id", None, Held::TokenId),
];

pub static FAMILY: Family = Family {
    name: "distilbert",
    model_types: &["distilbert"],
    layout: KeyLayout {
        prefix: "distilbert",
        head: "classifier.",
        optional: &["classifier.", "pre_classifier."],
    },
    sizes: SIZES,
    build: |root, config| {
        Ok(Box::new(DistilBertForSequenceClassification::new(
            root, config,
        )?))
    },
};

static TRANSFORMER_BLOCK: EncoderLayerNames = EncoderLayerNames {
    qkv: ["attention.q_lin", "attention.k_lin", "attention.v_lin"],
    attention_output: "attention.out_lin",
    attention_norm: "sa_layer_norm",
    intermediate: "ffn.lin1",
    output: "ffn.lin2",
    output_norm: "output_layer_norm",
};

/// DistilBertConfig's fields with transformers' defaults.
#[derive(Clone, Debug, Deserialize)]
pub struct DistilBertConfig {
    #[serde(default = "d::vocab_size")]
    pub vocab_size: i64,
    #[serde(default = "d::max_position_embeddings")]
    pub max_position_embeddings: i64,
    #[serde(default)]
    pub sinusoidal_pos_embds: bool,
    #[serde(default = "d::n_layers")]
    pub n_layers: i64,
    #[serde(default = "d::n_heads")]
    pub n_heads: i64,
    #[serde(default = "d::dim")]
    pub dim: i64,
    #[serde(default = "d::hidden_dim")]
    pub hidden_dim: i64,
    #[serde(default = "d::dropout")]
    pub dropout: f64,
    #[serde(default = "d::dropout")]
    pub attention_dropout: f64,
    #[serde(default = "d::activation")]
    pub activation: Activation,
    #[serde(default = "d::initializer_range")]
    pub initializer_range: f64,
    #[serde(default = "d::seq_classif_dropout")]
    pub seq_classif_dropout: f64,
}

mod d {
    use super::Activation;
    pub fn vocab_size() -> i64 {
        30522
    }
    pub fn max_position_embeddings() -> i64 {
        512
    }
    pub fn n_layers() -> i64 {
        6
    }
    pub fn n_heads() -> i64 {
        12
    }
    pub fn dim() -> i64 {
        768
    }
    pub fn hidden_dim() -> i64 {
        3072
    }
    pub fn dropout() -> f64 {
        0.1
    }
    pub fn activation() -> Activation {
        Activation::Gelu
    }
    pub fn initializer_range() -> f64 {
        0.02
    }
    pub fn seq_classif_dropout() -> f64 {
        0.2
    }
}

pub struct DistilBertForSequenceClassification {
    word_embeddings: Tensor,
    position_embeddings: Tensor,
    embeddings_norm: LayerNorm,
    encoder: Encoder,
    pre_classifier: Linear,
    classifier: Linear,
    config: DistilBertConfig,
    regression: bool,
}

impl DistilBertForSequenceClassification {
    pub fn new(root: &nn::Path, config: &ModelConfig) -> Result<Self> {
        let c: DistilBertConfig = config.typed()?;
        check_sizes(&[
            ("dim", c.dim),
            ("n_layers", c.n_layers),
            ("n_heads", c.n_heads),
            ("hidden_dim", c.hidden_dim),
            ("vocab_size", c.vocab_size),
            ("max_position_embeddings", c.max_position_embeddings),
        ])?;
        check_heads("dim", c.dim, "n_heads", c.n_heads)?;
        config.check_pruned_heads(c.n_layers, c.n_heads)?;
        let std = c.initializer_range;
        let pre_classifier = Linear::initialised(root / "pre_classifier", c.dim, c.dim, std);
        let classifier = Linear::initialised(root / "classifier", c.dim, config.num_labels(), std);
        let base = root / "distilbert";
        let emb = &base / "embeddings";
        let position_embeddings = embedding_weight(
            &emb / "position_embeddings",
            c.max_position_embeddings,
            c.dim,
        );
        if c.sinusoidal_pos_embds {
            // What transformers' init writes; a checkpoint's own copy replaces it.
            let table = sinusoidal_positions(c.max_position_embeddings, c.dim);
            tch::no_grad(|| position_embeddings.shallow_clone().copy_(&table));
        }
        let dims = EncoderDims {
            hidden: c.dim,
            heads: c.n_heads,
            head_dim: c.dim / c.n_heads,
            intermediate: c.hidden_dim,
            act: c.activation,
            layer_norm_eps: 1e-12,
            attention_dropout: c.attention_dropout,
            attention_output_dropout: 0.0,
            output_dropout: c.dropout,
        };
        Ok(DistilBertForSequenceClassification {
            word_embeddings: embedding_weight(&emb / "word_embeddings", c.vocab_size, c.dim),
            position_embeddings,
            embeddings_norm: LayerNorm::new(&emb / "LayerNorm", c.dim, 1e-12),
            encoder: Encoder::new(
                &(&base / "transformer" / "layer"),
                &TRANSFORMER_BLOCK,
                dims,
                config.kept_heads(c.n_layers, c.n_heads),
                config.kept_neurons(c.n_layers, c.hidden_dim)?,
            ),
            pre_classifier,
            classifier,
            regression: config.is_regression(),
            config: c,
        })
    }
}

impl Network for DistilBertForSequenceClassification {
    fn forward_masked(
        &self,
        inputs: &Inputs,
        masks: Masks,
        opts: ForwardOptions,
    ) -> Result<ModelOutput> {
        let seq = inputs.input_ids.size()[1];
        let positions = Tensor::arange(seq, (Kind::Int64, inputs.input_ids.device())).unsqueeze(0);
        let x = embed(&self.word_embeddings, inputs.input_ids)
            + embed(&self.position_embeddings, &positions);
        let x = self
            .embeddings_norm
            .forward(&x)
            .dropout(self.config.dropout, opts.train);
        let out = self
            .encoder
            .forward(x, inputs.attention_mask, masks, opts, true)?;
        let pooled = self.pre_classifier.forward(&out.last.select(1, 0)).relu();
        let logits = self
            .classifier
            .forward(&pooled.dropout(self.config.seq_classif_dropout, opts.train));
        Ok(ModelOutput {
            logits,
            attentions: out.attentions,
            hidden_states: out.hidden_states,
        })
    }

    fn shape(&self) -> NetworkShape {
        NetworkShape {
            layers: self.config.n_layers,
            heads: self.config.n_heads,
            vocab_size: self.config.vocab_size,
            max_positions: self.config.max_position_embeddings,
            regression: self.regression,
            intermediate: self.encoder.intermediate,
        }
    }

    fn kept_heads(&self) -> Vec<Vec<i64>> {
        self.encoder.kept_heads()
    }

    fn kept_neurons(&self) -> Vec<Vec<i64>> {
        self.encoder.kept_neurons()
    }

    fn intermediate_field(&self) -> Option<&'static str> {
        Some("hidden_dim")
    }

    fn hf_class(&self) -> &'static str {
        "DistilBertForSequenceClassification"
    }

    fn head_axis(&self, name: &str) -> Option<HeadAxis> {
        self.encoder.head_axis(name)
    }
}
