//! ElectraForSequenceClassification (transformers' modeling_electra), for discriminators.
//! BERT's embeddings at `embedding_size`, projected to `hidden_size` by `embeddings_project`
//! when the two differ; BERT's encoder; the head dense → gelu → out_proj on the first token.
use super::bert::{bert_config, bert_encoder, BertEmbeddings};
use super::checkpoint::KeyLayout;
use super::config::defaults as d;
use super::config::{BertConfig, ModelConfig};
use super::family::{Family, Held, SizeField};
use super::layers::{Encoder, Linear};
use super::network::{ForwardOptions, HeadAxis, Inputs, Masks, ModelOutput, Network, NetworkShape};
use super::roberta::ClassificationHead;
use anyhow::Result;
use serde_json::json;
use tch::nn;

/// ELECTRA's size fields: BERT's, with the embeddings' own width (`embedding_size`, absent when
/// it equals hidden_size).
pub const SIZES: &[SizeField] = &[
    SizeField::new(
        "vocab_size",
        Some(d::vocab_size),
        Held::Dim("embeddings.word_embeddings.weight", 0),
    ),
    SizeField::new(
        "embedding_size",
        None,
        Held::Dim("embeddings.word_embeddings.weight", 1),
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
    name: "electra",
    model_types: &["electra"],
    layout: KeyLayout {
        prefix: "electra",
        head: "classifier.",
        optional: &["classifier."],
    },
    sizes: SIZES,
    build: |root, config| {
        Ok(Box::new(ElectraForSequenceClassification::new(
            root, config,
        )?))
    },
};

pub struct ElectraForSequenceClassification {
    embeddings: BertEmbeddings,
    embeddings_project: Option<Linear>,
    encoder: Encoder,
    classifier: ClassificationHead,
    config: BertConfig,
    regression: bool,
}

impl ElectraForSequenceClassification {
    pub fn new(root: &nn::Path, config: &ModelConfig) -> Result<Self> {
        // ElectraConfig's defaults (the small discriminator's shape).
        let c = bert_config(
            config,
            &[
                ("embedding_size", json!(128)),
                ("hidden_size", json!(256)),
                ("num_attention_heads", json!(4)),
                ("intermediate_size", json!(1024)),
            ],
        )?;
        let width = c.embedding_size.unwrap_or(c.hidden_size);
        super::config::check_sizes(&[("embedding_size", width)])?;
        let base = root / "electra";
        let classifier =
            ClassificationHead::new(root / "classifier", &c, config.num_labels(), false);
        Ok(ElectraForSequenceClassification {
            embeddings: BertEmbeddings::new(&base / "embeddings", &c, width),
            embeddings_project: (width != c.hidden_size)
                .then(|| Linear::new(&base / "embeddings_project", width, c.hidden_size)),
            encoder: bert_encoder(&base, &c, config)?,
            classifier,
            regression: config.is_regression(),
            config: c,
        })
    }
}

impl Network for ElectraForSequenceClassification {
    fn forward_masked(
        &self,
        inputs: &Inputs,
        masks: Masks,
        opts: ForwardOptions,
    ) -> Result<ModelOutput> {
        let mut x = self
            .embeddings
            .forward(inputs.input_ids, inputs.token_type_ids, opts.train);
        if let Some(project) = &self.embeddings_project {
            x = project.forward(&x);
        }
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
        "ElectraForSequenceClassification"
    }

    fn head_axis(&self, name: &str) -> Option<HeadAxis> {
        self.encoder.head_axis(name)
    }
}
