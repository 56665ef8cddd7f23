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
pub fn read_token_ids(
    path: &Path,
    vocab_size: i64,
    max_len: usize,
    flag: &str,
) -> Result<Vec<Vec<i64>>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{flag} {}: cannot read", path.display()))?;
    // A byte-order mark (Windows editors) is not part of the first id.
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
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
                        "{flag} {}: line {}: {w:?} is not an integer token id",
                        path.display(),
                        i + 1
                    )
                })
            })
            .collect::<Result<Vec<i64>>>()?;
        if let Some(bad) = ids.iter().find(|&&id| id < 0 || id >= vocab_size) {
            bail!(
                "{flag} {}: line {}: token id {bad} is outside the model's vocabulary 0..{vocab_size}",
                path.display(),
                i + 1
            );
        }
        if ids.len() > max_len {
            bail!(
                "{flag} {}: line {}: {} ids, more than the model's {max_len} positions",
                path.display(),
                i + 1,
                ids.len()
            );
        }
        out.push(ids);
    }
    if out.is_empty() {
        bail!("{flag} {}: no token ids (empty file)", path.display());
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
    flag: &str,
) -> Result<Vec<Vec<i64>>> {
    let mut docs = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f)
            .map_err(|e| anyhow!("{flag} {}: cannot read as UTF-8 text: {e}", f.display()))?;
        // A byte-order mark is no text: GPT-2's byte-level tokenizer would make tokens of it.
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        if text.trim().is_empty() {
            bail!("{flag} {}: empty file", f.display());
        }
        docs.push((text.to_string(), None));
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
            "{flag}: the tokenizer gives token id {bad} but the model's vocab_size is {vocab_size}; the tokenizer files do not belong to this checkpoint"
        );
    }
    if stream.len() < block_size {
        bail!(
            "{flag} {}: {} tokens, fewer than one block of --block-size {block_size}",
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

/// How `--task mlm` masks its examples: transformers' DataCollatorForLanguageModeling.
#[derive(Clone, Debug)]
pub struct MlmMasking {
    pub mask_id: i64,
    /// Ids never masked ([CLS], [SEP], padding, …).
    pub special: Vec<i64>,
    pub vocab_size: i64,
    pub seed: u64,
    /// Fraction of tokens predicted (0.15).
    pub probability: f64,
}

/// splitmix64: a tiny, portable generator, so masks do not depend on libtorch's RNG.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn uniform(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Masks each example as the collator does: each non-special token is chosen with
/// `probability`; a chosen token becomes the mask token (80 %), a random token (10 %) or stays
/// (10 %), and only chosen tokens have labels (-100 elsewhere). Example `i` draws from a
/// generator seeded by (seed, i), so every pass, batch size and order of a run masks the same
/// positions and scores stay comparable between masking steps. Returns the labels.
pub fn mask_examples(examples: &mut [Vec<i64>], m: &MlmMasking) -> Vec<Vec<i64>> {
    examples
        .iter_mut()
        .enumerate()
        .map(|(i, ids)| {
            let mut rng = SplitMix(m.seed ^ (i as u64).wrapping_mul(0xD1B5_4A32_D192_ED03));
            ids.iter_mut()
                .map(|id| {
                    if m.special.contains(id) || rng.uniform() >= m.probability {
                        return -100;
                    }
                    let label = *id;
                    let r = rng.uniform();
                    if r < 0.8 {
                        *id = m.mask_id;
                    } else if r < 0.9 {
                        *id = (rng.next() % m.vocab_size as u64) as i64;
                    }
                    label
                })
                .collect()
        })
        .collect()
}

/// The mask token and the special tokens of a model folder's tokenizer (tokenizer.json's
/// special added tokens, else BERT's bracketed tokens in vocab.txt).
pub fn special_tokens(dir: &Path) -> Result<(i64, Vec<i64>)> {
    let json = dir.join("tokenizer.json");
    let mut special = Vec::new();
    let mut mask = None;
    if json.is_file() {
        let text = std::fs::read_to_string(&json)
            .with_context(|| format!("{}: cannot read", json.display()))?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| anyhow!("{}: malformed JSON: {e}", json.display()))?;
        for t in v["added_tokens"].as_array().into_iter().flatten() {
            let (Some(id), Some(content)) = (t["id"].as_i64(), t["content"].as_str()) else {
                continue;
            };
            if t["special"].as_bool() == Some(true) {
                special.push(id);
                if content == "[MASK]" || content == "<mask>" {
                    mask = Some(id);
                }
            }
        }
    } else {
        let vocab = dir.join("vocab.txt");
        let text = std::fs::read_to_string(&vocab).map_err(|_| {
            anyhow!(
                "{}: --task mlm needs the tokenizer's mask token, and this folder has no tokenizer.json or vocab.txt",
                dir.display()
            )
        })?;
        for (i, tok) in text.lines().enumerate() {
            if ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"].contains(&tok) {
                special.push(i as i64);
                if tok == "[MASK]" {
                    mask = Some(i as i64);
                }
            }
        }
    }
    let mask = mask.ok_or_else(|| {
        anyhow!(
            "{}: the tokenizer has no mask token ([MASK] or <mask>) for --task mlm",
            dir.display()
        )
    })?;
    Ok((mask, special))
}

