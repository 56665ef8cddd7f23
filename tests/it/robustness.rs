//! Bad inputs through the binary (issue 18): each case must end with the expected exit code,
//! one line on stderr naming the file or flag, nothing on stdout, and every file of the case's
//! folder — the inputs and an earlier run's output folder — exactly as it was before.
//!
//! The cases also make the table of docs/troubleshooting.md: run with
//! `BERTOLOGY_WRITE_TROUBLESHOOTING=1` to rewrite it; otherwise the test fails when the table
//! no longer matches what the binary says.
use crate::common::*;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use tch::{Kind, Tensor};

/// The folders of one case: `root` holds `T` (the tiny 2-label classifier) and `out` (an
/// earlier importance run), and whatever the case adds.
struct Ctx {
    root: PathBuf,
    t: PathBuf,
    out: PathBuf,
}

type Prep = Box<dyn Fn(&Ctx) + Send + Sync>;
/// A table row (input, message, exit code), or what went wrong.
type Outcome = Result<(String, String, i32), String>;

struct Case {
    /// The input, as the troubleshooting table shows it.
    input: &'static str,
    args: Vec<String>,
    env: Vec<(&'static str, String)>,
    prep: Prep,
    code: i32,
    /// Substrings stderr must contain ({T}, {OUT}, {TMP} replaced).
    needles: Vec<&'static str>,
}

const MRPC_ARGS: &str =
    "--task mrpc --data-dir {MRPC} --data-subset 16 --max-seq-length 32 --device cpu";

fn case(
    input: &'static str,
    cmd: &str,
    code: i32,
    needles: &[&'static str],
    prep: impl Fn(&Ctx) + Send + Sync + 'static,
) -> Case {
    let cmd = cmd.replace("{D}", MRPC_ARGS);
    Case {
        input,
        args: cmd.split_whitespace().map(str::to_string).collect(),
        env: Vec::new(),
        prep: Box::new(prep),
        code,
        needles: needles.to_vec(),
    }
}

fn with_env(mut c: Case, key: &'static str, value: &str) -> Case {
    c.env.push((key, value.to_string()));
    c
}

fn nothing(_: &Ctx) {}

/// `eval --model` on a bad GGUF fixture copied into the case's folder, converting into a cache
/// inside it (so the folder check also proves that no cache folder is left).
fn gguf_case(input: &'static str, file: &'static str, needles: &[&'static str]) -> Case {
    let cmd = format!("eval --model {{TMP}}/{file} {{D}} --output-dir {{OUT}}");
    let c = case(input, &cmd, 1, needles, move |c: &Ctx| {
        std::fs::copy(fixture("gguf").join("bad").join(file), c.root.join(file)).unwrap();
    });
    with_env(c, "BERTOLOGY_GGUF_CACHE", "{TMP}/gguf-cache")
}

/// A command on a copy of a tiny grouped-query fixture (`families/NAME`) in `{TMP}/L`, its
/// config.json changed by `edit`.
fn llama_case(
    input: &'static str,
    name: &'static str,
    cmd: &str,
    code: i32,
    needles: &[&'static str],
    edit: impl Fn(&mut serde_json::Value) + Send + Sync + 'static,
) -> Case {
    case(input, cmd, code, needles, move |c: &Ctx| {
        let l = c.root.join("L");
        copy_dir(&fixture("families").join(name), &l);
        edit_json(&l.join("config.json"), |v| edit(v));
    })
}

fn write(path: &Path, bytes: impl AsRef<[u8]>) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn replace_bytes(b: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let i = b.windows(from.len()).position(|w| w == from).unwrap();
    [&b[..i], to, &b[i + from.len()..]].concat()
}

fn npy(t: &Tensor) -> Vec<u8> {
    bertology::npy::to_bytes(t).unwrap()
}

fn ones(l: i64, h: i64) -> Tensor {
    Tensor::ones([l, h], (Kind::Float, tch::Device::Cpu))
}

/// A folder of MRPC's dev file edited by `f`.
fn bad_dev(c: &Ctx, edit: impl Fn(&str) -> Vec<u8>) {
    let text = std::fs::read_to_string(mrpc_dir().join("dev.tsv")).unwrap();
    let head: String = text.lines().take(20).map(|l| format!("{l}\n")).collect();
    write(&c.root.join("data/dev.tsv"), edit(&head));
}

/// An importance run's files as an older bertology wrote them (no fingerprints), edited.
fn old_style_run(c: &Ctx, importance: &Tensor, ranks: Option<&Tensor>) {
    let _ = std::fs::remove_dir_all(&c.out);
    write(&c.out.join("head_importance.npy"), npy(importance));
    if let Some(r) = ranks {
        write(&c.out.join("head_ranks.npy"), npy(r));
    }
    write(
        &c.out.join("importance.json"),
        r#"{"task":"mrpc","split":"dev","model":"m","data_dir":"d","examples":16,"tokens":512,"metric":"acc","score":0.6}"#,
    );
}

fn cases() -> Vec<Case> {
    let mut v = vec![
        // Models.
        case("--model: a folder that does not exist", "eval --model {TMP}/nope {D} --output-dir {OUT}", 1, &["--model", "nope", "no such folder"], nothing),
        case("--model: a weights file instead of its folder", "eval --model {T}/model.safetensors {D} --output-dir {OUT}", 1, &["--model", "is a file"], nothing),
        case("--model: a missing .safetensors path (not a hub id)", "eval --model {TMP}/x/model.safetensors {D} --output-dir {OUT}", 1, &["--model", "no such file or folder"], nothing),
        case("--model: a hub id not in the cache", "eval --model org/absent {D} --output-dir {OUT}", 1, &["--model org/absent", "not in the hub cache"], nothing),
        // Llama-family configs (issue 23): grouped-query attention, rotary scaling, windows.
        llama_case("llama config.json: key/value heads that do not divide the query heads", "llama", "inspect --model {TMP}/L", 1, &["config.json", "num_key_value_heads 4"], |v| v["num_key_value_heads"] = 4.into()),
        llama_case("llama config.json: an unsupported rope_scaling type", "llama", "inspect --model {TMP}/L", 1, &["config.json", "rope_scaling type \"yarn\" is not supported"], |v| v["rope_scaling"] = serde_json::json!({"rope_type": "yarn", "factor": 4.0})),
        llama_case("llama config.json: llama3 scaling without low_freq_factor", "llama", "inspect --model {TMP}/L", 1, &["config.json", "low_freq_factor"], |v| { v["rope_scaling"].as_object_mut().unwrap().remove("low_freq_factor"); }),
        llama_case("llama config.json: no hidden_size", "llama", "inspect --model {TMP}/L", 1, &["config.json", "missing field hidden_size"], |v| { v.as_object_mut().unwrap().remove("hidden_size"); }),
        llama_case("llama config.json: an odd head_dim", "llama", "inspect --model {TMP}/L", 1, &["config.json", "head_dim"], |v| v["head_dim"] = 13.into()),
        llama_case("llama config.json: partial_rotary_factor", "llama", "inspect --model {TMP}/L", 1, &["config.json", "partial_rotary_factor 0.5"], |v| v["partial_rotary_factor"] = 0.5.into()),
        llama_case("qwen2 config.json: layer_types of the wrong length", "qwen2", "inspect --model {TMP}/L", 1, &["config.json", "layer_types has 3 entries"], |v| v["layer_types"] = serde_json::json!(["full_attention", "full_attention", "full_attention"])),
        llama_case("qwen2 config.json: an unknown layer type", "qwen2", "inspect --model {TMP}/L", 1, &["config.json", "\"chunked_attention\""], |v| v["layer_types"] = serde_json::json!(["full_attention", "chunked_attention"])),
        llama_case("mistral config.json: sliding_window 0", "mistral", "inspect --model {TMP}/L", 1, &["config.json", "sliding_window"], |v| v["sliding_window"] = 0.into()),
        case("llama: eval --head-mask of the wrong shape", "eval --task lm --model {TMP}/L --token-ids {TMP}/ids.txt --head-mask {TMP}/m.npy --output-dir {TMP}/e", 1, &["--head-mask", "m.npy", "expected [2, 6]"], |c| { copy_dir(&fixture("families").join("llama"), &c.root.join("L")); write(&c.root.join("ids.txt"), "1 2 3 4\n5 6 7\n"); write(&c.root.join("m.npy"), npy(&ones(2, 4))); }),
        // GGUF files (issue 24): the conversion's cache is inside the case's folder, which must stay as it was.
        gguf_case("--model: a truncated GGUF file", "truncated.gguf", &["truncated.gguf", "truncated GGUF file"]),
        gguf_case("--model: a GGUF file with the wrong magic", "bad_magic.gguf", &["bad_magic.gguf", "expected the magic \"GGUF\""]),
        gguf_case("--model: a GGUF tensor of an unknown type id", "unknown_type.gguf", &["unknown_type.gguf", "unknown GGML type id 99"]),
        gguf_case("--model: GGUF tensor data past the end of the file", "data_past_end.gguf", &["data_past_end.gguf", "runs past the end of the file"]),
        gguf_case("--model: a GGUF file without tokenizer.ggml.tokens", "no_tokenizer_tokens.gguf", &["no_tokenizer_tokens.gguf", "tokenizer.ggml.tokens is missing"]),
        with_env(case("--model: a missing .gguf path", "eval --model {TMP}/absent.gguf {D} --output-dir {OUT}", 1, &["--model", "no such file or folder"], nothing), "BERTOLOGY_GGUF_CACHE", "{TMP}/gguf-cache"),
        case("config.json missing", "eval --model {T} {D} --output-dir {OUT}", 1, &["config.json", "missing"], |c| std::fs::remove_file(c.t.join("config.json")).unwrap()),
        case("config.json empty", "eval --model {T} {D} --output-dir {OUT}", 1, &["config.json", "malformed config"], |c| write(&c.t.join("config.json"), "")),
        case("config.json not JSON", "eval --model {T} {D} --output-dir {OUT}", 1, &["config.json", "malformed config"], |c| write(&c.t.join("config.json"), "{hidden_size: 32")),
        case("config.json: hidden_size not a multiple of the heads", "eval --model {T} {D} --output-dir {OUT}", 1, &["config.json", "num_attention_heads"], |c| edit_json(&c.t.join("config.json"), |v| v["num_attention_heads"] = 5.into())),
        case("config.json: vocab_size disagrees with the weights", "eval --model {T} {D} --output-dir {OUT}", 1, &["config.json", "vocab_size"], |c| edit_json(&c.t.join("config.json"), |v| v["vocab_size"] = 6464.into())),
        case("config.json: a huge num_hidden_layers", "eval --model {T} {D} --output-dir {OUT}", 1, &["config.json", "num_hidden_layers"], |c| edit_json(&c.t.join("config.json"), |v| v["num_hidden_layers"] = 30000000.into())),
        case("config.json: a huge num_labels (inspect)", "inspect --device cpu --model {T}", 1, &["config.json", "num_labels"], |c| edit_json(&c.t.join("config.json"), |v| { v.as_object_mut().unwrap().remove("id2label"); v["num_labels"] = 90000000.into(); })),
        case("config.json: model_type of another architecture", "eval --model {T} {D} --output-dir {OUT}", 1, &["config.json", "model_type"], |c| edit_json(&c.t.join("config.json"), |v| v["model_type"] = "gpt2".into())),
        case("config.json: dropout probability above 1", "eval --model {T} {D} --output-dir {OUT}", 1, &["config.json", "hidden_dropout_prob"], |c| edit_json(&c.t.join("config.json"), |v| v["hidden_dropout_prob"] = 1.5.into())),
        case("config.json: 3 labels for a 2-label task", "eval --model {T} {D} --output-dir {OUT}", 1, &["config.json", "mrpc needs 2"], |c| edit_json(&c.t.join("config.json"), |v| v["num_labels"] = 3.into())),
        case("model.safetensors missing", "eval --model {T} {D} --output-dir {OUT}", 1, &["model.safetensors"], |c| std::fs::remove_file(c.t.join("model.safetensors")).unwrap()),
        case("model.safetensors empty", "eval --model {T} {D} --output-dir {OUT}", 1, &["model.safetensors", "not a safetensors file"], |c| write(&c.t.join("model.safetensors"), "")),
        case("model.safetensors cut in half", "eval --model {T} {D} --output-dir {OUT}", 1, &["model.safetensors", "not a safetensors file"], |c| { let b = std::fs::read(c.t.join("model.safetensors")).unwrap(); write(&c.t.join("model.safetensors"), &b[..b.len() / 2]); }),
        case("model.safetensors: header length beyond the file", "eval --model {T} {D} --output-dir {OUT}", 1, &["model.safetensors", "not a safetensors file"], |c| { let mut b = std::fs::read(c.t.join("model.safetensors")).unwrap(); b[..8].copy_from_slice(&(1u64 << 40).to_le_bytes()); write(&c.t.join("model.safetensors"), b); }),
        case("model.safetensors: a NaN weight", "eval --model {T} {D} --output-dir {OUT}", 1, &["weight", "NaN"], |c| edit_weights(&c.t, |w| { for (k, t) in w.iter_mut() { if k.contains("layer.1.output.dense.weight") { let _ = t.fill_diagonal_(f64::NAN, false); } } })),
        case("model.safetensors: an infinite weight (importance)", "importance --model {T} {D} --output-dir {OUT}", 1, &["weight", "infinity"], |c| edit_weights(&c.t, |w| { for (k, t) in w.iter_mut() { if k.ends_with("classifier.bias") { let _ = t.fill_(f64::INFINITY); } } })),
        case("model.safetensors: a NaN weight (prune)", "prune --model {T} {D} --output-dir {OUT}", 1, &["weight", "NaN"], |c| edit_weights(&c.t, |w| { for (k, t) in w.iter_mut() { if k.ends_with("embeddings.LayerNorm.weight") { let _ = t.fill_(f64::NAN); } } })),
        case("model.safetensors: a NaN weight (finetune)", "finetune --model {T} --task mrpc --data-dir {MRPC} --train-subset 8 --eval-subset 8 --max-seq-length 32 --device cpu --output-dir {TMP}/ft", 1, &["weight", "NaN"], |c| edit_weights(&c.t, |w| { for (k, t) in w.iter_mut() { if k.ends_with("pooler.dense.bias") { let _ = t.fill_(f64::NAN); } } })),
        case("model.safetensors: a weight of the wrong shape", "eval --model {T} {D} --output-dir {OUT}", 1, &["model.safetensors", "shape"], |c| edit_weights(&c.t, |w| { for (k, t) in w.iter_mut() { if k.ends_with("layer.0.attention.self.query.weight") { *t = t.narrow(0, 0, 16).contiguous(); } } })),
        case("model.safetensors: a weight missing", "eval --model {T} {D} --output-dir {OUT}", 1, &["model.safetensors", "missing weight"], |c| edit_weights(&c.t, |w| w.retain(|(k, _)| !k.ends_with("layer.1.attention.self.key.bias")))),
        case("only pytorch_model.bin", "eval --model {T} {D} --output-dir {OUT}", 1, &["pytorch_model.bin", "Convert"], |c| { std::fs::rename(c.t.join("model.safetensors"), c.t.join("pytorch_model.bin")).unwrap(); }),
        case("a sharded index naming a missing shard", "eval --model {T} {D} --output-dir {OUT}", 1, &["model.safetensors.index.json", "does not exist"], |c| { std::fs::remove_file(c.t.join("model.safetensors")).unwrap(); write(&c.t.join("model.safetensors.index.json"), r#"{"weight_map":{"a":"model-00001-of-00002.safetensors"}}"#); }),
        case("a sharded index that is not JSON", "eval --model {T} {D} --output-dir {OUT}", 1, &["model.safetensors.index.json", "malformed"], |c| { std::fs::remove_file(c.t.join("model.safetensors")).unwrap(); write(&c.t.join("model.safetensors.index.json"), "{"); }),
        case("no vocab.txt or tokenizer.json", "eval --model {T} {D} --output-dir {OUT}", 1, &["T", "no tokenizer files"], |c| std::fs::remove_file(c.t.join("vocab.txt")).unwrap()),
        case("vocab.txt without [CLS]", "eval --model {T} {D} --output-dir {OUT}", 1, &["vocab.txt", "[CLS]"], |c| { let v = std::fs::read_to_string(c.t.join("vocab.txt")).unwrap().replace("[CLS]\n", "[XLS]\n"); write(&c.t.join("vocab.txt"), v); }),
        case("tokenizer_config.json not JSON", "eval --model {T} {D} --output-dir {OUT}", 1, &["tokenizer_config.json", "malformed JSON"], |c| write(&c.t.join("tokenizer_config.json"), "{")),
        case("tokenizer.json not a tokenizer", "eval --model {T} {D} --output-dir {OUT}", 1, &["tokenizer.json", "cannot load tokenizer"], |c| write(&c.t.join("tokenizer.json"), "{\"model\": 3}")),
        case("--max-seq-length beyond the model's positions", "eval --model {T} --task mrpc --data-dir {MRPC} --max-seq-length 64 --device cpu --output-dir {OUT}", 1, &["--max-seq-length 64", "position embeddings"], nothing),
        // Data.
        case("--data-dir: a folder that does not exist", "eval --model {T} --task mrpc --data-dir {TMP}/nodata --max-seq-length 32 --device cpu --output-dir {OUT}", 1, &["--data-dir", "no such folder"], nothing),
        case("--data-dir: a file", "eval --model {T} --task mrpc --data-dir {MRPC}/dev.tsv --max-seq-length 32 --device cpu --output-dir {OUT}", 1, &["--data-dir", "is a file"], nothing),
        case("--data-dir without dev.tsv", "eval --model {T} --task mrpc --data-dir {TMP}/data --max-seq-length 32 --device cpu --output-dir {OUT}", 1, &["dev.tsv", "cannot read"], |c| std::fs::create_dir_all(c.root.join("data")).unwrap()),
        case("dev.tsv empty", "eval --model {T} --task mrpc --data-dir {TMP}/data --max-seq-length 32 --device cpu --output-dir {OUT}", 1, &["dev.tsv", "empty file"], |c| bad_dev(c, |_| Vec::new())),
        case("dev.tsv: a header and no rows", "eval --model {T} --task mrpc --data-dir {TMP}/data --max-seq-length 32 --device cpu --output-dir {OUT}", 1, &["dev.tsv", "no examples"], |c| bad_dev(c, |t| format!("{}\n", t.lines().next().unwrap()).into_bytes())),
        case("dev.tsv of RTE read as MRPC", "eval --model {T} --task mrpc --data-dir {TMP}/data --max-seq-length 32 --device cpu --output-dir {OUT}", 1, &["dev.tsv", "line 1", "is this the MRPC file"], |c| write(&c.root.join("data/dev.tsv"), "index\tsentence1\tsentence2\tlabel\n0\tA man.\tA person.\tentailment\n")),
        case("dev.tsv: bytes that are not UTF-8", "eval --model {T} --task mrpc --data-dir {TMP}/data --max-seq-length 32 --device cpu --output-dir {OUT}", 1, &["dev.tsv", "line 3", "not UTF-8"], |c| bad_dev(c, |t| { let mut b = t.as_bytes().to_vec(); let third = t.lines().take(2).map(|l| l.len() + 1).sum::<usize>(); b[third + 4] = 0xff; b })),
        case("dev.tsv: an unknown label", "eval --model {T} --task mrpc --data-dir {TMP}/data --max-seq-length 32 --device cpu --output-dir {OUT}", 1, &["dev.tsv", "line 2", "unknown label"], |c| bad_dev(c, |t| { let mut lines: Vec<String> = t.lines().map(str::to_string).collect(); lines[1] = format!("7{}", &lines[1][1..]); lines.join("\n").into_bytes() })),
        case("dev.tsv: a row with a missing field", "eval --model {T} --task mrpc --data-dir {TMP}/data --max-seq-length 32 --device cpu --output-dir {OUT}", 1, &["dev.tsv", "line 4", "fields"], |c| bad_dev(c, |t| { let mut lines: Vec<String> = t.lines().map(str::to_string).collect(); lines[3] = lines[3].rsplit_once('\t').unwrap().0.to_string(); lines.join("\n").into_bytes() })),
        case("--split test (no labels) for importance", "importance --model {T} --task mrpc --data-dir {MRPC} --split test --data-subset 8 --max-seq-length 32 --device cpu --output-dir {OUT}", 1, &["--split test", "labels"], nothing),
        case("--split Test (capitalised)", "eval --model {T} --task mrpc --split Test", 2, &["--split", "Test"], nothing),
        case("--task unknown", "eval --task mrx", 2, &["--task", "mrx"], nothing),
        case("--data-subset 0", "eval --model {T} --task mrpc --data-subset 0", 2, &["--data-subset"], nothing),
        case("--batch-size 0", "eval --model {T} --task mrpc --batch-size 0", 2, &["--batch-size"], nothing),
        case("--max-seq-length 4", "eval --model {T} --task mrpc --max-seq-length 4", 2, &["--max-seq-length"], nothing),
        case("--threads 0", "eval --threads 0 --task mrpc", 2, &["--threads"], nothing),
        case("an unknown flag", "eval --task mrpc --modle x", 2, &["--modle"], nothing),
        // Head masks (.npy).
        case("--head-mask: a file that does not exist", "importance --model {T} {D} --head-mask {TMP}/none.npy --output-dir {OUT}", 1, &["--head-mask", "none.npy"], nothing),
        case("--head-mask: an empty file", "importance --model {T} {D} --head-mask {TMP}/m.npy --output-dir {OUT}", 1, &["--head-mask", "m.npy", "0 bytes"], |c| write(&c.root.join("m.npy"), "")),
        case("--head-mask: shorter than its header says", "importance --model {T} {D} --head-mask {TMP}/m.npy --output-dir {OUT}", 1, &["--head-mask", "m.npy", "truncated"], |c| { let b = npy(&ones(3, 4)); write(&c.root.join("m.npy"), &b[..b.len() - 40]); }),
        case("--head-mask: a header and no data", "importance --model {T} {D} --head-mask {TMP}/m.npy --output-dir {OUT}", 1, &["--head-mask", "m.npy", "truncated"], |c| { let b = npy(&ones(3, 4)); write(&c.root.join("m.npy"), &b[..b.len() - 48]); }),
        case("--head-mask: a header longer than the file", "importance --model {T} {D} --head-mask {TMP}/m.npy --output-dir {OUT}", 1, &["--head-mask", "m.npy", "truncated"], |c| { let mut b = npy(&ones(3, 4)); b[8] = 0xff; b[9] = 0x7f; write(&c.root.join("m.npy"), b); }),
        case("--head-mask: big-endian", "importance --model {T} {D} --head-mask {TMP}/m.npy --output-dir {OUT}", 1, &["--head-mask", "m.npy", "big-endian"], |c| { let b = npy(&ones(3, 4)); write(&c.root.join("m.npy"), replace_bytes(&b, b"<f4", b">f4")); }),
        case("--head-mask: not a .npy file", "importance --model {T} {D} --head-mask {TMP}/m.npy --output-dir {OUT}", 1, &["--head-mask", "m.npy", "not a .npy file"], |c| write(&c.root.join("m.npy"), "1 1 1 1\n")),
        case("--head-mask: complex numbers", "importance --model {T} {D} --head-mask {TMP}/m.npy --output-dir {OUT}", 1, &["--head-mask", "m.npy", "unsupported"], |c| { let b = npy(&ones(3, 4)); write(&c.root.join("m.npy"), replace_bytes(&b, b"<f4", b"<c4")); }),
        case("--head-mask: the wrong shape", "importance --model {T} {D} --head-mask {TMP}/m.npy --output-dir {OUT}", 1, &["--head-mask", "m.npy", "expected [3, 4]"], |c| write(&c.root.join("m.npy"), npy(&ones(2, 4)))),
        case("--head-mask: values other than 0 and 1", "importance --model {T} {D} --head-mask {TMP}/m.npy --output-dir {OUT}", 1, &["--head-mask", "m.npy", "0 (masked) or 1"], |c| write(&c.root.join("m.npy"), npy(&(ones(3, 4) * 0.5)))),
        case("--head-mask: NaN", "importance --model {T} {D} --head-mask {TMP}/m.npy --output-dir {OUT}", 1, &["--head-mask", "m.npy", "0 (masked) or 1"], |c| write(&c.root.join("m.npy"), npy(&(ones(3, 4) * f64::NAN)))),
        case("--head-mask of finetune: shorter than its header says", "finetune --model {T} --task mrpc --data-dir {MRPC} --train-subset 8 --eval-subset 8 --max-seq-length 32 --device cpu --head-mask {TMP}/m.npy --output-dir {TMP}/ft", 1, &["--head-mask", "m.npy", "truncated"], |c| { let b = npy(&ones(3, 4)); write(&c.root.join("m.npy"), &b[..b.len() - 4]); }),
        case("--head-mask: a file the run would replace", "importance --model {T} {D} --head-mask {OUT}/head_ranks.npy --output-dir {OUT}", 1, &["--head-mask", "head_ranks.npy", "--output-dir"], nothing),
        // Output folders.
        case("--output-dir: a file", "eval --model {T} {D} --output-dir {TMP}/file", 1, &["--output-dir", "not a folder"], |c| write(&c.root.join("file"), "x")),
        case("--output-dir: inside a file", "importance --model {T} {D} --output-dir {TMP}/file/run", 1, &["--output-dir", "not a folder"], |c| write(&c.root.join("file"), "x")),
        case("finetune --output-dir: the model folder it reads", "finetune --model {T} --task mrpc --data-dir {MRPC} --train-subset 8 --eval-subset 8 --max-seq-length 32 --device cpu --output-dir {T}", 1, &["--output-dir", "--model", "its own input"], nothing),
        case("finetune --output-dir: a link to the model folder", "finetune --model {T} --task mrpc --data-dir {MRPC} --train-subset 8 --eval-subset 8 --max-seq-length 32 --device cpu --output-dir {TMP}/link", 1, &["--output-dir", "its own input"], |c| std::os::unix::fs::symlink(&c.t, c.root.join("link")).unwrap()),
        with_env(case("finetune without --output-dir: the default model exists", "finetune --task mrpc --data-dir {MRPC} --train-subset 8 --device cpu", 1, &["all-MiniLM-L6-v2-mrpc", "--overwrite"], |c| { std::fs::create_dir_all(c.root.join("home/models")).unwrap(); copy_dir(&c.t, &c.root.join("home/models/all-MiniLM-L6-v2-mrpc")); }), "BERTOLOGY_HOME", "{TMP}/home"),
        case("prune --model: the pruned model the run would replace", "prune --model {OUT}/pruned_model {D} --output-dir {OUT}", 1, &["--model", "pruned_model", "--output-dir"], |c| copy_dir(&c.t, &c.out.join("pruned_model"))),
        with_env(case("disk full while writing prune.json", "prune --model {T} {D} --output-dir {OUT} --timing-runs 1 --quiet", 1, &["prune.json", "No space left"], nothing), "BERTOLOGY_TEST_FAIL_WRITE", "prune.json"),
        with_env(case("disk full while drawing a picture", "importance --model {T} {D} --output-dir {OUT}", 1, &["importance.png", "No space left"], nothing), "BERTOLOGY_TEST_FAIL_WRITE", "importance.png"),
        with_env(case("disk full while writing the model (finetune)", "finetune --model {T} --task mrpc --data-dir {MRPC} --train-subset 8 --eval-subset 8 --max-seq-length 32 --device cpu --quiet --output-dir {OUT}", 1, &["model.safetensors", "No space left"], nothing), "BERTOLOGY_TEST_FAIL_WRITE", "model.safetensors"),
        with_env(case("failure while moving outputs into place (eval)", "eval --model {T} {D} --output-dir {OUT}", 1, &["(commit)", "No space left"], nothing), "BERTOLOGY_TEST_FAIL_WRITE", "(commit)"),
        // Prune settings.
        case("--min-heads-per-layer above the heads per layer", "prune --model {T} {D} --min-heads-per-layer 5 --output-dir {OUT}", 1, &["--min-heads-per-layer 5", "only 4 heads"], nothing),
        case("--min-heads-per-layer equal to the heads per layer", "prune --model {T} {D} --min-heads-per-layer 4 --output-dir {OUT}", 1, &["--min-heads-per-layer 4", "no head to mask"], nothing),
        case("--target-heads below what --min-heads-per-layer keeps", "prune --model {T} {D} --target-heads 0.1 --min-heads-per-layer 1 --output-dir {OUT}", 1, &["--target-heads 0.1", "--min-heads-per-layer 1"], nothing),
        case("--masking-threshold 1.5", "prune --model {T} {D} --masking-threshold 1.5 --output-dir {OUT}", 1, &["--masking-threshold"], nothing),
        case("--target-heads 2", "prune --model {T} {D} --target-heads 2 --output-dir {OUT}", 1, &["--target-heads"], nothing),
        case("--metric unknown for the task", "prune --model {T} {D} --metric pearson --output-dir {OUT}", 1, &["pearson"], nothing),
        // Feed-forward neurons (issue 26).
        case("--neuron-mask: the wrong shape", "importance --model {T} {D} --neuron-mask {TMP}/m.npy --output-dir {OUT}", 1, &["--neuron-mask", "m.npy", "expected [3, 37]"], |c| write(&c.root.join("m.npy"), npy(&ones(3, 36)))),
        case("--target-neurons 1.5", "prune --model {T} {D} --target-neurons 1.5 --output-dir {OUT}", 1, &["--target-neurons 1.5", "[0, 1]"], nothing),
        case("--target-neurons with --units heads", "prune --model {T} {D} --units heads --target-neurons 0.5 --output-dir {OUT}", 1, &["--target-neurons", "--units neurons or both"], nothing),
        case("--units both with one budget", "prune --model {T} {D} --units both --target-neurons 0.5 --output-dir {OUT}", 1, &["--units both", "--target-heads"], nothing),
        case("--uniform-neurons: a budget a pruned layer cannot meet", "prune --model {T} {D} --uniform-neurons --target-neurons 0.5 --output-dir {OUT}", 1, &["--uniform-neurons", "layer 0 has only 7"], |c| {
            // Layer 0 already pruned to 7 of its 37 neurons.
            edit_json(&c.t.join("config.json"), |v| v["pruned_neurons"] = serde_json::json!({"0": (7..37).collect::<Vec<i64>>()}));
            edit_weights(&c.t, |w| for (k, t) in w.iter_mut() {
                if k.contains("layer.0.intermediate.dense") {
                    *t = t.narrow(0, 0, 7).contiguous();
                } else if k == "bert.encoder.layer.0.output.dense.weight" {
                    *t = t.narrow(1, 0, 7).contiguous();
                }
            });
        }),
        case("--timing-batch-sizes 0", "prune --model {T} {D} --timing-batch-sizes 0", 2, &["--timing-batch-sizes"], nothing),
        // Fine-tuning settings.
        case("--learning-rate 0", "finetune --model {T} --task mrpc --learning-rate 0 --output-dir {OUT}", 1, &["--learning-rate 0"], nothing),
        case("--warmup-ratio 1.5", "finetune --model {T} --task mrpc --warmup-ratio 1.5 --output-dir {OUT}", 1, &["--warmup-ratio 1.5", "[0, 1]"], nothing),
        case("--max-grad-norm -1", "finetune --model {T} --task mrpc --max-grad-norm=-1 --output-dir {OUT}", 1, &["--max-grad-norm"], nothing),
        case("finetune --task lm without --text", "finetune --model {T} --task lm --output-dir {OUT}", 1, &["--task lm", "--text"], nothing),
        case("finetune --task lm: a model without a language-model head", "finetune --model {T} --task lm --text {TMP}/t.txt --block-size 8 --output-dir {OUT}", 1, &["--task lm", "no language-model head"], |c| write(&c.root.join("t.txt"), "Amrozi accused his brother of deliberately distorting his evidence.")),
        case("finetune --task lm: an empty --dev-text file", "finetune --model {TMP}/gpt2 --task lm --text {TMP}/t.txt --dev-text {TMP}/empty.txt --block-size 4 --output-dir {OUT}", 1, &["--dev-text", "empty.txt", "empty file"], |c| { copy_dir(&fixture("tiny-gpt2"), &c.root.join("gpt2")); write(&c.root.join("t.txt"), "Amrozi accused his brother of deliberately distorting his evidence."); write(&c.root.join("empty.txt"), "\n"); }),
        case("config.json: a GPT-2 classifier's pad_token_id outside the vocabulary", "eval --model {TMP}/gpt2cls {D} --output-dir {OUT}", 1, &["config.json", "pad_token_id 50256", "outside the vocabulary"], |c| { copy_dir(&fixture("tiny-gpt2"), &c.root.join("gpt2cls")); edit_json(&c.root.join("gpt2cls/config.json"), |v| { v["architectures"] = serde_json::json!(["GPT2ForSequenceClassification"]); v["num_labels"] = 2.into(); v["pad_token_id"] = 50256.into(); }); }),
        case("finetune --dev-text with a GLUE task", "finetune --model {T} --task mrpc --dev-text {TMP}/t.txt --output-dir {OUT}", 1, &["--dev-text", "--task lm or mlm"], |c| write(&c.root.join("t.txt"), "Some text.")),
        // Reports.
        case("eval --task lm: token-id lines of one id (nothing to predict)", "eval --model {TMP}/gpt2 --task lm --token-ids {TMP}/ids.txt --device cpu --output-dir {OUT}", 1, &["--token-ids", "ids.txt", "no token to predict"], |c| { copy_dir(&fixture("tiny-gpt2"), &c.root.join("gpt2")); write(&c.root.join("ids.txt"), "5\n17\n"); }),
        case("finetune --task lm: a --dev-token-ids file of one-id lines", "finetune --model {TMP}/gpt2 --task lm --token-ids {TMP}/train.txt --dev-token-ids {TMP}/ids.txt --device cpu --output-dir {TMP}/ft", 1, &["--dev-token-ids", "ids.txt", "no token to predict"], |c| { copy_dir(&fixture("tiny-gpt2"), &c.root.join("gpt2")); write(&c.root.join("train.txt"), "1 2 3 4\n5 6 7 8\n"); write(&c.root.join("ids.txt"), "5\n"); }),
        case("config.json: a field of the wrong type", "hidden-states --model {T} --text hi --device cpu --output-dir {TMP}/hs", 1, &["config.json", "num_attention_heads", "expected"], |c| edit_json(&c.t.join("config.json"), |v| v["num_attention_heads"] = "4".into())),
        case("model.safetensors: a NaN weight (hidden-states)", "hidden-states --model {T} --text hi --device cpu --output-dir {TMP}/hs", 1, &["weight", "NaN"], |c| edit_weights(&c.t, |w| { for (k, t) in w.iter_mut() { if k.ends_with("embeddings.LayerNorm.weight") { let _ = t.fill_(f64::NAN); } } })),
        case("model.safetensors: a NaN weight (attention on a split)", "attention --model {T} {D} --output-dir {TMP}/a", 1, &["weight", "NaN"], |c| edit_weights(&c.t, |w| { for (k, t) in w.iter_mut() { if k.ends_with("embeddings.LayerNorm.weight") { let _ = t.fill_(f64::NAN); } } })),
        case("attention --text with --example", "attention --model {T} --text hi --example 3 --output-dir {TMP}/a", 2, &["--text", "--example"], nothing),
        case("hidden-states --text with --data-subset", "hidden-states --model {T} --text hi --data-subset 3 --output-dir {TMP}/h", 2, &["--text", "--data-subset"], nothing),
        case("hidden-states --task lm (no split to read)", "hidden-states --model {T} --task lm --device cpu --output-dir {TMP}/h", 1, &["--task lm", "--text"], nothing),
        case("attention --output-dir: an importance run's folder", "attention --model {T} {D} --output-dir {OUT}", 1, &["--output-dir", "importance or prune run", "report.md"], nothing),
        with_env(case("disk full while drawing an attention picture", "attention --model {T} {D} --output-dir {TMP}/att", 1, &["attention_self.png", "No space left"], nothing), "BERTOLOGY_TEST_FAIL_WRITE", "attention_self.png"),
        with_env(case("disk full while writing hidden_states.json", "hidden-states --model {T} --text hi --device cpu --output-dir {TMP}/hs", 1, &["hidden_states.json", "No space left"], nothing), "BERTOLOGY_TEST_FAIL_WRITE", "hidden_states.json"),
        case("attention: an empty text of a split through a tokenizer without special tokens", "attention --model {TMP}/gpt2 --task mrpc --data-dir {TMP}/data --max-seq-length 16 --device cpu --output-dir {TMP}/att", 1, &["gpt2", "example 1 of the dev data has no tokens"], |c| { copy_dir(&fixture("tiny-gpt2"), &c.root.join("gpt2")); bad_dev(c, |t| { let mut lines: Vec<String> = t.lines().take(3).map(str::to_string).collect(); let f: Vec<&str> = lines[2].split('\t').collect(); lines[2] = format!("{}\t{}\t{}\t\t", f[0], f[1], f[2]); lines.join("\n").into_bytes() }); }),
        case("--data-file: a text column given as --label-column", "eval --model {T} --data-file {TMP}/d.csv --label-column text2 --max-seq-length 32 --device cpu --output-dir {OUT}", 1, &["d.csv", "needs 10 outputs", "and 4 more", "T has 2"], |c| write(&c.root.join("d.csv"), (0..10).fold("text,text2\n".to_string(), |s, i| format!("{s}Sentence {i}.,Second sentence {i} which runs well past forty characters.\n")))),
        case("report: a folder that does not exist", "report {TMP}/norun", 1, &["norun", "no such folder"], nothing),
        case("report: a folder without a run", "report {TMP}/empty", 1, &["empty", "no prune.json or importance.json"], |c| std::fs::create_dir_all(c.root.join("empty")).unwrap()),
        case("report: an array shorter than its header says", "report {OUT}", 1, &["head_importance.npy", "truncated"], |c| { old_style_run(c, &ones(3, 4), None); let p = c.out.join("head_importance.npy"); let b = std::fs::read(&p).unwrap(); write(&p, &b[..b.len() - 8]); }),
        case("report: an array with its header only", "report {OUT}", 1, &["head_importance.npy", "truncated"], |c| { old_style_run(c, &ones(3, 4), None); let p = c.out.join("head_importance.npy"); let b = std::fs::read(&p).unwrap(); write(&p, &b[..b.len() - 48]); }),
        case("report: NaN importance", "report {OUT}", 1, &["head_importance.npy", "non-finite"], |c| old_style_run(c, &(ones(3, 4) * f64::NAN), None)),
        case("report: arrays of different runs (shapes differ)", "report {OUT}", 1, &["head_ranks.npy", "different runs"], |c| old_style_run(c, &ones(3, 4), Some(&Tensor::zeros([2, 4], (Kind::Int64, tch::Device::Cpu))))),
        case("report: an array changed since the run", "report {OUT}", 1, &["head_importance.npy", "not the file this run wrote"], |c| write(&c.out.join("head_importance.npy"), npy(&ones(3, 4)))),
        case("report: an array another run left", "report {OUT}", 1, &["attn_entropy.npy", "another run"], |c| write(&c.out.join("attn_entropy.npy"), npy(&ones(3, 4)))),
        case("report: a summary field of the wrong type", "report {OUT}", 1, &["importance.json", "\"examples\"", "a string"], |c| edit_json(&c.out.join("importance.json"), |v| v["examples"] = "16".into())),
        case("report: prune.json with a timing field of the wrong type", "report {OUT}", 1, &["prune.json", "timing[0].speedup"], |c| write(&c.out.join("prune.json"), r#"{"task":"mrpc","timing":[{"examples_per_second_before":1,"examples_per_second_after":2,"speedup":"fast"}]}"#)),
        case("report: a summary that is not JSON", "report {OUT}", 1, &["importance.json", "malformed JSON"], |c| write(&c.out.join("importance.json"), "{")),
        case("report: a masking curve with a word for a score", "report {OUT}", 1, &["masking_curve.csv", "line 2", "score"], |c| { write(&c.out.join("prune.json"), r#"{"task":"mrpc","metric":"acc","threshold":0.9,"target_heads":null}"#); for f in ["head_importance.npy", "head_ranks.npy", "importance.json"] { let _ = std::fs::remove_file(c.out.join(f)); } write(&c.out.join("masking_curve.csv"), "step,heads_kept,fraction_kept,score,importance_reestimated,accepted\n0,12,1,abc,true,true\n"); }),
        case("report --compare: a folder that does not exist", "report --compare {TMP}/norun {OUT} --output-dir {TMP}/cmp", 1, &["--compare", "norun"], nothing),
        // Issue 28: size fields of every family checked against the weights before anything is allocated.
        case("GPT-2 config.json: n_positions of 10^12", "inspect --device cpu --model {TMP}/m", 1, &["config.json", "n_positions is 1000000000000", "wpe.weight"], |c| fam(c, "tiny-gpt2", |v| v["n_positions"] = 1_000_000_000_000i64.into())),
        case("GPT-2 config.json: n_inner of 10^12", "inspect --device cpu --model {TMP}/m", 1, &["config.json", "n_inner is 1000000000000", "c_fc.weight"], |c| fam(c, "tiny-gpt2", |v| v["n_inner"] = 1_000_000_000_000i64.into())),
        case("GPT-2 config.json: n_embd of 2^40", "inspect --device cpu --model {TMP}/m", 1, &["config.json", "n_embd is 1099511627776", "wte.weight"], |c| fam(c, "tiny-gpt2", |v| v["n_embd"] = (1i64 << 40).into())),
        case("GPT-2 config.json: n_layer smaller than the checkpoint", "inspect --device cpu --model {TMP}/m", 1, &["config.json", "n_layer is 1", "3 layers"], |c| fam(c, "tiny-gpt2", |v| v["n_layer"] = 1.into())),
        case("GPT-2 config.json: n_layer larger than the checkpoint", "inspect --device cpu --model {TMP}/m", 1, &["config.json", "n_layer is 7", "3 layers"], |c| fam(c, "tiny-gpt2", |v| v["n_layer"] = 7.into())),
        case("GPT-2 config.json: n_layer left out (default 12)", "inspect --device cpu --model {TMP}/m", 1, &["config.json", "n_layer is 12 (the default", "3 layers"], |c| fam(c, "tiny-gpt2", |v| { v.as_object_mut().unwrap().remove("n_layer"); })),
        case("GPT-2 config.json: vocab_size disagrees with the weights", "inspect --device cpu --model {TMP}/m", 1, &["config.json", "vocab_size is 301", "wte.weight"], |c| fam(c, "tiny-gpt2", |v| v["vocab_size"] = 301.into())),
        case("GPT-2 config.json: n_head of 2^40", "inspect --device cpu --model {TMP}/m", 1, &["config.json", "n_head is 1099511627776", "larger than any dimension"], |c| fam(c, "tiny-gpt2", |v| v["n_head"] = (1i64 << 40).into())),
        case("GPT-2 config.json: n_ctx of 10^12", "inspect --device cpu --model {TMP}/m", 1, &["config.json", "n_ctx is 1000000000000"], |c| fam(c, "tiny-gpt2", |v| v["n_ctx"] = 1_000_000_000_000i64.into())),
        case("GPT-2 config.json: n_positions 0", "inspect --device cpu --model {TMP}/m", 1, &["config.json", "n_positions must be a positive integer"], |c| fam(c, "tiny-gpt2", |v| v["n_positions"] = 0.into())),
        case("GPT-2 config.json: n_embd negative", "inspect --device cpu --model {TMP}/m", 1, &["config.json", "n_embd must be a positive integer"], |c| fam(c, "tiny-gpt2", |v| v["n_embd"] = (-16).into())),
        case("GPT-2 config.json: n_inner smaller than the weights", "inspect --device cpu --model {TMP}/m", 1, &["config.json", "n_inner is 8", "[16, 24]"], |c| fam(c, "tiny-gpt2", |v| v["n_inner"] = 8.into())),
        case("GPT-2 config.json: layer_norm_epsilon 0 (NaN from the first layer)", "inspect --device cpu --model {TMP}/m", 1, &["config.json", "layer_norm_epsilon must be a positive number"], |c| fam(c, "tiny-gpt2", |v| v["layer_norm_epsilon"] = 0.into())),
        case("GPT-2 config.json: layer_norm_epsilon negative", "inspect --device cpu --model {TMP}/m", 1, &["config.json", "layer_norm_epsilon"], |c| fam(c, "tiny-gpt2", |v| v["layer_norm_epsilon"] = (-1.0).into())),
        case("GPT-2 config.json: resid_pdrop above 1", "inspect --device cpu --model {TMP}/m", 1, &["config.json", "resid_pdrop must be a probability"], |c| fam(c, "tiny-gpt2", |v| v["resid_pdrop"] = 2.into())),
        case("GPT-2 config.json: a negative initializer_range", "inspect --device cpu --model {TMP}/m", 1, &["config.json", "initializer_range"], |c| fam(c, "tiny-gpt2", |v| v["initializer_range"] = (-0.02).into())),
        case("DistilBERT config.json: pad_token_id negative", "inspect --device cpu --model {TMP}/m", 1, &["config.json", "pad_token_id -5 is outside the vocabulary"], |c| fam(c, "families/distilbert", |v| v["pad_token_id"] = (-5).into())),
        case("OpenAI GPT config.json: n_positions of 10^12", "inspect --device cpu --model {TMP}/m", 1, &["config.json", "n_positions is 1000000000000", "positions_embed.weight"], |c| fam(c, "tiny-gpt", |v| v["n_positions"] = 1_000_000_000_000i64.into())),
        case("OpenAI GPT config.json: n_embd of 2^40", "inspect --device cpu --model {TMP}/m", 1, &["config.json", "n_embd is 1099511627776"], |c| fam(c, "tiny-gpt", |v| v["n_embd"] = (1i64 << 40).into())),
        case("OpenAI GPT config.json: n_layer smaller than the checkpoint", "inspect --device cpu --model {TMP}/m", 1, &["config.json", "n_layer is 1", "layers"], |c| fam(c, "tiny-gpt", |v| v["n_layer"] = 1.into())),
        case("OpenAI GPT config.json: vocab_size disagrees with the weights", "inspect --device cpu --model {TMP}/m", 1, &["config.json", "vocab_size is 7", "tokens_embed.weight"], |c| fam(c, "tiny-gpt", |v| v["vocab_size"] = 7.into())),
        case("DistilBERT config.json: dim disagrees with the weights", "inspect --device cpu --model {TMP}/m", 1, &["config.json", "dim is 64", "word_embeddings.weight"], |c| fam(c, "families/distilbert", |v| { v["dim"] = 64.into(); })),
        case("DistilBERT config.json: hidden_dim of 10^12", "inspect --device cpu --model {TMP}/m", 1, &["config.json", "hidden_dim is 1000000000000", "ffn.lin1.weight"], |c| fam(c, "families/distilbert", |v| v["hidden_dim"] = 1_000_000_000_000i64.into())),
        case("DistilBERT config.json: n_layers smaller than the checkpoint", "inspect --device cpu --model {TMP}/m", 1, &["config.json", "n_layers is 2", "3 layers"], |c| fam(c, "families/distilbert", |v| v["n_layers"] = 2.into())),
        case("DistilBERT config.json: max_position_embeddings disagrees with the weights", "inspect --device cpu --model {TMP}/m", 1, &["config.json", "max_position_embeddings is 4096"], |c| fam(c, "families/distilbert", |v| v["max_position_embeddings"] = 4096.into())),
        case("ELECTRA config.json: embedding_size disagrees with the weights", "inspect --device cpu --model {TMP}/m", 1, &["config.json", "embedding_size is 32", "word_embeddings.weight"], |c| fam(c, "families/electra", |v| v["embedding_size"] = 32.into())),
        case("ELECTRA config.json: intermediate_size of 10^12", "inspect --device cpu --model {TMP}/m", 1, &["config.json", "intermediate_size is 1000000000000"], |c| fam(c, "families/electra", |v| v["intermediate_size"] = 1_000_000_000_000i64.into())),
        case("ELECTRA config.json: num_hidden_layers smaller than the checkpoint", "inspect --device cpu --model {TMP}/m", 1, &["config.json", "num_hidden_layers is 1"], |c| fam(c, "families/electra", |v| v["num_hidden_layers"] = 1.into())),
        case("RoBERTa config.json: pad_token_id beyond the vocabulary", "inspect --device cpu --model {TMP}/m", 1, &["config.json", "pad_token_id 100000 is outside the vocabulary"], |c| fam(c, "families/roberta", |v| v["pad_token_id"] = 100000.into())),
        case("RoBERTa config.json: pad_token_id that leaves no position", "inspect --device cpu --model {TMP}/m", 1, &["pad_token_id 60", "max_position_embeddings"], roberta_without_positions),
        case("RoBERTa config.json: hidden_size of 2^40", "inspect --device cpu --model {TMP}/m", 1, &["config.json", "hidden_size is 1099511627776"], |c| fam(c, "families/roberta", |v| v["hidden_size"] = (1i64 << 40).into())),
        case("config.json: intermediate_size disagrees with the weights", "eval --model {T} {D} --output-dir {OUT}", 1, &["config.json", "intermediate_size is 3000", "intermediate.dense.weight"], |c| edit_json(&c.t.join("config.json"), |v| v["intermediate_size"] = 3000.into())),
        case("config.json: hidden_size larger than the weights", "eval --model {T} {D} --output-dir {OUT}", 1, &["config.json", "hidden_size is 64"], |c| edit_json(&c.t.join("config.json"), |v| { v["hidden_size"] = 64.into(); })),
        case("config.json: type_vocab_size disagrees with the weights", "eval --model {T} {D} --output-dir {OUT}", 1, &["config.json", "type_vocab_size is 5", "token_type_embeddings.weight"], |c| edit_json(&c.t.join("config.json"), |v| v["type_vocab_size"] = 5.into())),
        case("config.json: pad_token_id beyond the vocabulary (BERT)", "eval --model {T} {D} --output-dir {OUT}", 1, &["config.json", "pad_token_id 64 is outside the vocabulary 0..64"], |c| edit_json(&c.t.join("config.json"), |v| v["pad_token_id"] = 64.into())),
        case("config.json: layer_norm_eps 0", "hidden-states --model {T} --text hi --device cpu --output-dir {TMP}/hs", 1, &["config.json", "layer_norm_eps must be a positive number"], |c| edit_json(&c.t.join("config.json"), |v| v["layer_norm_eps"] = 0.into())),
        case("config.json: layer_norm_eps negative (attention)", "attention --model {T} {D} --output-dir {TMP}/a", 1, &["config.json", "layer_norm_eps"], |c| edit_json(&c.t.join("config.json"), |v| v["layer_norm_eps"] = (-1e-3).into())),
        // Issue 28: sharded indexes.
        case("a sharded index with an empty weight_map", "eval --model {T} {D} --output-dir {OUT}", 1, &["model.safetensors.index.json", "weight_map is empty"], |c| { std::fs::remove_file(c.t.join("model.safetensors")).unwrap(); write(&c.t.join("model.safetensors.index.json"), r#"{"weight_map":{}}"#); }),
        case("a sharded index naming a shard outside the folder", "eval --model {T} {D} --output-dir {OUT}", 1, &["model.safetensors.index.json", "../model.safetensors", "not a file name inside the model folder"], |c| { std::fs::rename(c.t.join("model.safetensors"), c.root.join("model.safetensors")).unwrap(); write(&c.t.join("model.safetensors.index.json"), r#"{"weight_map":{"a":"../model.safetensors"}}"#); }),
        case("a sharded index naming an absolute shard", "eval --model {T} {D} --output-dir {OUT}", 1, &["model.safetensors.index.json", "not a file name inside the model folder"], |c| { std::fs::remove_file(c.t.join("model.safetensors")).unwrap(); write(&c.t.join("model.safetensors.index.json"), r#"{"weight_map":{"a":"/etc/hostname"}}"#); }),
        // Issue 28: class counts the data cannot support.
        case("--data-file: an integer label of 100000 on a model without a classifier", "eval --model {TMP}/base --data-file {TMP}/d.csv --max-seq-length 32 --device cpu --output-dir {OUT}", 1, &["d.csv", "row 3", "label 100000", "100001 classes"], |c| { headless(c); labels_csv(c, &["0", "1", "100000", "1"]); }),
        case("--data-file: an integer label of 2^40 on a model without a classifier", "eval --model {TMP}/base --data-file {TMP}/d.csv --max-seq-length 32 --device cpu --output-dir {OUT}", 1, &["d.csv", "row 2", "label 1099511627776"], |c| { headless(c); labels_csv(c, &["0", "1099511627776", "1"]); }),
        case("--data-file: a negative integer label", "eval --model {TMP}/base --data-file {TMP}/d.csv --max-seq-length 32 --device cpu --output-dir {OUT}", 1, &["d.csv", "row 2", "label -3 is negative"], |c| { headless(c); labels_csv(c, &["0", "-3", "1"]); }),
        case("finetune --data-file: an integer label of 100000", "finetune --model {TMP}/base --data-file {TMP}/d.csv --max-seq-length 32 --device cpu --output-dir {TMP}/ft", 1, &["d.csv", "label 100000"], |c| { headless(c); labels_csv(c, &["0", "1", "100000", "1", "0", "1"]); }),
        // Issue 28: regression labels that are not finite.
        case("--data-file: a NaN score", "eval --model {TMP}/reg --data-file {TMP}/d.csv --max-seq-length 32 --device cpu --output-dir {OUT}", 1, &["d.csv", "row 2", "label NaN", "not a finite number"], |c| { regression_model(c); labels_csv(c, &["0.5", "nan", "1.5"]); }),
        case("--data-file: an infinite score", "eval --model {TMP}/reg --data-file {TMP}/d.csv --max-seq-length 32 --device cpu --output-dir {OUT}", 1, &["d.csv", "row 3", "not a finite number"], |c| { regression_model(c); labels_csv(c, &["0.5", "1.0", "inf"]); }),
        case("--data-file: a score beyond float32", "eval --model {TMP}/reg --data-file {TMP}/d.csv --max-seq-length 32 --device cpu --output-dir {OUT}", 1, &["d.csv", "row 1", "not a finite number"], |c| { regression_model(c); labels_csv(c, &["1e300", "1.0", "2.0"]); }),
        case("finetune --data-file: a NaN training score", "finetune --model {TMP}/reg --data-file {TMP}/d.csv --max-seq-length 32 --device cpu --output-dir {TMP}/ft", 1, &["d.csv", "row 4", "not a finite number"], |c| { regression_model(c); labels_csv(c, &["0.5", "1.0", "2.0", "NaN", "1.0", "3.0"]); }),
        case("finetune --dev-file: a NaN dev score", "finetune --model {TMP}/reg --data-file {TMP}/d.csv --dev-file {TMP}/dev.csv --max-seq-length 32 --device cpu --output-dir {TMP}/ft", 1, &["dev.csv", "row 2", "not a finite number"], |c| { regression_model(c); labels_csv(c, &["0.5", "1.0", "2.0"]); write(&c.root.join("dev.csv"), "text,label\nA.,1.0\nB.,-inf\n"); }),
        // Issue 28: flags that do not apply.
        case("--text-column without --data-file", "eval --model {T} {D} --text-column sentence --output-dir {OUT}", 2, &["--text-column", "--data-file"], nothing),
        case("--text-pair-column without --data-file", "importance --model {T} {D} --text-pair-column s2 --output-dir {OUT}", 2, &["--text-pair-column", "--data-file"], nothing),
        case("--label-column without --data-file", "prune --model {T} {D} --label-column y --output-dir {OUT}", 2, &["--label-column", "--data-file"], nothing),
        case("--block-size with a GLUE task", "eval --model {T} {D} --block-size 64 --output-dir {OUT}", 2, &["--block-size", "--task mrpc"], nothing),
        case("--block-size with --data-file", "eval --model {T} --data-file {TMP}/d.csv --block-size 64 --output-dir {OUT}", 2, &["--block-size", "--data-file"], |c| labels_csv(c, &["0", "1"])),
        case("finetune --block-size with a GLUE task", "finetune --model {T} --task mrpc --block-size 64 --output-dir {TMP}/ft", 2, &["--block-size", "--task mrpc"], nothing),
        case("--split with --task lm", "eval --model {TMP}/gpt2 --task lm --text {TMP}/t.txt --split train --output-dir {OUT}", 2, &["--split", "--task lm"], |c| copy_dir(&fixture("tiny-gpt2"), &c.root.join("gpt2"))),
        case("--split with --task mlm (importance)", "importance --model {T} --task mlm --text {TMP}/t.txt --split dev --output-dir {OUT}", 2, &["--split", "--task mlm"], nothing),
        case("--pad-to-max-length with --task lm", "prune --model {TMP}/gpt2 --task lm --text {TMP}/t.txt --pad-to-max-length --output-dir {OUT}", 2, &["--pad-to-max-length", "--task lm"], nothing),
        // Issue 28: no command writes into the model folder it reads.
        case("eval --output-dir: the model folder", "eval --model {T} {D} --output-dir {T}", 1, &["--output-dir", "is the model folder", "no command writes into its input model"], nothing),
        case("importance --output-dir: the model folder", "importance --model {T} {D} --output-dir {T}", 1, &["--output-dir", "is the model folder"], nothing),
        case("attention --output-dir: the model folder", "attention --model {T} {D} --output-dir {T}", 1, &["--output-dir", "is the model folder"], nothing),
        case("attention --text --output-dir: the model folder", "attention --model {T} --text hi --output-dir {T}", 1, &["--output-dir", "is the model folder"], nothing),
        case("hidden-states --output-dir: the model folder", "hidden-states --model {T} --text hi --device cpu --output-dir {T}", 1, &["--output-dir", "is the model folder"], nothing),
        case("hidden-states --output-dir: a folder inside the model folder", "hidden-states --model {T} --text hi --device cpu --output-dir {T}/hs", 1, &["--output-dir", "lies inside the model folder"], nothing),
        case("eval --output-dir: a link to the model folder", "eval --model {T} {D} --output-dir {TMP}/link", 1, &["--output-dir", "is the model folder"], |c| std::os::unix::fs::symlink(&c.t, c.root.join("link")).unwrap()),
        // A panic that slipped through.
        with_env(case("a panic (simulated by BERTOLOGY_TEST_PANIC)", "inspect --model {T}", 70, &["internal error", "please report"], nothing), "BERTOLOGY_TEST_PANIC", "1"),
    ];
    // The hub cache is the case's own and offline, so "not in the cache" never depends on the
    // machine or the network.
    for c in &mut v {
        c.env.push(("HF_HUB_CACHE", "{TMP}/hub".into()));
        c.env.push(("HF_HUB_OFFLINE", "1".into()));
    }
    v
}

/// A copy of a fixture model as `m`, its config edited.
fn fam(c: &Ctx, fixture_name: &str, edit: impl Fn(&mut serde_json::Value)) {
    let m = c.root.join("m");
    copy_dir(&fixture(fixture_name), &m);
    edit_json(&m.join("config.json"), edit);
}

/// The RoBERTa fixture as `m` with its position table cut to 61 rows and pad_token_id 60, which
/// leaves no position for a token.
fn roberta_without_positions(c: &Ctx) {
    fam(c, "families/roberta", |v| {
        v["pad_token_id"] = 60.into();
        v["max_position_embeddings"] = 61.into();
    });
    {
        let m = c.root.join("m");
        edit_weights(&m, |w| {
            for (k, t) in w.iter_mut() {
                if k.ends_with("position_embeddings.weight") {
                    *t = t.narrow(0, 0, 61).contiguous();
                }
            }
        });
    }
}

/// T without its classifier and label names, as `base`: a model whose class count the data sets.
fn headless(c: &Ctx) {
    let base = c.root.join("base");
    copy_dir(&c.t, &base);
    edit_weights(&base, |w| w.retain(|(k, _)| !k.starts_with("classifier.")));
    edit_json(&base.join("config.json"), |v| {
        let o = v.as_object_mut().unwrap();
        o.remove("id2label");
        o.remove("label2id");
        o.remove("num_labels");
    });
}

/// T with a one-output classifier (a regression), as `reg`.
fn regression_model(c: &Ctx) {
    let reg = c.root.join("reg");
    copy_dir(&c.t, &reg);
    edit_weights(&reg, |w| {
        for (k, t) in w.iter_mut() {
            if k.starts_with("classifier.") {
                *t = t.narrow(0, 0, 1).contiguous();
            }
        }
    });
    edit_json(&reg.join("config.json"), |v| {
        v["id2label"] = serde_json::json!({"0": "LABEL_0"});
        v["label2id"] = serde_json::json!({"LABEL_0": 0});
        v["num_labels"] = 1.into();
        v["problem_type"] = "regression".into();
    });
}

/// `d.csv`: one short text per label.
fn labels_csv(c: &Ctx, labels: &[&str]) {
    let rows: String = labels
        .iter()
        .enumerate()
        .map(|(i, l)| format!("Sentence number {i}.,{l}\n"))
        .collect();
    write(&c.root.join("d.csv"), format!("text,label\n{rows}"));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.path().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// An earlier importance run (without entropy) of T: the output folder every case starts from.
fn golden_run(tmp: &Path) -> (PathBuf, PathBuf) {
    let t = tiny_classifier(tmp);
    let golden = tmp.join("golden");
    let args = format!(
        "importance --model {} {} --no-entropy --output-dir {} --quiet",
        t.display(),
        MRPC_ARGS.replace("{MRPC}", &mrpc_dir().display().to_string()),
        golden.display()
    );
    let out = bertology(&args.split_whitespace().collect::<Vec<_>>());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (t, golden)
}

/// Runs one case; returns the table row (input, message, exit code) or what went wrong.
fn run_case(
    c: &Case,
    dir: &Path,
    t: &Path,
    golden: &Path,
) -> Result<(String, String, i32), String> {
    let ctx = Ctx {
        root: dir.to_path_buf(),
        t: dir.join("T"),
        out: dir.join("out"),
    };
    copy_dir(t, &ctx.t);
    copy_dir(golden, &ctx.out);
    (c.prep)(&ctx);
    let fill = |s: &str| {
        s.replace("{T}", &ctx.t.display().to_string())
            .replace("{OUT}", &ctx.out.display().to_string())
            .replace("{TMP}", &dir.display().to_string())
            .replace("{MRPC}", &mrpc_dir().display().to_string())
    };
    let args: Vec<String> = c.args.iter().map(|a| fill(a)).collect();
    let before = snapshot(dir);
    let mut cmd = bertology_command(&args.iter().map(String::as_str).collect::<Vec<_>>());
    cmd.current_dir(dir)
        .env_remove("BERTOLOGY_HOME")
        .env_remove("GLUE_DIR");
    for (k, v) in &c.env {
        cmd.env(k, fill(v));
    }
    let out = cmd.output().unwrap();
    let after = snapshot(dir);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let mut problems = Vec::new();
    let code = out.status.code().unwrap_or(-1);
    if code != c.code {
        problems.push(format!("exit code {code}, expected {}", c.code));
    }
    if stderr.trim_end().lines().count() != 1 {
        problems.push("stderr is not one line".to_string());
    }
    for n in &c.needles {
        if !stderr.contains(&fill(n)) {
            problems.push(format!("stderr lacks {:?}", fill(n)));
        }
    }
    if !out.stdout.is_empty() {
        problems.push(format!(
            "stdout not empty: {}",
            String::from_utf8_lossy(&out.stdout)
        ));
    }
    let diff = snapshot_diff(&before, &after);
    if !diff.is_empty() {
        problems.push(format!("the folder changed: {diff:?}"));
    }
    if !problems.is_empty() {
        return Err(format!(
            "{}: {}\n  stderr: {stderr}",
            c.input,
            problems.join("; ")
        ));
    }
    // The message as a user would see it: the case's folder as the current one.
    let mut msg = stderr
        .trim_end()
        .replace(&format!("{}/", dir.display()), "");
    msg = msg.replace(&mrpc_dir().display().to_string(), "data/glue/MRPC");
    if let Some(i) = msg.find("bertology-staging-") {
        let digits = msg[i + 18..]
            .chars()
            .take_while(char::is_ascii_digit)
            .count();
        msg.replace_range(i + 18..i + 18 + digits, "PID");
    }
    // A panic names its source line; the table keeps only the file.
    if let Some(end) = msg.find(", please report") {
        if let Some(colon) = msg[..end].rfind(':') {
            if msg[colon + 1..end].chars().all(|c| c.is_ascii_digit()) {
                msg.replace_range(colon + 1..end, "LINE");
            }
        }
    }
    Ok((c.input.to_string(), msg, code))
}

#[test]
fn bad_inputs_fail_cleanly_and_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (t, golden) = golden_run(tmp.path());
    let mut cases = cases();
    assert!(cases.len() >= 60, "only {} cases", cases.len());
    // BERTOLOGY_CASES=WORD runs only the cases whose input contains WORD (while debugging).
    let only = std::env::var("BERTOLOGY_CASES").ok();
    if let Some(w) = &only {
        cases.retain(|c| c.input.contains(w.as_str()));
    }
    let next = AtomicUsize::new(0);
    let results: Vec<std::sync::Mutex<Option<Outcome>>> =
        cases.iter().map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= cases.len() {
                    break;
                }
                let dir = tmp.path().join(format!("case{i:03}"));
                std::fs::create_dir(&dir).unwrap();
                *results[i].lock().unwrap() = Some(run_case(&cases[i], &dir, &t, &golden));
            });
        }
    });
    let results: Vec<_> = results
        .into_iter()
        .map(|m| m.into_inner().unwrap().unwrap())
        .collect();
    let failures: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        results.len(),
        failures
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    let rows: Vec<(String, String, i32)> = results.into_iter().map(Result::unwrap).collect();
    if only.is_none() {
        check_troubleshooting(&rows);
    }
}

/// docs/troubleshooting.md's table, generated from the cases.
fn check_troubleshooting(rows: &[(String, String, i32)]) {
    let mut md = String::from(
        "# Troubleshooting\n\n\
         What bertology says about bad input, generated from the robustness suite \
         (`tests/it/robustness.rs`; rewrite with `BERTOLOGY_WRITE_TROUBLESHOOTING=1 cargo test --release --test it robustness::`). \
         Every case exits with the code shown, prints one line on stderr and nothing on stdout, \
         and leaves its input and output folders exactly as they were.\n\n\
         Exit codes: 1 bad input or a failed run, 2 a bad command line, 70 an internal error \
         (a bug: please report it with the command line).\n\n\
         | input | message | exit code |\n| --- | --- | --- |\n",
    );
    for (input, msg, code) in rows {
        let cell = |s: &str| s.replace('|', "\\|").replace('`', "'");
        md += &format!("| {} | `{}` | {code} |\n", cell(input), cell(msg));
    }
    let path = root().join("docs/troubleshooting.md");
    if std::env::var_os("BERTOLOGY_WRITE_TROUBLESHOOTING").is_some() {
        std::fs::write(&path, md).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == md,
        "docs/troubleshooting.md does not match what the binary says; regenerate it with BERTOLOGY_WRITE_TROUBLESHOOTING=1 cargo test --release --test it robustness::"
    );
}

// ---- The defects of issue 18 whose fix is a result, not an error ----

fn mrpc_args(model: &Path, out: &Path) -> Vec<String> {
    let mut v: Vec<String> = MRPC_ARGS
        .replace("{MRPC}", &mrpc_dir().display().to_string())
        .split_whitespace()
        .map(str::to_string)
        .collect();
    v.extend([
        "--model".into(),
        model.display().to_string(),
        "--output-dir".into(),
        out.display().to_string(),
    ]);
    v
}

fn run(cmd: &str, base: &[String], extra: &[&str]) -> std::process::Output {
    let mut args = vec![cmd.to_string()];
    args.extend(base.iter().cloned());
    args.extend(extra.iter().map(|s| s.to_string()));
    bertology(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

fn read_npy(p: &Path) -> Tensor {
    bertology::npy::read(p).unwrap()
}

/// Item 13: the anchor estimator's batches are in file order whatever the padding, so at batch
/// size 1 padding to the maximum length or not gives the same importance.
#[test]
fn anchor_importance_does_not_depend_on_padding() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tiny_classifier(tmp.path());
    // MRPC pairs cut to 1 to 5 words: lengths differ, so sorting by length reorders them.
    let dev = std::fs::read_to_string(mrpc_dir().join("dev.tsv")).unwrap();
    let mut rows = vec![dev.lines().next().unwrap().to_string()];
    for (i, line) in dev.lines().skip(1).take(16).enumerate() {
        let mut f: Vec<String> = line.split('\t').map(str::to_string).collect();
        let cut = |s: &str, n: usize| s.split_whitespace().take(n).collect::<Vec<_>>().join(" ");
        f[3] = cut(&f[3], i % 5 + 1);
        f[4] = cut(&f[4], (i * 3) % 4 + 1);
        rows.push(f.join("\t"));
    }
    let data = tmp.path().join("short");
    write(&data.join("dev.tsv"), rows.join("\n") + "\n");
    let importance = |out: &Path, extra: &[&str]| {
        let mut args = vec![
            "importance",
            "--model",
            t.to_str().unwrap(),
            "--task",
            "mrpc",
            "--data-dir",
            data.to_str().unwrap(),
            "--max-seq-length",
            "40",
            "--device",
            "cpu",
            "--estimator",
            "anchor",
            "--batch-size",
            "1",
            "--no-global-norm",
            "--quiet",
            "--output-dir",
            out.to_str().unwrap(),
        ];
        args.extend(extra);
        ok_run(&bertology(&args));
        read_npy(&out.join("head_importance.npy"))
    };
    let x = importance(&tmp.path().join("a"), &[]);
    let y = importance(&tmp.path().join("b"), &["--pad-to-max-length"]);
    // (Sorted by length, the difference was 0.19 on a scale of 0.75.)
    let diff = max_abs_diff(&x, &y);
    let scale = x.abs().max().double_value(&[]);
    assert!(
        diff <= 1e-5 * scale,
        "anchor importance differs by {diff} (scale {scale})"
    );
}

fn ok_run(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Item 14: masked and pruned passes alternate, prune.json has each model's spread, and the
/// summary line claims a speed-up only when the ranges do not overlap.
#[test]
fn timing_reports_the_spread_and_claims_nothing_within_noise() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tiny_classifier(tmp.path());
    let out = tmp.path().join("p");
    let o = run(
        "prune",
        &mrpc_args(&t, &out),
        &["--target-heads", "0.5", "--timing-runs", "3"],
    );
    ok_run(&o);
    let stdout = String::from_utf8_lossy(&o.stdout).to_string();
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("prune.json")).unwrap()).unwrap();
    let t0 = &summary["timing"][0];
    assert_eq!(t0["runs"], 3);
    for side in ["seconds_before_spread", "seconds_after_spread"] {
        let (min, med, max) = (
            t0[side]["min"].as_f64().unwrap(),
            t0[side]["median"].as_f64().unwrap(),
            t0[side]["max"].as_f64().unwrap(),
        );
        assert!(min > 0.0 && min <= med && med <= max, "{side}: {t0}");
    }
    let verdict = t0["verdict"].as_str().unwrap();
    let line = stdout.lines().find(|l| l.starts_with("batch 32")).unwrap();
    assert!(
        line.contains("3 timed passes") && line.contains("range"),
        "{line}"
    );
    match verdict {
        "within_noise" => assert!(
            line.contains("within noise") && !line.contains(" x"),
            "{line}"
        ),
        "faster" => assert!(line.contains("faster"), "{line}"),
        "slower" => assert!(line.contains("slower"), "{line}"),
        other => panic!("verdict {other}"),
    }
    // The verdict follows from the ranges.
    let b = &t0["seconds_before_spread"];
    let a = &t0["seconds_after_spread"];
    let overlap = a["max"].as_f64() >= b["min"].as_f64() && a["min"].as_f64() <= b["max"].as_f64();
    assert_eq!(overlap, verdict == "within_noise", "{t0}");
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("verdict"), "{report}");
    // One pass each: no claim at all.
    let one = tmp.path().join("one");
    let o = run(
        "prune",
        &mrpc_args(&t, &one),
        &["--target-heads", "0.5", "--timing-runs", "1"],
    );
    ok_run(&o);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("too few to tell"), "{stdout}");
}

/// Item 10: without entropy there is no entropy file, picture or link.
#[test]
fn no_entropy_writes_no_entropy_file() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tiny_classifier(tmp.path());
    let out = tmp.path().join("i");
    ok_run(&run(
        "importance",
        &mrpc_args(&t, &out),
        &["--no-entropy", "--quiet"],
    ));
    assert!(out.join("head_importance.npy").is_file());
    for f in ["attn_entropy.npy", "entropy.png", "entropy.svg"] {
        assert!(!out.join(f).exists(), "{f} written");
    }
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(!report.contains("entropy.png"), "{report}");
    let with = tmp.path().join("e");
    ok_run(&run("importance", &mrpc_args(&t, &with), &["--quiet"]));
    let e = read_npy(&with.join("attn_entropy.npy"));
    assert!(e.abs().sum(Kind::Double).double_value(&[]) > 0.0);
}

/// Item 12: saved weights have the mode of the other files of the folder (the umask's).
#[test]
fn saved_weights_have_the_folders_mode() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let t = tiny_classifier(tmp.path());
    let out = tmp.path().join("p");
    ok_run(&run(
        "prune",
        &mrpc_args(&t, &out),
        &["--target-heads", "0.5", "--timing-runs", "1", "--quiet"],
    ));
    let ft = tmp.path().join("ft");
    ok_run(&bertology(&[
        "finetune",
        "--model",
        t.to_str().unwrap(),
        "--task",
        "mrpc",
        "--data-dir",
        mrpc_dir().to_str().unwrap(),
        "--train-subset",
        "8",
        "--eval-subset",
        "8",
        "--max-seq-length",
        "32",
        "--device",
        "cpu",
        "--quiet",
        "--output-dir",
        ft.to_str().unwrap(),
    ]));
    for dir in [out.join("pruned_model"), ft] {
        let mode = |f: &str| std::fs::metadata(dir.join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            mode("model.safetensors"),
            mode("config.json"),
            "{}",
            dir.display()
        );
    }
}

/// Item 6: a run into the folder of an earlier run replaces it as a whole: no file of the
/// earlier run is left to mix with the new one, and nothing stray is left next to it.
#[test]
fn a_run_into_an_earlier_runs_folder_replaces_it_without_mixing() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tiny_classifier(tmp.path());
    let out = tmp.path().join("run");
    ok_run(&run(
        "prune",
        &mrpc_args(&t, &out),
        &["--target-heads", "0.5", "--timing-runs", "1", "--quiet"],
    ));
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    assert!(out.join("pruned_model").is_dir() && !out.join("attn_entropy.npy").exists());
    ok_run(&run("importance", &mrpc_args(&t, &out), &["--quiet"]));
    let names: std::collections::BTreeSet<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    for gone in [
        "prune.json",
        "masking_curve.csv",
        "head_mask.npy",
        "pruned_model",
        "pruning_curve.png",
    ] {
        assert!(
            !names.contains(gone),
            "{gone} of the earlier run left: {names:?}"
        );
    }
    for kept in [
        "importance.json",
        "attn_entropy.npy",
        "report.md",
        "notes.txt",
    ] {
        assert!(names.contains(kept), "{kept} missing: {names:?}");
    }
    let siblings: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert!(
        siblings.iter().all(|n| !n.contains("bertology-")),
        "{siblings:?}"
    );
    let o = bertology(&["report", out.to_str().unwrap()]);
    ok_run(&o);
}

/// Item 7: finetune without --output-dir writes the default model only when there is none, or
/// with --overwrite; `prune --task mrpc` then uses it. (Building a missing default with
/// finetune's full defaults is the set-up's first step and takes minutes; it calls the same
/// code with --overwrite, since nothing usable is there.)
#[test]
fn default_model_is_not_replaced_without_overwrite() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    // The base model: T's encoder.
    let t = tiny_classifier(tmp.path());
    let base = home.join("models/all-MiniLM-L6-v2");
    copy_dir(&t, &base);
    edit_weights(&base, |w| w.retain(|(k, _)| !k.starts_with("classifier.")));
    edit_json(&base.join("config.json"), |v| {
        let o = v.as_object_mut().unwrap();
        o.remove("id2label");
        o.remove("label2id");
    });
    let glue = mrpc_dir().parent().unwrap().to_path_buf();
    let cmd = |args: &[&str]| {
        bertology_command(args)
            .current_dir(tmp.path())
            .env("BERTOLOGY_HOME", &home)
            .env("GLUE_DIR", &glue)
            .output()
            .unwrap()
    };
    let quick = [
        "finetune",
        "--task",
        "mrpc",
        "--device",
        "cpu",
        "--max-seq-length",
        "32",
        "--train-subset",
        "16",
        "--eval-subset",
        "8",
        "--epochs",
        "1",
        "--quiet",
    ];
    let default = home.join("models/all-MiniLM-L6-v2-mrpc");
    // No default yet: it is written there.
    ok_run(&cmd(&quick));
    assert!(default.join("model.safetensors").is_file());
    let before = snapshot(&default);
    let o = cmd(&quick);
    let e = one_line_error(&o);
    assert!(
        e.contains("all-MiniLM-L6-v2-mrpc") && e.contains("--overwrite"),
        "{e}"
    );
    assert!(snapshot_diff(&before, &snapshot(&default)).is_empty());
    // The other commands use it.
    let out = tmp.path().join("p");
    let o = cmd(&[
        "prune",
        "--task",
        "mrpc",
        "--device",
        "cpu",
        "--data-subset",
        "16",
        "--max-seq-length",
        "32",
        "--target-heads",
        "0.5",
        "--timing-runs",
        "1",
        "--quiet",
        "--output-dir",
        out.to_str().unwrap(),
    ]);
    ok_run(&o);
    let summary = std::fs::read_to_string(out.join("prune.json")).unwrap();
    assert!(summary.contains("all-MiniLM-L6-v2-mrpc"), "{summary}");
    let mut again = quick.to_vec();
    again.push("--overwrite");
    ok_run(&cmd(&again));
    assert!(!snapshot_diff(&before, &snapshot(&default)).is_empty());
}

/// Item 15: inputs that used to be refused or misread.
#[test]
fn hub_ref_with_newline_warmup_zero_and_interrupts() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tiny_classifier(tmp.path());
    // A hub cache whose refs/main ends in a newline.
    let hub = tmp.path().join("hub");
    let repo = hub.join("models--org--tiny");
    copy_dir(&t, &repo.join("snapshots/0123abcd"));
    write(&repo.join("refs/main"), "0123abcd\n");
    let o = bertology_command(&[
        "inspect", "--device", "cpu", "--model", "org/tiny", "--json",
    ])
    .env("HF_HUB_CACHE", &hub)
    .output()
    .unwrap();
    ok_run(&o);
    // --warmup-ratio 0 is a valid schedule.
    let ft = tmp.path().join("ft");
    let mrpc = mrpc_dir();
    let base = [
        "finetune",
        "--model",
        t.to_str().unwrap(),
        "--task",
        "mrpc",
        "--data-dir",
        mrpc.to_str().unwrap(),
        "--train-subset",
        "8",
        "--eval-subset",
        "8",
        "--max-seq-length",
        "32",
        "--device",
        "cpu",
        "--quiet",
        "--output-dir",
        ft.to_str().unwrap(),
    ];
    let mut args = base.to_vec();
    args.extend(["--warmup-ratio", "0"]);
    ok_run(&bertology(&args));
    // An interrupted run leaves nothing: no output folder, no staging folder.
    let late = tmp.path().join("late");
    let late_s = late.display().to_string();
    let args = [
        "finetune",
        "--model",
        t.to_str().unwrap(),
        "--task",
        "mrpc",
        "--data-dir",
        mrpc.to_str().unwrap(),
        "--train-subset",
        "3000",
        "--epochs",
        "50",
        "--max-seq-length",
        "32",
        "--device",
        "cpu",
        "--quiet",
        "--output-dir",
        &late_s,
    ];
    let before = snapshot(tmp.path());
    let mut child = bertology_command(&args).spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run ended before it was interrupted"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(snapshot_diff(&before, &snapshot(tmp.path())).is_empty());
}

// ---- Defects the model refactor fixed (items 3, 4, 8), through the binary ----

/// Item 3: a model with a layer whose heads are all pruned can be analysed and pruned again.
#[test]
fn a_layer_without_heads_can_be_analysed_and_pruned_again() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tiny_classifier(tmp.path());
    let first = tmp.path().join("first");
    ok_run(&run(
        "prune",
        &mrpc_args(&t, &first),
        &["--target-heads", "0.25", "--timing-runs", "1", "--quiet"],
    ));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(first.join("prune.json")).unwrap()).unwrap();
    assert!(
        summary["heads_kept_per_layer"]
            .as_array()
            .unwrap()
            .contains(&0.into()),
        "no empty layer to test: {}",
        summary["heads_kept_per_layer"]
    );
    let pruned = first.join("pruned_model");
    ok_run(&run(
        "importance",
        &mrpc_args(&pruned, &tmp.path().join("imp")),
        &["--quiet"],
    ));
    ok_run(&run(
        "prune",
        &mrpc_args(&pruned, &tmp.path().join("again")),
        &["--target-heads", "0.1", "--timing-runs", "1", "--quiet"],
    ));
    ok_run(&run(
        "attention",
        &mrpc_args(&pruned, &tmp.path().join("att")),
        &["--importance", first.to_str().unwrap(), "--quiet"],
    ));
    ok_run(&run(
        "hidden-states",
        &mrpc_args(&pruned, &tmp.path().join("hs")),
        &["--attentions", "--quiet"],
    ));
}

/// An empty --text is [CLS] [SEP] to BERT, as an empty text of a data file is; an error only
/// where the tokenizer leaves no token at all.
#[test]
fn an_empty_text_runs_where_it_leaves_tokens() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tiny_classifier(tmp.path());
    let (t_arg, hs) = (t.to_str().unwrap(), tmp.path().join("hs"));
    let texts = ["--text", "", "--text", "a", "--pool", "mean", "--quiet"];
    let mut args = vec!["hidden-states", "--model", t_arg, "--device", "cpu"];
    args.extend(texts);
    args.extend(["--output-dir", hs.to_str().unwrap()]);
    ok_run(&bertology(&args));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(hs.join("hidden_states.json")).unwrap())
            .unwrap();
    assert_eq!(
        json["examples"][0]["tokens"],
        serde_json::json!(["[CLS]", "[SEP]"])
    );
    assert_eq!(
        json["tensors"]["hidden_states.3"],
        serde_json::json!([2, 32])
    );
    let gpt2 = fixture("tiny-gpt2");
    let out = bertology(&[
        "attention",
        "--model",
        gpt2.to_str().unwrap(),
        "--text",
        "",
        "--output-dir",
        tmp.path().join("g").to_str().unwrap(),
    ]);
    assert!(one_line_error(&out).contains("no tokens"));
    let att = tmp.path().join("att");
    ok_run(&bertology(&[
        "attention",
        "--model",
        t_arg,
        "--text",
        "",
        "--output-dir",
        att.to_str().unwrap(),
        "--quiet",
    ]));
    assert!(att.join("attention.html").is_file());
}

/// An attention run into an earlier one's folder leaves none of that run's files it did not
/// write again (the map after --no-map), and keeps what is not its own.
#[test]
fn an_attention_run_replaces_its_own_earlier_files() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tiny_classifier(tmp.path());
    let att = tmp.path().join("att");
    ok_run(&bertology(&[
        "attention",
        "--model",
        t.to_str().unwrap(),
        "--text",
        "hi",
        "--output-dir",
        att.to_str().unwrap(),
        "--quiet",
    ]));
    std::fs::write(att.join("notes.txt"), "mine").unwrap();
    ok_run(&run("attention", &mrpc_args(&t, &att), &["--quiet"]));
    assert!(att.join("head_map.csv").is_file() && att.join("head_distances.npy").is_file());
    ok_run(&run(
        "attention",
        &mrpc_args(&t, &att),
        &["--no-map", "--quiet"],
    ));
    for gone in ["head_map.csv", "head_map.png", "head_distances.npy"] {
        assert!(!att.join(gone).exists(), "{gone} of the earlier run left");
    }
    for kept in ["attention.html", "notes.txt", "attention.json", "report.md"] {
        assert!(att.join(kept).is_file(), "{kept} missing");
    }
}

/// With --model, attention and hidden-states read a parquet GLUE folder as eval does (they
/// looked for dev.tsv in it), in the file's order.
#[test]
fn analysis_commands_with_a_model_read_parquet_folders() {
    use bertology::data::glue::{Split, Task};
    let tmp = tempfile::tempdir().unwrap();
    let t = tiny_classifier(tmp.path());
    let parquet = fixture("data/glue_parquet/mrpc");
    let (rows, _) = bertology::data::glue_parquet::read(Task::Mrpc, &parquet, Split::Dev).unwrap();
    let hs = tmp.path().join("hs");
    ok_run(&bertology(&[
        "hidden-states",
        "--model",
        t.to_str().unwrap(),
        "--task",
        "mrpc",
        "--data-dir",
        parquet.to_str().unwrap(),
        "--max-seq-length",
        "32",
        "--device",
        "cpu",
        "--pool",
        "cls",
        "--quiet",
        "--output-dir",
        hs.to_str().unwrap(),
    ]));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(hs.join("hidden_states.json")).unwrap())
            .unwrap();
    let texts: Vec<&str> = json["examples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["text_a"].as_str().unwrap())
        .collect();
    let expected: Vec<&str> = rows.iter().map(|e| e.text_a.as_str()).collect();
    assert_eq!(texts, expected);
    let att = tmp.path().join("att");
    ok_run(&bertology(&[
        "attention",
        "--model",
        t.to_str().unwrap(),
        "--task",
        "mrpc",
        "--data-dir",
        parquet.to_str().unwrap(),
        "--example",
        "1",
        "--max-seq-length",
        "32",
        "--device",
        "cpu",
        "--quiet",
        "--output-dir",
        att.to_str().unwrap(),
    ]));
    assert!(att.join("attention.html").is_file());
}

/// Item 4: token ids beyond the embedding rows are a one-line error naming the vocabulary.
#[test]
fn a_vocabulary_larger_than_the_embeddings_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tiny_classifier(tmp.path());
    let mut vocab = std::fs::read_to_string(t.join("vocab.txt")).unwrap();
    for w in ["the", "of", "and", "to", "in", "said", "he", "a"] {
        vocab.push_str(w);
        vocab.push('\n');
    }
    std::fs::write(t.join("vocab.txt"), vocab).unwrap();
    let out = tmp.path().join("o");
    for cmd in ["eval", "importance"] {
        let o = run(cmd, &mrpc_args(&t, &out), &[]);
        let e = one_line_error(&o);
        assert_eq!(o.status.code(), Some(1), "{e}");
        assert!(e.contains("vocab") || e.contains("token id"), "{e}");
        assert!(!out.exists());
    }
}

/// Item 8: a weight stored as integers is an error naming it, never "missing" or a random
/// initialisation.
#[test]
fn an_integer_weight_is_an_error_naming_it() {
    for name in [
        "classifier.weight",
        "encoder.layer.0.attention.self.query.weight",
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let t = tiny_classifier(tmp.path());
        edit_weights(&t, |w| {
            for (k, v) in w.iter_mut() {
                if k.ends_with(name) {
                    *v = v.to_kind(Kind::Int64);
                }
            }
        });
        let o = run("eval", &mrpc_args(&t, &tmp.path().join("o")), &[]);
        let e = one_line_error(&o);
        assert!(e.contains(name) && !e.contains("missing"), "{e}");
    }
}

/// A reader that closes the pipe early (`bertology inspect --json | head -1`) ends the run
/// quietly, not in an "internal error" (exit code 70) that asks for a bug report.
#[test]
fn a_closed_stdout_is_not_an_internal_error() {
    let (reader, writer) = std::io::pipe().unwrap();
    // Closed before the run starts, so its first print meets a broken pipe.
    drop(reader);
    let out = bertology_command(&[
        "inspect",
        "--json",
        "--device",
        "cpu",
        "--model",
        fixture("tiny-bert").to_str().unwrap(),
    ])
    .stdout(writer)
    .output()
    .unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && e.is_empty(),
        "{:?}: {e}",
        out.status
    );
}

// ---- Issue 28 ----

/// The tiny checkpoint of each family, for tests that go over every family.
fn family_fixture(family: &str) -> PathBuf {
    let name = match family {
        "bert" => "tiny-bert",
        "roberta" => "families/roberta",
        "distilbert" => "families/distilbert",
        "electra" => "families/electra",
        "gpt2" => "tiny-gpt2",
        "openai-gpt" => "tiny-gpt",
        "llama" => "families/llama",
        other => panic!("no tiny checkpoint for family {other}: add one to family_fixture"),
    };
    fixture(name)
}

/// Item 6: under a 3 GiB address-space limit, every size field a family declares, set to
/// 10^12, is refused in one line by every command that loads the model; none aborts
/// allocating, none is killed.
#[test]
fn no_size_field_makes_a_command_allocate_what_the_weights_do_not_justify() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_bertology");
    let mut checked = 0;
    for family in bertology::model::families::all() {
        let fields = family.sizes.iter().map(|f| f.field).chain(["num_labels"]);
        for field in fields {
            let m = tmp.path().join(format!("{}-{field}", family.name));
            copy_dir(&family_fixture(family.name), &m);
            edit_json(&m.join("config.json"), |v| {
                v[field] = 1_000_000_000_000i64.into();
                if field == "num_labels" {
                    v.as_object_mut().unwrap().remove("id2label");
                    v.as_object_mut().unwrap().remove("label2id");
                }
            });
            for cmd in [
                format!("inspect --device cpu --model {}", m.display()),
                format!(
                    "hidden-states --device cpu --model {} --text hi --output-dir {}/hs",
                    m.display(),
                    tmp.path().display()
                ),
            ] {
                let out = std::process::Command::new("sh")
                    .arg("-c")
                    .arg(format!("ulimit -v 3145728 && exec {bin} {cmd}"))
                    .output()
                    .unwrap();
                let e = String::from_utf8_lossy(&out.stderr).to_string();
                assert_eq!(
                    out.status.code(),
                    Some(1),
                    "{} {field}: {cmd}: {:?} {e}",
                    family.name,
                    out.status
                );
                assert_eq!(e.trim_end().lines().count(), 1, "{e}");
                assert!(
                    e.contains("config.json") && e.contains(field),
                    "{} {field}: {e}",
                    family.name
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 60, "only {checked} runs");
}

/// A model with every head of every layer pruned, made by `prune --target-heads 0`.
fn all_heads_pruned(tmp: &Path, model: &Path, args: &[&str]) -> PathBuf {
    let out = tmp.join(format!(
        "prune0-{}",
        model.file_name().unwrap().to_string_lossy()
    ));
    let mut a = vec![
        "prune",
        "--model",
        model.to_str().unwrap(),
        "--device",
        "cpu",
        "--target-heads",
        "0",
        "--timing-runs",
        "1",
        "--quiet",
        "--output-dir",
        out.to_str().unwrap(),
    ];
    a.extend(args);
    ok_run(&bertology(&a));
    let pruned = out.join("pruned_model");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(pruned.join("config.json")).unwrap())
            .unwrap();
    let layers = config["pruned_heads"].as_object().unwrap();
    assert!(!layers.is_empty());
    pruned
}

/// Item 2: a model without a single head is evaluated and dumped; importance, prune and
/// attention over a split say in one line that there is no head (no segfault, no endless map).
#[test]
fn a_model_with_every_head_pruned_fails_cleanly_where_there_is_nothing_to_rank() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tiny_classifier(tmp.path());
    let mrpc = mrpc_dir();
    let data = [
        "--task",
        "mrpc",
        "--data-dir",
        mrpc.to_str().unwrap(),
        "--data-subset",
        "16",
        "--max-seq-length",
        "32",
    ];
    let pruned = all_heads_pruned(tmp.path(), &t, &data);
    let p = pruned.to_str().unwrap();
    let out = |name: &str| tmp.path().join(name).display().to_string();
    let with = |cmd: &str, extra: &[&str], dir: &str| {
        let o = out(dir);
        let mut a = vec![cmd, "--model", p, "--device", "cpu"];
        a.extend(data);
        a.extend(extra);
        a.extend(["--quiet", "--output-dir", &o]);
        bertology(&a)
    };
    ok_run(&with("eval", &[], "eval"));
    for (cmd, extra) in [
        ("importance", &[][..]),
        ("importance", &["--no-entropy"][..]),
        ("prune", &["--timing-runs", "1"][..]),
        ("attention", &[][..]),
    ] {
        let o = with(cmd, extra, cmd);
        let e = one_line_error(&o);
        assert_eq!(o.status.code(), Some(1), "{cmd}: {e}");
        assert!(
            e.contains("no attention head") || e.contains("no head to mask"),
            "{cmd}: {e}"
        );
        assert!(!tmp.path().join(cmd).exists());
    }
    let hs = out("hs");
    ok_run(&bertology(&[
        "hidden-states",
        "--model",
        p,
        "--device",
        "cpu",
        "--text",
        "hello",
        "--attentions",
        "--quiet",
        "--output-dir",
        &hs,
    ]));
    // GPT-2 on text.
    let gpt2 = fixture("tiny-gpt2");
    let text = tmp.path().join("t.txt");
    std::fs::write(
        &text,
        "Amrozi accused his brother of deliberately distorting his evidence. ".repeat(8),
    )
    .unwrap();
    let lm = [
        "--task",
        "lm",
        "--text",
        text.to_str().unwrap(),
        "--block-size",
        "8",
    ];
    let pruned = all_heads_pruned(tmp.path(), &gpt2, &lm);
    let o = bertology(&[
        "importance",
        "--model",
        pruned.to_str().unwrap(),
        "--device",
        "cpu",
        "--task",
        "lm",
        "--text",
        text.to_str().unwrap(),
        "--block-size",
        "8",
        "--quiet",
        "--output-dir",
        &out("lm-imp"),
    ]);
    assert!(one_line_error(&o).contains("no attention head"));
    ok_run(&bertology(&[
        "eval",
        "--model",
        pruned.to_str().unwrap(),
        "--device",
        "cpu",
        "--task",
        "lm",
        "--text",
        text.to_str().unwrap(),
        "--block-size",
        "8",
        "--quiet",
        "--output-dir",
        &out("lm-eval"),
    ]));
}

/// Item 4: SIGINT or SIGTERM removes the run's staging folder (no `.<out>.bertology-staging-*`
/// with 0-byte *.tmp files left), and a staging folder that a killed process left is swept by
/// the next run next to it.
#[test]
fn an_interrupt_leaves_no_staging_folder_and_stale_ones_are_swept() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tiny_classifier(tmp.path());
    for signal in ["INT", "TERM"] {
        let late = tmp.path().join(format!("late-{signal}"));
        let mut child = bertology_command(
            &std::iter::once("eval".to_string())
                .chain(mrpc_args(&t, &late))
                .collect::<Vec<_>>()
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>(),
        )
        .env("BERTOLOGY_TEST_HOLD_WRITE", "eval.json")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
        // Wait until the run is mid-write: eval.json.tmp exists in its staging folder (a
        // state, not a time).
        let staging = tmp
            .path()
            .join(format!(".late-{signal}.bertology-staging-{}", child.id()));
        while !staging.join("eval.json.tmp").exists() {
            assert!(child.try_wait().unwrap().is_none(), "the run ended early");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let kill = std::process::Command::new("kill")
            .args([format!("-{signal}"), child.id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
        let out = child.wait_with_output().unwrap();
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            e.contains("interrupted") && e.contains(&format!("SIG{signal}")),
            "{e}"
        );
        let left: Vec<String> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .filter(|n| n.contains("bertology-") || n.starts_with("late"))
            .collect();
        assert!(left.is_empty(), "{signal}: {left:?}");
    }
    // A stale staging folder of a dead process (pid beyond pid_max), for another output.
    let stale = tmp.path().join(".other.bertology-staging-4999999");
    std::fs::create_dir_all(&stale).unwrap();
    std::fs::write(stale.join("eval.json.tmp"), "").unwrap();
    let old = tmp.path().join(".other.bertology-old-4999999");
    std::fs::create_dir_all(&old).unwrap();
    ok_run(&run(
        "eval",
        &mrpc_args(&t, &tmp.path().join("ev")),
        &["--quiet"],
    ));
    assert!(!stale.exists() && !old.exists());
}

/// Item 11: finetune --model X without --output-dir names its output after X, and never
/// creates the default model the other commands would then pick up.
#[test]
fn finetune_without_output_dir_names_the_output_after_the_model() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let t = tiny_classifier(tmp.path());
    let x = tmp.path().join("my-tiny");
    std::fs::rename(&t, &x).unwrap();
    let mrpc = mrpc_dir();
    let args = [
        "finetune",
        "--model",
        x.to_str().unwrap(),
        "--task",
        "mrpc",
        "--data-dir",
        mrpc.to_str().unwrap(),
        "--train-subset",
        "8",
        "--eval-subset",
        "8",
        "--epochs",
        "1",
        "--max-seq-length",
        "32",
        "--device",
        "cpu",
        "--quiet",
    ];
    let o = bertology_command(&args)
        .env("BERTOLOGY_HOME", &home)
        .output()
        .unwrap();
    ok_run(&o);
    assert!(home.join("models/my-tiny-mrpc/model.safetensors").is_file());
    assert!(!home.join("models/all-MiniLM-L6-v2-mrpc").exists());
    let o = bertology_command(&args)
        .env("BERTOLOGY_HOME", &home)
        .output()
        .unwrap();
    let e = one_line_error(&o);
    assert!(
        e.contains("my-tiny-mrpc") && e.contains("--overwrite"),
        "{e}"
    );
}

/// Item 14: `attention --example N` reads example N alone: an earlier row without tokens (an
/// empty text through GPT-2's tokenizer) is no reason to fail; example N empty itself is.
#[test]
fn attention_example_ignores_earlier_empty_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(mrpc_dir().join("dev.tsv")).unwrap();
    let mut lines: Vec<String> = text.lines().take(5).map(str::to_string).collect();
    let f: Vec<String> = lines[2].split('\t').map(str::to_string).collect();
    lines[2] = format!("{}\t{}\t{}\t\t", f[0], f[1], f[2]);
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("dev.tsv"), lines.join("\n") + "\n").unwrap();
    let gpt2 = fixture("tiny-gpt2");
    let att = |n: &str, out: &str| {
        bertology(&[
            "attention",
            "--model",
            gpt2.to_str().unwrap(),
            "--task",
            "mrpc",
            "--data-dir",
            data.to_str().unwrap(),
            "--example",
            n,
            "--max-seq-length",
            "16",
            "--device",
            "cpu",
            "--quiet",
            "--output-dir",
            tmp.path().join(out).to_str().unwrap(),
        ])
    };
    ok_run(&att("3", "a3"));
    assert!(tmp.path().join("a3/attention.html").is_file());
    let e = one_line_error(&att("1", "a1"));
    assert!(e.contains("example 1 ") && e.contains("no tokens"), "{e}");
}
