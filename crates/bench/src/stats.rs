//! Order statistics of a series of measurements.
//!
//! Percentiles are nearest-rank on the sorted sample (no interpolation): with 20 cold starts
//! p90 is the 18th value, with 1,000 warm invocations p99 is the 990th. Means are reported but
//! never compared: one scheduling hiccup on a shared machine moves a mean, not a median.

use serde::{Deserialize, Serialize};

/// A summary of one series, in the series' unit (milliseconds, microseconds, KiB, ...).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub n: usize,
    pub min: f64,
    pub p10: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

impl Summary {
    /// Summarises `values`; `None` for an empty series.
    pub fn of(values: &[f64]) -> Option<Self> {
        if values.is_empty() {
            return None;
        }
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let rank = |p: f64| {
            // Nearest rank: the smallest value with at least p% of the sample at or below it.
            let k = (p / 100.0 * sorted.len() as f64).ceil() as usize;
            sorted[k.clamp(1, sorted.len()) - 1]
        };
        Some(Self {
            n: sorted.len(),
            min: sorted[0],
            p10: rank(10.0),
            p50: rank(50.0),
            p90: rank(90.0),
            p99: rank(99.0),
            max: sorted[sorted.len() - 1],
            mean: sorted.iter().sum::<f64>() / sorted.len() as f64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles_of_one_to_a_hundred() {
        let values: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        let s = Summary::of(&values).unwrap();
        assert_eq!(
            (s.min, s.p10, s.p50, s.p90, s.p99, s.max),
            (1.0, 10.0, 50.0, 90.0, 99.0, 100.0)
        );
        assert!((s.mean - 50.5).abs() < 1e-9);
    }

    #[test]
    fn a_single_value_is_every_percentile() {
        let s = Summary::of(&[7.0]).unwrap();
        assert_eq!((s.min, s.p50, s.p99, s.max), (7.0, 7.0, 7.0, 7.0));
    }

    #[test]
    fn an_empty_series_has_no_summary() {
        assert!(Summary::of(&[]).is_none());
    }
}
