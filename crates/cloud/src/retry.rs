//! Which failures to retry, and how long to wait in between.
//!
//! Exponential backoff with equal jitter: before retry `n` (0-based) the
//! client waits between half and all of `min(max_delay, base_delay * 2^n)`.
//! When Alibaba's throttling headers carry a `TimeLeft`, the wait is at least
//! that long. Every attempt is signed again with a fresh nonce and date.

use std::time::Duration;

use rand::Rng;

/// Attempts in all (first try included). Four attempts with the default
/// delays span roughly 0.5 + 1 + 2 s, enough to ride out a throttling window
/// while staying well inside a custom-resource handler's deadline.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 4;
/// The first backoff step.
pub const DEFAULT_BASE_DELAY: Duration = Duration::from_millis(500);
/// The longest jittered backoff step.
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(20);
/// The longest server-requested wait (`TimeLeft`) honoured; the official SDK
/// caps its delays at 120 s too.
pub const MAX_TIME_LEFT: Duration = Duration::from_secs(120);

/// How often and how patiently to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    max_attempts: u32,
    base_delay: Duration,
    max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            base_delay: DEFAULT_BASE_DELAY,
            max_delay: DEFAULT_MAX_DELAY,
        }
    }
}

impl RetryPolicy {
    /// A policy of `max_attempts` (at least 1) with these delays.
    pub fn new(max_attempts: u32, base_delay: Duration, max_delay: Duration) -> Self {
        RetryPolicy {
            max_attempts: max_attempts.max(1),
            base_delay,
            max_delay,
        }
    }

    /// Exactly one attempt.
    pub fn never() -> Self {
        RetryPolicy::new(1, Duration::ZERO, Duration::ZERO)
    }

    /// Attempts in all, the first included.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The wait before retry number `retry` (0 for the first retry), at least
    /// `time_left` (capped at [`MAX_TIME_LEFT`]) when the server asked for it.
    pub fn delay(&self, retry: u32, time_left: Option<Duration>) -> Duration {
        let factor = 1u32.checked_shl(retry.min(20)).unwrap_or(u32::MAX);
        let cap = self.base_delay.saturating_mul(factor).min(self.max_delay);
        let half = cap / 2;
        let jitter_nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        let jitter = Duration::from_nanos(rand::rng().random_range(0..=jitter_nanos));
        let backoff = half + jitter;
        match time_left {
            Some(asked) => backoff.max(asked.min(MAX_TIME_LEFT)),
            None => backoff,
        }
    }
}

/// Alibaba's throttling hint: the larger `TimeLeft` (milliseconds) of the
/// `x-ratelimit-user-api` and `x-ratelimit-user` headers, which look like
/// `Limit:1,Remain:0,TimeLeft:2000,Reset:1234`.
pub fn throttling_time_left(headers: &http::HeaderMap) -> Option<Duration> {
    ["x-ratelimit-user-api", "x-ratelimit-user"]
        .iter()
        .filter_map(|name| headers.get(*name)?.to_str().ok())
        .filter_map(|value| {
            value.split(',').find_map(|part| {
                let (key, number) = part.split_once(':')?;
                (key.trim() == "TimeLeft")
                    .then(|| number.trim().parse::<u64>().ok())
                    .flatten()
            })
        })
        .max()
        .map(Duration::from_millis)
}

/// Whether an Alibaba error code is worth retrying.
pub fn is_retryable_alibaba_code(code: &str) -> bool {
    code.starts_with("Throttling")
        || matches!(
            code,
            "ServiceUnavailable" | "InternalError" | "LastTokenProcessing"
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_within_bounds() {
        let p = RetryPolicy::new(5, Duration::from_millis(100), Duration::from_millis(300));
        for _ in 0..50 {
            let d0 = p.delay(0, None);
            assert!(d0 >= Duration::from_millis(50) && d0 <= Duration::from_millis(100));
            let d1 = p.delay(1, None);
            assert!(d1 >= Duration::from_millis(100) && d1 <= Duration::from_millis(200));
            let d9 = p.delay(9, None);
            assert!(d9 >= Duration::from_millis(150) && d9 <= Duration::from_millis(300));
        }
        assert!(p.delay(40, None) <= Duration::from_millis(300));
    }

    #[test]
    fn honours_time_left() {
        let p = RetryPolicy::new(5, Duration::from_millis(1), Duration::from_millis(2));
        assert_eq!(
            p.delay(0, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        assert_eq!(p.delay(0, Some(Duration::from_secs(999))), MAX_TIME_LEFT);
    }

    #[test]
    fn parses_the_larger_time_left() {
        let mut h = http::HeaderMap::new();
        h.insert(
            "x-ratelimit-user-api",
            "Limit:1,Remain:0,TimeLeft:2000,Reset:1234"
                .parse()
                .expect("valid"),
        );
        h.insert(
            "x-ratelimit-user",
            "Limit:1,Remain:0,TimeLeft:3000,Reset:1234"
                .parse()
                .expect("valid"),
        );
        assert_eq!(throttling_time_left(&h), Some(Duration::from_secs(3)));
        assert_eq!(throttling_time_left(&http::HeaderMap::new()), None);
    }

    #[test]
    fn classifies_codes() {
        for code in [
            "Throttling",
            "Throttling.User",
            "ServiceUnavailable",
            "InternalError",
            "LastTokenProcessing",
        ] {
            assert!(is_retryable_alibaba_code(code), "{code}");
        }
        for code in ["SignatureDoesNotMatch", "InvalidParameter", "Forbidden.RAM"] {
            assert!(!is_retryable_alibaba_code(code), "{code}");
        }
    }
}
