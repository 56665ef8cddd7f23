//! What an architecture family declares about itself: the `model_type`s it reads, how its
//! weights are named, the config fields that size them, and how to build its network. Each
//! family's file exports one `Family`; `families` lists them.
use super::checkpoint::KeyLayout;
use super::config::ModelConfig;
use super::network::Network;
use anyhow::Result;
use tch::nn;

/// An architecture family: the `model_type`s it reads, how its weights are named, and how to
/// build its network over a VarStore.
pub struct Family {
    pub name: &'static str,
    pub model_types: &'static [&'static str],
    pub layout: KeyLayout,
    /// The size fields of its config.json and the weights that hold them, checked against the
    /// safetensors headers before anything is allocated (`preflight`). Declare every field
    /// the network sizes a tensor by.
    pub sizes: &'static [SizeField],
    pub build: fn(&nn::Path, &ModelConfig) -> Result<Box<dyn Network>>,
}

/// Where the checkpoint holds a size field of config.json, so it can be checked against the
/// safetensors headers before anything is allocated.
#[derive(Clone, Copy, Debug)]
pub enum Held {
    /// Dimension `axis` of this tensor (its name without the family's prefix, e.g.
    /// `wte.weight`, `embeddings.word_embeddings.weight`): the field must equal it.
    Dim(&'static str, usize),
    /// The intermediate size held by this MLP tensor of layer 0: its dimension `axis` plus the
    /// neurons `pruned_neurons` removed from layer 0 (a neuron-pruned model keeps the original
    /// size in its config).
    Neurons(&'static str, usize),
    /// The number of layers: the tensors named `<stem><index>.…` (e.g. `h.`,
    /// `encoder.layer.`, `layers.`); the field must equal the highest index + 1.
    Layers(&'static str),
    /// No tensor holds it alone (a head count): it may not exceed the largest dimension of any
    /// weight.
    Bounded,
    /// No weight holds it and it may exceed every weight's dimension (RoPE's
    /// max_position_embeddings): at most this fixed bound, which also caps what it sizes.
    AtMost(i64),
    /// A token id the network reads (pad_token_id where embeddings or positions use it): in
    /// 0..vocab_size. Not a size: 0 is allowed, and absent or null is not checked.
    TokenId,
}

/// One size field of a family's config.json: its name, the default the family's typed config
/// uses when the field is absent (`None`: absent or null is not checked, e.g. GPT-2's
/// `n_inner`, which then follows `n_embd`), and where the weights hold it. Every declared
/// field must be a positive integer and at most the largest dimension of the weights.
#[derive(Clone, Copy, Debug)]
pub struct SizeField {
    pub field: &'static str,
    pub default: Option<fn() -> i64>,
    pub held: Held,
}

impl SizeField {
    pub const fn new(field: &'static str, default: Option<fn() -> i64>, held: Held) -> Self {
        SizeField {
            field,
            default,
            held,
        }
    }
}
