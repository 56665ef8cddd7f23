//! Reading and writing Hugging Face safetensors checkpoints into our VarStore.
//!
//! `VarStore::load` stops at the first missing name, ignores unexpected ones and does not check
//! shapes; this loader maps key aliases (`bert.` prefix or not, `gamma`/`beta`), checks every
//! shape against the config, and reports what was missing and what was left over.
use anyhow::{anyhow, bail, Context, Result};
use safetensors::{Dtype, SafeTensors};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use tch::{nn::VarStore, Kind, Tensor};

pub const WEIGHTS_FILE: &str = "model.safetensors";
pub const WEIGHTS_INDEX_FILE: &str = "model.safetensors.index.json";

/// The safetensors files of a checkpoint folder: one file, or the shards of an index.
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join(WEIGHTS_FILE);
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join(WEIGHTS_INDEX_FILE);
    if index.is_file() {
        let text = std::fs::read_to_string(&index)
            .with_context(|| format!("{}: cannot read", index.display()))?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| anyhow!("{}: malformed index: {e}", index.display()))?;
        let map = json
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| anyhow!("{}: no \"weight_map\" object", index.display()))?;
        if map.is_empty() {
            bail!(
                "{}: the weight_map is empty: the index names no shard (expected {{\"weight_map\": {{\"<weight>\": \"model-00001-of-0000N.safetensors\", ...}}}})",
                index.display()
            );
        }
        let mut files: Vec<PathBuf> = map
            .iter()
            .map(|(key, v)| {
                let f = v.as_str().ok_or_else(|| {
                    anyhow!("{}: weight_map values must be file names", index.display())
                })?;
                // A shard is a file of this folder, as transformers reads it: never a path
                // out of it.
                let plain = !f.is_empty()
                    && Path::new(f)
                        .components()
                        .all(|c| matches!(c, std::path::Component::Normal(_)));
                if !plain {
                    bail!(
                        "{}: weight_map names the shard {f:?} for {key}, which is not a file name inside the model folder",
                        index.display()
                    );
                }
                Ok(dir.join(f))
            })
            .collect::<Result<_>>()?;
        files.sort();
        files.dedup();
        if let Some(missing) = files.iter().find(|f| !f.is_file()) {
            bail!(
                "{}: names the shard {} which does not exist",
                index.display(),
                missing.display()
            );
        }
        return Ok(files);
    }
    for bin in [
        "pytorch_model.bin",
        "pytorch_model.bin.index.json",
        "tf_model.h5",
    ] {
        if dir.join(bin).exists() {
            bail!(
                "{}: has {bin} but no {WEIGHTS_FILE}; libtorch cannot read PyTorch pickles. Convert it once with: \
                 python -c \"from transformers import AutoModel as M; M.from_pretrained('{d}').save_pretrained('{d}', safe_serialization=True)\"",
                dir.display(),
                d = dir.display()
            );
        }
    }
    bail!(
        "{}: no {WEIGHTS_FILE} (or {WEIGHTS_INDEX_FILE}) in this folder",
        dir.display()
    )
}

/// Our canonical name for a checkpoint key: no base-model prefix (`bert.`, `roberta.`, …: a
/// base checkpoint saved without a head has none), `weight`/`bias` for old LayerNorm names.
pub fn canonical_key(key: &str, prefix: &str) -> String {
    let k = key
        .strip_prefix(prefix)
        .and_then(|k| k.strip_prefix('.'))
        .unwrap_or(key);
    if let Some(stem) = k.strip_suffix(".gamma") {
        format!("{stem}.weight")
    } else if let Some(stem) = k.strip_suffix(".beta") {
        format!("{stem}.bias")
    } else {
        k.to_string()
    }
}

/// Names of the tensors in a checkpoint's files (headers only), as stored.
pub fn checkpoint_keys(files: &[PathBuf]) -> Result<Vec<String>> {
    let mut keys = Vec::new();
    for file in files {
        let bytes = map_file(file)?;
        let (_, meta) = SafeTensors::read_metadata(&bytes)
            .map_err(|e| anyhow!("{}: not a safetensors file: {e}", file.display()))?;
        keys.extend(meta.tensors().keys().cloned());
    }
    Ok(keys)
}

