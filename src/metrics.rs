//! Metric arithmetic with transformers' keys: acc, f1, mcc, pearson, spearmanr (which a task reports,
//! and acc_and_f1 and corr: `data::spec`).
use std::collections::BTreeMap;

pub type Metrics = BTreeMap<String, f64>;

pub fn accuracy(preds: &[i64], labels: &[i64]) -> f64 {
    if preds.is_empty() {
        return 0.0;
    }
    preds.iter().zip(labels).filter(|(p, l)| p == l).count() as f64 / preds.len() as f64
}

/// F1 of the positive class 1 (sklearn's binary F1; 0 when there is no true positive).
pub fn f1(preds: &[i64], labels: &[i64]) -> f64 {
    let (mut tp, mut fp, mut fnn) = (0.0, 0.0, 0.0);
    for (&p, &l) in preds.iter().zip(labels) {
        match (p == 1, l == 1) {
            (true, true) => tp += 1.0,
            (true, false) => fp += 1.0,
            (false, true) => fnn += 1.0,
            _ => {}
        }
    }
    if tp == 0.0 {
        0.0
    } else {
        2.0 * tp / (2.0 * tp + fp + fnn)
    }
}

/// Matthews correlation (sklearn's multiclass form; 0 when a prediction or label is constant).
pub fn matthews(preds: &[i64], labels: &[i64]) -> f64 {
    let classes = preds
        .iter()
        .chain(labels)
        .copied()
        .max()
        .map_or(0, |m| m as usize + 1);
    let mut confusion = vec![vec![0f64; classes]; classes];
    for (&p, &l) in preds.iter().zip(labels) {
        confusion[l as usize][p as usize] += 1.0;
    }
    let t_k: Vec<f64> = confusion.iter().map(|r| r.iter().sum()).collect();
    let p_k: Vec<f64> = (0..classes)
        .map(|k| confusion.iter().map(|r| r[k]).sum())
        .collect();
    let c: f64 = (0..classes).map(|k| confusion[k][k]).sum();
    let s = preds.len() as f64;
    let cov_ytyp = c * s - t_k.iter().zip(&p_k).map(|(t, p)| t * p).sum::<f64>();
    let cov_ypyp = s * s - p_k.iter().map(|p| p * p).sum::<f64>();
    let cov_ytyt = s * s - t_k.iter().map(|t| t * t).sum::<f64>();
    if cov_ypyp * cov_ytyt == 0.0 {
        0.0
    } else {
        cov_ytyp / (cov_ytyt * cov_ypyp).sqrt()
    }
}

/// Pearson correlation; NaN when either side is constant (as scipy returns).
pub fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    if sxx == 0.0 || syy == 0.0 {
        f64::NAN
    } else {
        sxy / (sxx * syy).sqrt()
    }
}

/// Ranks from 1, ties given the average of their ranks.
pub fn average_ranks(x: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..x.len()).collect();
    order.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut ranks = vec![0.0; x.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && x[order[j + 1]] == x[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            ranks[k] = rank;
        }
        i = j + 1;
    }
    ranks
}

pub fn spearman(x: &[f64], y: &[f64]) -> f64 {
    pearson(&average_ranks(x), &average_ranks(y))
}

/// A metric as the summary lines print it: counts (`tokens`) whole, scores to 4 decimals.
pub fn display(name: &str, value: f64) -> String {
    if name == "tokens" {
        format!("{name} {value:.0}")
    } else {
        format!("{name} {value:.4}")
    }
}

/// Every metric on one line ("accuracy 0.8400, f1 0.8800"); empty for none.
pub fn display_all(metrics: &Metrics) -> String {
    let shown: Vec<String> = metrics.iter().map(|(k, v)| display(k, *v)).collect();
    shown.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accuracy_and_f1_by_hand() {
        // tp=2 (idx 0,1), fp=1 (idx 2), fn=1 (idx 3), tn=1 (idx 4)
        let p = [1, 1, 1, 0, 0];
        let l = [1, 1, 0, 1, 0];
        assert!((accuracy(&p, &l) - 0.6).abs() < 1e-12);
        assert!((f1(&p, &l) - 4.0 / 6.0).abs() < 1e-12);
        // Only the negative class predicted: F1 is 0, as sklearn gives.
        assert_eq!(f1(&[0, 0, 0], &[1, 0, 1]), 0.0);
    }

    #[test]
    fn matthews_by_hand_and_degenerate() {
        // Confusion tp=2 fp=1 fn=1 tn=1: (2·1 − 1·1)/sqrt(3·3·2·2) = 1/6
        let p = [1, 1, 1, 0, 0];
        let l = [1, 1, 0, 1, 0];
        assert!((matthews(&p, &l) - 1.0 / 6.0).abs() < 1e-12);
        assert_eq!(matthews(&[1, 1, 1], &[1, 0, 1]), 0.0);
        assert!((matthews(&[0, 1, 0, 1], &[0, 1, 0, 1]) - 1.0).abs() < 1e-12);
        assert!((matthews(&[1, 0, 1, 0], &[0, 1, 0, 1]) + 1.0).abs() < 1e-12);
    }

    #[test]
    fn correlations_with_ties_and_constants() {
        let x = [1.0, 2.0, 3.0, 4.0];
        let y = [2.0, 4.0, 6.0, 9.0];
        assert!((spearman(&x, &y) - 1.0).abs() < 1e-12);
        // Pearson by hand: mean x 2.5, mean y 5.25.
        let expected = 11.5 / (5.0f64 * 26.75).sqrt();
        assert!((pearson(&x, &y) - expected).abs() < 1e-12);
        assert_eq!(
            average_ranks(&[10.0, 20.0, 20.0, 5.0]),
            vec![2.0, 3.5, 3.5, 1.0]
        );
        assert!(pearson(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]).is_nan());
    }

    #[test]
    fn token_counts_are_printed_whole() {
        assert_eq!(display("tokens", 7843.0), "tokens 7843");
        assert_eq!(display("loss", 3.04714975), "loss 3.0471");
    }
}
