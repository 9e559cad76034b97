//! The WHIP/WHEP client: one method per request the protocols define.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderValue, LOCATION};
use reqwest::Method;
use url::Url;

use super::auth::AuthToken;
use super::error::ProtocolError;
use super::exchange::{exchange, Reply, Request};
use super::link::{parse_link_headers, Extension};
use super::location::{is_blank, resolve_location};
use super::proxy::env_proxy;
use super::redirect::RedirectAuth;
use super::responses::{
    AnswerKind, DeleteOutcome, IceRestartAnswer, OfferResponse, OptionsResponse, TrickleOutcome,
};

/// RFC 9725 §4.2, docs/protocol.md P1: the bare media type, no parameters
/// (Janus and Broadcast Box compare the string exactly).
const SDP: &str = "application/sdp";
/// RFC 8840 / RFC 9725 §4.3.1.
const SDPFRAG: &str = "application/trickle-ice-sdpfrag";

#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub auth_token: Option<AuthToken>,
    /// For each exchange as a whole, redirects included.
    pub timeout: Duration,
    pub max_redirects: usize,
    /// Whether the token follows a redirect to another origin
    /// (docs/protocol.md P6); same-origin redirects always keep it.
    pub redirect_auth: RedirectAuth,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            auth_token: None,
            timeout: Duration::from_secs(15),
            max_redirects: 5,
            redirect_auth: RedirectAuth::default(),
        }
    }
}

/// Cheap to clone; clones share the HTTP connection pool and the token.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    /// Replaceable while a session runs (Ring's OAuth tokens expire after
    /// 4 h). Only ever locked to clone or swap, never across an await.
    token: RwLock<Option<AuthToken>>,
    timeout: Duration,
    max_redirects: usize,
    redirect_auth: RedirectAuth,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("auth_token", &self.token())
            .field("timeout", &self.inner.timeout)
            .field("max_redirects", &self.inner.max_redirects)
            .field("redirect_auth", &self.inner.redirect_auth)
            .finish_non_exhaustive()
    }
}

/// How long an idle keep-alive connection is reused. Servers close idle
/// connections (Apache and Node.js after 5 s, hyper's header-read timeout
/// too, ours included): a request sent as that close is under way fails
/// with "connection closed before message completed", and a WHIP/WHEP
/// request (POST, PATCH) may not be resent blindly. A session's later
/// requests (an ICE restart's PATCH, a renewal, the DELETE) come seconds
/// after its POST, so they go on a fresh connection; trickle PATCHes right
/// after the POST still reuse its connection.
const POOL_IDLE: Duration = Duration::from_secs(2);

/// The HTTP client every element's `Client` shares, made once: making one
/// loads the system's CA certificates (~50 ms here), which would otherwise
/// block each element's start. Everything per element (token, timeouts,
/// redirect policy) is in `Client`, not here. See `prewarm`.
static HTTP: std::sync::LazyLock<Result<reqwest::Client, String>> =
    std::sync::LazyLock::new(|| {
        let mut builder = reqwest::Client::builder()
            // Redirects are followed by hand, see `exchange`.
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .pool_idle_timeout(POOL_IDLE)
            .user_agent(concat!("gst-plugin-whipwhep/", env!("CARGO_PKG_VERSION")));
        if let Some(proxy) = env_proxy() {
            builder = builder.proxy(proxy);
        }
        builder
            .build()
            .map_err(|e| format!("the HTTP client could not start: {e}"))
    });

/// Makes the shared HTTP client now (on the caller's thread), so that the
/// first element to start does not wait for it.
pub fn prewarm() {
    std::sync::LazyLock::force(&HTTP);
}

