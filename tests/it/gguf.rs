//! GGUF files (issue 24): dequantisation bit for bit against gguf-py, the conversion of a tiny
//! llama against what transformers loads from the same file, the tokenizers against
//! transformers' GGUF tokenizers, bad files, and SmolLM2 on WikiText-2 when set up.
//! Fixtures: scripts/reference/make_gguf_fixtures.py.

use crate::common::{bertology_command, fixture, one_line_error, root};
use bertology::gguf::{self, GgufFile};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn gguf_fixture(name: &str) -> PathBuf {
    fixture("gguf").join(name)
}

/// float32 tensors of a safetensors file, by name (shape, values).
fn read_f32(path: &Path) -> HashMap<String, (Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .filter(|(_, v)| v.dtype() == safetensors::Dtype::F32)
        .map(|(k, v)| {
            let data = v
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            (k, (v.shape().to_vec(), data))
        })
        .collect()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn every_type_dequantises_like_gguf_py_bit_for_bit() {
    let f = GgufFile::open(&gguf_fixture("quants.gguf")).unwrap();
    assert_eq!(f.alignment, 64);
    let expected = read_f32(&gguf_fixture("quants_expected.safetensors"));
    let mut seen = Vec::new();
    for t in &f.tensors {
        let (shape, want) = &expected[&t.name];
        assert_eq!(&t.torch_shape(), shape, "{}", t.name);
        let got = f.dequantize(t).unwrap();
        assert_eq!(bits(&got), bits(want), "{} ({})", t.name, t.ty.name);
        seen.push(t.ty.name);
    }
    seen.sort();
    let mut all: Vec<&str> = gguf::quants::SUPPORTED.to_vec();
    all.sort();
    assert_eq!(seen, all, "one tensor per supported type");
}

#[test]
fn version_2_files_read_like_version_3() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = std::fs::read(gguf_fixture("quants.gguf")).unwrap();
    assert_eq!(bytes[4], 3);
    bytes[4] = 2;
    let v2 = dir.path().join("v2.gguf");
    std::fs::write(&v2, &bytes).unwrap();
    let (a, b) = (
        GgufFile::open(&gguf_fixture("quants.gguf")).unwrap(),
        GgufFile::open(&v2).unwrap(),
    );
    assert_eq!(b.version, 2);
    for (x, y) in a.tensors.iter().zip(&b.tensors) {
        assert_eq!(
            bits(&a.dequantize(x).unwrap()),
            bits(&b.dequantize(y).unwrap())
        );
    }
    // Version 1 (32-bit counts) is refused by name.
    bytes[4] = 1;
    std::fs::write(&v2, &bytes).unwrap();
    let e = format!("{:#}", GgufFile::open(&v2).err().unwrap());
    assert!(
        e.contains("version 1") && e.contains("expected 2 or 3"),
        "{e}"
    );
}

#[test]
fn an_unsupported_type_is_an_error_naming_the_tensor_and_the_type() {
    // Q8_1 (id 9) is a known layout that bertology does not dequantise: patch a tensor to it.
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = std::fs::read(gguf_fixture("quants.gguf")).unwrap();
    let name = b"q8_0";
    let at = bytes
        .windows(8 + name.len())
        .position(|w| w[..8] == (name.len() as u64).to_le_bytes() && &w[8..] == name)
        .unwrap()
        + 8
        + name.len();
    let n_dims = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
    let type_at = at + 4 + 8 * n_dims;
    assert_eq!(bytes[type_at], 8);
    // Q8_1 blocks are 36 bytes instead of 34: the data still fits in the fixture.
    bytes[type_at] = 9;
    let p = dir.path().join("q8_1.gguf");
    std::fs::write(&p, &bytes).unwrap();
    let f = GgufFile::open(&p).unwrap();
    let t = f.tensor("q8_0").unwrap();
    let e = format!("{:#}", f.dequantize(t).err().unwrap());
    assert!(e.contains("tensor q8_0") && e.contains("Q8_1"), "{e}");
    assert_eq!(e.lines().count(), 1);
}

/// Converts a fixture into a fresh cache; returns (cache, converted folder).
fn convert(name: &str) -> (tempfile::TempDir, PathBuf) {
    let cache = tempfile::tempdir().unwrap();
    let dir = gguf::resolve_in(&gguf_fixture(name), &cache.path().join("gguf"), true).unwrap();
    (cache, dir)
}

