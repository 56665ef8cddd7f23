//! BertForMaskedLM and RobertaForMaskedLM (transformers' modeling_bert / modeling_roberta): the
//! BERT encoder of `bert.rs` (no pooler) under a masked-language-model head whose decoder is
//! tied to the word embeddings: `cls.predictions.{transform.dense, transform.LayerNorm, bias}`
//! for BERT (activation `hidden_act`), `lm_head.{dense, layer_norm, bias}` for RoBERTa (exact
//! gelu). These are `--task mlm`'s families; a checkpoint without the head cannot be used.
use super::bert::{bert_config, bert_encoder, BertEmbeddings};
use super::checkpoint::KeyLayout;
use super::config::{Activation, BertConfig, ModelConfig};
use super::family::Family;
use super::layers::{activate, Encoder, LayerNorm, Linear};
use super::network::{
    ForwardOptions, HeadAxis, Inputs, Masks, ModelOutput, Network, NetworkShape, Objective,
};
use anyhow::Result;
use serde_json::json;
use tch::{nn, Kind, Tensor};

pub static BERT_FAMILY: Family = Family {
    name: "bert",
    model_types: &["bert"],
    layout: KeyLayout {
        prefix: "bert",
        head: "cls.predictions.",
        optional: &[],
    },
    sizes: super::bert::SIZES,
    build: |root, config| Ok(Box::new(MaskedLm::new(root, config, Kind_::Bert)?)),
};

pub static ROBERTA_FAMILY: Family = Family {
    name: "roberta",
    model_types: &["roberta", "xlm-roberta", "camembert"],
    layout: KeyLayout {
        prefix: "roberta",
        head: "lm_head.",
        optional: &[],
    },
    sizes: super::roberta::SIZES,
    build: |root, config| Ok(Box::new(MaskedLm::new(root, config, Kind_::Roberta)?)),
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind_ {
    Bert,
    Roberta,
}

/// dense → activation → LayerNorm → (word embeddings)ᵀ + bias.
struct MlmHead {
    /// The word embedding variable itself (the decoder is tied to it).
    decoder: Tensor,
    dense: Linear,
    norm: LayerNorm,
    bias: Tensor,
    act: Activation,
}

pub struct MaskedLm {
    embeddings: BertEmbeddings,
    encoder: Encoder,
    head: MlmHead,
    config: BertConfig,
    /// RoBERTa numbers positions after the padding index.
    roberta_pad: Option<i64>,
    class: &'static str,
}

impl MaskedLm {
    fn new(root: &nn::Path, config: &ModelConfig, kind: Kind_) -> Result<Self> {
        let (c, base, head_path, act, class) = match kind {
            Kind_::Bert => {
                let c = bert_config(config, &[])?;
                let act = c.hidden_act;
                (
                    c,
                    root / "bert",
                    root / "cls" / "predictions",
                    act,
                    "BertForMaskedLM",
                )
            }
            Kind_::Roberta => (
                bert_config(
                    config,
                    &[("vocab_size", json!(50265)), ("pad_token_id", json!(1))],
                )?,
                root / "roberta",
                root / "lm_head",
                Activation::Gelu,
                match config.model_type() {
                    "xlm-roberta" => "XLMRobertaForMaskedLM",
                    "camembert" => "CamembertForMaskedLM",
                    _ => "RobertaForMaskedLM",
                },
            ),
        };
        let (dense, norm) = match kind {
            Kind_::Bert => (
                &head_path / "transform" / "dense",
                &head_path / "transform" / "LayerNorm",
            ),
            Kind_::Roberta => (&head_path / "dense", &head_path / "layer_norm"),
        };
        let embeddings = BertEmbeddings::new(&base / "embeddings", &c, c.hidden_size);
        let decoder = (&base / "embeddings" / "word_embeddings")
            .get("weight")
            .ok_or_else(|| anyhow::anyhow!("internal: no word embeddings"))?;
        let head = MlmHead {
            decoder,
            dense: Linear::new(dense, c.hidden_size, c.hidden_size),
            norm: LayerNorm::new(norm, c.hidden_size, c.layer_norm_eps),
            bias: head_path.zeros("bias", &[c.vocab_size]),
            act,
        };
        Ok(MaskedLm {
            embeddings,
            encoder: bert_encoder(&base, &c, config)?,
            head,
            roberta_pad: (kind == Kind_::Roberta).then(|| c.pad_token_id.unwrap_or(1)),
            config: c,
            class,
        })
    }
}

impl Network for MaskedLm {
    fn forward_masked(
        &self,
        inputs: &Inputs,
        masks: Masks,
        opts: ForwardOptions,
    ) -> Result<ModelOutput> {
        // The encoder checks the head mask and builds the additive padding mask.
        let x = match self.roberta_pad {
            // transformers' create_position_ids_from_input_ids; RoBERTa has no token types.
            Some(pad) => {
                let real = inputs.input_ids.ne(pad).to_kind(Kind::Int64);
                let positions = real.cumsum(1, Kind::Int64) * &real + pad;
                let types = inputs.input_ids.zeros_like();
                self.embeddings.forward_with_positions(
                    inputs.input_ids,
                    &types,
                    &positions,
                    opts.train,
                )
            }
            None => self
                .embeddings
                .forward(inputs.input_ids, inputs.token_type_ids, opts.train),
        };
        let out = self
            .encoder
            .forward(x, inputs.attention_mask, masks, opts, false)?;
        let h = self.head.norm.forward(&activate(
            self.head.act,
            &self.head.dense.forward(&out.last),
        ));
        let logits = h.linear(&self.head.decoder, Some(&self.head.bias));
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
            max_positions: match self.roberta_pad {
                Some(pad) => self.config.max_position_embeddings - pad - 1,
                None => self.config.max_position_embeddings,
            },
            regression: false,
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

    fn objective(&self) -> Objective {
        Objective::MaskedLm
    }

    fn hf_class(&self) -> &'static str {
        self.class
    }

    fn head_axis(&self, name: &str) -> Option<HeadAxis> {
        self.encoder.head_axis(name)
    }
}
