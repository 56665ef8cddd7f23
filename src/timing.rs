//! Honest speed comparisons: two models timed in alternation (a busy machine's speed drifts
//! over minutes, and alternating spreads the drift over both), reported with their spread, and
//! a difference claimed only when the ranges of the timed passes do not overlap.
use serde::{Deserialize, Serialize};

/// Seconds of repeated passes: the smallest, the median and the largest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    pub min: f64,
    pub median: f64,
    pub max: f64,
}

impl Spread {
    pub fn of(samples: &[f64]) -> Spread {
        let mut v = samples.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = match n {
            0 => f64::NAN,
            _ if n % 2 == 1 => v[n / 2],
            _ => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        };
        Spread {
            min: v.first().copied().unwrap_or(f64::NAN),
            median,
            max: v.last().copied().unwrap_or(f64::NAN),
        }
    }
}

/// What the timed passes allow one to say about "after" against "before".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every pass of "after" was faster than every pass of "before".
    Faster,
    /// Every pass of "after" was slower than every pass of "before".
    Slower,
    /// The ranges overlap: the difference is within the noise of this machine.
    WithinNoise,
    /// One pass each: no spread, so no claim.
    SinglePass,
}

impl Verdict {
    pub fn of(before: &[f64], after: &[f64]) -> Verdict {
        if before.len() < 2 || after.len() < 2 {
            return Verdict::SinglePass;
        }
        let (b, a) = (Spread::of(before), Spread::of(after));
        if a.max < b.min {
            Verdict::Faster
        } else if a.min > b.max {
            Verdict::Slower
        } else {
            Verdict::WithinNoise
        }
    }

    /// How the comparison reads in a sentence, with the median speed-up when there is one.
    pub fn describe(self, speedup: f64) -> String {
        match self {
            Verdict::Faster => format!("x{speedup:.2} faster (every pass)"),
            Verdict::Slower => format!("x{speedup:.2}: slower (every pass)"),
            Verdict::WithinNoise => "within noise (the timed passes overlap)".into(),
            Verdict::SinglePass => {
                "one timed pass each: too few to tell (use --timing-runs 3 or more)".into()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_and_verdicts() {
        assert_eq!(
            Spread::of(&[3.0, 1.0, 2.0]),
            Spread {
                min: 1.0,
                median: 2.0,
                max: 3.0
            }
        );
        assert_eq!(Spread::of(&[1.0, 4.0]).median, 2.5);
        assert_eq!(
            Verdict::of(&[2.0, 2.1, 2.2], &[1.0, 1.1, 1.2]),
            Verdict::Faster
        );
        assert_eq!(Verdict::of(&[1.0, 1.1], &[2.0, 2.1]), Verdict::Slower);
        // The case: one busy pass made the pruned model look slower.
        assert_eq!(
            Verdict::of(&[10.2, 10.0, 14.0], &[9.5, 14.1, 9.9]),
            Verdict::WithinNoise
        );
        assert_eq!(Verdict::of(&[10.0], &[14.0]), Verdict::SinglePass);
        assert!(Verdict::WithinNoise.describe(0.72).contains("within noise"));
    }
}
