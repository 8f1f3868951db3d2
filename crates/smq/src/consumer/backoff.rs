//! Exponential backoff with full jitter: each wait is uniform in
//! `[0, min(max, base * 2^failures))`, so receivers that failed together do
//! not retry together, and the expected wait still doubles per failure.

use std::time::Duration;

use rand::Rng as _;

/// Consecutive failures beyond which the ceiling stops doubling (2^16 times
/// the base is past any sensible maximum; it also keeps the shift in range).
const MAX_DOUBLINGS: u32 = 16;

/// The backoff state of one receiver.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    base: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    pub(crate) fn new(base: Duration, max: Duration) -> Self {
        Backoff {
            base,
            max: max.max(base),
            failures: 0,
        }
    }

    /// The ceiling of the next wait: `min(max, base * 2^failures)`.
    pub(crate) fn ceiling(&self) -> Duration {
        let factor = 1u32 << self.failures.min(MAX_DOUBLINGS);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// Record a failure and return how long to wait before the next try.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.failures = self.failures.saturating_add(1);
        jitter(ceiling, rand::rng().random_range(0.0..1.0))
    }

    /// A success: the next failure starts from the base again.
    pub(crate) fn reset(&mut self) {
        self.failures = 0;
    }

    /// Consecutive failures so far.
    pub(crate) fn failures(&self) -> u32 {
        self.failures
    }
}

/// `fraction` (in `[0, 1)`) of `ceiling`.
fn jitter(ceiling: Duration, fraction: f64) -> Duration {
    ceiling.mul_f64(fraction.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ceiling_doubles_per_failure_up_to_the_maximum() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let mut ceilings = Vec::new();
        for _ in 0..6 {
            ceilings.push(b.ceiling().as_millis());
            let _ = b.next_delay();
        }
        assert_eq!(ceilings, [100, 200, 400, 800, 1000, 1000]);
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_millis(100));
        assert_eq!(b.failures(), 0);
    }

    #[test]
    fn every_wait_is_within_the_ceiling() {
        let mut b = Backoff::new(Duration::from_millis(50), Duration::from_millis(400));
        for _ in 0..200 {
            let ceiling = b.ceiling();
            let wait = b.next_delay();
            assert!(wait <= ceiling, "{wait:?} > {ceiling:?}");
        }
    }

    #[test]
    fn jitter_spans_zero_to_the_ceiling() {
        let c = Duration::from_secs(2);
        assert_eq!(jitter(c, 0.0), Duration::ZERO);
        assert_eq!(jitter(c, 0.5), Duration::from_secs(1));
        assert_eq!(jitter(c, 7.0), c, "clamped");
    }

    #[test]
    fn many_failures_neither_overflow_nor_pass_the_maximum() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        for _ in 0..100 {
            let _ = b.next_delay();
        }
        assert_eq!(b.ceiling(), Duration::from_secs(60));
        let zero = Backoff::new(Duration::ZERO, Duration::ZERO);
        assert_eq!(zero.ceiling(), Duration::ZERO);
    }
}
