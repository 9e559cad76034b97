//! Errors of an HTTP exchange with a WHIP/WHEP endpoint.
//!
//! Every URL in here has gone through [`redact_url`](super::redact_url) and
//! every server-supplied text has had the bearer token scrubbed from it, so
//! an error can be logged or posted on the bus as is.

use std::fmt;
use std::time::Duration;

use super::problem::Problem;

#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The server answered with a status that means failure. RFC 9725 §4.1
    /// (docs/protocol.md P8): callers should act on the status class, not tie one
    /// code to one cause.
    Http {
        status: u16,
        url: String,
        problem: Problem,
        retry_after: Option<Duration>,
        /// The body was larger than the client reads (1 MiB) and was dropped.
        body_too_large: bool,
    },
    /// The whole exchange, redirects included, took longer than the timeout.
    Timeout {
        url: String,
        after: Duration,
    },
    /// Connection refused, DNS failure, TLS failure, connection reset...
    Connect {
        url: String,
        message: String,
    },
    TooManyRedirects {
        url: String,
        max: usize,
    },
    /// A redirect that was not followed (docs/protocol.md P6): an https→http
    /// downgrade, or a cross-origin one with `redirect-auth` "refuse".
    RedirectRefused {
        status: u16,
        from: String,
        to: String,
        reason: &'static str,
    },
    /// A 2xx without an SDP body, an unparseable Location, a redirect
    /// without Location, and the like.
    InvalidResponse {
        url: String,
        message: String,
    },
    InvalidUrl(String),
    /// The request could not be built or the HTTP client could not start
    /// (e.g. a token with a line break, a TLS backend that fails to load).
    /// Not in the original API sketch; added so these cases do not pose as
    /// network or server errors.
    Client(String),
}

impl ProtocolError {
    /// The HTTP status, for [`ProtocolError::Http`].
    pub fn status(&self) -> Option<u16> {
        match self {
            ProtocolError::Http { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The server's `Retry-After`, for [`ProtocolError::Http`].
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ProtocolError::Http { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// What the error body said, for [`ProtocolError::Http`].
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            ProtocolError::Http { problem, .. } => Some(problem),
            _ => None,
        }
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::Http {
                status,
                url,
                problem,
                retry_after,
                body_too_large,
            } => {
                write!(f, "HTTP {status}")?;
                if let Some(reason) = reqwest::StatusCode::from_u16(*status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                {
                    write!(f, " {reason}")?;
                }
                write!(f, " from {url}")?;
                if !problem.is_empty() {
                    write!(f, ": {problem}")?;
                }
                if *body_too_large {
                    write!(
                        f,
                        " (its body, larger than {} bytes, was not read)",
                        super::exchange::MAX_BODY
                    )?;
                }
                if let Some(after) = retry_after {
                    write!(f, " (retry after {} s)", after.as_secs())?;
                }
                Ok(())
            }
            ProtocolError::Timeout { url, after } => {
                write!(
                    f,
                    "no response from {url} within {:.1} s",
                    after.as_secs_f64()
                )
            }
            ProtocolError::Connect { url, message } => {
                write!(f, "could not reach {url}: {message}")
            }
            ProtocolError::TooManyRedirects { url, max } => {
                write!(f, "more than {max} redirects from {url}")
            }
            ProtocolError::RedirectRefused {
                status,
                from,
                to,
                reason,
            } => {
                write!(
                    f,
                    "refused the {status} redirect from {from} to {to}: {reason}"
                )
            }
            ProtocolError::InvalidResponse { url, message } => {
                write!(f, "invalid response from {url}: {message}")
            }
            ProtocolError::InvalidUrl(message) => write!(f, "invalid URL: {message}"),
            ProtocolError::Client(message) => write!(f, "HTTP client error: {message}"),
        }
    }
}
