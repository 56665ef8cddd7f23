//! Where architectures are chosen: each family's file exports a `FAMILY`, and this list is the
//! only place that enumerates them. Adding an architecture is one new file plus one line here.
use super::config::ModelConfig;
use super::family::Family;
use super::{bert, distilbert, electra, gpt2, llama, masked_lm, openai_gpt, roberta};
use anyhow::{bail, Result};

/// Every supported family.
pub fn all() -> [&'static Family; 7] {
    [
        &bert::FAMILY,
        &roberta::FAMILY,
        &distilbert::FAMILY,
        &electra::FAMILY,
        &gpt2::FAMILY,
        &openai_gpt::FAMILY,
        &llama::FAMILY,
    ]
}

/// The families with a language-model head (`--task lm`, `--task mlm`), by the same
/// `model_type`s; a model type missing here has none.
pub fn language_models() -> [&'static Family; 5] {
    [
        &gpt2::LM_FAMILY,
        &llama::LM_FAMILY,
        &openai_gpt::LM_FAMILY,
        &masked_lm::BERT_FAMILY,
        &masked_lm::ROBERTA_FAMILY,
    ]
}

/// The language-model family of a config's `model_type`, if it has one.
pub fn language_model_of(config: &ModelConfig) -> Option<&'static Family> {
    let t = config.model_type();
    language_models()
        .into_iter()
        .find(|f| f.model_types.contains(&t))
}

/// The family of a config's `model_type`; an error lists the supported ones.
pub fn family_of(config: &ModelConfig) -> Result<&'static Family> {
    let t = config.model_type();
    if let Some(f) = all().into_iter().find(|f| f.model_types.contains(&t)) {
        return Ok(f);
    }
    let supported: Vec<&str> = all()
        .iter()
        .flat_map(|f| f.model_types.iter().copied())
        .collect();
    bail!(
        "unsupported model_type {t:?} (supported: {})",
        supported.join(", ")
    )
}

/// Names a family's checkpoint has right after its base prefix. A prefix alone can be another
/// family's internal name: a bare DistilBertModel's `transformer.layer.*` is not GPT-2's
/// `transformer.h.*`.
fn names_after_prefix(f: &Family) -> &'static [&'static str] {
    match f.name {
        "distilbert" => &["transformer.layer."],
        "gpt2" => &["h.", "wte."],
        "openai-gpt" => &["h.", "tokens_embed."],
        "llama" => &["layers.", "embed_tokens."],
        _ => &["encoder.layer."],
    }
}

/// The family whose base prefix most of these checkpoint keys carry, if that is not `ours`:
/// for saying "these are RoBERTa weights" instead of listing missing BERT ones. A prefix only
/// counts when the keys after it are named as that family names them.
pub fn foreign_family(keys: &[String], ours: &Family) -> Option<&'static Family> {
    let has_prefix = |f: &Family| {
        let prefix = format!("{}.", f.layout.prefix);
        let named_so = names_after_prefix(f).iter().all(|after| {
            keys.iter()
                .any(|k| k.starts_with(&format!("{prefix}{after}")))
        });
        if !named_so {
            return 0;
        }
        keys.iter().filter(|k| k.starts_with(&prefix)).count()
    };
    if has_prefix(ours) > 0 {
        return None;
    }
    all()
        .into_iter()
        .filter(|f| f.name != ours.name)
        .map(|f| (has_prefix(f), f))
        .filter(|(n, _)| *n * 2 > keys.len())
        .max_by_key(|(n, _)| *n)
        .map(|(_, f)| f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn foreign_family_reads_the_names_after_the_prefix() {
        // A bare DistilBertModel: `transformer.*` is its layer stack, not GPT-2's prefix.
        let distil = keys(&[
            "embeddings.word_embeddings.weight",
            "transformer.layer.0.attention.q_lin.weight",
            "transformer.layer.0.attention.k_lin.weight",
            "transformer.layer.0.ffn.lin1.weight",
        ]);
        assert!(foreign_family(&distil, &bert::FAMILY).is_none());
        assert!(foreign_family(&distil, &gpt2::FAMILY).is_none());
        let gpt = keys(&[
            "transformer.wte.weight",
            "transformer.wpe.weight",
            "transformer.h.0.attn.c_attn.weight",
            "transformer.ln_f.weight",
        ]);
        assert_eq!(foreign_family(&gpt, &bert::FAMILY).unwrap().name, "gpt2");
        let openai = keys(&[
            "transformer.tokens_embed.weight",
            "transformer.positions_embed.weight",
            "transformer.h.0.attn.c_attn.weight",
        ]);
        assert_eq!(
            foreign_family(&openai, &bert::FAMILY).unwrap().name,
            "openai-gpt"
        );
        let distil_head = keys(&[
            "distilbert.embeddings.word_embeddings.weight",
            "distilbert.transformer.layer.0.attention.q_lin.weight",
            "classifier.weight",
        ]);
        assert_eq!(
            foreign_family(&distil_head, &gpt2::FAMILY).unwrap().name,
            "distilbert"
        );
        let roberta = keys(&[
            "roberta.embeddings.word_embeddings.weight",
            "roberta.encoder.layer.0.attention.self.query.weight",
        ]);
        assert_eq!(
            foreign_family(&roberta, &bert::FAMILY).unwrap().name,
            "roberta"
        );
    }
}
