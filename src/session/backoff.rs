//! Bounded exponential backoff, honouring Retry-After.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Retries after the first attempt; 0: never retry.
    pub max_retries: u32,
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    /// Delay before retry number `retry` (1-based): `initial` doubled each
    /// time, at least the server's Retry-After, never more than `max`.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .initial
            .saturating_mul(1u32 << retry.saturating_sub(1).min(16));
        exp.max(retry_after.unwrap_or_default()).min(self.max)
    }
}

/// Whether a failed POST is worth retrying: the server is busy, has no
/// publisher yet (WHEP 409), or is briefly unavailable.
pub fn is_retryable(status: Option<u16>) -> bool {
    matches!(status, Some(408 | 409 | 425 | 429 | 500 | 502 | 503 | 504))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_honours_retry_after_and_is_bounded() {
        let b = Backoff {
            max_retries: 5,
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        assert_eq!(b.delay(1, None), Duration::from_millis(100));
        assert_eq!(b.delay(3, None), Duration::from_millis(400));
        assert_eq!(b.delay(10, None), Duration::from_secs(1));
        assert_eq!(
            b.delay(1, Some(Duration::from_millis(700))),
            Duration::from_millis(700)
        );
        assert_eq!(
            b.delay(1, Some(Duration::from_secs(30))),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn only_transient_statuses_are_retried() {
        assert!(is_retryable(Some(409)) && is_retryable(Some(429)) && is_retryable(Some(503)));
        assert!(!is_retryable(Some(401)) && !is_retryable(Some(404)) && !is_retryable(None));
    }
}
