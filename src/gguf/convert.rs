//! A GGUF file as a Hugging Face folder: `config.json` from the metadata (as transformers'
//! `load_gguf_checkpoint` maps it), `model.safetensors` with every weight dequantised to
//! float32 under its Hugging Face name (llama.cpp's permutation of `attn_q`/`attn_k` rows
//! undone as `LlamaTensorProcessor` undoes it), `tokenizer.json` and `tokenizer_config.json`
//! from `tokenizer.ggml.*`, and `gguf_source.json` saying where it all came from.
use super::reader::{check_supported, GgufFile, TensorInfo, Value};
use super::tokenizer::{self, GgufTokenizer};
use crate::model::llama;
use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Map, Value as J};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

/// One weight of the Hugging Face checkpoint and the GGUF tensor it comes from.
pub struct PlannedTensor {
    /// Index into `GgufFile::tensors`.
    pub index: usize,
    pub hf_name: String,
    /// torch's shape.
    pub shape: Vec<usize>,
    /// Undo llama.cpp's rotary row permutation with this many heads.
    pub unpermute_heads: Option<usize>,
}

/// Everything the conversion will write, worked out (and checked) before anything is written.
pub struct Plan {
    pub model_type: String,
    pub config: Map<String, J>,
    pub tensors: Vec<PlannedTensor>,
    /// GGUF tensors with no Hugging Face counterpart (transformers skips them too).
    pub skipped: Vec<String>,
    pub tokenizer: GgufTokenizer,
}

impl Plan {
    pub fn n_parameters(&self) -> u64 {
        self.tensors
            .iter()
            .map(|t| t.shape.iter().product::<usize>() as u64)
            .sum()
    }
}

