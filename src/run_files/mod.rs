//! The JSON files runs write, one typed struct per file, shared by the command that writes it
//! and by what reads it back (`report` reads prune.json and importance.json): a field's name and
//! type are stated once. Fields a reader can do without are `Option` or default, so summaries
//! of older runs (and minimal hand-made ones) still read.
pub mod ablation;
pub mod attention;
pub mod eval;
pub mod finetune;
pub mod hidden_states;
pub mod importance;
pub mod prune;

pub use crate::output::{Fingerprint, Fingerprints};

use anyhow::{anyhow, bail, Context, Result};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::path::Path;

/// A run file as read: its struct, and its JSON as written (for a table of every field).
pub struct RunFile<T> {
    pub data: T,
    pub json: Value,
}

/// Reads a run file into its struct. Not JSON: "malformed JSON"; a field of the wrong type:
/// a one-line error naming the file, the field's path (`examples`, `timing[0].speedup`) and
/// what it holds.
pub fn read<T: DeserializeOwned>(path: &Path) -> Result<RunFile<T>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    let json: Value = serde_json::from_str(&text)
        .map_err(|e| anyhow!("{}: malformed JSON: {e}", path.display()))?;
    if !json.is_object() {
        bail!("{}: expected a JSON object", path.display());
    }
    let data = serde_path_to_error::deserialize(&json).map_err(|e| {
        anyhow!(
            "{}: {} (the file was edited, or is not a bertology summary)",
            path.display(),
            describe(&json, e.path(), &e.inner().to_string())
        )
    })?;
    Ok(RunFile { data, json })
}

/// `field "PATH" is a string, expected a number`, from serde's message and the value there.
fn describe(json: &Value, path: &serde_path_to_error::Path, message: &str) -> String {
    use serde_path_to_error::Segment;
    let mut at = Some(json);
    for segment in path.iter() {
        at = match segment {
            Segment::Seq { index } => at.and_then(|v| v.get(index)),
            Segment::Map { key } => at.and_then(|v| v.get(key)),
            _ => None,
        };
    }
    let want = message
        .strip_prefix("invalid type: ")
        .and_then(|m| m.rsplit_once(", expected "))
        .map(|(_, want)| want);
    match (at, want) {
        (Some(v), Some(want)) => {
            format!(
                "field \"{path}\" is {}, expected {}",
                json_type(v),
                plain(want)
            )
        }
        _ => format!("field \"{path}\": {message}"),
    }
}

/// Serde's names of the expected types in words.
fn plain(want: &str) -> &str {
    match want {
        "u64" | "usize" | "u32" => "a count",
        "i64" | "i32" => "a whole number",
        "f64" | "f32" => "a number",
        "a sequence" => "an array",
        w if w.starts_with("struct ") || w == "a map" => "an object",
        w => w,
    }
}

pub fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The name a value (an enum of settings) has in the JSON files, e.g. "per-example".
pub fn name_of<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}
