//! Tokenisation through the tokenizers crate, with padding off (batches pad themselves) and
//! truncation set explicitly: a checkpoint's `tokenizer.json` may carry its own
//! (all-MiniLM-L6-v2's pads everything to 128), which must never leak into our batches.
//! Without a `tokenizer.json`, the family's vocabulary files are read as transformers' slow
//! tokenizers would: `vocab.txt` (WordPiece: BERT, DistilBERT, ELECTRA) or `vocab.json` +
//! `merges.txt` (byte-level BPE: RoBERTa's `<s> A </s></s> B </s>`, GPT-2's bare tokens).
use anyhow::{anyhow, Context, Result};
use std::path::{Path, PathBuf};
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::processors::roberta::RobertaProcessing;
use tokenizers::{
    AddedToken, Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy,
};

/// Files that make up a tokenizer; copied next to a saved model.
pub const TOKENIZER_FILES: &[&str] = &[
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "special_tokens_map.json",
];

/// One tokenised example: ids and token type ids (0 for the first text, 1 for the second).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encoded {
    pub ids: Vec<i64>,
    pub type_ids: Vec<i64>,
}

pub struct TextTokenizer {
    inner: Tokenizer,
    source: PathBuf,
}

impl TextTokenizer {
    /// Loads `tokenizer.json`, else builds a WordPiece tokenizer from `vocab.txt` and
    /// `tokenizer_config.json` (`do_lower_case`, default true), else a byte-level BPE from
    /// `vocab.json` and `merges.txt`.
    pub fn from_dir(dir: &Path, max_length: usize) -> Result<Self> {
        let json = dir.join("tokenizer.json");
        let mut inner = if json.is_file() {
            Tokenizer::from_file(&json)
                .map_err(|e| anyhow!("{}: cannot load tokenizer: {e}", json.display()))?
        } else if dir.join("vocab.txt").is_file() {
            from_vocab(dir)?
        } else if dir.join("vocab.json").is_file() && dir.join("merges.txt").is_file() {
            from_bpe_files(dir)?
        } else {
            anyhow::bail!(
                "{}: no tokenizer files (tokenizer.json, vocab.txt, or vocab.json with merges.txt)",
                dir.display()
            );
        };
        inner.with_padding(None);
        inner
            .with_truncation(Some(TruncationParams {
                direction: TruncationDirection::Right,
                max_length,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
            }))
            .map_err(|e| anyhow!("{}: cannot set truncation: {e}", dir.display()))?;
        Ok(TextTokenizer {
            inner,
            source: dir.to_path_buf(),
        })
    }

    /// Tokenises many (text, optional second text) examples, in parallel.
    pub fn encode_batch(&self, texts: &[(String, Option<String>)]) -> Result<Vec<Encoded>> {
        let inputs: Vec<tokenizers::EncodeInput> = texts
            .iter()
            .map(|(a, b)| match b {
                Some(b) => (a.as_str(), b.as_str()).into(),
                None => a.as_str().into(),
            })
            .collect();
        let encodings = self
            .inner
            .encode_batch(inputs, true)
            .map_err(|e| anyhow!("tokenizer from {}: {e}", self.source.display()))?;
        Ok(encodings
            .into_iter()
            .map(|e| Encoded {
                ids: e.get_ids().iter().map(|&i| i as i64).collect(),
                type_ids: e.get_type_ids().iter().map(|&i| i as i64).collect(),
            })
            .collect())
    }

    pub fn encode(&self, a: &str, b: Option<&str>) -> Result<Encoded> {
        let mut all = self.encode_batch(&[(a.to_string(), b.map(str::to_string))])?;
        Ok(all.remove(0))
    }

    /// Id used for padding ([PAD], else <pad>, else 0). RoBERTa's position ids depend on it.
    pub fn pad_id(&self) -> i64 {
        ["[PAD]", "<pad>"]
            .iter()
            .find_map(|t| self.inner.token_to_id(t))
            .map(|i| i as i64)
            .unwrap_or(0)
    }

    /// The vocabulary string of each id (e.g. "[CLS]", "##ing"), for reports and viewers.
    pub fn token_strings(&self, ids: &[i64]) -> Vec<String> {
        ids.iter()
            .map(|&i| {
                self.inner
                    .id_to_token(i as u32)
                    .unwrap_or_else(|| format!("<{i}>"))
            })
            .collect()
    }

    /// Ids of the special tokens the post-processor puts after the first position of a pair
    /// ([SEP] for BERT, </s> for RoBERTa; none for GPT-2): the separators, found by encoding a
    /// pair rather than by guessing token names.
    pub fn separator_ids(&self) -> Result<Vec<i64>> {
        let e = self
            .inner
            .encode(("a", "b"), true)
            .map_err(|e| anyhow!("tokenizer from {}: {e}", self.source.display()))?;
        let mut ids: Vec<i64> = e
            .get_ids()
            .iter()
            .zip(e.get_special_tokens_mask())
            .skip(1)
            .filter(|(_, &special)| special == 1)
            .map(|(&id, _)| id as i64)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        Ok(ids)
    }

