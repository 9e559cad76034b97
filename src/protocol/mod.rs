//! TEMPORARY stand-in with the agreed API; replaced by the real layer.
#![allow(dead_code, unused_variables)]
use std::time::Duration;
use url::Url;

#[derive(Clone)]
pub struct AuthToken(String);
impl AuthToken {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}
impl std::fmt::Debug for AuthToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthToken(<redacted>)")
    }
}
pub fn redact_url(url: &Url) -> String {
    url.to_string()
}
pub struct ClientConfig {
    pub auth_token: Option<AuthToken>,
    pub timeout: Duration,
    pub max_redirects: usize,
}
impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            auth_token: None,
            timeout: Duration::from_secs(15),
            max_redirects: 5,
        }
    }
}
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    token: std::sync::Arc<std::sync::Mutex<Option<AuthToken>>>,
    timeout: Duration,
}
pub enum DeleteOutcome {
    Deleted,
    AlreadyGone,
}
pub enum TrickleOutcome {
    Accepted { etag: Option<String> },
    NotSupported { status: u16 },
}
pub struct IceRestartAnswer {
    pub sdpfrag: String,
    pub etag: Option<String>,
}
pub struct OptionsResponse {
    pub ice_servers: Vec<IceServer>,
    pub extensions: Vec<Extension>,
    pub accept_patch: Option<String>,
    pub allow: Option<String>,
}
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerKind {
    Answer,
    CounterOffer,
}
pub struct OfferResponse {
    pub kind: AnswerKind,
    pub status: u16,
    pub sdp: String,
    pub answered_url: Url,
    pub session_url: Option<Url>,
    pub etag: Option<String>,
    pub ice_servers: Vec<IceServer>,
    pub extensions: Vec<Extension>,
    pub protocol_version: Option<String>,
    pub accept_patch: Option<String>,
}
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    pub rel: String,
    pub url: String,
}
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceServer {
    pub url: String,
    pub username: Option<String>,
    pub credential: Option<String>,
}
impl IceServer {
    pub fn is_turn(&self) -> bool {
        self.url.starts_with("turn")
    }
    pub fn to_webrtcbin_uri(&self) -> Option<String> {
        None
    }
    pub fn parse_user_uri(s: &str) -> Option<IceServer> {
        None
    }
}
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Problem {
    pub title: Option<String>,
    pub detail: Option<String>,
}
pub fn trickle_sdpfrag(
    mid: &str,
    ufrag: &str,
    pwd: &str,
    candidates: &[String],
    end: bool,
) -> String {
    String::new()
}
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("HTTP {status} from {url}")]
    Http {
        status: u16,
        url: String,
        problem: Problem,
        retry_after: Option<Duration>,
    },
    #[error("timeout {url}")]
    Timeout { url: String, after: Duration },
    #[error("connect {url}: {message}")]
    Connect { url: String, message: String },
    #[error("redirects")]
    TooManyRedirects { url: String, max: usize },
    #[error("invalid {url}: {message}")]
    InvalidResponse { url: String, message: String },
    #[error("invalid url {0}")]
    InvalidUrl(String),
}
impl ProtocolError {
    pub fn status(&self) -> Option<u16> {
        None
    }
    pub fn retry_after(&self) -> Option<Duration> {
        None
    }
    pub fn problem(&self) -> Option<&Problem> {
        None
    }
}
impl Client {
    pub fn new(config: ClientConfig) -> Result<Client, ProtocolError> {
        Ok(Client {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            token: std::sync::Arc::new(std::sync::Mutex::new(config.auth_token)),
            timeout: config.timeout,
        })
    }
    pub fn set_auth_token(&self, token: Option<AuthToken>) {
        *self.token.lock().unwrap() = token;
    }
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
    pub async fn options(&self, endpoint: &Url) -> Result<OptionsResponse, ProtocolError> {
        todo!()
    }
    pub async fn post_offer(
        &self,
        endpoint: &Url,
        offer_sdp: &str,
    ) -> Result<OfferResponse, ProtocolError> {
        let mut req = self
            .http
            .post(endpoint.clone())
            .header("content-type", "application/sdp")
            .body(offer_sdp.to_string());
        let tok = self.token.lock().unwrap().clone();
        if let Some(t) = tok {
            req = req.bearer_auth(t.expose());
        }
        let resp = req.send().await.map_err(|e| ProtocolError::Connect {
            url: endpoint.to_string(),
            message: e.without_url().to_string(),
        })?;
        let status = resp.status().as_u16();
        let loc = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .and_then(|l| endpoint.join(l).ok());
        let etag = resp
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        let body = resp.text().await.unwrap_or_default();
        if !(200..300).contains(&status) {
            return Err(ProtocolError::Http {
                status,
                url: endpoint.to_string(),
                problem: Problem {
                    title: None,
                    detail: Some(body),
                },
                retry_after: None,
            });
        }
        Ok(OfferResponse {
            kind: AnswerKind::Answer,
            status,
            sdp: body,
            answered_url: endpoint.clone(),
            session_url: loc,
            etag,
            ice_servers: vec![],
            extensions: vec![],
            protocol_version: None,
            accept_patch: None,
        })
    }
    pub async fn patch_trickle(
        &self,
        session_url: &Url,
        etag: Option<&str>,
        sdpfrag: &str,
    ) -> Result<TrickleOutcome, ProtocolError> {
        Ok(TrickleOutcome::NotSupported { status: 405 })
    }
    pub async fn patch_ice_restart(
        &self,
        session_url: &Url,
        sdpfrag: &str,
    ) -> Result<IceRestartAnswer, ProtocolError> {
        todo!()
    }
    pub async fn patch_answer(
        &self,
        session_url: &Url,
        answer_sdp: &str,
    ) -> Result<(), ProtocolError> {
        todo!()
    }
    pub async fn delete(&self, session_url: &Url) -> Result<DeleteOutcome, ProtocolError> {
        let mut req = self.http.delete(session_url.clone());
        let tok = self.token.lock().unwrap().clone();
        if let Some(t) = tok {
            req = req.bearer_auth(t.expose());
        }
        let resp = req.send().await.map_err(|e| ProtocolError::Connect {
            url: session_url.to_string(),
            message: e.without_url().to_string(),
        })?;
        if resp.status().as_u16() == 404 {
            Ok(DeleteOutcome::AlreadyGone)
        } else {
            Ok(DeleteOutcome::Deleted)
        }
    }
}