/// Maps a checkpoint file read-only (its header and tensors are read in place).
pub fn map_file(file: &Path) -> Result<memmap2::Mmap> {
    let f =
        std::fs::File::open(file).with_context(|| format!("{}: cannot open", file.display()))?;
    // SAFETY: the file is only read while mapped; checkpoints are not rewritten under us.
    unsafe { memmap2::Mmap::map(&f) }.with_context(|| format!("{}: cannot map", file.display()))
}

fn kind_of(dtype: Dtype) -> Option<Kind> {
    Some(match dtype {
        Dtype::F32 => Kind::Float,
        Dtype::F16 => Kind::Half,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::F64 => Kind::Double,
        _ => return None,
    })
}

/// What loading found besides the weights it copied.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Variables the checkpoint lacks that were left at their initialisation (classifier, pooler).
    pub initialised: Vec<String>,
    /// Checkpoint keys no variable uses (e.g. a pre-training head), in canonical form.
    pub unexpected: Vec<String>,
}

/// How an architecture's variables map to checkpoint keys.
#[derive(Clone, Copy, Debug)]
pub struct KeyLayout {
    /// The base model's prefix (`bert`), present in task-head checkpoints, absent in base ones.
    pub prefix: &'static str,
    /// Canonical name prefix of the task head (its presence means the checkpoint was saved
    /// with one, sized for its labels).
    pub head: &'static str,
    /// Canonical name prefixes of weights a checkpoint may lack (task heads, pooler):
    /// transformers initialises them and warns.
    pub optional: &'static [&'static str],
}

impl KeyLayout {
    fn may_be_missing(&self, canonical: &str) -> bool {
        self.optional.iter().any(|p| canonical.starts_with(p))
    }
}

/// Copies every float tensor of `file` whose canonical name matches a variable; returns the
/// canonical names copied and those left over. A shape mismatch is an error naming the file.
fn copy_matching(
    vars: &HashMap<String, Tensor>,
    by_canonical: &HashMap<String, &String>,
    layout: KeyLayout,
    file: &Path,
) -> Result<(Vec<String>, Vec<String>)> {
    let bytes = map_file(file)?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| anyhow!("{}: not a safetensors file: {e}", file.display()))?;
    let (mut copied, mut unexpected) = (Vec::new(), Vec::new());
    let mut tensors = st.tensors();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    for (key, view) in tensors {
        let canonical = canonical_key(&key, layout.prefix);
        let var_name = by_canonical.get(&canonical);
        let Some(kind) = kind_of(view.dtype()) else {
            // Integer buffers such as embeddings.position_ids are not weights; an integer
            // tensor where a weight is expected is a broken checkpoint, not a missing weight.
            if var_name.is_some() {
                bail!(
                    "{}: weight {key} is stored as {:?}; expected a float type (F32, F16, BF16 or F64)",
                    file.display(),
                    view.dtype()
                );
            }
            continue;
        };
        let Some(var_name) = var_name else {
            unexpected.push(canonical);
            continue;
        };
        let var = &vars[*var_name];
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        if shape != var.size() {
            bail!(
                "{}: weight {key} has shape {shape:?}, expected {:?} from config.json",
                file.display(),
                var.size()
            );
        }
        let data = view.data();
        let expected_bytes = shape.iter().product::<i64>() as usize * kind.elt_size_in_bytes();
        if data.len() != expected_bytes {
            bail!(
                "{}: weight {key} holds {} bytes; expected {expected_bytes} for shape {shape:?}",
                file.display(),
                data.len()
            );
        }
        // SAFETY: a read-only view of the mapped bytes (their length checked above), used only
        // as the source of the copy below while `bytes` is mapped; copying straight from the
        // map saves an allocation and a copy of every weight (a quarter of a small model's
        // start-up).
        let src = unsafe { Tensor::from_blob(data.as_ptr(), &shape, &[], kind, tch::Device::Cpu) };
        tch::no_grad(|| var.shallow_clone().copy_(&src));
        copied.push(canonical);
    }
    Ok((copied, unexpected))
}

