//! Latency samples and their summary. Every sample is kept (a run has at most a few
//! hundred thousand), so percentiles are exact rather than bucketed.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

/// Summarises latencies given in microseconds (sorts them in place).
pub fn summarize(samples_us: &mut [u32]) -> Latency {
    if samples_us.is_empty() {
        return Latency::default();
    }
    samples_us.sort_unstable();
    let ms = |us: u32| f64::from(us) / 1000.0;
    let at = |q: f64| {
        // Nearest-rank percentile.
        let rank = (q * samples_us.len() as f64).ceil() as usize;
        ms(samples_us[rank.clamp(1, samples_us.len()) - 1])
    };
    let sum: u64 = samples_us.iter().map(|&s| u64::from(s)).sum();
    Latency {
        p50_ms: at(0.50),
        p90_ms: at(0.90),
        p99_ms: at(0.99),
        max_ms: ms(samples_us[samples_us.len() - 1]),
        mean_ms: sum as f64 / samples_us.len() as f64 / 1000.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let mut v: Vec<u32> = (1..=100).rev().map(|i| i * 1000).collect();
        let l = summarize(&mut v);
        assert_eq!(l.p50_ms, 50.0);
        assert_eq!(l.p99_ms, 99.0);
        assert_eq!(l.max_ms, 100.0);
        assert_eq!(summarize(&mut []), Latency::default());
    }
}
