//! One HTTP exchange: the request, the redirects it goes through by hand,
//! and the whole-exchange timeout.
//!
//! reqwest's own redirect policy is off (`Policy::none()` in `Client::new`)
//! and redirects are followed here, by hand: RFC 9725 §4.5 (docs/protocol.md
//! P6) wants 307/308 to re-send the same body and the same `Authorization`,
//! and reqwest's policy decides on `Authorization` by host alone. 301 and
//! 302 are followed the same way (method and body kept; reqwest would turn
//! the POST into a GET), since a WHIP endpoint has no use for a GET. 303 is
//! not followed. Whether the token goes along is `redirect_hop`'s decision
//! (same origin: yes; another origin: `RedirectAuth`; https→http: refused).

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE, IF_MATCH, LOCATION};
use reqwest::{Method, StatusCode};
use url::Url;

use super::auth::{redact_url, AuthToken};
use super::error::ProtocolError;
use super::location::{is_blank, resolve_location};
use super::problem::parse_error_body_redacted;
use super::redirect::{redirect_hop, Hop, RedirectAuth};
use super::retry_after::parse_retry_after;

/// Bodies larger than this are not read: an SDP answer with simulcast is a
/// few tens of kilobytes. An error body that large is dropped, and the error
/// is the status alone (`ProtocolError::Http` with `body_too_large`).
pub(crate) const MAX_BODY: usize = 1024 * 1024;

/// What to send.
pub(crate) struct Request {
    pub method: Method,
    pub content_type: Option<&'static str>,
    pub if_match: Option<HeaderValue>,
    pub body: Option<Bytes>,
}

/// What came back from the last hop.
pub(crate) struct Reply {
    pub status: StatusCode,
    /// The URL that answered, after redirects.
    pub url: Url,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The body was over [`MAX_BODY`] and not read (`body` is empty).
    pub body_too_large: bool,
    /// The token the request carried, to scrub it from error texts.
    token: Option<AuthToken>,
}

impl Reply {
    /// A header as text, if present and valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
    }

    /// Every value of a header that may repeat (`Link`).
    pub fn headers_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .get_all(name)
            .iter()
            .filter_map(|v| std::str::from_utf8(v.as_bytes()).ok())
            .collect()
    }

    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }

    pub fn invalid(&self, message: impl Into<String>) -> ProtocolError {
        ProtocolError::InvalidResponse {
            url: self.redacted_url(),
            message: message.into(),
        }
    }

    /// The error this reply stands for (any status the caller did not
    /// accept), with the body's explanation and `Retry-After`
    /// (docs/protocol.md P8, P9, P18).
    pub fn into_http_error(self) -> ProtocolError {
        // Trimmed as in `bearer`: that is what the server saw. Scrubbed
        // before the texts are cut to length, so that an echo near the cut
        // cannot leave the token's first characters behind.
        let secret = self.token.as_ref().map(|t| t.expose().trim());
        let problem = parse_error_body_redacted(self.header("content-type"), &self.body, secret);
        ProtocolError::Http {
            status: self.status.as_u16(),
            url: self.redacted_url(),
            problem,
            retry_after: self.header("retry-after").and_then(parse_retry_after),
            body_too_large: self.body_too_large,
        }
    }
}

/// Runs `request` against `url` with redirects, all within `timeout`.
pub(crate) async fn exchange(
    http: &reqwest::Client,
    token: Option<AuthToken>,
    timeout: Duration,
    max_redirects: usize,
    redirect_auth: RedirectAuth,
    url: &Url,
    request: Request,
) -> Result<Reply, ProtocolError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ProtocolError::InvalidUrl(format!(
            "{} is not an http(s) URL",
            redact_url(url)
        )));
    }
    let authorization = match &token {
        Some(token) => Some(bearer(token)?),
        None => None,
    };
    let run = follow(
        http,
        authorization,
        max_redirects,
        redirect_auth,
        url,
        request,
    );
    match tokio::time::timeout(timeout, run).await {
        Ok(result) => result.map(|mut reply| {
            reply.token = token;
            reply
        }),
        Err(_) => Err(ProtocolError::Timeout {
            url: redact_url(url),
            after: timeout,
        }),
    }
}

