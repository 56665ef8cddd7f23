//! Writing result files: always through a temp file and a rename, never half-written.
use crate::model::write_atomically;
use anyhow::{Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Creates the output folder (and parents).
pub fn prepare_dir(dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("--output-dir {}: cannot create", dir.display()))?;
    Ok(dir.to_path_buf())
}

pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value)? + "\n";
    write_atomically(path, text.as_bytes())
}

/// Writes rows (first the header) as CSV.
pub fn write_csv(path: &Path, header: &[&str], rows: impl IntoIterator<Item = Vec<String>>) -> Result<()> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(header)?;
    for row in rows {
        w.write_record(&row)?;
    }
    let bytes = w.into_inner().map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    write_atomically(path, &bytes)
}
