//! A map of the heads (Clark et al. 2019, section 6): how differently two heads attend,
//! as the Jensen–Shannon distance between their attention distributions on the same query
//! token, averaged over every non-padding query of every example; then classical MDS to 2-D.
use anyhow::{bail, Result};
use tch::{Device, Kind, Tensor};

/// Elements per chunk of the pairwise computation: large enough that both threads get work,
/// small enough that the temporaries stay in cache (large ones cost page faults and memory
/// bandwidth: 3x slower measured).
const CHUNK_ELEMENTS: i64 = 1 << 20;

/// Running sums of per-token JS distances between every pair of heads.
pub struct DistanceAccumulator {
    layers: i64,
    heads: i64,
    /// Flat original index (layer · heads + head) of every head the model has.
    present: Vec<i64>,
    sums: Tensor,
    tokens: f64,
    /// Query positions per example used for the distances (0: all).
    queries: usize,
}

/// `k` query positions spread evenly over `n` tokens (all of them when `k` is 0 or ≥ n):
/// position ⌊i·n/k⌋ for i in 0..k, so the first token is always among them.
pub fn sampled_queries(n: usize, k: usize) -> Vec<i64> {
    if k == 0 || k >= n {
        return (0..n as i64).collect();
    }
    (0..k).map(|i| (i * n / k) as i64).collect()
}

/// Σ x·ln x over the last axis, for x > 0 (the caller keeps zeros out: a log of its own
/// rather than xlogy's 0·ln 0 case, so it vectorises; 3 passes over x).
fn sum_x_ln_x(x: &Tensor) -> Tensor {
    (x.log() * x).sum_dim_intlist(-1, false, Kind::Float)
}

impl DistanceAccumulator {
    /// `queries`: how many query positions of each example enter the distances (0: all);
    /// the pairwise cost grows with heads² · queries · tokens, so long inputs need a sample.
    pub fn new(layers: i64, heads: i64, kept: &[Vec<i64>], queries: usize) -> Self {
        let present: Vec<i64> = kept
            .iter()
            .enumerate()
            .flat_map(|(l, hs)| hs.iter().map(move |h| l as i64 * heads + h))
            .collect();
        let n = present.len() as i64;
        DistanceAccumulator {
            layers,
            heads,
            present,
            sums: Tensor::zeros([n, n], (Kind::Double, Device::Cpu)),
            tokens: 0.0,
            queries,
        }
    }

    /// Adds a batch: `attentions[l]` [batch, heads_l, seq, seq], `attention_mask` [batch, seq].
    pub fn add(&mut self, attentions: &[Tensor], attention_mask: &Tensor) -> Result<()> {
        if attentions.len() as i64 != self.layers {
            bail!(
                "{} layers of attentions for a model of {} layers",
                attentions.len(),
                self.layers
            );
        }
        let mask = attention_mask.to_device(Device::Cpu).to_kind(Kind::Bool);
        // The sampled queries of every example of the batch, as (example, position) rows.
        let (mut rows_b, mut rows_q) = (Vec::new(), Vec::new());
        for b in 0..mask.size()[0] {
            let real: Vec<i64> = Vec::try_from(mask.get(b).nonzero().squeeze_dim(-1))?;
            for i in sampled_queries(real.len(), self.queries) {
                rows_b.push(b);
                rows_q.push(real[i as usize]);
            }
        }
        if rows_b.is_empty() {
            return Ok(());
        }
        let (rows_b, rows_q) = (Tensor::from_slice(&rows_b), Tensor::from_slice(&rows_q));
        // [heads, rows, seq]: each row's distribution over its example's keys; padding keys
        // are zeroed, so they add 0·ln 0 = 0 and only the example's tokens count.
        let keys = mask
            .index_select(0, &rows_b)
            .to_kind(Kind::Float)
            .unsqueeze(0);
        let parts: Vec<Tensor> = attentions
            .iter()
            .map(|a| {
                a.detach()
                    .to_device(Device::Cpu)
                    .to_kind(Kind::Float)
                    .index(&[Some(&rows_b), None, Some(&rows_q)])
                    .transpose(0, 1)
            })
            .collect();
        let p = (Tensor::cat(&parts, 0) * keys).contiguous();
        self.add_rows(&p);
        Ok(())
    }

    /// Query rows [heads, rows, keys] of every present head (each row sums to 1 over the
    /// example's keys), all pairs of heads at once in chunks. Element-wise work and the sums
    /// over keys in float32 (vectorised logs: the map ran 3.5x faster than in float64, and
    /// its distances moved by < 2e-8 on MRPC dev); sums over queries in float64.
    fn add_rows(&mut self, p: &Tensor) {
        let (h, r, t) = (p.size()[0], p.size()[1], p.size()[2]);
        // Halves of the probabilities, zeros raised to 1e-30 (adds < 1e-27 to any sum) so that
        // no log meets 0: then m = half_a + half_b is the mixture and no clamp pass is needed.
        let half = p.clamp_min(1e-30) * 0.5;
        // Σ p ln p, computed from half + half exactly as the mixture sums below: two identical
        // heads then give exactly 0.
        let own = sum_x_ln_x(&(&half + &half)); // [h, r]
        let chunk = CHUNK_ELEMENTS;
        // Rows in slices so that one head against all the others fits a chunk.
        let rows = (chunk / (h * t).max(1)).clamp(1, r);
        let mut r0 = 0;
        while r0 < r {
            let rn = rows.min(r - r0);
            let half = half.narrow(1, r0, rn);
            let own = own.narrow(1, r0, rn);
            let per_pair = (chunk / (h * rn * t).max(1)).max(1);
            let mut a0 = 0;
            while a0 < h {
                // Pairs (a, b) with b ≥ a only; `finish` mirrors the upper triangle.
                let len = per_pair.min(h - a0);
                let m =
                    half.narrow(0, a0, len).unsqueeze(1) + half.narrow(0, a0, h - a0).unsqueeze(0);
                // JS = H(m) − ½(H(p) + H(q)) = ½(Σ p ln p + Σ q ln q) − Σ m ln m.
                let jsd = (own.narrow(0, a0, len).unsqueeze(1)
                    + own.narrow(0, a0, h - a0).unsqueeze(0))
                    * 0.5
                    - sum_x_ln_x(&m);
                let d = jsd
                    .clamp_min(0.0)
                    .sqrt()
                    .sum_dim_intlist(-1, false, Kind::Double);
                let mut dst = self.sums.narrow(0, a0, len).narrow(1, a0, h - a0);
                dst += d;
                a0 += len;
            }
            r0 += rn;
        }
        self.tokens += r as f64;
    }