impl Client {
    pub fn new(config: ClientConfig) -> Result<Client, ProtocolError> {
        let http = HTTP.clone().map_err(ProtocolError::Client)?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                token: RwLock::new(config.auth_token),
                timeout: config.timeout,
                max_redirects: config.max_redirects,
                redirect_auth: config.redirect_auth,
            }),
        })
    }

    /// Requests started after this call use the new token.
    pub fn set_auth_token(&self, token: Option<AuthToken>) {
        let mut guard = self
            .inner
            .token
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *guard = token;
    }

    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    fn token(&self) -> Option<AuthToken> {
        self.inner
            .token
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    async fn send(&self, url: &Url, request: Request) -> Result<Reply, ProtocolError> {
        exchange(
            &self.inner.http,
            self.token(),
            self.inner.timeout,
            self.inner.max_redirects,
            self.inner.redirect_auth,
            url,
            request,
        )
        .await
    }

    /// OPTIONS on the endpoint, to learn ICE servers before gathering starts
    /// (RFC 9725 §4.6, docs/protocol.md P10: webrtcbin cannot use servers
    /// added later).
    pub async fn options(&self, endpoint: &Url) -> Result<OptionsResponse, ProtocolError> {
        let reply = self
            .send(
                endpoint,
                Request {
                    method: Method::OPTIONS,
                    content_type: None,
                    if_match: None,
                    body: None,
                },
            )
            .await?;
        if !reply.status.is_success() {
            return Err(reply.into_http_error());
        }
        let (ice_servers, extensions) = links(&reply);
        Ok(OptionsResponse {
            ice_servers,
            extensions,
            accept_patch: reply.header("accept-patch").map(str::to_owned),
            allow: reply.header("allow").map(str::to_owned),
        })
    }

    /// POSTs the offer (RFC 9725 §4.2). Any 2xx with SDP is an answer
    /// (docs/protocol.md P4: Monibuca answers 200); a WHEP 406 with SDP is a
    /// counter-offer (P17).
    pub async fn post_offer(
        &self,
        endpoint: &Url,
        offer_sdp: &str,
    ) -> Result<OfferResponse, ProtocolError> {
        let reply = self
            .send(
                endpoint,
                Request {
                    method: Method::POST,
                    content_type: Some(SDP),
                    if_match: None,
                    body: Some(Bytes::copy_from_slice(offer_sdp.as_bytes())),
                },
            )
            .await?;
        let kind = if reply.status.is_success() {
            AnswerKind::Answer
        } else if reply.status.as_u16() == 406 && content_type_is_sdp(&reply) && has_body(&reply) {
            // docs/protocol.md P17: MediaMTX and Janus send plain 406s with other
            // content types; only an SDP body makes it a counter-offer.
            AnswerKind::CounterOffer
        } else {
            return Err(reply.into_http_error());
        };
        let Some(sdp) = sdp_body(&reply) else {
            return Err(reply.invalid(format!(
                "status {} without an SDP body",
                reply.status.as_u16()
            )));
        };
        let session_url = match reply.headers.get(LOCATION) {
            Some(value) if !is_blank(value) => {
                Some(resolve_location(&reply.url, value).map_err(|m| reply.invalid(m))?)
            }
            _ => None,
        };
        let (ice_servers, extensions) = links(&reply);
        Ok(OfferResponse {
            kind,
            status: reply.status.as_u16(),
            sdp,
            session_url,
            etag: reply_etag(&reply),
            ice_servers,
            extensions,
            protocol_version: reply.header("protocol-version").map(str::to_owned),
            accept_patch: reply.header("accept-patch").map(str::to_owned),
            answered_url: reply.url,
        })
    }

    /// Trickles candidates (RFC 9725 §4.3.1, docs/protocol.md P11). The ETag is
    /// echoed exactly as `If-Match`, except a wildcard: MediaMTX's ETag is a
    /// literal `*`, and LiveKit reads `If-Match: *` (or `"*"`) as an ICE
    /// restart, which a trickle must never trigger.
    pub async fn patch_trickle(
        &self,
        session_url: &Url,
        etag: Option<&str>,
        sdpfrag: &str,
    ) -> Result<TrickleOutcome, ProtocolError> {
        let if_match = etag
            .filter(|e| !matches!(e.trim(), "" | "*" | "\"*\""))
            .and_then(|e| HeaderValue::from_str(e).ok());
        let reply = self
            .send(
                session_url,
                Request {
                    method: Method::PATCH,
                    content_type: Some(SDPFRAG),
                    if_match,
                    body: Some(Bytes::copy_from_slice(sdpfrag.as_bytes())),
                },
            )
            .await?;
        if reply.status.is_success() {
            Ok(TrickleOutcome::Accepted {
                etag: reply_etag(&reply),
            })
        } else {
            Ok(TrickleOutcome::NotSupported {
                status: reply.status.as_u16(),
            })
        }
    }

    /// ICE restart (RFC 9725 §4.3.3, docs/protocol.md P12): `If-Match: "*"`, and a
    /// 2xx (200 expected) with the server's new sdpfrag and ETag.
    pub async fn patch_ice_restart(
        &self,
        session_url: &Url,
        sdpfrag: &str,
    ) -> Result<IceRestartAnswer, ProtocolError> {
        let reply = self
            .send(
                session_url,
                Request {
                    method: Method::PATCH,
                    content_type: Some(SDPFRAG),
                    if_match: Some(HeaderValue::from_static("\"*\"")),
                    body: Some(Bytes::copy_from_slice(sdpfrag.as_bytes())),
                },
            )
            .await?;
        if !reply.status.is_success() {
            return Err(reply.into_http_error());
        }
        let sdpfrag = match std::str::from_utf8(&reply.body) {
            Ok(text) if !text.trim().is_empty() => text.to_owned(),
            _ => return Err(reply.invalid("ICE restart answered without an sdpfrag body")),
        };
        Ok(IceRestartAnswer {
            sdpfrag,
            etag: reply_etag(&reply),
        })
    }

    /// WHEP counter-offer (docs/protocol.md P17): the answer to it, PATCHed as
    /// `application/sdp`; 204 is expected, any 2xx will do.
    pub async fn patch_answer(
        &self,
        session_url: &Url,
        answer_sdp: &str,
    ) -> Result<(), ProtocolError> {
        let reply = self
            .send(
                session_url,
                Request {
                    method: Method::PATCH,
                    content_type: Some(SDP),
                    if_match: None,
                    body: Some(Bytes::copy_from_slice(answer_sdp.as_bytes())),
                },
            )
            .await?;
        if reply.status.is_success() {
            Ok(())
        } else {
            Err(reply.into_http_error())
        }
    }

    /// Teardown (RFC 9725 §4.2, docs/protocol.md P13). 404 and 410 mean the session
    /// is gone already, which is the goal of a DELETE.
    /// DELETE is idempotent (RFC 9110 §9.2.2): one that met a closing
    /// connection before any answer goes once more, on a fresh one.
    pub async fn delete(&self, session_url: &Url) -> Result<DeleteOutcome, ProtocolError> {
        let request = || Request {
            method: Method::DELETE,
            content_type: None,
            if_match: None,
            body: None,
        };
        let reply = match self.send(session_url, request()).await {
            Err(ProtocolError::Connect { .. }) => self.send(session_url, request()).await?,
            other => other?,
        };
        match reply.status.as_u16() {
            200..=299 => Ok(DeleteOutcome::Deleted),
            404 | 410 => Ok(DeleteOutcome::AlreadyGone),
            _ => Err(reply.into_http_error()),
        }
    }
}

