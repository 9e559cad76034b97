//! `Retry-After` (RFC 9110 §10.2.3).
//!
//! WHIP servers MAY send it with 503 and 429 (RFC 9725 §4.5, docs/protocol.md P9;
//! Ring documents both), and WHEP servers with 409 when no publisher is live
//! (P18). Both forms, delta-seconds and HTTP-date, are in use.

use std::time::{Duration, SystemTime};

/// No delay longer than a day is reported: a live stream has no use for more,
/// and a caller adding an absurd value to an `Instant` would overflow.
const MAX_DELAY: Duration = Duration::from_secs(24 * 60 * 60);

/// The delay a `Retry-After` value asks for, at most a day. An HTTP-date in
/// the past means "now" (zero); anything unparseable is `None`.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    parse(value).map(|delay| delay.min(MAX_DELAY))
}

fn parse(value: &str) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if value.bytes().all(|b| b.is_ascii_digit()) {
        // More digits than a u64 holds is still "a very long time".
        return Some(Duration::from_secs(
            value.parse::<u64>().unwrap_or(u64::MAX),
        ));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        assert_eq!(parse_retry_after(" 120 "), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(parse_retry_after(""), None);
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after("99999999999999999999999"),
            Some(MAX_DELAY)
        );
        assert_eq!(
            parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT"),
            Some(MAX_DELAY)
        );
    }
}
