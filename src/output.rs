//! Writing result files: always through a temp file and a rename, never half-written.
use crate::model::write_atomically;
use anyhow::{Context, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Creates the output folder (and parents).
pub fn prepare_dir(dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("--output-dir {}: cannot create", dir.display()))?;
    Ok(dir.to_path_buf())
}

pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value)? + "\n";
    write_atomically(path, text.as_bytes())
}

/// Writes rows (first the header) as CSV.
pub fn write_csv(
    path: &Path,
    header: &[&str],
    rows: impl IntoIterator<Item = Vec<String>>,
) -> Result<()> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(header)?;
    for row in rows {
        w.write_record(&row)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    write_atomically(path, &bytes)
}

/// Writes a tensor as a standard .npy file (numpy.load reads it).
pub fn write_npy(path: &Path, tensor: &tch::Tensor) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    tensor
        .to_device(tch::Device::Cpu)
        .contiguous()
        .write_npy(&tmp)
        .map_err(|e| anyhow::anyhow!("{}: cannot write: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("{}: cannot rename into place", path.display()))
}

/// A layers-down, heads-across table of values, for stdout.
pub fn head_table(values: &tch::Tensor, decimals: usize) -> String {
    let rows: Vec<Vec<f64>> = Vec::try_from(values.to_kind(tch::Kind::Double)).unwrap_or_default();
    let heads = rows.first().map_or(0, Vec::len);
    let width = decimals + 4;
    let mut out = format!("{:>6}", "layer");
    for h in 0..heads {
        out += &format!(" {:>width$}", format!("h{h}"));
    }
    out.push('\n');
    for (l, row) in rows.iter().enumerate() {
        out += &format!("{l:>6}");
        for v in row {
            out += &format!(" {v:>width$.decimals$}");
        }
        out.push('\n');
    }
    out
}
