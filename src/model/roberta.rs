//! RobertaForSequenceClassification (transformers' modeling_roberta), also read for the model
//! types that reuse it: `xlm-roberta` and `camembert`. BERT's encoder under `roberta.`; the
//! embeddings number positions after `pad_token_id`, skipping padding; no pooler; the head is
//! dense → tanh → out_proj on the first token (`<s>`).
use super::bert::{bert_config, bert_encoder, BertEmbeddings};
use super::checkpoint::KeyLayout;
use super::config::defaults as d;
use super::config::{BertConfig, ModelConfig};
use super::family::{Family, Held, SizeField};
use super::layers::{Encoder, Linear};
use super::network::{ForwardOptions, HeadAxis, Inputs, Masks, ModelOutput, Network, NetworkShape};
use anyhow::{bail, Result};
use serde_json::json;
use tch::{nn, Kind, Tensor};

/// RobertaConfig's vocab_size when config.json leaves it out.
fn default_vocab_size() -> i64 {
    50265
}

/// RoBERTa's size fields: BERT's, with RobertaConfig's default vocabulary.
pub const SIZES: &[SizeField] = &[
    SizeField::new(
        "vocab_size",
        Some(default_vocab_size),
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
    name: "roberta",
    model_types: &["roberta", "xlm-roberta", "camembert"],
    layout: KeyLayout {
        prefix: "roberta",
        head: "classifier.",
        optional: &["classifier."],
    },
    sizes: SIZES,
    build: |root, config| {
        Ok(Box::new(RobertaForSequenceClassification::new(
            root, config,
        )?))
    },
};

/// Dense → tanh → out_proj on the first token, with dropout before each linear layer. ELECTRA's
/// head is the same with gelu.
pub struct ClassificationHead {
    dense: Linear,
    out_proj: Linear,
    dropout: f64,
    tanh: bool,
}

impl ClassificationHead {
    pub fn new(p: nn::Path, c: &BertConfig, labels: i64, tanh: bool) -> Self {
        ClassificationHead {
            dense: Linear::initialised(
                &p / "dense",
                c.hidden_size,
                c.hidden_size,
                c.initializer_range,
            ),
            out_proj: Linear::initialised(
                &p / "out_proj",
                c.hidden_size,
                labels,
                c.initializer_range,
            ),
            dropout: c.classifier_dropout_prob(),
            tanh,
        }
    }

    pub fn forward(&self, first: &Tensor, train: bool) -> Tensor {
        let x = self.dense.forward(&first.dropout(self.dropout, train));
        let x = if self.tanh { x.tanh() } else { x.gelu("none") };
        self.out_proj.forward(&x.dropout(self.dropout, train))
    }
}

pub struct RobertaForSequenceClassification {
    embeddings: BertEmbeddings,
    encoder: Encoder,
    classifier: ClassificationHead,
    config: BertConfig,
    pad: i64,
    regression: bool,
    class: &'static str,
}

impl RobertaForSequenceClassification {
    pub fn new(root: &nn::Path, config: &ModelConfig) -> Result<Self> {
        let c = bert_config(
            config,
            &[("vocab_size", json!(50265)), ("pad_token_id", json!(1))],
        )?;
        let pad = c.pad_token_id.unwrap_or(1);
        // Positions count from pad + 1: a padding index at or past the position table leaves
        // no position for a token (and a negative limit in every message after).
        if pad < 0 || pad + 1 >= c.max_position_embeddings {
            bail!(
                "pad_token_id {pad} leaves no position: RoBERTa numbers positions from pad_token_id + 1, so it must be below max_position_embeddings - 1 ({})",
                c.max_position_embeddings - 1
            );
        }
        let base = root / "roberta";
        let classifier =
            ClassificationHead::new(root / "classifier", &c, config.num_labels(), true);
        let class = match config.model_type() {
            "xlm-roberta" => "XLMRobertaForSequenceClassification",
            "camembert" => "CamembertForSequenceClassification",
            _ => "RobertaForSequenceClassification",
        };
        Ok(RobertaForSequenceClassification {
            embeddings: BertEmbeddings::new(&base / "embeddings", &c, c.hidden_size),
            encoder: bert_encoder(&base, &c, config)?,
            classifier,
            pad,
            regression: config.is_regression(),
            config: c,
            class,
        })
    }

    /// transformers' create_position_ids_from_input_ids: padding keeps `pad`, real tokens
    /// count up from `pad + 1`.
    fn position_ids(&self, input_ids: &Tensor) -> Tensor {
        let real = input_ids.ne(self.pad).to_kind(Kind::Int64);
        real.cumsum(1, Kind::Int64) * &real + self.pad
    }
}

impl Network for RobertaForSequenceClassification {
    fn forward_masked(
        &self,
        inputs: &Inputs,
        masks: Masks,
        opts: ForwardOptions,
    ) -> Result<ModelOutput> {
        // RoBERTa tokenizers return no token types: transformers then uses zeros.
        let types = inputs.input_ids.zeros_like();
        let positions = self.position_ids(inputs.input_ids);
        let x = self.embeddings.forward_with_positions(
            inputs.input_ids,
            &types,
            &positions,
            opts.train,
        );
        let out = self
            .encoder
            .forward(x, inputs.attention_mask, masks, opts, true)?;
        let logits = self.classifier.forward(&out.last.select(1, 0), opts.train);
        Ok(ModelOutput {
            logits,
            attentions: out.attentions,
            hidden_states: out.hidden_states,
        })
    }

    fn shape(&self) -> NetworkShape {
        // Positions start after the padding index: 514 embeddings hold 512 tokens.
        NetworkShape {
            layers: self.config.num_hidden_layers,
            heads: self.config.num_attention_heads,
            vocab_size: self.config.vocab_size,
            max_positions: self.config.max_position_embeddings - self.pad - 1,
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
        self.class
    }

    fn head_axis(&self, name: &str) -> Option<HeadAxis> {
        self.encoder.head_axis(name)
    }
}
