//! What each head attends to, as means over non-padding query tokens (Clark et al. 2019):
//! weight on the first token, on separators, on punctuation, on itself, on the previous and
//! the next token; entropy and distance of its attention.
//!
//! Padding never counts: padded queries are dropped and padded keys' weights are zeroed
//! before anything is summed (a model gives them ~0 anyway; a hand-built tensor may not).
use anyhow::{bail, Result};
use tch::{Device, Kind, Tensor};

/// The statistics, in the order of every output (CSV columns, JSON keys, heatmaps).
pub const NAMES: [&str; 8] = [
    "first",
    "separator",
    "punctuation",
    "self",
    "previous",
    "next",
    "entropy",
    "distance",
];

/// Index of a statistic in `NAMES`.
pub fn index_of(name: &str) -> usize {
    NAMES.iter().position(|n| *n == name).unwrap_or(usize::MAX)
}

/// Which tokens of a batch are separators and punctuation: [batch, seq], 1.0 or 0.0.
pub struct TokenClasses {
    pub separator: Tensor,
    pub punctuation: Tensor,
}

/// Running sums over batches; `finish` turns them into means per head.
pub struct Accumulator {
    layers: i64,
    heads: i64,
    kept: Vec<Vec<i64>>,
    causal: bool,
    /// [statistics, layers, heads]
    sums: Tensor,
    /// Query tokens counted: all non-padding ones, those with a previous and with a next token.
    tokens: f64,
    with_previous: f64,
    with_next: f64,
}

/// Means per head: `values[s]` is [layers, heads] for statistic `NAMES[s]`; NaN for heads that
/// were pruned and for "next" in causal models (a query there cannot see the next token).
pub struct HeadStatistics {
    pub values: Vec<Vec<Vec<f64>>>,
    pub tokens: i64,
    pub causal: bool,
}

impl HeadStatistics {
    pub fn get(&self, name: &str) -> &Vec<Vec<f64>> {
        &self.values[index_of(name)]
    }
}

impl Accumulator {
    /// `kept`: original indices of the heads each layer has (pruned models have fewer).
    /// `causal`: the model masks future keys, so "next token" is not measured.
    pub fn new(layers: i64, heads: i64, kept: Vec<Vec<i64>>, causal: bool) -> Self {
        Accumulator {
            layers,
            heads,
            kept,
            causal,
            sums: Tensor::zeros(
                [NAMES.len() as i64, layers, heads],
                (Kind::Double, Device::Cpu),
            ),
            tokens: 0.0,
            with_previous: 0.0,
            with_next: 0.0,
        }
    }

    /// Adds one batch: `attentions[l]` is [batch, heads_l, seq, seq] (rows are queries),
    /// `attention_mask` [batch, seq] of 1 (token) and 0 (padding).
    pub fn add(
        &mut self,
        attentions: &[Tensor],
        attention_mask: &Tensor,
        classes: &TokenClasses,
    ) -> Result<()> {
        if attentions.len() as i64 != self.layers {
            bail!(
                "{} layers of attentions for a model of {} layers",
                attentions.len(),
                self.layers
            );
        }
        // Element-wise work in float32 (as the attentions come), sums in float64.
        let mask = attention_mask.to_kind(Kind::Float).to_device(Device::Cpu);
        let t = mask.size()[1];
        let keys = mask.view([-1, 1, 1, t]);
        let queries = mask.unsqueeze(1); // [b, 1, t]
        let sep = classes.separator.to_kind(Kind::Float).view([-1, 1, t, 1]);
        let punct = classes.punctuation.to_kind(Kind::Float).view([-1, 1, t, 1]);
        // A query has a previous (next) token when that position is a token too.
        let (prev_ok, next_ok) = if t > 1 {
            let head = mask.narrow(1, 0, t - 1);
            let tail = mask.narrow(1, 1, t - 1);
            let both = (&head * &tail).unsqueeze(1);
            (both.shallow_clone(), both)
        } else {
            let empty = mask.narrow(1, 0, 0).unsqueeze(1);
            (empty.shallow_clone(), empty)
        };
        let pos = Tensor::arange(t, (Kind::Float, Device::Cpu));
        let dist = (pos.unsqueeze(1) - pos.unsqueeze(0)).abs();
        for (l, attn) in attentions.iter().enumerate() {
            let a = attn.detach().to_device(Device::Cpu).to_kind(Kind::Float) * &keys;
            let per_query = |x: Tensor| -> Tensor {
                (x * &queries).sum_dim_intlist([0, 2].as_slice(), false, Kind::Double)
            };
            let diag = |offset: i64, ok: &Tensor| -> Tensor {
                (a.diagonal(offset, -2, -1) * ok).sum_dim_intlist(
                    [0, 2].as_slice(),
                    false,
                    Kind::Double,
                )
            };
            let rows = [
                per_query(a.select(-1, 0)),
                per_query(a.matmul(&sep).squeeze_dim(-1)),
                per_query(a.matmul(&punct).squeeze_dim(-1)),
                per_query(a.diagonal(0, -2, -1)),
                diag(-1, &prev_ok),
                diag(1, &next_ok),
                // p·log p with log of a clamped p: vectorised, and 0·finite = 0 exactly.
                per_query(-(&a * a.clamp_min(1e-30).log()).sum_dim_intlist(-1, false, Kind::Float)),
                per_query((&a * &dist).sum_dim_intlist(-1, false, Kind::Float)),
            ];
            let kept = Tensor::from_slice(&self.kept[l]);
            for (s, row) in rows.iter().enumerate() {
                let mut dst = self.sums.get(s as i64).get(l as i64);
                let updated = dst.index_select(0, &kept) + row;
                let _ = dst.index_copy_(0, &kept, &updated);
            }
        }
        self.tokens += mask.sum(Kind::Double).double_value(&[]);
        self.with_previous += prev_ok.sum(Kind::Double).double_value(&[]);
        self.with_next += next_ok.sum(Kind::Double).double_value(&[]);
        Ok(())
    }

