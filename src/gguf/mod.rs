//! GGUF files (llama.cpp's format) as models: `--model FILE.gguf` is converted once into a
//! Hugging Face folder (config.json, model.safetensors in float32, tokenizer.json) in a cache
//! keyed by the file's canonical path, size and modification time, and every command then
//! reads that folder.
//!
//! The reader is our own (about 400 lines): the crates we weighed either only parse the
//! container (gguf-rs, gguf) with errors that name neither file nor field, or bring a second
//! tensor library into the build (candle-core's gguf module).
pub mod convert;
pub mod quants;
pub mod reader;
pub mod tokenizer;

pub use quants::GgmlType;
pub use reader::{GgufFile, TensorInfo, Value};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::{Instant, UNIX_EPOCH};

/// The name of the provenance file in a converted folder; its presence marks a complete one.
pub const SOURCE_FILE: &str = "gguf_source.json";

/// Whether `path` names a GGUF file: a file ending in `.gguf`, or starting with the magic.
pub fn is_gguf(path: &Path) -> bool {
    if !path.is_file() {
        return false;
    }
    if path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
    {
        return true;
    }
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
        .is_ok()
        && &magic == b"GGUF"
}

/// Where converted GGUF files live: $BERTOLOGY_GGUF_CACHE, else `bertology/gguf` beside the
/// Hugging Face hub cache (`~/.cache/huggingface/bertology/gguf` by default).
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("BERTOLOGY_GGUF_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    let hub = crate::hub::cache_dir();
    match hub.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.join("bertology").join("gguf"),
        _ => hub.join("bertology-gguf"),
    }
}

/// The identity of a file on disk: canonical path, size, modification time (ns since 1970).
struct Identity {
    path: PathBuf,
    size: u64,
    mtime_ns: u128,
}

fn identity(file: &Path) -> Result<Identity> {
    let path = file
        .canonicalize()
        .with_context(|| format!("{}: cannot resolve the path", file.display()))?;
    let meta =
        std::fs::metadata(&path).with_context(|| format!("{}: cannot stat", file.display()))?;
    let mtime_ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    Ok(Identity {
        path,
        size: meta.len(),
        mtime_ns,
    })
}

/// The cache folder name of a file: its stem (safe characters only) and a hash of its identity.
fn folder_name(id: &Identity) -> String {
    let stem: String = id
        .path
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect();
    let mut h = Sha256::new();
    h.update(id.path.to_string_lossy().as_bytes());
    h.update([0]);
    h.update(id.size.to_le_bytes());
    h.update(id.mtime_ns.to_le_bytes());
    let digest = h.finalize();
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{stem}-{hex}")
}

/// Whether a process with this id is running (Linux: /proc); elsewhere assume it is.
fn alive(pid: &str) -> bool {
    if !Path::new("/proc/self").exists() {
        return true;
    }
    Path::new("/proc").join(pid).exists()
}