fn canonical_index<'a>(
    vars: &'a HashMap<String, Tensor>,
    prefix: &str,
) -> HashMap<String, &'a String> {
    vars.keys().map(|k| (canonical_key(k, prefix), k)).collect()
}

/// Copies the checkpoint's tensors into the store's variables (converted to their dtype).
/// Every variable must be found, except those transformers initialises (task heads, pooler).
pub fn load_into(vs: &VarStore, files: &[PathBuf], layout: KeyLayout) -> Result<LoadReport> {
    let vars: HashMap<String, Tensor> = vs.variables();
    let by_canonical = canonical_index(&vars, layout.prefix);
    let mut loaded = BTreeSet::new();
    let mut report = LoadReport::default();
    for file in files {
        let (copied, unexpected) = copy_matching(&vars, &by_canonical, layout, file)?;
        loaded.extend(copied);
        report.unexpected.extend(unexpected);
    }
    let mut missing = Vec::new();
    for name in vars.keys() {
        let canonical = canonical_key(name, layout.prefix);
        if loaded.contains(&canonical) {
            continue;
        }
        if layout.may_be_missing(&canonical) {
            report.initialised.push(name.clone());
        } else {
            missing.push(name.clone());
        }
    }
    if !missing.is_empty() {
        missing.sort();
        let shown = files
            .first()
            .map(|f| f.display().to_string())
            .unwrap_or_default();
        bail!(
            "{shown}: missing weight {}{}",
            missing[0],
            if missing.len() > 1 {
                format!(" (and {} more)", missing.len() - 1)
            } else {
                String::new()
            }
        );
    }
    report.initialised.sort();
    report.unexpected.sort();
    Ok(report)
}

/// Overwrites the variables named in `file` (e.g. a classifier kept apart from its encoder);
/// returns the names copied. Keys no variable has are an error.
pub fn overlay_from(vs: &VarStore, file: &Path, layout: KeyLayout) -> Result<Vec<String>> {
    let vars = vs.variables();
    let index = canonical_index(&vars, layout.prefix);
    let (copied, unexpected) = copy_matching(&vars, &index, layout, file)?;
    if let Some(k) = unexpected.first() {
        bail!(
            "{}: weight {k} matches no variable of the model",
            file.display()
        );
    }
    Ok(copied)
}

/// Writes the store's variables under their Hugging Face names, with the `format: pt` metadata
/// transformers expects; written to a temp file, then renamed.
pub fn save_from(vs: &VarStore, file: &Path) -> Result<()> {
    let mut named: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .map(|(k, t)| {
            (
                k,
                t.detach()
                    .to_device(tch::Device::Cpu)
                    .to_kind(Kind::Float)
                    .contiguous(),
            )
        })
        .collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let buffers: Vec<(String, Vec<usize>, Vec<u8>)> = named
        .iter()
        .map(|(k, t)| {
            let n = t.numel();
            let mut data = vec![0f32; n];
            t.copy_data(&mut data, n);
            let bytes = data.iter().flat_map(|v| v.to_le_bytes()).collect();
            (
                k.clone(),
                t.size().iter().map(|&d| d as usize).collect(),
                bytes,
            )
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = buffers
        .iter()
        .map(|(k, shape, bytes)| {
            safetensors::tensor::TensorView::new(Dtype::F32, shape.clone(), bytes)
                .map(|v| (k.clone(), v))
                .map_err(|e| anyhow!("{k}: {e}"))
        })
        .collect::<Result<_>>()?;
    let metadata: HashMap<String, String> = [("format".to_string(), "pt".to_string())].into();
    // Serialised in memory and written like every other file: serialize_to_file creates its
    // file with mode 0600, unlike the rest of a saved model's folder.
    let bytes = safetensors::serialize(views, Some(metadata))
        .map_err(|e| anyhow!("{}: cannot serialise: {e}", file.display()))?;
    crate::output::write_bytes(file, &bytes)
}