    pub fn finish(&self) -> HeadStatistics {
        let mut values = Vec::with_capacity(NAMES.len());
        for (s, name) in NAMES.iter().enumerate() {
            let count = match *name {
                "previous" => self.with_previous,
                "next" => self.with_next,
                _ => self.tokens,
            };
            let sums: Vec<Vec<f64>> = Vec::try_from(self.sums.get(s as i64)).unwrap_or_default();
            let mut rows = vec![vec![f64::NAN; self.heads as usize]; self.layers as usize];
            for (l, kept) in self.kept.iter().enumerate() {
                for &h in kept {
                    let skip = count == 0.0 || (self.causal && *name == "next");
                    if !skip {
                        rows[l][h as usize] = sums[l][h as usize] / count;
                    }
                }
            }
            values.push(rows);
        }
        HeadStatistics {
            values,
            tokens: self.tokens as i64,
            causal: self.causal,
        }
    }
}

/// A token string that is punctuation only, once word-piece markers are stripped ("##" of
/// WordPiece, "Ġ" of byte-level BPE, "▁" of SentencePiece). Special tokens such as [SEP] or
/// </s> contain letters and never count.
pub fn is_punctuation(token: &str) -> bool {
    let t = token.strip_prefix("##").unwrap_or(token);
    let t = t.trim_start_matches(['Ġ', '▁']);
    !t.is_empty()
        && t.chars().all(|c| {
            c.is_ascii_punctuation()
                || matches!(
                    c,
                    '¡' | '¿' | '«' | '»' | '‘' | '’' | '“' | '”' | '–' | '—' | '…' | '·'
                )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(rows: &[f32], shape: &[i64]) -> Tensor {
        Tensor::from_slice(rows).view(shape)
    }

    fn classes(b: i64, t: i64) -> TokenClasses {
        TokenClasses {
            separator: Tensor::zeros([b, t], (Kind::Float, Device::Cpu)),
            punctuation: Tensor::zeros([b, t], (Kind::Float, Device::Cpu)),
        }
    }

    fn previous_token_head(n: usize) -> Vec<f32> {
        // Row i puts all its weight on i-1; row 0 (no previous token) on itself.
        let mut a = vec![0f32; n * n];
        for i in 0..n {
            a[i * n + i.saturating_sub(1)] = 1.0;
        }
        a
    }

    #[test]
    fn previous_token_head_scores_one() {
        let n = 5;
        let a = tensor(&previous_token_head(n), &[1, 1, n as i64, n as i64]);
        let mask = Tensor::ones([1, n as i64], (Kind::Int64, Device::Cpu));
        let mut acc = Accumulator::new(1, 1, vec![vec![0]], false);
        acc.add(&[a], &mask, &classes(1, n as i64)).unwrap();
        let s = acc.finish();
        assert_eq!(s.get("previous")[0][0], 1.0);
        assert_eq!(s.get("next")[0][0], 0.0);
        // Only query 0 looks at itself (and at the first token).
        assert!((s.get("self")[0][0] - 1.0 / n as f64).abs() < 1e-12);
        assert!((s.get("first")[0][0] - 2.0 / n as f64).abs() < 1e-12);
        assert_eq!(s.get("entropy")[0][0], 0.0);
        assert!((s.get("distance")[0][0] - (n as f64 - 1.0) / n as f64).abs() < 1e-12);
        assert_eq!(s.tokens, n as i64);
    }

    #[test]
    fn uniform_head_has_entropy_log_n_and_mean_distance() {
        let n = 4i64;
        let a = Tensor::full([1, 1, n, n], 1.0 / n as f64, (Kind::Float, Device::Cpu));
        let mask = Tensor::ones([1, n], (Kind::Int64, Device::Cpu));
        let mut cls = classes(1, n);
        cls.separator = tensor(&[0.0, 0.0, 0.0, 1.0], &[1, 4]);
        cls.punctuation = tensor(&[0.0, 1.0, 1.0, 0.0], &[1, 4]);
        let mut acc = Accumulator::new(1, 1, vec![vec![0]], false);
        acc.add(&[a], &mask, &cls).unwrap();
        let s = acc.finish();
        assert!((s.get("entropy")[0][0] - (n as f64).ln()).abs() < 1e-6);
        assert!((s.get("separator")[0][0] - 0.25).abs() < 1e-6);
        assert!((s.get("punctuation")[0][0] - 0.5).abs() < 1e-6);
        // Mean |i-j| over a 4x4 grid: (0+1+2+3 + 1+0+1+2 + 2+1+0+1 + 3+2+1+0)/16 = 1.25.
        assert!((s.get("distance")[0][0] - 1.25).abs() < 1e-6);
        for name in ["first", "self", "previous", "next"] {
            assert!((s.get(name)[0][0] - 0.25).abs() < 1e-6, "{name}");
        }
    }

    #[test]
    fn padding_never_counts() {
        // Example 0 has 3 tokens and 2 padding positions whose rows and columns carry junk;
        // example 1 fills all 5. Stats must equal those of the two unpadded examples.
        let t = 5usize;
        let mut a = vec![0f32; 2 * t * t];
        for i in 0..t {
            for j in 0..t {
                // Example 0: real rows put 0.5 on the previous token, the rest spread evenly
                // over real keys; padding keys get 0.9 (junk); padding rows are junk too.
                a[i * t + j] = if i >= 3 {
                    0.7
                } else if j >= 3 {
                    0.9
                } else if i > 0 && j == i - 1 {
                    0.5
                } else if i > 0 {
                    0.25
                } else {
                    1.0 / 3.0
                };
                a[t * t + i * t + j] = if (i > 0 && j == i - 1) || (i == 0 && j == 0) {
                    1.0
                } else {
                    0.0
                };
            }
        }
        let mask = Tensor::from_slice(&[1i64, 1, 1, 0, 0, 1, 1, 1, 1, 1]).view([2, 5]);
        let padded = tensor(&a, &[2, 1, 5, 5]);
        let mut acc = Accumulator::new(1, 1, vec![vec![0]], false);
        acc.add(&[padded], &mask, &classes(2, 5)).unwrap();
        let together = acc.finish();

        let mut alone = Accumulator::new(1, 1, vec![vec![0]], false);
        let first: Vec<f32> = (0..3)
            .flat_map(|i| (0..3).map(move |j| (i, j)))
            .map(|(i, j)| a[i * t + j])
            .collect();
        alone
            .add(
                &[tensor(&first, &[1, 1, 3, 3])],
                &Tensor::ones([1, 3], (Kind::Int64, Device::Cpu)),
                &classes(1, 3),
            )
            .unwrap();
        alone
            .add(
                &[tensor(&a[t * t..], &[1, 1, 5, 5])],
                &Tensor::ones([1, 5], (Kind::Int64, Device::Cpu)),
                &classes(1, 5),
            )
            .unwrap();
        let apart = alone.finish();
        assert_eq!(together.tokens, 8);
        for name in NAMES {
            let (x, y) = (together.get(name)[0][0], apart.get(name)[0][0]);
            assert!((x - y).abs() < 1e-12, "{name}: {x} vs {y}");
        }
        // previous: example 0 has 2 queries with 0.5, example 1 has 4 with 1.0 → 5/6.
        assert!((together.get("previous")[0][0] - 5.0 / 6.0).abs() < 1e-6);
    }

    #[test]
    fn causal_models_report_no_next_and_pruned_heads_are_nan() {
        let n = 3i64;
        let a = Tensor::full([1, 1, n, n], 1.0 / 3.0, (Kind::Float, Device::Cpu));
        let mask = Tensor::ones([1, n], (Kind::Int64, Device::Cpu));
        // Layer 0 keeps only head 1 of 2.
        let mut acc = Accumulator::new(1, 2, vec![vec![1]], true);
        acc.add(&[a], &mask, &classes(1, n)).unwrap();
        let s = acc.finish();
        assert!(s.get("next")[0][1].is_nan());
        assert!(s.get("first")[0][0].is_nan());
        assert!((s.get("first")[0][1] - 1.0 / 3.0).abs() < 1e-6);
    }

    #[test]
    fn punctuation_by_token_string() {
        for p in [".", ",", "##.", "Ġ,", "▁?", "--", "“", "'s'"] {
            assert_eq!(is_punctuation(p), p != "'s'", "{p}");
        }
        for w in ["[SEP]", "</s>", "a", "##ing", "Ġ", "", "1.5"] {
            assert!(!is_punctuation(w), "{w}");
        }
    }
}