#[test]
fn tiny_llama_converts_to_the_weights_and_config_transformers_loads() {
    let (_cache, dir) = convert("tiny-llama.gguf");
    let ours = read_f32(&dir.join("model.safetensors"));
    let theirs = read_f32(&gguf_fixture("tiny-llama_expected.safetensors"));
    let mut names: Vec<&String> = theirs.keys().filter(|k| *k != "logits").collect();
    names.sort();
    let mut ours_names: Vec<&String> = ours.keys().collect();
    ours_names.sort();
    assert_eq!(
        ours_names, names,
        "the same weights as transformers' state dict"
    );
    for k in names {
        let ((s1, a), (s2, b)) = (&ours[k], &theirs[k]);
        assert_eq!(s1, s2, "{k}");
        // Bit for bit: the same dequantisation, and q/k rows in transformers' order.
        assert_eq!(bits(a), bits(b), "{k}");
    }
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    let want: serde_json::Value =
        serde_json::from_slice(&std::fs::read(gguf_fixture("tiny-llama_config.json")).unwrap())
            .unwrap();
    for (k, v) in want.as_object().unwrap() {
        assert_eq!(config.get(k).unwrap_or(&serde_json::Value::Null), v, "{k}");
    }
    let source: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("gguf_source.json")).unwrap()).unwrap();
    assert_eq!(
        source["source"].as_str().unwrap(),
        gguf_fixture("tiny-llama.gguf")
            .canonicalize()
            .unwrap()
            .to_str()
            .unwrap()
    );
    assert_eq!(
        source["skipped_tensors"],
        serde_json::json!(["rope_freqs.weight"])
    );
    assert_eq!(source["tokenizer"]["pre"], "smollm");
    assert!(dir.join("tokenizer.json").is_file() && dir.join("tokenizer_config.json").is_file());
}

#[test]
fn a_second_resolve_reuses_the_cache_and_a_changed_file_gets_a_new_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("m.gguf");
    std::fs::copy(gguf_fixture("tiny-llama.gguf"), &file).unwrap();
    let cache = tmp.path().join("cache");
    let a = gguf::resolve_in(&file, &cache, true).unwrap();
    let stamp = std::fs::metadata(a.join("model.safetensors"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(gguf::resolve_in(&file, &cache, true).unwrap(), a);
    assert_eq!(
        std::fs::metadata(a.join("model.safetensors"))
            .unwrap()
            .modified()
            .unwrap(),
        stamp,
        "not rewritten"
    );
    // Same size, new modification time: a new key.
    let f = std::fs::File::options().append(true).open(&file).unwrap();
    f.set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(5))
        .unwrap();
    drop(f);
    let b = gguf::resolve_in(&file, &cache, true).unwrap();
    assert_ne!(a, b);
    assert!(b.file_name().unwrap().to_str().unwrap().starts_with("m-"));
    // Only the two folders, no staging left.
    let entries: Vec<_> = std::fs::read_dir(&cache).unwrap().flatten().collect();
    assert_eq!(entries.len(), 2, "{entries:?}");
}

fn tokenizer_of(name: &str) -> tokenizers::Tokenizer {
    let f = GgufFile::open(&gguf_fixture(name)).unwrap();
    let (_, model_type) = gguf::convert::model_type(&f).unwrap();
    gguf::tokenizer::build(&f, &model_type).unwrap().tokenizer
}

#[test]
fn tokenizers_give_the_ids_of_transformers_gguf_tokenizers() {
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(gguf_fixture("tokenizer_ids.json")).unwrap())
            .unwrap();
    let texts: Vec<String> = serde_json::from_value(expected["texts"].clone()).unwrap();
    for name in ["tiny-llama.gguf", "tiny-spm.gguf", "tiny-qwen2.gguf"] {
        let tok = tokenizer_of(name);
        let want: Vec<Vec<u32>> = serde_json::from_value(expected[name].clone()).unwrap();
        let mut agree = 0;
        for (text, want) in texts.iter().zip(&want) {
            let got = tok.encode(text.as_str(), false).unwrap();
            assert_eq!(got.get_ids(), &want[..], "{name}: {text:?}");
            agree += 1;
        }
        assert_eq!(agree, texts.len());
    }
}

#[test]
fn special_tokens_follow_the_files_add_bos_token() {
    // tiny-llama says add_bos_token false: no <|im_start|> (transformers would add one).
    let tok = tokenizer_of("tiny-llama.gguf");
    let e = tok.encode("Hello world", true).unwrap();
    assert_eq!(
        e.get_ids(),
        tok.encode("Hello world", false).unwrap().get_ids()
    );
    // Control tokens are special: written in text they are one token.
    let e = tok.encode("<|im_start|>hi<|im_end|>", false).unwrap();
    assert_eq!(e.get_ids()[0], 1);
    assert_eq!(*e.get_ids().last().unwrap(), 2);
    // tiny-spm says add_bos_token true: <s> (id 1) first.
    let tok = tokenizer_of("tiny-spm.gguf");
    let e = tok.encode("Hello world", true).unwrap();
    assert_eq!(e.get_ids()[0], 1);
    assert_eq!(
        &e.get_ids()[1..],
        tok.encode("Hello world", false).unwrap().get_ids()
    );
}