/// A staging folder removed on drop unless it was moved into place.
struct Staging {
    dir: PathBuf,
    done: bool,
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The Hugging Face folder of a GGUF file, converting it first when the cache has none.
pub fn resolve(file: &Path, quiet: bool) -> Result<PathBuf> {
    resolve_in(file, &cache_dir(), quiet)
}

/// `resolve` with the cache folder given.
pub fn resolve_in(file: &Path, cache: &Path, quiet: bool) -> Result<PathBuf> {
    let id = identity(file)?;
    let name = folder_name(&id);
    let target = cache.join(&name);
    if target.join(SOURCE_FILE).is_file() {
        return Ok(target);
    }
    let started = Instant::now();
    let gguf = GgufFile::open(file)?;
    // Everything is checked before the first byte is written.
    let plan = convert::plan(&gguf)?;
    // The cache's folders that do not exist yet, deepest first: a failed conversion removes
    // those it created (when empty), so it leaves nothing behind.
    let created: Vec<PathBuf> = cache
        .ancestors()
        .take_while(|a| !a.as_os_str().is_empty() && !a.exists())
        .map(Path::to_path_buf)
        .collect();
    let result = write_converted(&gguf, &plan, &id, cache, &name, quiet);
    if result.is_err() {
        for dir in &created {
            let _ = std::fs::remove_dir(dir);
        }
    }
    result?;
    if !quiet {
        eprintln!(
            "converted {} to {} ({} parameters in float32, {:.1} s)",
            file.display(),
            target.display(),
            plan.n_parameters(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(target)
}

fn write_converted(
    gguf: &GgufFile,
    plan: &convert::Plan,
    id: &Identity,
    cache: &Path,
    name: &str,
    quiet: bool,
) -> Result<()> {
    std::fs::create_dir_all(cache)
        .with_context(|| format!("{}: cannot create the GGUF cache folder", cache.display()))?;
    // Staging folders of conversions that were interrupted (their process is gone).
    let prefix = format!(".{name}.staging-");
    if let Ok(entries) = std::fs::read_dir(cache) {
        for e in entries.flatten() {
            let n = e.file_name().to_string_lossy().to_string();
            if let Some(pid) = n.strip_prefix(&prefix) {
                if !alive(pid) {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
    }
    let mut staging = Staging {
        dir: cache.join(format!("{prefix}{}", std::process::id())),
        done: false,
    };
    if staging.dir.exists() {
        std::fs::remove_dir_all(&staging.dir)
            .with_context(|| format!("{}: cannot remove", staging.dir.display()))?;
    }
    std::fs::create_dir(&staging.dir)
        .with_context(|| format!("{}: cannot create", staging.dir.display()))?;
    let dir = staging.dir.clone();
    let write = |file: &str, bytes: &[u8]| -> Result<()> {
        let p = dir.join(file);
        crate::output::fail_if_injected(&p)?;
        std::fs::write(&p, bytes).with_context(|| format!("{}: cannot write", p.display()))
    };
    write(
        "config.json",
        serde_json::to_string_pretty(&plan.config)?.as_bytes(),
    )?;
    write("tokenizer.json", plan.tokenizer.json.as_bytes())?;
    write(
        "tokenizer_config.json",
        serde_json::to_string_pretty(&plan.tokenizer.config)?.as_bytes(),
    )?;
    let bar = crate::progress::bar(plan.tensors.len() as u64, "GGUF → f32", quiet);
    convert::write_safetensors(gguf, plan, &dir.join("model.safetensors"), |_| bar.inc(1))?;
    bar.finish_and_clear();
    let source = json!({
        "source": id.path,
        "size": id.size,
        "mtime_ns": id.mtime_ns.to_string(),
        "gguf_version": gguf.version,
        "alignment": gguf.alignment,
        "architecture": gguf.get("general.architecture").and_then(Value::as_str),
        "name": gguf.get("general.name").and_then(Value::as_str),
        "model_type": plan.model_type,
        "tensors": gguf.tensors.len(),
        "tensor_types": convert::type_counts(gguf),
        "parameters": plan.n_parameters(),
        "weights": "float32 (4 bytes per parameter), dequantised by bertology",
        "skipped_tensors": plan.skipped,
        "tokenizer": plan.tokenizer.summary,
        "metadata": convert::metadata_summary(gguf),
        "bertology_version": env!("CARGO_PKG_VERSION"),
    });
    write(
        SOURCE_FILE,
        serde_json::to_string_pretty(&source)?.as_bytes(),
    )?;
    let target = cache.join(name);
    crate::output::fail_if_injected("(commit)")?;
    match std::fs::rename(&staging.dir, &target) {
        Ok(()) => {
            staging.done = true;
            Ok(())
        }
        // Another process converted the same file meanwhile: keep its folder.
        Err(_) if target.join(SOURCE_FILE).is_file() => Ok(()),
        Err(e) => Err(anyhow!(
            "{}: cannot move the converted model into place: {e}",
            target.display()
        )),
    }
    .and_then(|()| {
        if target.join(SOURCE_FILE).is_file() {
            Ok(())
        } else {
            bail!("{}: the converted model is incomplete", target.display())
        }
    })
}