/// The Hugging Face name of a llama/qwen2 GGUF tensor (the family's table, `llama::GGUF_*`).
pub fn hf_name(gguf: &str) -> Option<String> {
    let (base, suffix) = gguf.rsplit_once('.')?;
    if suffix != "weight" && suffix != "bias" {
        return None;
    }
    let lookup = |table: &[(&str, &'static str)], key: &str| {
        table.iter().find(|(g, _)| *g == key).map(|(_, hf)| *hf)
    };
    let module = match lookup(llama::GGUF_MODULES, base) {
        Some(hf) => hf.to_string(),
        None => {
            let (layer, part) = base.strip_prefix("blk.")?.split_once('.')?;
            let layer: usize = layer.parse().ok()?;
            format!(
                "model.layers.{layer}.{}",
                lookup(llama::GGUF_BLOCK_MODULES, part)?
            )
        }
    };
    Some(format!("{module}.{suffix}"))
}

fn meta_uint(f: &GgufFile, key: &str, required: bool) -> Result<Option<u64>> {
    match f.get(key) {
        None if required => bail!(
            "{}: metadata {key} is missing (expected a positive integer)",
            f.path.display()
        ),
        None => Ok(None),
        Some(v) => match v.as_i128() {
            Some(n) if n > 0 && n <= u32::MAX as i128 * 64 => Ok(Some(n as u64)),
            _ => bail!(
                "{}: metadata {key} is {v} ({}; expected a positive integer)",
                f.path.display(),
                v.type_name()
            ),
        },
    }
}

fn meta_float(f: &GgufFile, key: &str) -> Result<Option<f64>> {
    match f.get(key) {
        None => Ok(None),
        Some(v) => match v.as_f64() {
            Some(x) if x.is_finite() => Ok(Some(x)),
            _ => bail!(
                "{}: metadata {key} is {v} ({}; expected a finite number)",
                f.path.display(),
                v.type_name()
            ),
        },
    }
}

/// The model type transformers gives a file: llama (Mistral files say llama too) or qwen2.
pub fn model_type(f: &GgufFile) -> Result<(String, String)> {
    let arch = match f.get("general.architecture") {
        Some(Value::String(s)) => s.clone(),
        Some(v) => bail!(
            "{}: metadata general.architecture is {} (expected STRING)",
            f.path.display(),
            v.type_name()
        ),
        None => bail!(
            "{}: metadata general.architecture is missing (expected e.g. \"llama\")",
            f.path.display()
        ),
    };
    match arch.as_str() {
        "llama" | "qwen2" => Ok((arch.clone(), arch)),
        other => bail!(
            "{}: general.architecture is \"{other}\"; bertology converts \"llama\" (also Mistral and SmolLM, which llama.cpp files as llama) and \"qwen2\"",
            f.path.display()
        ),
    }
}

/// Works out config.json, the weights and the tokenizer, checking names, shapes and types.
pub fn plan(f: &GgufFile) -> Result<Plan> {
    let path = f.path.display();
    let (arch, model_type) = model_type(f)?;
    let k = |name: &str| format!("{arch}.{name}");
    let layers = meta_uint(f, &k("block_count"), true)?.unwrap_or(0) as usize;
    let hidden = meta_uint(f, &k("embedding_length"), true)?.unwrap_or(0) as usize;
    let intermediate = meta_uint(f, &k("feed_forward_length"), true)?.unwrap_or(0) as usize;
    let heads = meta_uint(f, &k("attention.head_count"), true)?.unwrap_or(0) as usize;
    // llama.cpp's default: as many KV heads as query heads.
    let kv_heads = meta_uint(f, &k("attention.head_count_kv"), false)?
        .map(|v| v as usize)
        .unwrap_or(heads);
    let head_dim_key = meta_uint(f, &k("rope.dimension_count"), false)?.map(|v| v as usize);
    // transformers maps rope.dimension_count to head_dim for llama only.
    let head_dim_given = if arch == "llama" { head_dim_key } else { None };
    if !heads.is_multiple_of(kv_heads) {
        bail!(
            "{path}: metadata {} is {kv_heads}, which does not divide {} = {heads}",
            k("attention.head_count_kv"),
            k("attention.head_count")
        );
    }
    let head_dim = match head_dim_given {
        Some(d) => d,
        None if hidden.is_multiple_of(heads) => hidden / heads,
        None => bail!(
            "{path}: {} = {hidden} is not a multiple of {} = {heads} (and no {} gives the head size)",
            k("embedding_length"),
            k("attention.head_count"),
            k("rope.dimension_count")
        ),
    };
    let tok = tokenizer::build(f, &model_type)?;
    let n_tokens = tok.tokenizer.get_vocab_size(false);
    let vocab = meta_uint(f, &k("vocab_size"), false)?
        .map(|v| v as usize)
        .unwrap_or(n_tokens);
    let tied = f.tensor("output.weight").is_none();

    let mut config = Map::new();
    let architecture = llama::causal_lm_class(&model_type)?;
    config.insert("architectures".into(), json!([architecture]));
    config.insert("model_type".into(), json!(model_type));
    config.insert("hidden_size".into(), json!(hidden));
    config.insert("intermediate_size".into(), json!(intermediate));
    config.insert("num_hidden_layers".into(), json!(layers));
    config.insert("num_attention_heads".into(), json!(heads));
    config.insert("num_key_value_heads".into(), json!(kv_heads));
    if let Some(d) = head_dim_given {
        config.insert("head_dim".into(), json!(d));
    }
    config.insert("hidden_act".into(), json!("silu"));
    if let Some(ctx) = meta_uint(f, &k("context_length"), false)? {
        config.insert("max_position_embeddings".into(), json!(ctx));
    }
    if let Some(eps) = meta_float(f, &k("attention.layer_norm_rms_epsilon"))? {
        config.insert("rms_norm_eps".into(), json!(eps));
    }
    if let Some(theta) = meta_float(f, &k("rope.freq_base"))? {
        config.insert("rope_theta".into(), json!(theta));
    }
    config.insert("rope_scaling".into(), rope_scaling(f, &arch)?);
    config.insert("vocab_size".into(), json!(vocab));
    config.insert("tie_word_embeddings".into(), json!(tied));
    for (gguf_key, hf_key) in [
        ("tokenizer.ggml.bos_token_id", "bos_token_id"),
        ("tokenizer.ggml.eos_token_id", "eos_token_id"),
        ("tokenizer.ggml.unknown_token_id", "unk_token_id"),
        ("tokenizer.ggml.padding_token_id", "pad_token_id"),
    ] {
        if let Some(v) = f.get(gguf_key).and_then(Value::as_i128) {
            config.insert(hf_key.into(), json!(v as i64));
        }
    }
    if model_type == "llama" {
        config.insert("attention_bias".into(), json!(false));
        config.insert("mlp_bias".into(), json!(false));
    }
    config.insert("torch_dtype".into(), json!("float32"));

    // The weights every layer must have, with their torch shapes.
    let sizes = llama::CausalLmSizes {
        vocab,
        hidden,
        intermediate,
        layers,
        heads,
        kv_heads,
        head_dim,
        tied,
    };
    let mut expected = llama::causal_lm_weights(&model_type, &sizes)?;
    let mut tensors = Vec::new();
    let mut skipped = Vec::new();
    for (index, t) in f.tensors.iter().enumerate() {
        let Some(name) = hf_name(&t.name) else {
            skipped.push(t.name.clone());
            continue;
        };
        let Some(want) = expected.remove(&name) else {
            if tensors.iter().any(|p: &PlannedTensor| p.hf_name == name) {
                bail!("{path}: tensor {} appears twice", t.name);
            }
            skipped.push(t.name.clone());
            continue;
        };
        let shape = t.torch_shape();
        if shape != want {
            bail!(
                "{path}: tensor {} has shape {shape:?} (GGUF dimensions {:?}); expected {want:?} from the metadata",
                t.name,
                t.dims
            );
        }
        check_supported(&f.path, t)?;
        let unpermute_heads = if arch == "llama" {
            if t.name.contains(".attn_q.") {
                Some(heads)
            } else if t.name.contains(".attn_k.") {
                Some(kv_heads)
            } else {
                None
            }
        } else {
            None
        };
        if let Some(h) = unpermute_heads {
            if shape[0] % (2 * h) != 0 {
                bail!(
                    "{path}: tensor {} has {} rows, not a multiple of 2 × {h} heads (needed to undo llama.cpp's rotary permutation)",
                    t.name,
                    shape[0]
                );
            }
        }
        tensors.push(PlannedTensor {
            index,
            hf_name: name,
            shape,
            unpermute_heads,
        });
    }
    if let Some((missing, _)) = expected.into_iter().next() {
        let gguf = gguf_name(&missing);
        bail!(
            "{path}: tensor {gguf} is missing (expected for {missing} of a {layers}-layer {model_type} model)"
        );
    }
    tensors.sort_by(|a, b| a.hf_name.cmp(&b.hf_name));
    Ok(Plan {
        model_type,
        config,
        tensors,
        skipped,
        tokenizer: tok,
    })
}

/// The GGUF name of a Hugging Face weight (for messages).
fn gguf_name(hf: &str) -> String {
    let (module, suffix) = hf.rsplit_once('.').unwrap_or((hf, ""));
    let whole = llama::GGUF_MODULES.iter().find(|(_, h)| *h == module);
    if let Some((g, _)) = whole {
        return format!("{g}.{suffix}");
    }
    let block = module
        .strip_prefix("model.layers.")
        .and_then(|rest| rest.split_once('.'))
        .and_then(|(layer, sub)| {
            let (g, _) = llama::GGUF_BLOCK_MODULES.iter().find(|(_, h)| *h == sub)?;
            Some(format!("blk.{layer}.{g}.{suffix}"))
        });
    block.unwrap_or_else(|| hf.to_string())
}

/// `rope_scaling` from `{arch}.rope.scaling.*` (transformers' GGUF loader reads none of these
/// keys; we keep what the file says), or null.
fn rope_scaling(f: &GgufFile, arch: &str) -> Result<J> {
    let ty = f
        .get(&format!("{arch}.rope.scaling.type"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let factor = meta_float(f, &format!("{arch}.rope.scaling.factor"))?;
    match ty.as_deref() {
        None | Some("none") => Ok(J::Null),
        Some(t) => {
            let mut m = Map::new();
            m.insert("rope_type".into(), json!(t));
            m.insert("type".into(), json!(t));
            let factor = factor.ok_or_else(|| {
                anyhow!(
                    "{}: metadata {arch}.rope.scaling.type is \"{t}\" but {arch}.rope.scaling.factor is missing",
                    f.path.display()
                )
            })?;
            m.insert("factor".into(), json!(factor));
            if let Some(orig) = meta_uint(
                f,
                &format!("{arch}.rope.scaling.original_context_length"),
                false,
            )? {
                m.insert("original_max_position_embeddings".into(), json!(orig));
            }
            Ok(J::Object(m))
        }
    }
}

/// Undoes llama.cpp's `permute` of q/k rows: within each head, llama.cpp interleaved the two
/// rotary halves (row i·2 + j holds half j's row i); put half j's rows back together.
pub fn unpermute_rows(data: &[f32], rows: usize, heads: usize) -> Vec<f32> {
    let cols = data.len() / rows;
    let dim = rows / heads / 2;
    let mut out = vec![0f32; data.len()];
    for h in 0..heads {
        for i in 0..dim {
            for j in 0..2 {
                let from = h * 2 * dim + i * 2 + j;
                let to = h * 2 * dim + j * dim + i;
                out[to * cols..(to + 1) * cols]
                    .copy_from_slice(&data[from * cols..(from + 1) * cols]);
            }
        }
    }
    out
}

/// The float32 data of one planned weight, in torch's row-major order.
pub fn tensor_data(f: &GgufFile, p: &PlannedTensor) -> Result<Vec<f32>> {
    let t: &TensorInfo = &f.tensors[p.index];
    let data = f.dequantize(t)?;
    Ok(match p.unpermute_heads {
        Some(h) => unpermute_rows(&data, p.shape[0], h),
        None => data,
    })
}

/// Writes `model.safetensors` one tensor at a time (a 135M-parameter model never needs a
/// second copy of its weights in memory); `step` is called after each tensor.
pub fn write_safetensors(
    f: &GgufFile,
    plan: &Plan,
    file: &Path,
    mut step: impl FnMut(&str),
) -> Result<()> {
    crate::output::fail_if_injected(file)?;
    let mut header = Map::new();
    header.insert("__metadata__".into(), json!({"format": "pt"}));
    let mut offset = 0u64;
    for p in &plan.tensors {
        let n = p.shape.iter().product::<usize>() as u64 * 4;
        header.insert(
            p.hf_name.clone(),
            json!({"dtype": "F32", "shape": p.shape, "data_offsets": [offset, offset + n]}),
        );
        offset += n;
    }
    let mut head = serde_json::to_vec(&J::Object(header))?;
    while head.len() % 8 != 0 {
        head.push(b' ');
    }
    let out = std::fs::File::create(file)
        .with_context(|| format!("{}: cannot create", file.display()))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, out);
    let werr = |e: std::io::Error| anyhow!("{}: cannot write: {e}", file.display());
    w.write_all(&(head.len() as u64).to_le_bytes())
        .map_err(werr)?;
    w.write_all(&head).map_err(werr)?;
    for p in &plan.tensors {
        let data = tensor_data(f, p)?;
        let mut bytes = Vec::with_capacity(data.len() * 4);
        for v in &data {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        w.write_all(&bytes).map_err(werr)?;
        step(&p.hf_name);
    }
    w.flush().map_err(werr)?;
    w.get_ref()
        .sync_all()
        .map_err(|e| anyhow!("{}: cannot write: {e}", file.display()))?;
    Ok(())
}

/// A summary of the GGUF metadata: every scalar value, and arrays by their length.
pub fn metadata_summary(f: &GgufFile) -> J {
    let mut m = Map::new();
    for (k, v) in &f.metadata {
        let value = match v {
            Value::Array(a) => json!(format!("[{} × {}]", a.len(), v.type_name())),
            Value::String(s) if s.len() > 200 => {
                json!(format!(
                    "{}… ({} characters)",
                    s.chars().take(80).collect::<String>(),
                    s.chars().count()
                ))
            }
            other => other.to_json(),
        };
        m.insert(k.clone(), value);
    }
    J::Object(m)
}

/// Counts of the GGUF tensor types, e.g. {"Q4_1": 210, "F32": 61, "Q8_0": 1}.
pub fn type_counts(f: &GgufFile) -> J {
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for t in &f.tensors {
        *counts.entry(t.ty.name).or_default() += 1;
    }
    json!(counts)
}