/// Runs `bertology inspect --model FILE` with its own GGUF cache; returns (output, cache).
fn inspect(file: &Path) -> (std::process::Output, tempfile::TempDir) {
    let cache = tempfile::tempdir().unwrap();
    let out = bertology_command(&["inspect", "--model", file.to_str().unwrap()])
        .env("BERTOLOGY_GGUF_CACHE", cache.path().join("gguf"))
        .output()
        .unwrap();
    (out, cache)
}

#[test]
fn bad_files_end_in_one_line_naming_the_file_and_leave_no_cache() {
    let cases = [
        ("truncated.gguf", "truncated GGUF file"),
        (
            "bad_magic.gguf",
            "not a GGUF file (expected the magic \"GGUF\"",
        ),
        ("unknown_type.gguf", "unknown GGML type id 99"),
        ("data_past_end.gguf", "runs past the end of the file"),
        (
            "no_tokenizer_tokens.gguf",
            "metadata tokenizer.ggml.tokens is missing",
        ),
    ];
    for (name, needle) in cases {
        let file = gguf_fixture("bad").join(name);
        let (out, cache) = inspect(&file);
        let e = one_line_error(&out);
        assert_eq!(out.status.code(), Some(1), "{name}: {e}");
        assert!(e.contains(name) && e.contains(needle), "{name}: {e}");
        assert!(out.stdout.is_empty());
        assert!(
            !cache.path().join("gguf").exists(),
            "{name}: left {:?}",
            std::fs::read_dir(cache.path()).unwrap().collect::<Vec<_>>()
        );
    }
}

#[test]
fn a_failed_write_leaves_no_converted_folder() {
    for fail in ["model.safetensors", "tokenizer.json", "(commit)"] {
        let cache = tempfile::tempdir().unwrap();
        let out = bertology_command(&[
            "inspect",
            "--model",
            gguf_fixture("tiny-llama.gguf").to_str().unwrap(),
        ])
        .env("BERTOLOGY_GGUF_CACHE", cache.path().join("gguf"))
        .env("BERTOLOGY_TEST_FAIL_WRITE", fail)
        .output()
        .unwrap();
        let e = one_line_error(&out);
        assert!(e.contains("No space left on device"), "{fail}: {e}");
        assert!(
            !cache.path().join("gguf").exists(),
            "{fail}: {:?}",
            std::fs::read_dir(cache.path().join("gguf"))
                .map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
        );
    }
}

/// SmolLM2-135M-Instruct (scripts/setup.sh installs it) on all of WikiText-2 test: the
/// tokenizer built from the GGUF against the ids transformers' GGUF tokenizer gives
/// (tests/fixtures/gguf/smollm2_wikitext2_test.json: per-line counts and a hash of every id).
#[test]
fn smollm2_tokenizer_matches_transformers_on_all_of_wikitext2_test() {
    let model = root().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    let text = root().join("data/wikitext-2/test.txt");
    if !model.is_file() || !text.is_file() {
        eprintln!(
            "skipped: needs {} and {} (scripts/setup.sh)",
            model.display(),
            text.display()
        );
        return;
    }
    let want: serde_json::Value = serde_json::from_slice(
        &std::fs::read(gguf_fixture("smollm2_wikitext2_test.json")).unwrap(),
    )
    .unwrap();
    let f = GgufFile::open(&model).unwrap();
    let tok = gguf::tokenizer::build(&f, "llama").unwrap().tokenizer;
    let content = std::fs::read_to_string(&text).unwrap();
    let lines: Vec<&str> = content.split_inclusive('\n').collect();
    let hashes = want["line_hashes"].as_array().unwrap();
    assert_eq!(lines.len(), hashes.len());
    let mut tokens = 0u64;
    let mut disagree = Vec::new();
    for (i, (line, h)) in lines.iter().zip(hashes).enumerate() {
        let ids = tok.encode(*line, false).unwrap().get_ids().to_vec();
        tokens += ids.len() as u64;
        if format!("{:016x}", fnv1a(&ids)) != h.as_str().unwrap() {
            disagree.push(i);
        }
    }
    eprintln!(
        "SmolLM2 on WikiText-2 test: {} of {} lines agree, {tokens} tokens (transformers: {})",
        lines.len() - disagree.len(),
        lines.len(),
        want["tokens"]
    );
    assert!(disagree.is_empty(), "lines that differ: {disagree:?}");
    assert_eq!(tokens, want["tokens"].as_u64().unwrap());
}

/// FNV-1a over the ids' little-endian u32 bytes (what the fixture script hashes).
fn fnv1a(ids: &[u32]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for id in ids {
        for b in id.to_le_bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
    }
    h
}
