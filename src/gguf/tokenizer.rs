//! The tokenizer a GGUF file carries (`tokenizer.ggml.*`), built as transformers 4.57's GGUF
//! converters build it (`integrations/ggml.py`), as a `tokenizers` Tokenizer:
//!
//! - architecture llama, `tokenizer.ggml.model` "gpt2" (Llama 3, SmolLM2): byte-level BPE from
//!   the tokens and merges, GPT-2's pre-tokenizer regex (`ByteLevel(use_regex=True)`, whatever
//!   `tokenizer.ggml.pre` says: transformers' converter does not read it), no normalizer;
//! - architecture llama, model "llama" (SentencePiece): BPE whose merges are derived from the
//!   scores exactly as `GGUFTokenizerSkeleton` derives them, byte fallback, the normaliser that
//!   prepends "▁" (unless `tokenizer.ggml.add_space_prefix` is false) and turns spaces into "▁";
//! - architecture qwen2: Qwen2's NFC normaliser and split regex, byte-level BPE.
//!
//! Tokens of type 3 (control) are special tokens. Unlike transformers, which always adds a BOS
//! for llama (`LlamaTokenizerFast`), the post-processor follows the file's
//! `tokenizer.ggml.add_bos_token` / `add_eos_token`.
use super::reader::{GgufFile, Value};
use anyhow::{anyhow, bail, Result};
use serde_json::{json, Map, Value as J};
use std::collections::{HashMap, HashSet};

/// What was built, for the cache's `gguf_source.json` and `tokenizer_config.json`.
pub struct GgufTokenizer {
    /// The tokenizer as `tokenizer.json` text.
    pub json: String,
    pub tokenizer: tokenizers::Tokenizer,
    /// `tokenizer_config.json` for transformers (PreTrainedTokenizerFast, special tokens).
    pub config: J,
    /// A short description: model, pre, counts.
    pub summary: J,
}

/// Token types of `tokenizer.ggml.token_type` (llama.cpp's `llama_token_type`).
const TOKEN_TYPE_CONTROL: i128 = 3;

fn key<'a>(f: &'a GgufFile, name: &str) -> Result<&'a Value> {
    f.get(name).ok_or_else(|| {
        anyhow!(
            "{}: metadata {name} is missing (expected the tokenizer in the file's tokenizer.ggml.* keys)",
            f.path.display()
        )
    })
}

fn string_array(f: &GgufFile, name: &str) -> Result<Vec<String>> {
    let v = key(f, name)?;
    let bad = || {
        anyhow!(
            "{}: metadata {name} is {} (expected ARRAY[STRING])",
            f.path.display(),
            v.type_name()
        )
    };
    v.as_array()
        .ok_or_else(bad)?
        .iter()
        .map(|s| s.as_str().map(str::to_string).ok_or_else(bad))
        .collect()
}

fn optional_id(f: &GgufFile, name: &str, n_tokens: usize) -> Result<Option<u32>> {
    match f.get(name) {
        None => Ok(None),
        Some(v) => match v.as_i128() {
            Some(id) if id >= 0 && (id as usize) < n_tokens => Ok(Some(id as u32)),
            _ => bail!(
                "{}: metadata {name} is {v} (expected a token id below the vocabulary size {n_tokens})",
                f.path.display()
            ),
        },
    }
}

fn optional_bool(f: &GgufFile, name: &str) -> Result<Option<bool>> {
    match f.get(name) {
        None => Ok(None),
        Some(v) => v.as_bool().map(Some).ok_or_else(|| {
            anyhow!(
                "{}: metadata {name} is {v} ({}; expected BOOL)",
                f.path.display(),
                v.type_name()
            )
        }),
    }
}