/// `Authorization: Bearer <token>` (RFC 9725 §4.7, docs/protocol.md P7), marked
/// sensitive so that the HTTP stack never logs it.
fn bearer(token: &AuthToken) -> Result<HeaderValue, ProtocolError> {
    // A token read from a file often ends in a newline; it is never part of
    // the token (RFC 6750 b64token has no whitespace).
    let mut value =
        HeaderValue::from_str(&format!("Bearer {}", token.expose().trim())).map_err(|_| {
            ProtocolError::Client(
                "the auth token contains characters that cannot be sent in an HTTP header"
                    .to_owned(),
            )
        })?;
    value.set_sensitive(true);
    Ok(value)
}

async fn follow(
    http: &reqwest::Client,
    mut authorization: Option<HeaderValue>,
    max_redirects: usize,
    redirect_auth: RedirectAuth,
    url: &Url,
    request: Request,
) -> Result<Reply, ProtocolError> {
    let mut current = url.clone();
    let mut redirects = 0;
    loop {
        let mut builder = http.request(request.method.clone(), current.clone());
        if let Some(value) = &authorization {
            builder = builder.header(AUTHORIZATION, value.clone());
        }
        if let Some(content_type) = request.content_type {
            builder = builder.header(CONTENT_TYPE, content_type);
        }
        if let Some(value) = &request.if_match {
            builder = builder.header(IF_MATCH, value.clone());
        }
        if let Some(body) = &request.body {
            builder = builder.body(body.clone());
        }
        let mut response = builder
            .send()
            .await
            .map_err(|e| transport_error(&current, e))?;
        let status = response.status();
        if matches!(status.as_u16(), 301 | 302 | 307 | 308) {
            if redirects >= max_redirects {
                return Err(ProtocolError::TooManyRedirects {
                    url: redact_url(url),
                    max: max_redirects,
                });
            }
            let next = match response.headers().get(LOCATION) {
                Some(value) if !is_blank(value) => {
                    resolve_location(&current, value).map_err(|message| {
                        ProtocolError::InvalidResponse {
                            url: redact_url(&current),
                            message,
                        }
                    })?
                }
                _ => {
                    return Err(ProtocolError::InvalidResponse {
                        url: redact_url(&current),
                        message: format!("redirect {} without a Location", status.as_u16()),
                    })
                }
            };
            match redirect_hop(redirect_auth, &current, &next) {
                Hop::KeepToken => {}
                // Once dropped, the token stays off for the later hops: a
                // server we did not choose must not pick where it goes.
                Hop::DropToken => authorization = None,
                Hop::Refuse(reason) => {
                    return Err(ProtocolError::RedirectRefused {
                        status: status.as_u16(),
                        from: redact_url(&current),
                        to: redact_url(&next),
                        reason,
                    })
                }
            }
            current = next;
            redirects += 1;
            continue;
        }
        let headers = std::mem::take(response.headers_mut());
        let mut body = Vec::new();
        let mut body_too_large = false;
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| transport_error(&current, e))?
        {
            if body.len() + chunk.len() > MAX_BODY {
                // A refusal keeps its status (the body is only its
                // explanation); an answer without its body is no answer.
                if status.is_success() {
                    return Err(ProtocolError::InvalidResponse {
                        url: redact_url(&current),
                        message: format!(
                            "status {} with a body larger than {MAX_BODY} bytes",
                            status.as_u16()
                        ),
                    });
                }
                body.clear();
                body_too_large = true;
                break;
            }
            body.extend_from_slice(&chunk);
        }
        return Ok(Reply {
            status,
            url: current,
            headers,
            body: Bytes::from(body),
            body_too_large,
            token: None,
        });
    }
}

/// A reqwest failure as a [`ProtocolError`], the URL redacted and the
/// reason given without it (reqwest would print the full URL).
fn transport_error(url: &Url, error: reqwest::Error) -> ProtocolError {
    if error.is_builder() {
        return ProtocolError::InvalidUrl(redact_url(url));
    }
    if error.is_timeout() {
        // Only reachable if the reqwest client gets its own timeouts.
        return ProtocolError::Connect {
            url: redact_url(url),
            message: "timed out".to_owned(),
        };
    }
    // reqwest's own text ("error sending request") says little; the causes
    // below it say what happened ("tcp connect error: Connection refused").
    let error = error.without_url();
    let mut message = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    ProtocolError::Connect {
        url: redact_url(url),
        message,
    }
}