/// A batch's labels from per-example labels, padded with -100 to the batch's width.
pub fn batch_labels(batch: &Batch, labels: &[Vec<i64>]) -> Tensor {
    let (b, width) = (batch.len(), batch.input_ids.size()[1] as usize);
    let mut out = vec![-100i64; b * width];
    for (row, &i) in batch.indices.iter().enumerate() {
        out[row * width..row * width + labels[i].len()].copy_from_slice(&labels[i]);
    }
    Tensor::from_slice(&out)
        .view([b as i64, width as i64])
        .to_device(batch.input_ids.device())
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
    fn mlm_masking_is_seeded_per_example_and_spares_special_tokens() {
        let m = MlmMasking {
            mask_id: 4,
            special: vec![2, 3],
            vocab_size: 50,
            seed: 42,
            probability: 0.15,
        };
        let original: Vec<Vec<i64>> = (0..200)
            .map(|i| {
                let mut v = vec![2];
                v.extend((0..30).map(|j| 5 + (i * 7 + j) % 45));
                v.push(3);
                v
            })
            .collect();
        let mut a = original.clone();
        let la = mask_examples(&mut a, &m);
        // Another seed masks other positions; the same seed the same ones.
        let mut b = original.clone();
        let lb = mask_examples(
            &mut b,
            &MlmMasking {
                seed: 7,
                ..m.clone()
            },
        );
        assert_ne!(la, lb);
        let mut again = original.clone();
        assert_eq!(mask_examples(&mut again, &m), la);
        assert_eq!(again, a);
        let (mut chosen, mut masked, mut total) = (0, 0, 0);
        for ((ids, labels), orig) in a.iter().zip(&la).zip(&original) {
            assert_eq!(labels[0], -100);
            assert_eq!(*labels.last().unwrap(), -100);
            for ((id, l), o) in ids.iter().zip(labels).zip(orig) {
                total += 1;
                if *l != -100 {
                    assert_eq!(l, o);
                    chosen += 1;
                    masked += (*id == 4) as i32;
                } else {
                    assert_eq!(id, o);
                }
            }
        }
        let rate = chosen as f64 / total as f64;
        assert!((0.12..0.17).contains(&rate), "{rate}");
        let share = masked as f64 / chosen as f64;
        assert!((0.74..0.86).contains(&share), "{share}");
    }

    #[test]
    fn token_ids_as_numpy_writes_them_and_bad_ones() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ids.txt");
        std::fs::write(&p, "1 2 3\n\n4.0 5.000000000000000000e+00 6\n7\n").unwrap();
        assert_eq!(
            read_token_ids(&p, 10, 8, "--token-ids").unwrap(),
            vec![vec![1, 2, 3], vec![4, 5, 6], vec![7]]
        );
        let e = read_token_ids(&p, 7, 8, "--token-ids")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 7") || e.contains("line 4"), "{e}");
        assert!(e.contains("token id 7") && e.contains("0..7"), "{e}");
        assert!(read_token_ids(&p, 10, 2, "--token-ids")
            .unwrap_err()
            .to_string()
            .contains("positions"));
        std::fs::write(&p, "1 x\n").unwrap();
        assert!(read_token_ids(&p, 10, 8, "--token-ids")
            .unwrap_err()
            .to_string()
            .contains("\"x\""));
        std::fs::write(&p, "\n").unwrap();
        assert!(read_token_ids(&p, 10, 8, "--token-ids")
            .unwrap_err()
            .to_string()
            .contains("empty"));
        std::fs::write(&p, "\u{feff}1 2 3\r\n4 5\r\n").unwrap();
        assert_eq!(
            read_token_ids(&p, 10, 8, "--token-ids").unwrap(),
            vec![vec![1, 2, 3], vec![4, 5]]
        );
    }

    /// A byte-order mark adds no tokens (GPT-2's byte-level tokenizer would make three).
    #[test]
    fn text_blocks_skip_a_byte_order_mark() {
        let dir = tempfile::tempdir().unwrap();
        let gpt2 = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-gpt2");
        let tokenizer = TextTokenizer::from_dir(&gpt2, usize::MAX / 2).unwrap();
        let blocks = |text: &str| {
            let p = dir.path().join("t.txt");
            std::fs::write(&p, text).unwrap();
            text_blocks(&tokenizer, &[p], 2, Some(0), 300, "--text").unwrap()
        };
        let plain = blocks("hello world hello world");
        assert_eq!(blocks("\u{feff}hello world hello world"), plain);
    }
}