/// The merges of a SentencePiece vocabulary, derived from the scores as transformers'
/// `GGUFTokenizerSkeleton` does: for every token (in first-occurrence order, with its last
/// score), every split into two tokens, sorted by the parts' scores (descending, stable),
/// then all by the token's score (descending, stable).
fn merges_from_scores(tokens: &[String], scores: &[f32]) -> Vec<(String, String)> {
    let mut order: Vec<&str> = Vec::new();
    let mut score: HashMap<&str, f32> = HashMap::new();
    for (t, &s) in tokens.iter().zip(scores) {
        if score.insert(t.as_str(), s).is_none() {
            order.push(t);
        }
    }
    let present: HashSet<&str> = tokens.iter().map(String::as_str).collect();
    let mut merges: Vec<(&str, &str, f32)> = Vec::new();
    for t in order {
        let mut local: Vec<(&str, &str, f32)> = t
            .char_indices()
            .skip(1)
            .map(|(i, _)| (&t[..i], &t[i..]))
            .filter(|(l, r)| present.contains(l) && present.contains(r))
            .map(|(l, r)| (l, r, score[t]))
            .collect();
        local.sort_by(|a, b| {
            let ka = (score[a.0], score[a.1]);
            let kb = (score[b.0], score[b.1]);
            kb.partial_cmp(&ka).unwrap_or(std::cmp::Ordering::Equal)
        });
        merges.extend(local);
    }
    merges.sort_by(|a, b| b.2.partial_cmp(&a.2).unwrap_or(std::cmp::Ordering::Equal));
    merges
        .into_iter()
        .map(|(l, r, _)| (l.to_string(), r.to_string()))
        .collect()
}

/// Which of transformers' converters applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// GGUFLlamaConverter on a SentencePiece vocabulary.
    LlamaSpm,
    /// GGUFLlamaConverter on a byte-level BPE vocabulary ("llama 3").
    LlamaBpe,
    /// GGUFQwen2Converter.
    Qwen2,
}

