//! NaN and infinity stop a run where they first appear: a model with a NaN weight otherwise
//! yields metrics of NaN logits, importance that never falls below a threshold, and pictures
//! of garbage, all with exit code 0.
use anyhow::{bail, Result};
use tch::{Kind, Tensor};

/// Whether every value of `t` is finite (no NaN, no ±infinity).
pub fn all_finite(t: &Tensor) -> bool {
    if !t.is_floating_point() || t.numel() == 0 {
        return true;
    }
    // One reduction that reads `t` once: min and max propagate NaN, and are finite exactly
    // when every value is (isfinite().all() takes four passes and two temporaries).
    let (lo, hi) = t.aminmax(None, false);
    lo.double_value(&[]).is_finite() && hi.double_value(&[]).is_finite()
}

/// Errors unless `t` is all finite: "non-finite {what} {place}" with the first bad position.
pub fn ensure_finite(t: &Tensor, what: &str, place: impl FnOnce() -> String) -> Result<()> {
    if all_finite(t) {
        return Ok(());
    }
    let first = first_bad(t);
    bail!("non-finite {what} {} (first at index {first:?})", place())
}

/// Checks one batch's logits [examples, outputs]; the error names the batch and the first
/// example (its position in the data file, counting from 0) whose logits are not finite.
pub fn check_logits(logits: &Tensor, batch: usize, indices: &[usize]) -> Result<()> {
    if all_finite(logits) {
        return Ok(());
    }
    let row = first_bad(logits).first().copied().unwrap_or(0) as usize;
    let example = indices.get(row).copied().unwrap_or(row);
    let (lo, hi) = (
        indices.iter().min().copied().unwrap_or(0),
        indices.iter().max().copied().unwrap_or(0),
    );
    bail!(
        "non-finite logits in batch {batch} (examples {lo}..{hi}; first at example {example}): the model's weights or inputs hold NaN or infinity"
    )
}

/// Index of the first non-finite element.
pub fn first_bad(t: &Tensor) -> Vec<i64> {
    let bad = t.isfinite().logical_not().nonzero();
    if bad.size()[0] == 0 {
        return Vec::new();
    }
    Vec::try_from(bad.get(0).to_kind(Kind::Int64)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_batch_and_first_example() {
        let ok = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0]).view([2, 2]);
        assert!(check_logits(&ok, 0, &[7, 9]).is_ok());
        let bad = Tensor::from_slice(&[1.0f32, 2.0, f32::NAN, 4.0]).view([2, 2]);
        let e = check_logits(&bad, 3, &[70, 64]).unwrap_err().to_string();
        assert!(
            e.contains("batch 3") && e.contains("example 64") && e.contains("64..70"),
            "{e}"
        );
        let inf = Tensor::from_slice(&[f64::INFINITY]);
        let e = ensure_finite(&inf, "importance", || "after batch 1".into())
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "non-finite importance after batch 1 (first at index [0])"
        );
        assert!(all_finite(&Tensor::from_slice(&[1i64, 2])));
    }
}
