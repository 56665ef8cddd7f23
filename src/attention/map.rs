//! A map of the heads (Clark et al. 2019, section 6): how differently two heads attend,
//! as the Jensen–Shannon distance between their attention distributions on the same query
//! token, averaged over every non-padding query of every example; then classical MDS to 2-D.
use anyhow::{bail, Result};
use tch::{Device, Kind, Tensor};

/// Elements per chunk of the pairwise computation: small enough that the temporaries stay in
/// cache (large ones cost page faults and memory bandwidth: 3x slower measured).
const CHUNK_ELEMENTS: i64 = 1 << 18;

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

/// Entropy of each row over the last axis, 0·log 0 = 0 (log of a clamped value: vectorised,
/// unlike xlogy, and exact since 0 times a finite log is 0).
fn entropy(p: &Tensor) -> Tensor {
    -(p * p.clamp_min(1e-300).log()).sum_dim_intlist(-1, false, Kind::Double)
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
        for b in 0..mask.size()[0] {
            let real = mask.get(b).nonzero().squeeze_dim(-1);
            if real.numel() == 0 {
                continue;
            }
            // [heads, n, n] over the example's tokens only: padding is neither query nor key.
            let parts: Vec<Tensor> = attentions
                .iter()
                .map(|a| {
                    a.get(b)
                        .detach()
                        .to_device(Device::Cpu)
                        .index_select(1, &real)
                        .index_select(2, &real)
                        .to_kind(Kind::Double)
                })
                .collect();
            let p = Tensor::cat(&parts, 0);
            self.add_example(&p);
        }
        Ok(())
    }

    /// One example's attentions [heads, n, n] of every present head.
    fn add_example(&mut self, p: &Tensor) {
        let (h, n) = (p.size()[0], p.size()[1]);
        let picked = sampled_queries(n as usize, self.queries);
        let p = p.index_select(1, &Tensor::from_slice(&picked)); // [h, q, n]
        let q = picked.len() as i64;
        let ent = entropy(&p); // [h, q]
        let rows = (CHUNK_ELEMENTS / (h * q * n).max(1)).max(1);
        let mut a0 = 0;
        while a0 < h {
            // Pairs (a, b) with b ≥ a only; `finish` mirrors the upper triangle.
            let len = rows.min(h - a0);
            let rest = p.narrow(0, a0, h - a0);
            let s = p.narrow(0, a0, len).unsqueeze(1) + rest.unsqueeze(0); // p + q
                                                                           // H(m) for m = s/2 is ln 2 − ½ Σ s ln s, as every row of s sums to 2.
            let hm = entropy(&s) * 0.5 + std::f64::consts::LN_2;
            let jsd = hm
                - (ent.narrow(0, a0, len).unsqueeze(1) + ent.narrow(0, a0, h - a0).unsqueeze(0))
                    * 0.5;
            let d = jsd
                .clamp_min(0.0)
                .sqrt()
                .sum_dim_intlist(-1, false, Kind::Double);
            let mut dst = self.sums.narrow(0, a0, len).narrow(1, a0, h - a0);
            dst += d;
            a0 += len;
        }
        self.tokens += q as f64;
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
        assert!((d[0][2] - 2f64.ln().sqrt()).abs() < 1e-12);
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
