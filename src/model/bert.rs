//! BertForSequenceClassification (transformers' modeling_bert). Every struct mirrors the
//! transformers module of the same name and its variables carry the Hugging Face key names, so
//! checkpoints map one to one. The encoder (`BERT_LAYER`) is shared with RoBERTa and ELECTRA,
//! which differ only in their embeddings and heads.
use super::checkpoint::KeyLayout;
use super::config::defaults as d;
use super::config::{BertConfig, ModelConfig};
use super::family::{Family, Held, SizeField};
use super::layers::{
    embed, embedding_weight, Encoder, EncoderDims, EncoderLayerNames, LayerNorm, Linear,
};
use super::network::{ForwardOptions, HeadAxis, Inputs, Masks, ModelOutput, Network, NetworkShape};
use anyhow::Result;
use tch::{nn, Kind, Tensor};

/// BertLayer's weight names.
pub static BERT_LAYER: EncoderLayerNames = EncoderLayerNames {
    qkv: [
        "attention.self.query",
        "attention.self.key",
        "attention.self.value",
    ],
    attention_output: "attention.output.dense",
    attention_norm: "attention.output.LayerNorm",
    intermediate: "intermediate.dense",
    output: "output.dense",
    output_norm: "output.LayerNorm",
};

/// The BERT-shaped typed config of `config`, checked, with `defaults` for absent fields.
pub fn bert_config(
    config: &ModelConfig,
    defaults: &[(&str, serde_json::Value)],
) -> Result<BertConfig> {
    let c: BertConfig = config.typed_with_defaults(defaults)?;
    c.validate()?;
    config.check_pruned_heads(c.num_hidden_layers, c.num_attention_heads)?;
    Ok(c)
}

/// BertEncoder: `num_hidden_layers` BertLayers under `{base}.encoder.layer`.
pub fn bert_encoder(base: &nn::Path, c: &BertConfig, config: &ModelConfig) -> Result<Encoder> {
    let dims = EncoderDims {
        hidden: c.hidden_size,
        heads: c.num_attention_heads,
        head_dim: c.head_dim(),
        intermediate: c.intermediate_size,
        act: c.hidden_act,
        layer_norm_eps: c.layer_norm_eps,
        attention_dropout: c.attention_probs_dropout_prob,
        attention_output_dropout: c.hidden_dropout_prob,
        output_dropout: c.hidden_dropout_prob,
    };
    Ok(Encoder::new(
        &(base / "encoder" / "layer"),
        &BERT_LAYER,
        dims,
        config.kept_heads(c.num_hidden_layers, c.num_attention_heads),
        config.kept_neurons(c.num_hidden_layers, c.intermediate_size)?,
    ))
}

/// BertEmbeddings: word + position + token type (of width `width`), then LayerNorm and
/// dropout. ELECTRA uses it with its `embedding_size`.
pub struct BertEmbeddings {
    word_embeddings: Tensor,
    position_embeddings: Tensor,
    token_type_embeddings: Tensor,
    layer_norm: LayerNorm,
    dropout: f64,
}

impl BertEmbeddings {
    pub fn new(p: nn::Path, c: &BertConfig, width: i64) -> Self {
        BertEmbeddings {
            word_embeddings: embedding_weight(&p / "word_embeddings", c.vocab_size, width),
            position_embeddings: embedding_weight(
                &p / "position_embeddings",
                c.max_position_embeddings,
                width,
            ),
            token_type_embeddings: embedding_weight(
                &p / "token_type_embeddings",
                c.type_vocab_size,
                width,
            ),
            layer_norm: LayerNorm::new(&p / "LayerNorm", width, c.layer_norm_eps),
            dropout: c.hidden_dropout_prob,
        }
    }

    /// Embeds with the given position ids ([1 or batch, seq]).
    pub fn forward_with_positions(
        &self,
        input_ids: &Tensor,
        token_type_ids: &Tensor,
        positions: &Tensor,
        train: bool,
    ) -> Tensor {
        let x = embed(&self.word_embeddings, input_ids)
            + embed(&self.position_embeddings, positions)
            + embed(&self.token_type_embeddings, token_type_ids);
        self.layer_norm.forward(&x).dropout(self.dropout, train)
    }

