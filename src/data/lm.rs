//! Language-model data: raw UTF-8 text cut into blocks of tokens, or run_prune_gpt's token-id
//! files (np.loadtxt: one sequence of integer ids per line), and the labels of a causal LM
//! batch (the input ids, -100 on padding; the model shifts them).
use super::batch::Batch;
use crate::model::tokenizer::TextTokenizer;
use anyhow::{anyhow, bail, Context, Result};
use std::path::{Path, PathBuf};
use tch::Tensor;

/// Where language-model examples come from.
#[derive(Clone, Debug)]
pub enum LmSource {
    /// Documents (one per file), tokenised, joined with the end-of-text token, cut into blocks.
    Text {
        files: Vec<PathBuf>,
        block_size: usize,
    },
    /// One example per line of integer ids.
    TokenIds(PathBuf),
}

/// Reads run_prune_gpt's token-id file: whitespace-separated integers, one sequence per line
/// (blank lines skipped). Every id must be below `vocab_size` and every line at most
/// `max_len` long.
pub fn read_token_ids(path: &Path, vocab_size: i64, max_len: usize) -> Result<Vec<Vec<i64>>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--token-ids {}: cannot read", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let ids = line
            .split_whitespace()
            .map(|w| {
                parse_id(w).ok_or_else(|| {
                    anyhow!(
                        "--token-ids {}: line {}: {w:?} is not an integer token id",
                        path.display(),
                        i + 1
                    )
                })
            })
            .collect::<Result<Vec<i64>>>()?;
        if let Some(bad) = ids.iter().find(|&&id| id < 0 || id >= vocab_size) {
            bail!(
                "--token-ids {}: line {}: token id {bad} is outside the model's vocabulary 0..{vocab_size}",
                path.display(),
                i + 1
            );
        }
        if ids.len() > max_len {
            bail!(
                "--token-ids {}: line {}: {} ids, more than the model's {max_len} positions",
                path.display(),
                i + 1,
                ids.len()
            );
        }
        out.push(ids);
    }
    if out.is_empty() {
        bail!("--token-ids {}: no token ids (empty file)", path.display());
    }
    Ok(out)
}

/// An integer, also as np.savetxt writes floats of integers ("12.0", "1.2e+01").
fn parse_id(w: &str) -> Option<i64> {
    w.parse::<i64>().ok().or_else(|| {
        let f: f64 = w.parse().ok()?;
        (f.fract() == 0.0 && f.abs() < 1e15).then_some(f as i64)
    })
}

/// Tokenises each file as one document, joins them with `separator` (the end-of-text token,
/// if the model has one) and cuts the stream into blocks of `block_size`, dropping the
/// remainder as transformers' run_clm does.
pub fn text_blocks(
    tokenizer: &TextTokenizer,
    files: &[PathBuf],
    block_size: usize,
    separator: Option<i64>,
    vocab_size: i64,
) -> Result<Vec<Vec<i64>>> {
    let mut docs = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f)
            .map_err(|e| anyhow!("--text {}: cannot read as UTF-8 text: {e}", f.display()))?;
        if text.trim().is_empty() {
            bail!("--text {}: empty file", f.display());
        }
        docs.push((text, None));
    }
    let encoded = tokenizer.encode_batch(&docs)?;
    let mut stream = Vec::new();
    for (i, e) in encoded.iter().enumerate() {
        if i > 0 {
            stream.extend(separator);
        }
        stream.extend_from_slice(&e.ids);
    }
    if let Some(bad) = stream.iter().find(|&&id| id >= vocab_size) {
        bail!(
            "--text: the tokenizer gives token id {bad} but the model's vocab_size is {vocab_size}; the tokenizer files do not belong to this checkpoint"
        );
    }
    if stream.len() < block_size {
        bail!(
            "--text {}: {} tokens, fewer than one block of --block-size {block_size}",
            files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(" "),
            stream.len()
        );
    }
    Ok(stream
        .chunks_exact(block_size)
        .map(<[i64]>::to_vec)
        .collect())
}

/// A causal LM batch's labels: its input ids, -100 on padding (never predicted).
pub fn causal_labels(batch: &Batch) -> Tensor {
    batch
        .input_ids
        .masked_fill(&batch.attention_mask.eq(0), -100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_ids_as_numpy_writes_them_and_bad_ones() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ids.txt");
        std::fs::write(&p, "1 2 3\n\n4.0 5.000000000000000000e+00 6\n7\n").unwrap();
        assert_eq!(
            read_token_ids(&p, 10, 8).unwrap(),
            vec![vec![1, 2, 3], vec![4, 5, 6], vec![7]]
        );
        let e = read_token_ids(&p, 7, 8).unwrap_err().to_string();
        assert!(e.contains("line 7") || e.contains("line 4"), "{e}");
        assert!(e.contains("token id 7") && e.contains("0..7"), "{e}");
        assert!(read_token_ids(&p, 10, 2)
            .unwrap_err()
            .to_string()
            .contains("positions"));
        std::fs::write(&p, "1 x\n").unwrap();
        assert!(read_token_ids(&p, 10, 8)
            .unwrap_err()
            .to_string()
            .contains("\"x\""));
        std::fs::write(&p, "\n").unwrap();
        assert!(read_token_ids(&p, 10, 8)
            .unwrap_err()
            .to_string()
            .contains("empty"));
    }
}