    /// [layers·heads]² mean distances (NaN rows and columns for pruned heads).
    pub fn finish(&self) -> Vec<Vec<f64>> {
        let total = (self.layers * self.heads) as usize;
        let mut out = vec![vec![f64::NAN; total]; total];
        if self.tokens == 0.0 {
            return out;
        }
        let upper = (&self.sums / self.tokens).triu(1);
        let mean = &upper + upper.transpose(0, 1);
        let rows: Vec<Vec<f64>> = Vec::try_from(mean).unwrap_or_default();
        for (i, &a) in self.present.iter().enumerate() {
            for (j, &b) in self.present.iter().enumerate() {
                out[a as usize][b as usize] = if i == j { 0.0 } else { rows[i][j] };
            }
        }
        out
    }
}

/// Classical (Torgerson) MDS of a distance matrix into 2-D: the top two eigenvectors of the
/// double-centred squared distances, scaled by the roots of their eigenvalues. Rows with NaN
/// (pruned heads) get NaN coordinates.
pub fn classical_mds(distances: &[Vec<f64>]) -> Vec<[f64; 2]> {
    let keep: Vec<usize> = (0..distances.len())
        .filter(|&i| distances[i].iter().any(|v| v.is_finite()))
        .collect();
    let mut out = vec![[f64::NAN; 2]; distances.len()];
    let n = keep.len() as i64;
    if n < 2 {
        for &i in &keep {
            out[i] = [0.0, 0.0];
        }
        return out;
    }
    let flat: Vec<f64> = keep
        .iter()
        .flat_map(|&i| keep.iter().map(move |&j| (i, j)))
        .map(|(i, j)| distances[i][j].powi(2))
        .collect();
    let d2 = Tensor::from_slice(&flat).view([n, n]);
    let j = Tensor::eye(n, (Kind::Double, Device::Cpu)) - 1.0 / n as f64;
    let b = j.matmul(&d2).matmul(&j) * -0.5;
    let b = (&b + b.transpose(0, 1)) * 0.5;
    // eigh returns ascending eigenvalues: the last two are the largest.
    let (values, vectors) = b.linalg_eigh("L");
    let values: Vec<f64> = Vec::try_from(values).unwrap_or_default();
    let vectors: Vec<Vec<f64>> = Vec::try_from(vectors).unwrap_or_default();
    let top = [n as usize - 1, n as usize - 2];
    for (r, &i) in keep.iter().enumerate() {
        for (c, &k) in top.iter().enumerate() {
            // A fixed sign (largest component positive) so reruns draw the same picture.
            let col: Vec<f64> = vectors.iter().map(|row| row[k]).collect();
            let sign = if col
                .iter()
                .fold(0.0f64, |m, v| if v.abs() > m.abs() { *v } else { m })
                < 0.0
            {
                -1.0
            } else {
                1.0
            };
            out[i][c] = sign * vectors[r][k] * values[k].max(0.0).sqrt();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_heads_are_at_distance_zero_and_disjoint_ones_at_sqrt_ln2() {
        // Head 0 and 1 attend identically; head 2 puts its weight where they put none.
        let a = Tensor::from_slice(&[
            1.0f32, 0.0, 1.0, 0.0, // head 0
            1.0, 0.0, 1.0, 0.0, // head 1
            0.0, 1.0, 0.0, 1.0, // head 2
        ])
        .view([1, 3, 2, 2]);
        let mask = Tensor::ones([1, 2], (Kind::Int64, Device::Cpu));
        let mut acc = DistanceAccumulator::new(1, 3, &[vec![0, 1, 2]], 0);
        acc.add(&[a], &mask).unwrap();
        let d = acc.finish();
        assert_eq!(d[0][1], 0.0);
        // float32 element-wise work: ln 2 to float32 precision.
        assert!((d[0][2] - 2f64.ln().sqrt()).abs() < 1e-6);
        assert_eq!(d[2][0], d[0][2]);
    }

    #[test]
    fn sampled_queries_spread_evenly() {
        assert_eq!(sampled_queries(4, 0), vec![0, 1, 2, 3]);
        assert_eq!(sampled_queries(4, 8), vec![0, 1, 2, 3]);
        assert_eq!(sampled_queries(10, 4), vec![0, 2, 5, 7]);
    }

    #[test]
    fn mds_recovers_points_on_a_line() {
        let xs = [0.0f64, 1.0, 3.0, 7.0];
        let d: Vec<Vec<f64>> = xs
            .iter()
            .map(|a| xs.iter().map(|b| (a - b).abs()).collect())
            .collect();
        let p = classical_mds(&d);
        for i in 0..4 {
            for j in 0..4 {
                let e = ((p[i][0] - p[j][0]).powi(2) + (p[i][1] - p[j][1]).powi(2)).sqrt();
                assert!((e - d[i][j]).abs() < 1e-9, "{i},{j}: {e}");
            }
        }
    }
}