    /// Embeds with positions 0, 1, 2, …
    pub fn forward(&self, input_ids: &Tensor, token_type_ids: &Tensor, train: bool) -> Tensor {
        let seq = input_ids.size()[1];
        let positions = Tensor::arange(seq, (Kind::Int64, input_ids.device())).unsqueeze(0);
        self.forward_with_positions(input_ids, token_type_ids, &positions, train)
    }
}

/// BertForSequenceClassification: bert (embeddings, encoder, pooler), dropout, classifier.
pub struct BertForSequenceClassification {
    embeddings: BertEmbeddings,
    encoder: Encoder,
    pooler: Linear,
    classifier: Linear,
    classifier_dropout: f64,
    config: BertConfig,
    regression: bool,
}

impl BertForSequenceClassification {
    /// Creates the variables under `root` (the VarStore root). Weights start at zero except the
    /// classifier and pooler, which get transformers' init (normal, std initializer_range; zero
    /// bias) so a checkpoint without them is ready to fine-tune.
    pub fn new(root: &nn::Path, config: &ModelConfig) -> Result<Self> {
        let c = bert_config(config, &[])?;
        let bert = root / "bert";
        let classifier = Linear::initialised(
            root / "classifier",
            c.hidden_size,
            config.num_labels(),
            c.initializer_range,
        );
        let pooler = Linear::initialised(
            &bert / "pooler" / "dense",
            c.hidden_size,
            c.hidden_size,
            c.initializer_range,
        );
        Ok(BertForSequenceClassification {
            embeddings: BertEmbeddings::new(&bert / "embeddings", &c, c.hidden_size),
            encoder: bert_encoder(&bert, &c, config)?,
            pooler,
            classifier,
            classifier_dropout: c.classifier_dropout_prob(),
            regression: config.is_regression(),
            config: c,
        })
    }
}

impl Network for BertForSequenceClassification {
    fn forward_masked(
        &self,
        inputs: &Inputs,
        masks: Masks,
        opts: ForwardOptions,
    ) -> Result<ModelOutput> {
        let x = self
            .embeddings
            .forward(inputs.input_ids, inputs.token_type_ids, opts.train);
        let out = self
            .encoder
            .forward(x, inputs.attention_mask, masks, opts, true)?;
        let pooled = self.pooler.forward(&out.last.select(1, 0)).tanh();
        let logits = self
            .classifier
            .forward(&pooled.dropout(self.classifier_dropout, opts.train));
        Ok(ModelOutput {
            logits,
            attentions: out.attentions,
            hidden_states: out.hidden_states,
        })
    }

    fn shape(&self) -> NetworkShape {
        NetworkShape {
            layers: self.config.num_hidden_layers,
            heads: self.config.num_attention_heads,
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
        Some("intermediate_size")
    }

    fn hf_class(&self) -> &'static str {
        "BertForSequenceClassification"
    }

    fn head_axis(&self, name: &str) -> Option<HeadAxis> {
        self.encoder.head_axis(name)
    }
}

/// BERT's size fields (RoBERTa's and the masked LMs' too) and the weights that hold them.
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
        "type_vocab_size",
        Some(d::type_vocab_size),
        Held::Dim("embeddings.token_type_embeddings.weight", 0),
    ),
    SizeField::new(
        "hidden_size",
        Some(d::hidden_size),
        Held::Dim("encoder.layer.0.output.dense.weight", 0),
    ),
    SizeField::new(
        "intermediate_size",
        Some(d::intermediate_size),
        Held::Neurons("encoder.layer.0.intermediate.dense.weight", 0),
    ),
    SizeField::new(
        "num_hidden_layers",
        Some(d::num_hidden_layers),
        Held::Layers("encoder.layer."),
    ),
    SizeField::new(
        "num_attention_heads",
        Some(d::num_attention_heads),
        Held::Bounded,
    ),
    SizeField::new("pad_token_id", None, Held::TokenId),
];

pub static FAMILY: Family = Family {
    name: "bert",
    model_types: &["bert"],
    layout: KeyLayout {
        prefix: "bert",
        head: "classifier.",
        optional: &["classifier.", "pooler."],
    },
    sizes: SIZES,
    build: |root, config| Ok(Box::new(BertForSequenceClassification::new(root, config)?)),
};