fn has_body(reply: &Reply) -> bool {
    !reply.body.iter().all(u8::is_ascii_whitespace)
}

fn content_type_is_sdp(reply: &Reply) -> bool {
    reply.header("content-type").is_some_and(|ct| {
        ct.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .eq_ignore_ascii_case(SDP)
    })
}

/// The body as SDP: non-empty UTF-8 that is labelled `application/sdp` or
/// starts like SDP (some servers label it `text/plain` or not at all).
fn sdp_body(reply: &Reply) -> Option<String> {
    let text = std::str::from_utf8(&reply.body).ok()?;
    let trimmed = text.trim_start();
    if trimmed.is_empty() {
        return None;
    }
    (content_type_is_sdp(reply) || trimmed.starts_with("v=0")).then(|| text.to_owned())
}

/// RFC 9725 §4.3.1: the ETag is echoed exactly, quoted or not (LiveKit's is
/// an unquoted CRC32, Janus quotes).
fn reply_etag(reply: &Reply) -> Option<String> {
    reply
        .header("etag")
        .filter(|e| !e.trim().is_empty())
        .map(str::to_owned)
}

/// ICE servers and extensions from the reply's `Link` headers, extension
/// targets resolved against the URL that answered so callers can use them
/// directly (e.g. the WHEP server-sent-events URL).
fn links(reply: &Reply) -> (Vec<super::ice_server::IceServer>, Vec<Extension>) {
    let (ice_servers, mut extensions) = parse_link_headers(reply.headers_all("link"));
    for extension in &mut extensions {
        if let Ok(resolved) = reply.url.join(&extension.url) {
            extension.url = resolved.to_string();
        }
    }
    (ice_servers, extensions)
}