    /// The special token the post-processor puts first ([CLS] for BERT, <s> for RoBERTa), or
    /// None when an input starts with its own first word (GPT, GPT-2).
    pub fn start_token(&self) -> Result<Option<String>> {
        let e = self
            .inner
            .encode("a", true)
            .map_err(|e| anyhow!("tokenizer from {}: {e}", self.source.display()))?;
        Ok(match e.get_special_tokens_mask().first() {
            Some(1) => e.get_tokens().first().cloned(),
            _ => None,
        })
    }

    /// Copies the tokenizer files this tokenizer came from into `dir`.
    pub fn save_files(&self, dir: &Path) -> Result<()> {
        for name in TOKENIZER_FILES {
            let src = self.source.join(name);
            if src.is_file() {
                std::fs::copy(&src, dir.join(name)).with_context(|| {
                    format!("{}: cannot copy to {}", src.display(), dir.display())
                })?;
            }
        }
        Ok(())
    }
}

fn from_vocab(dir: &Path) -> Result<Tokenizer> {
    let vocab = dir.join("vocab.txt");
    if !vocab.is_file() {
        anyhow::bail!(
            "{}: no tokenizer.json or vocab.txt in this folder",
            dir.display()
        );
    }
    let config_path = dir.join("tokenizer_config.json");
    let lowercase = if config_path.is_file() {
        let text = std::fs::read_to_string(&config_path)
            .with_context(|| format!("{}: cannot read", config_path.display()))?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| anyhow!("{}: malformed JSON: {e}", config_path.display()))?;
        json.get("do_lower_case")
            .and_then(|v| v.as_bool())
            .unwrap_or(true)
    } else {
        true
    };
    let model = WordPiece::from_file(&vocab.to_string_lossy())
        .unk_token("[UNK]".into())
        .build()
        .map_err(|e| anyhow!("{}: cannot read vocabulary: {e}", vocab.display()))?;
    let id = |tok: &str| {
        model_token_id(&model, tok)
            .ok_or_else(|| anyhow!("{}: vocabulary has no {tok}", vocab.display()))
    };
    let (cls, sep) = (id("[CLS]")?, id("[SEP]")?);
    let mut tokenizer = Tokenizer::new(model);
    tokenizer
        .with_normalizer(Some(BertNormalizer::new(true, true, None, lowercase)))
        .with_pre_tokenizer(Some(BertPreTokenizer))
        .with_post_processor(Some(BertProcessing::new(
            ("[SEP]".into(), sep),
            ("[CLS]".into(), cls),
        )));
    Ok(tokenizer)
}

/// Byte-level BPE from `vocab.json` + `merges.txt` (GPT-2's tokenizer, `bpe::byte_level_bpe`),
/// as RobertaTokenizer / GPT2Tokenizer read them: RoBERTa's special tokens and pair template
/// when the vocabulary has `<s>` and `</s>` and the folder's config is not a GPT one; GPT-2's
/// bare tokens (with `<|endoftext|>` special) otherwise. OpenAI GPT's files are read as
/// OpenAIGPTTokenizer reads them (`bpe::word_end_bpe`).
fn from_bpe_files(dir: &Path) -> Result<Tokenizer> {
    if model_type_of(dir).as_deref() == Some("openai-gpt") {
        // OpenAI GPT's vocabulary is not byte-level: its words end in "</w>".
        return super::bpe::word_end_bpe(&dir.join("vocab.json"), &dir.join("merges.txt"));
    }
    let mut tokenizer =
        super::bpe::byte_level_bpe(&dir.join("vocab.json"), &dir.join("merges.txt"))?;
    let id = |t: &str| tokenizer.token_to_id(t);
    let roberta_like =
        !model_type_of(dir).is_some_and(|t| t.starts_with("gpt") || t == "openai-gpt");
    let specials = (id("<s>"), id("</s>"));
    let special: Vec<AddedToken> = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
        .iter()
        .filter(|t| id(t).is_some())
        .map(|t| AddedToken::from(t.to_string(), true))
        .collect();
    if let (true, (Some(cls), Some(sep))) = (roberta_like, specials) {
        tokenizer.with_post_processor(Some(
            RobertaProcessing::new(("</s>".into(), sep), ("<s>".into(), cls))
                .trim_offsets(true)
                .add_prefix_space(false),
        ));
        tokenizer.add_special_tokens(&special);
    }
    Ok(tokenizer)
}

/// `model_type` of the config.json next to the tokenizer files, if any.
fn model_type_of(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("config.json")).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json.get("model_type")?.as_str().map(str::to_string)
}

fn model_token_id(model: &WordPiece, token: &str) -> Option<u32> {
    use tokenizers::Model;
    model.token_to_id(token)
}