const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Builds the tokenizer of `f`, whose model type is `architecture` (llama or qwen2).
pub fn build(f: &GgufFile, architecture: &str) -> Result<GgufTokenizer> {
    let path = f.path.display();
    let model_value = key(f, "tokenizer.ggml.model")?;
    let model = model_value.as_str().ok_or_else(|| {
        anyhow!(
            "{path}: metadata tokenizer.ggml.model is {} (expected STRING)",
            model_value.type_name()
        )
    })?;
    let kind = match (architecture, model) {
        ("qwen2", _) => Kind::Qwen2,
        (_, "llama") => Kind::LlamaSpm,
        (_, "gpt2") => Kind::LlamaBpe,
        (_, other) => {
            bail!("{path}: tokenizer.ggml.model is \"{other}\" (expected \"gpt2\" or \"llama\")")
        }
    };
    let tokens = string_array(f, "tokenizer.ggml.tokens")?;
    if tokens.is_empty() {
        bail!("{path}: metadata tokenizer.ggml.tokens is empty (expected the vocabulary)");
    }
    let n = tokens.len();
    let scores: Option<Vec<f32>> = match f.get("tokenizer.ggml.scores") {
        None => None,
        Some(v) => {
            let bad = || {
                anyhow!(
                    "{path}: metadata tokenizer.ggml.scores is {} (expected ARRAY[FLOAT32] of {n} values, one per token)",
                    v.type_name()
                )
            };
            let a = v.as_array().ok_or_else(bad)?;
            if a.len() != n {
                return Err(bad());
            }
            Some(
                a.iter()
                    .map(|s| s.as_f64().map(|x| x as f32).ok_or_else(bad))
                    .collect::<Result<_>>()?,
            )
        }
    };
    let token_types: Option<Vec<i128>> = match f.get("tokenizer.ggml.token_type") {
        None => None,
        Some(v) => {
            let bad = || {
                anyhow!(
                    "{path}: metadata tokenizer.ggml.token_type is {} (expected ARRAY[INT32] of {n} values, one per token)",
                    v.type_name()
                )
            };
            let a = v.as_array().ok_or_else(bad)?;
            if a.len() != n {
                return Err(bad());
            }
            Some(
                a.iter()
                    .map(|s| s.as_i128().ok_or_else(bad))
                    .collect::<Result<_>>()?,
            )
        }
    };
    let merges: Vec<(String, String)> = match f.get("tokenizer.ggml.merges") {
        Some(_) => string_array(f, "tokenizer.ggml.merges")?
            .iter()
            .enumerate()
            .map(|(i, m)| {
                // Split at the first space after the first character, as llama.cpp does.
                let cut = m
                    .char_indices()
                    .skip(1)
                    .find(|&(_, c)| c == ' ')
                    .map(|(i, _)| i);
                match cut {
                    Some(c) => Ok((m[..c].to_string(), m[c + 1..].to_string())),
                    None => bail!(
                        "{path}: metadata tokenizer.ggml.merges entry {i} is {m:?} (expected two tokens separated by a space)"
                    ),
                }
            })
            .collect::<Result<_>>()?,
        None => match (&scores, kind) {
            (Some(scores), Kind::LlamaSpm) => merges_from_scores(&tokens, scores),
            (None, Kind::LlamaSpm) => bail!(
                "{path}: metadata tokenizer.ggml.scores is missing (expected for a \"llama\" tokenizer without tokenizer.ggml.merges)"
            ),
            _ => bail!(
                "{path}: metadata tokenizer.ggml.merges is missing (expected for a \"{model}\" tokenizer)"
            ),
        },
    };
    let bos = optional_id(f, "tokenizer.ggml.bos_token_id", n)?;
    let eos = optional_id(f, "tokenizer.ggml.eos_token_id", n)?;
    let unk = optional_id(f, "tokenizer.ggml.unknown_token_id", n)?;
    let pad = optional_id(f, "tokenizer.ggml.padding_token_id", n)?;
    let add_space_prefix = optional_bool(f, "tokenizer.ggml.add_space_prefix")?;
    // llama.cpp's defaults when the file says nothing: a BOS for SentencePiece, none for BPE.
    let add_bos =
        optional_bool(f, "tokenizer.ggml.add_bos_token")?.unwrap_or(kind == Kind::LlamaSpm);
    let add_eos = optional_bool(f, "tokenizer.ggml.add_eos_token")?.unwrap_or(false);
    let pre = f.get("tokenizer.ggml.pre").and_then(Value::as_str);

    // The vocabulary as a map: a token listed twice keeps its last id (Python's dict).
    let mut vocab: HashMap<&str, u32> = HashMap::with_capacity(n);
    for (i, t) in tokens.iter().enumerate() {
        vocab.insert(t.as_str(), i as u32);
    }
    for (i, (l, r)) in merges.iter().enumerate() {
        for part in [l, r] {
            if !vocab.contains_key(part.as_str()) {
                bail!(
                    "{path}: metadata tokenizer.ggml.merges entry {i} (\"{l} {r}\") names {part:?}, which is not in tokenizer.ggml.tokens"
                );
            }
        }
    }
    let id_of = |t: &str| vocab[t];

    // Special tokens: the control tokens, and the unknown and BOS tokens, which transformers'
    // PreTrainedTokenizerFast adds as special tokens of its special-tokens map (llama.cpp
    // treats control and unknown tokens as special too). Its llama converter names the BOS
    // token as EOS as well, so a real EOS that is not a control token stays plain text there,
    // and here. Without token types: unk, bos and eos.
    let mut special: Vec<String> = Vec::new();
    let mut push = |t: &String| {
        if !special.contains(t) {
            special.push(t.clone());
        }
    };
    match &token_types {
        Some(types) => {
            for (t, &ty) in tokens.iter().zip(types) {
                if ty == TOKEN_TYPE_CONTROL {
                    push(t);
                }
            }
            for id in [unk, bos].into_iter().flatten() {
                push(&tokens[id as usize]);
            }
        }
        None => {
            for id in [unk, bos, eos].into_iter().flatten() {
                push(&tokens[id as usize]);
            }
        }
    }
    special.sort_by_key(|t| vocab[t.as_str()]);
    if kind == Kind::Qwen2 {
        for t in ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] {
            if !special.iter().any(|s| s == t) {
                special.push(t.to_string());
            }
        }
    }
    let mut next_id = n as u32;
    let added_tokens: Vec<J> = special
        .iter()
        .map(|t| {
            let id = match vocab.get(t.as_str()) {
                Some(&id) => id,
                None => {
                    next_id += 1;
                    next_id - 1
                }
            };
            json!({"id": id, "content": t, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": true})
        })
        .collect();

    let mut vocab_json = Map::with_capacity(n);
    let mut by_id: Vec<(&str, u32)> = vocab.iter().map(|(&t, &i)| (t, i)).collect();
    by_id.sort_by_key(|&(_, i)| i);
    for (t, i) in by_id {
        vocab_json.insert(t.to_string(), J::from(i));
    }
    let merges_json: Vec<J> = merges.iter().map(|(l, r)| json!([l, r])).collect();
    let unk_token = unk.map(|id| tokens[id as usize].clone());

    let (normalizer, pre_tokenizer, decoder, model_json, default_post) = match kind {
        Kind::LlamaBpe | Kind::LlamaSpm => {
            let model_json = json!({
                "type": "BPE", "dropout": null, "unk_token": unk_token,
                "continuing_subword_prefix": null, "end_of_word_suffix": null,
                "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
                "vocab": vocab_json, "merges": merges_json,
            });
            let mut decoders = vec![
                json!({"type": "ByteFallback"}),
                json!({"type": "Fuse"}),
                json!({"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "}),
            ];
            // transformers' skeleton: add_prefix_space only when the file has the key.
            let add_prefix_space = add_space_prefix.unwrap_or(true);
            if kind == Kind::LlamaBpe {
                decoders.push(json!({"type": "ByteLevel", "add_prefix_space": false,
                                     "trim_offsets": false, "use_regex": true}));
            }
            if add_prefix_space {
                decoders.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
            }
            let decoder = json!({"type": "Sequence", "decoders": decoders});
            if kind == Kind::LlamaBpe {
                (
                    json!({"type": "Sequence", "normalizers": []}),
                    json!({"type": "ByteLevel", "add_prefix_space": false,
                           "trim_offsets": false, "use_regex": true}),
                    decoder,
                    model_json,
                    J::Null,
                )
            } else {
                let mut norms = Vec::new();
                if add_prefix_space {
                    norms.push(json!({"type": "Prepend", "prepend": "\u{2581}"}));
                }
                norms.push(json!({"type": "Replace", "pattern": {"String": " "},
                                  "content": "\u{2581}"}));
                (
                    json!({"type": "Sequence", "normalizers": norms}),
                    J::Null,
                    decoder,
                    model_json,
                    J::Null,
                )
            }
        }
        Kind::Qwen2 => (
            json!({"type": "NFC"}),
            json!({"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": QWEN2_SPLIT},
                 "behavior": "Isolated", "invert": false},
                {"type": "ByteLevel", "add_prefix_space": add_space_prefix.unwrap_or(false),
                 "trim_offsets": true, "use_regex": false},
            ]}),
            json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true,
                   "use_regex": true}),
            json!({
                "type": "BPE", "dropout": null, "unk_token": null,
                "continuing_subword_prefix": "", "end_of_word_suffix": "",
                "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                "vocab": vocab_json, "merges": merges_json,
            }),
            json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false,
                   "use_regex": true}),
        ),
    };

    // The file's add_bos_token / add_eos_token, as LlamaTokenizerFast's template does it.
    let post_processor = if add_bos && bos.is_some() || add_eos && eos.is_some() {
        let bos_t = bos
            .filter(|_| add_bos)
            .map(|id| tokens[id as usize].clone());
        let eos_t = eos
            .filter(|_| add_eos)
            .map(|id| tokens[id as usize].clone());
        let piece = |t: &str, type_id: u32| json!({"SpecialToken": {"id": t, "type_id": type_id}});
        let seq = |s: &str, type_id: u32| json!({"Sequence": {"id": s, "type_id": type_id}});
        let mut single = Vec::new();
        let mut pair = Vec::new();
        let mut specials = Map::new();
        for (s, type_id) in [("A", 0u32), ("B", 1u32)] {
            let target: &mut Vec<J> = if s == "A" { &mut single } else { &mut pair };
            if let Some(t) = &bos_t {
                target.push(piece(t, type_id));
            }
            target.push(seq(s, type_id));
            if let Some(t) = &eos_t {
                target.push(piece(t, type_id));
            }
        }
        let pair: Vec<J> = single.iter().cloned().chain(pair).collect();
        for t in bos_t.iter().chain(eos_t.iter()) {
            specials.insert(
                t.clone(),
                json!({"id": t, "ids": [id_of(t)], "tokens": [t]}),
            );
        }
        json!({"type": "TemplateProcessing", "single": single, "pair": pair,
               "special_tokens": specials})
    } else {
        default_post
    };

    let tokenizer_json = json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added_tokens,
        "normalizer": normalizer,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": post_processor,
        "decoder": decoder,
        "model": model_json,
    });
    let text = serde_json::to_string(&tokenizer_json)?;
    let tokenizer: tokenizers::Tokenizer = text.parse().map_err(|e| {
        anyhow!("{path}: the tokenizer built from tokenizer.ggml.* does not load: {e}")
    })?;
    let json_text = tokenizer
        .to_string(false)
        .map_err(|e| anyhow!("{path}: cannot serialise the tokenizer: {e}"))?;

    let name = |id: Option<u32>| id.map(|i| J::String(tokens[i as usize].clone()));
    let mut config = Map::new();
    config.insert("tokenizer_class".into(), "PreTrainedTokenizerFast".into());
    for (k, id) in [
        ("bos_token", bos),
        ("eos_token", eos),
        ("unk_token", unk),
        ("pad_token", pad),
    ] {
        if let Some(v) = name(id) {
            config.insert(k.into(), v);
        }
    }
    config.insert("add_bos_token".into(), add_bos.into());
    config.insert("add_eos_token".into(), add_eos.into());
    config.insert("clean_up_tokenization_spaces".into(), false.into());
    if let Some(t) = f.get("tokenizer.chat_template").and_then(Value::as_str) {
        config.insert("chat_template".into(), t.into());
    }
    let summary = json!({
        "model": model,
        "pre": pre,
        "converter": match kind {
            Kind::LlamaSpm => "llama (SentencePiece, merges from scores)",
            Kind::LlamaBpe => "llama (byte-level BPE, GPT-2 pre-tokenizer)",
            Kind::Qwen2 => "qwen2 (byte-level BPE, Qwen2 pre-tokenizer)",
        },
        "tokens": n,
        "merges": merges.len(),
        "special_tokens": special.len(),
        "add_bos_token": add_bos,
        "add_eos_token": add_eos,
    });
    Ok(GgufTokenizer {
        json: json_text,
        tokenizer,
        config: J::Object(config),
        summary,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_from_scores_orders_like_transformers() {
        let tokens: Vec<String> = ["a", "b", "ab", "abb", "bb"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let scores = [0.0, -1.0, -0.5, -0.2, -3.0];
        let m = merges_from_scores(&tokens, &scores);
        // "abb" (score -0.2) first: its splits ("a","bb") and ("ab","b") sorted by
        // (score(l), score(r)) descending: ("a", "bb") has (0, -3) > (-0.5, -1).
        assert_eq!(
            m,
            vec![
                ("a".into(), "bb".into()),
                ("ab".into(), "b".into()),
                ("a".into(), "b".into()),
                ("b".into(), "b".into()),
            ]
        );
    }
}
